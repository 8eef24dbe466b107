import Engine
import Foundation
import Model
import Testing
import TestSupport

/// An engine that remembers recent prompts prefills only what a new prompt does not share with
/// one of them, and answers exactly as if it had prefilled everything.
@Suite("Reusing the beginnings of earlier prompts")
struct PromptReuseTests {
    static let stop = StopConditions(maxNewTokens: 6, stopTokenIDs: [])

    /// The same model as the fixtures' engine, remembering up to `bytes` of prompts.
    static func reusingEngine(_ generation: String, bytes: Int = 64 << 20) throws -> Engine {
        try Engine(model: try EngineFixtures.engine(generation).model, prefixBytes: bytes)
    }

    /// Logits and greedy tokens of `request` on an engine that prefills everything.
    static func fresh(_ generation: String, _ request: Engine.SequenceRequest) throws -> (logits: [Float], tokens: [Int]) {
        let engine = try EngineFixtures.engine(generation)
        let sequence = try engine.start([request])[0]
        let logits = sequence.nextLogits
        while !sequence.isFinished { try engine.step([sequence]) }
        return (logits, sequence.outputTokens)
    }

    static func finish(_ sequence: GenerationSequence, on engine: Engine) throws -> [Int] {
        while !sequence.isFinished { try engine.step([sequence]) }
        return sequence.outputTokens
    }

    @Test(arguments: ["gen2", "gen3"])
    func anotherQuestionOnTheSameImagePrefillsOnlyTheQuestion(generation: String) throws {
        let engine = try Self.reusingEngine(generation)
        let prompt = try EngineFixtures.prompt(generation, "img1", engine: engine)
        let first = Engine.SequenceRequest(prompt: prompt.ids, images: prompt.images, imageKeys: ["dog"], sampling: .argmax, stop: Self.stop)
        // The same image, the question changed five tokens before the end.
        var otherIDs = prompt.ids
        let changed = otherIDs.count - 5
        otherIDs[changed] = otherIDs[changed] == 100 ? 101 : 100
        let second = Engine.SequenceRequest(prompt: otherIDs, images: prompt.images, imageKeys: ["dog"], sampling: .argmax, stop: Self.stop)

        let a = try engine.start([first])[0]
        #expect(a.reusedPositions == 0)
        let b = try engine.start([second])[0]
        #expect(b.reusedPositions == changed)
        #expect(b.position == otherIDs.count)
        let expected = try Self.fresh(generation, second)
        #expect(relativeError(b.nextLogits, expected.logits) < 1e-5)
        #expect(try Self.finish(b, on: engine) == expected.tokens)
        #expect(engine.rememberedPrompts.count == 2)
    }

    /// The copied beginning of an int8 cache keeps its per-position scales: the answer equals an
    /// int8 engine's that prefilled everything.
    @Test func anInt8CacheIsReusedWithItsScales() throws {
        let model = try EngineFixtures.engine("gen3").model
        let engine = try Engine(model: model, cachePrecision: .int8, prefixBytes: 64 << 20)
        let prompt = try EngineFixtures.prompt("gen3", "img1", engine: engine)
        var otherIDs = prompt.ids
        let changed = otherIDs.count - 3
        otherIDs[changed] = otherIDs[changed] == 100 ? 101 : 100
        let first = Engine.SequenceRequest(prompt: prompt.ids, images: prompt.images, imageKeys: ["dog"], sampling: .argmax, stop: Self.stop)
        let second = Engine.SequenceRequest(prompt: otherIDs, images: prompt.images, imageKeys: ["dog"], sampling: .argmax, stop: Self.stop)
        _ = try engine.start([first])
        let reused = try engine.start([second])[0]
        #expect(reused.reusedPositions == changed)

        let plain = try Engine(model: model, cachePrecision: .int8)
        let fresh = try plain.start([second])[0]
        #expect(relativeError(reused.nextLogits, fresh.nextLogits) < 1e-5)
        #expect(try Self.finish(reused, on: engine) == (try Self.finish(fresh, on: plain)))
    }

    @Test func theSamePromptAgainRunsOnlyItsLastPosition() throws {
        let engine = try Self.reusingEngine("gen3")
        let prompt = try EngineFixtures.prompt("gen3", "multi", engine: engine)
        let request = Engine.SequenceRequest(prompt: prompt.ids, images: prompt.images, imageKeys: ["bird-0", "bird-1"],
                                             sampling: .argmax, stop: Self.stop)
        _ = try engine.start([request])
        let again = try engine.start([request])[0]
        #expect(again.reusedPositions == prompt.ids.count - 1)
        let expected = try Self.fresh("gen3", request)
        #expect(relativeError(again.nextLogits, expected.logits) < 1e-5)
        #expect(try Self.finish(again, on: engine) == expected.tokens)
        #expect(engine.rememberedPrompts.count == 1, "an identical prompt is not stored twice")
    }

    @Test(arguments: ["gen2", "gen3"])
    func anotherImageReusesOnlyTheTextBeforeIt(generation: String) throws {
        let engine = try Self.reusingEngine(generation)
        let dog = try EngineFixtures.prompt(generation, "img1", engine: engine)
        let dance = try EngineFixtures.prompt(generation, "img2", engine: engine)
        let imageStart = try #require(PlaceholderRuns(tokens: dog.ids, placeholder: engine.model.config.imageTokenID,
                                                      length: engine.model.config.imageTokenCount).starts.first)
        _ = try engine.start([Engine.SequenceRequest(prompt: dog.ids, images: dog.images, imageKeys: ["dog"], sampling: .argmax, stop: Self.stop)])
        // The dog prompt's tokens with the dance picture: only the text before the image is shared.
        let other = Engine.SequenceRequest(prompt: dog.ids, images: dance.images, imageKeys: ["dance"], sampling: .argmax, stop: Self.stop)
        let sequence = try engine.start([other])[0]
        #expect(sequence.reusedPositions == imageStart)
        let expected = try Self.fresh(generation, other)
        #expect(relativeError(sequence.nextLogits, expected.logits) < 1e-5)
        #expect(try Self.finish(sequence, on: engine) == expected.tokens)
    }

    @Test func imagesWithoutKeysAreNeverReused() throws {
        let engine = try Self.reusingEngine("gen2")
        let prompt = try EngineFixtures.prompt("gen2", "img1", engine: engine)
        let request = Engine.SequenceRequest(prompt: prompt.ids, images: prompt.images, sampling: .argmax, stop: Self.stop)
        _ = try engine.start([request])
        #expect(try engine.start([request])[0].reusedPositions == 0)
        #expect(engine.rememberedPrompts.count == 0)
    }

    @Test func theLeastRecentlyUsedPromptLeavesFirst() throws {
        let text = try EngineFixtures.prompt("gen2", "text", engine: try EngineFixtures.engine("gen2")).ids
        let probe = try Self.reusingEngine("gen2")
        _ = try probe.start([Engine.SequenceRequest(prompt: text, sampling: .argmax, stop: Self.stop)])
        let perPrompt = probe.rememberedPrompts.bytes
        #expect(perPrompt > 0)
        // Room for two prompts of this length: a, b, use a, c -> b leaves.
        let engine = try Self.reusingEngine("gen2", bytes: 2 * perPrompt)
        func variant(_ k: Int) -> Engine.SequenceRequest {
            var ids = text
            ids[0] = 200 + k      // nothing shared with the other variants
            return Engine.SequenceRequest(prompt: ids, sampling: .argmax, stop: Self.stop)
        }
        for k in [0, 1, 0, 2] { _ = try engine.start([variant(k)]) }
        #expect(engine.rememberedPrompts.count == 2)
        #expect(try engine.start([variant(0)])[0].reusedPositions == text.count - 1)
        #expect(try engine.start([variant(2)])[0].reusedPositions == text.count - 1)
        #expect(try engine.start([variant(1)])[0].reusedPositions == 0)
    }
}
