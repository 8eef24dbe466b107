import Conversion
import Foundation
import Model
import Testing
import TestSupport

/// Upstream's own outputs (and our PyTorch reference's, for MoE), matched by the engine on models
/// converted with `--type f32`.
@Suite("Fixtures: vision features, logits and greedy continuations")
struct FixtureTests {
    @Test(arguments: [ModelFixtures.Variant.gen2, .gen3])
    func visionFeaturesMatchUpstreamForABatchOfAllImages(variant: ModelFixtures.Variant) throws {
        let model = try ModelFixtures.model(variant)
        let encoder = try #require(model.visionEncoder)
        let names = try ModelFixtures.imageNames(variant)
        let pixels = try names.flatMap { try ModelFixtures.pixels($0, variant) }
        let features = try encoder(pixels: pixels, images: names.count)
        let perImage = features.count / names.count
        for (i, name) in names.enumerated() {
            let expected = try ModelFixtures.upstreamVisionFeatures(name, variant)
            let error = relativeError(Array(features[(i * perImage)..<((i + 1) * perImage)]), expected)
            #expect(error < 1e-3, "\(variant) \(name): vision features off by \(error)")
        }
    }

    @Test(arguments: ModelFixtures.Variant.allCases)
    func projectedFeaturesMatchReference(variant: ModelFixtures.Variant) throws {
        let model = try ModelFixtures.model(variant)
        for name in try ModelFixtures.imageNames(variant) {
            let got = try model.imageEmbeddings(pixels: try ModelFixtures.pixels(name, variant), images: 1)[0]
            let expected = try ModelFixtures.reference(variant, "images/\(name)/vision_proj.npy").floats
            let error = relativeError(got, expected)
            #expect(error < 1e-3, "\(variant) \(name): projected features off by \(error)")
        }
    }

    @Test(arguments: ModelFixtures.Variant.allCases, ModelFixtures.cases)
    func firstLogitsAndGreedyContinuationMatchReference(variant: ModelFixtures.Variant, caseName: String) throws {
        let model = try ModelFixtures.model(variant)
        let prompt = try ModelFixtures.promptEmbeddings(caseName, variant, model: model)
        let cache = model.decoder.makeCache()
        var logits = try model.decoder.forward([(cache, prompt.embeddings)])[0]
        let expectedLogits = try ModelFixtures.reference(variant, "cases/\(caseName)/logits_last.npy").floats
        let error = relativeError(logits, expectedLogits)
        #expect(error < 1e-3, "\(variant) \(caseName): first-step logits off by \(error)")

        let expectedIDs = try ModelFixtures.reference(variant, "cases/\(caseName)/greedy_ids.npy").ints
        var generated: [Int] = []
        for _ in 0..<expectedIDs.count {
            let token = argmax(logits)
            generated.append(token)
            logits = try model.decoder.forward([(cache, try model.decoder.embed([token]))])[0]
        }
        #expect(generated == expectedIDs, "\(variant) \(caseName)")
        #expect(cache.count == prompt.ids.count + expectedIDs.count)
    }
}
