import Conversion
import Foundation
import Kernels
import Model
import Testing
import TestSupport

/// The decode step (one new token per sequence) reads each weight in the file's own format with
/// the small-row kernels, and its logits agree with upstream's.
@Suite("Decode path")
struct DecodePathTests {
    static let formats: [OutputType: WeightFormat] = [.f32: .float32, .f16: .float16, .bf16: .bfloat16, .q8_0: .q8_0, .q4_0: .q4_0]

    @Test(arguments: [(ModelFixtures.Variant.gen2, OutputType.f32), (.gen3, .f32), (.gen2, .q8_0), (.gen3, .q8_0), (.gen3, .f16), (.gen2, .bf16),
                      (.gen2, .q4_0), (.gen3, .q4_0)])
    func decodeStepReadsTheStoredFormat(variant: ModelFixtures.Variant, type: OutputType) throws {
        let model = try ModelFixtures.model(variant, type: type)
        let expected = try #require(Self.formats[type])
        let formats = model.decoder.decodeWeightFormats
        #expect(model.decoder.decodeProductsWithoutKernel == 0)
        // 7 matrices per layer plus the head (Q8_0 in a q4_0 file).
        let layers = 7 * model.config.layerCount
        #expect(formats == (type == .q4_0 ? [.q4_0: layers, .q8_0: 1] : [expected: layers + 1]), "decode reads \(formats)")
        // Q8_0 and Q4_0 matrices are packed into panels at load where the CPU has int8 dot products:
        // still the file's values and float16 scales (`PanelMatrixTests`, `Q4PanelMatrixTests`), reordered.
        let packed = (type == .q8_0 || type == .q4_0) && Int8PanelMatrix.isFast ? layers + 1 : 0
        #expect(model.decoder.decodePackedMatrices == packed)
    }

    /// MoE files under q4_0: every expert (stacked, packed as segments) and the shared expert in
    /// Q4_0, the router in F16 (not a decode product), the head in Q8_0.
    @Test(arguments: [ModelFixtures.Variant.gen2MoE, .gen3MoE])
    func moeExpertsAreQ4_0(variant: ModelFixtures.Variant) throws {
        let model = try ModelFixtures.model(variant, type: .q4_0)
        let c = model.config
        let perLayer = 4 + 3 * (c.expertCount + c.sharedExpertCount)
        #expect(model.decoder.decodeWeightFormats == [.q4_0: perLayer * c.layerCount, .q8_0: 1])
        #expect(model.decoder.decodePackedMatrices == (Int8PanelMatrix.isFast ? perLayer * c.layerCount + 1 : 0))
    }

    /// The prompt but its last token through prefill, then the last token as a decode step (one
    /// row: the decode products and attention kernel): the logits must match upstream's at the
    /// last position as closely as a whole-prompt forward pass does for the same file type.
    @Test(arguments: [(ModelFixtures.Variant.gen2, OutputType.f32), (.gen3, .f32), (.gen2, .q8_0), (.gen3, .q8_0), (.gen3, .f16),
                      (.gen2, .q4_0), (.gen3, .q4_0), (.gen2MoE, .q4_0), (.gen3MoE, .q4_0)])
    func lastTokenAsDecodeStepMatchesUpstreamLogits(variant: ModelFixtures.Variant, type: OutputType) throws {
        let model = try ModelFixtures.model(variant, type: type)
        // f32 as the fixture tests require; f16 is lossless for these float16 checkpoints.
        let bound: Float = type == .f32 || type == .f16 ? 1e-3 : try #require(LowPrecisionTests.bounds[type]).logits
        let hidden = model.config.hiddenSize
        for caseName in ["img1", "text"] {
            let prompt = try ModelFixtures.promptEmbeddings(caseName, variant, model: model)
            let rows = prompt.embeddings.count / hidden
            let cache = model.decoder.makeCache()
            _ = try model.decoder.forward([(cache, Array(prompt.embeddings[0..<((rows - 1) * hidden)]))])
            let stepped = try model.decoder.forward([(cache, Array(prompt.embeddings[((rows - 1) * hidden)...]))])[0]
            let reference = try ModelFixtures.reference(variant, "cases/\(caseName)/logits_last.npy").floats
            let error = relativeError(stepped, reference)
            print("decode step \(variant) \(type) \(caseName): logits error \(error)")
            #expect(error < bound)
            #expect(cache.count == rows)
        }
    }

    /// Sixteen sequences stepping together (16-row products: int8 panels for Q8_0 files on VNNI
    /// CPUs, the float kernel otherwise) give each sequence upstream's logits, within the type's bound.
    @Test(arguments: [(ModelFixtures.Variant.gen2, OutputType.f32), (.gen3, .q8_0), (.gen2, .q8_0), (.gen3, .q4_0)])
    func sixteenSequencesStepTogether(variant: ModelFixtures.Variant, type: OutputType) throws {
        let model = try ModelFixtures.model(variant, type: type)
        let bound: Float = type == .f32 ? 1e-3 : try #require(LowPrecisionTests.bounds[type]).logits
        let hidden = model.config.hiddenSize
        let prompt = try ModelFixtures.promptEmbeddings("text", variant, model: model)
        let rows = prompt.embeddings.count / hidden
        let caches = (0..<16).map { _ in model.decoder.makeCache() }
        for cache in caches {
            _ = try model.decoder.forward([(cache, Array(prompt.embeddings[0..<((rows - 1) * hidden)]))])
        }
        let last = Array(prompt.embeddings[((rows - 1) * hidden)...])
        let logits = try model.decoder.forward(caches.map { ($0, last) })
        let reference = try ModelFixtures.reference(variant, "cases/text/logits_last.npy").floats
        let errors = logits.map { relativeError($0, reference) }
        print("16 sequences \(variant) \(type): worst logits error \(errors.max() ?? .nan)")
        for error in errors { #expect(error < bound) }
        #expect(logits.count == 16)
    }

    /// Q8_0 and BF16 files keep keys and values in float16 unless told otherwise, Q4_0 files in
    /// int8; F32 and F16 files, which reproduce upstream's numbers, in float32.
    @Test(arguments: [(OutputType.f32, KVCache.Precision.float32), (.f16, .float32), (.bf16, .float16), (.q8_0, .float16), (.q4_0, .int8)])
    func cachePrecisionFollowsTheFile(type: OutputType, expected: KVCache.Precision) throws {
        let model = try ModelFixtures.model(.gen3, type: type)
        #expect(model.decoder.defaultCachePrecision == expected)
        #expect(model.decoder.makeCache().precision == expected)
        #expect(model.decoder.makeCache(precision: .float32).precision == .float32)
    }

    /// A float16 or int8 cache on the float32 file: prefill and a decode step read the rounded keys
    /// and values; the logits stay near upstream's (float16 within 4e-3, observed 4e-4 to 2.0e-3;
    /// int8 within 3e-2, observed 8.3e-3 to 2.6e-2, a third of what Q8_0 weights move them), and
    /// the cache takes half the bytes (int8: a quarter plus a float32 scale per position and KV head).
    @Test(arguments: [ModelFixtures.Variant.gen2, .gen3], [KVCache.Precision.float16, .int8])
    func roundedCacheKeepsLogitsNearUpstream(variant: ModelFixtures.Variant, precision: KVCache.Precision) throws {
        let model = try ModelFixtures.model(variant, type: .f32)
        let hidden = model.config.hiddenSize, bound: Float = precision == .int8 ? 3e-2 : 4e-3
        for caseName in ["img1", "text"] {
            let prompt = try ModelFixtures.promptEmbeddings(caseName, variant, model: model)
            let rows = prompt.embeddings.count / hidden
            let cache = model.decoder.makeCache(capacity: rows, precision: precision)
            _ = try model.decoder.forward([(cache, Array(prompt.embeddings[0..<((rows - 1) * hidden)]))])
            let stepped = try model.decoder.forward([(cache, Array(prompt.embeddings[((rows - 1) * hidden)...]))])[0]
            let error = relativeError(stepped, try ModelFixtures.reference(variant, "cases/\(caseName)/logits_last.npy").floats)
            print("\(precision) cache \(variant) \(caseName): logits error \(error)")
            #expect(error < bound)
            #expect(error > 1e-5, "a \(precision) cache that matches float32 exactly was not rounded")
            let float32Bytes = model.decoder.makeCache(capacity: cache.capacity, precision: .float32).byteCount
            let config = model.config
            switch precision {
            case .int8:
                let scaleBytes = 2 * config.layerCount * cache.capacity * config.kvHeadCount * 4
                #expect((cache.byteCount - scaleBytes) * 4 == float32Bytes)
            default:
                #expect(cache.byteCount * 2 == float32Bytes)
            }
        }
    }
}
