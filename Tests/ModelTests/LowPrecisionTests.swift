import Conversion
import Foundation
import Model
import Testing
import TestSupport

/// Models converted to f16, bf16 and q8_0 against upstream's float32 outputs. The bounds are the
/// errors observed on these fixtures (printed by the test) with some headroom; they say how far
/// each storage type moves the outputs, not that the answers stay the same.
/// Observed (max over images and the img1/text cases, relative to max abs):
///   f16  vision 8.5e-7 / 9.2e-7, logits 3.7e-6 / 2.9e-6 (gen2 / gen3): the checkpoints hold float16
///        values, so f16 loses nothing and only float32 noise remains;
///   bf16 vision 1.5e-3 / 3.4e-3, logits 1.8e-2 / 1.8e-2;
///   q8_0 vision 3.4e-3 / 1.2e-2, logits 5.9e-2 / 7.8e-2 (the tiny 64-wide decoder, embedding and
///        head included, is a harsh case for 8-bit blocks). With AVX512-VNNI, products over more
///        than 16 rows (vision, prefill) also round the activations to int8 blocks of 32; with
///        float32 activations (other CPUs) the figures were 2.1e-3 / 7.7e-3, 6.8e-2 / 4.3e-2.
@Suite("Reduced-precision model files")
struct LowPrecisionTests {
    static let bounds: [OutputType: (vision: Float, logits: Float)] = [
        .f16: (vision: 1e-5, logits: 2e-5),
        .bf16: (vision: 1e-2, logits: 4e-2),
        .q8_0: (vision: 2e-2, logits: 1.2e-1),
    ]

    /// f16 only for gen3: the fixtures hold float16 values, so f16 is lossless for both.
    @Test(arguments: [(ModelFixtures.Variant.gen2, OutputType.bf16), (.gen2, .q8_0), (.gen3, .f16), (.gen3, .bf16), (.gen3, .q8_0)])
    func errorsStayWithinObservedBounds(variant: ModelFixtures.Variant, type: OutputType) throws {
        let model = try ModelFixtures.model(variant, type: type)
        let bound = try #require(Self.bounds[type])
        let encoder = try #require(model.visionEncoder)
        var visionError: Float = 0
        for name in try ModelFixtures.images(of: "img1", variant) {
            let features = try encoder(pixels: try ModelFixtures.pixels(name, variant), images: 1)
            visionError = max(visionError, relativeError(features, try ModelFixtures.upstreamVisionFeatures(name, variant)))
        }
        var logitsError: Float = 0
        for caseName in ["img1", "text"] {
            let prompt = try ModelFixtures.promptEmbeddings(caseName, variant, model: model)
            let logits = try model.decoder.forward([(model.decoder.makeCache(), prompt.embeddings)])[0]
            logitsError = max(logitsError, relativeError(logits, try ModelFixtures.reference(variant, "cases/\(caseName)/logits_last.npy").floats))
        }
        print("low precision \(variant) \(type): vision \(visionError), logits \(logitsError)")
        #expect(visionError < bound.vision)
        #expect(logitsError < bound.logits)
        #expect(visionError > 0 && logitsError > 0, "a reduced-precision file that matches exactly was not reduced")
    }
}
