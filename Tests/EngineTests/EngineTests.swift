import Conversion
import Engine
import Formats
import Foundation
import Imaging
import Model
import Tokenizer
import Testing
import ModelFixtureSupport
import TestSupport

enum EngineFixtures {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var engines: [String: Engine] = [:]
    nonisolated(unsafe) private static var paths: [String: String] = [:]

    /// The converted model file of `generation`.
    static func path(_ generation: String) throws -> String {
        _ = try engine(generation)
        return lock.withLock { paths[generation] ?? "" }
    }

    /// The upstream tiny fixture of `generation`, converted with `--type f32`.
    static func engine(_ generation: String) throws -> Engine {
        try lock.withLock {
            if let engine = engines[generation] { return engine }
            let root = Fixtures.generation(generation)
            // Named as ModelTests names it, so the two targets share one conversion.
            let output = try ConvertedFixture.path(
                name: generation, checkpoint: root.appendingPathComponent("tiny/sft_vlm_64.pth"),
                vision: root.appendingPathComponent(generation == "gen2" ? "clip-vit-base-patch16" : "siglip2-base-p32-256-ve"),
                tokenizer: root.appendingPathComponent("tiny"), type: .f32)
            let engine = try Engine(model: try VisionLanguageModel(path: output))
            engines[generation] = engine
            paths[generation] = output
            return engine
        }
    }

    static func caseFolder(_ generation: String, _ name: String) -> URL {
        Fixtures.generation(generation).appendingPathComponent("tiny/ref/cases/\(name)")
    }

    /// Prompt ids and projected images of a fixture case.
    static func prompt(_ generation: String, _ name: String, engine: Engine) throws -> (ids: [Int], images: [[Float]]) {
        let ids = try NPYArray(contentsOf: caseFolder(generation, name).appendingPathComponent("input_ids.npy")).ints
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: Fixtures.generation(generation).appendingPathComponent("tiny/manifest.json"))) as? [String: Any]
        let names = ((manifest?["cases"] as? [String: Any])?[name] as? [String: Any])?["images"] as? [String] ?? []
        let pixels = try names.flatMap {
            try NPYArray(contentsOf: Fixtures.generation(generation).appendingPathComponent("ref-images/\($0)/pixel_values.npy")).floats
        }
        return (ids, try engine.encodeImages(pixels: pixels, count: names.count))
    }
}

@Suite("Engine: generation and batched decoding")
struct EngineTests {
    @Test(arguments: ["gen2", "gen3"])
    func greedyGenerationReproducesUpstreamAndStreamsEachToken(generation: String) throws {
        let engine = try EngineFixtures.engine(generation)
        let prompt = try EngineFixtures.prompt(generation, "img1", engine: engine)
        let expected = try NPYArray(contentsOf: EngineFixtures.caseFolder(generation, "img1").appendingPathComponent("greedy_ids.npy")).ints
        var streamed: [Int] = []
        let result = try engine.generate(prompt: prompt.ids, images: prompt.images, sampling: .argmax,
                                         stop: StopConditions(maxNewTokens: expected.count, stopTokenIDs: []),
                                         onToken: { streamed.append($0) })
        #expect(result.outputTokens == expected)
        #expect(streamed == expected)
        #expect(result.finishReason == .maxTokens)
        let logits = try NPYArray(contentsOf: EngineFixtures.caseFolder(generation, "img1").appendingPathComponent("logits_last.npy")).floats
        #expect(relativeError(result.firstLogits, logits) < 1e-3)
    }

    @Test func endOfTurnStopsAndIsNotPartOfTheAnswer() throws {
        let engine = try EngineFixtures.engine("gen3")
        let prompt = try EngineFixtures.prompt("gen3", "text", engine: engine)
        let expected = try NPYArray(contentsOf: EngineFixtures.caseFolder("gen3", "text").appendingPathComponent("greedy_ids.npy")).ints
        // Pretend the 5th greedy token ends the turn.
        let result = try engine.generate(prompt: prompt.ids, sampling: .argmax,
                                         stop: StopConditions(maxNewTokens: 24, stopTokenIDs: [expected[4]]))
        #expect(result.finishReason == .endOfTurn)
        #expect(result.outputTokens == Array(expected.prefix(4)))
    }

    @Test(arguments: ["gen2", "gen3"])
    func batchedDecodeEqualsUnbatchedWithSequencesJoiningAndLeaving(generation: String) throws {
        let engine = try EngineFixtures.engine(generation)
        let cases = ["text", "img1", "multi"]
        let prompts = try cases.map { try EngineFixtures.prompt(generation, $0, engine: engine) }
        let limits = [6, 9, 4]
        let sampling = [SamplingSettings.argmax, SamplingSettings(temperature: 0.8, topP: 0.9, seed: 5),
                        SamplingSettings(temperature: 1.2, topK: 20, repetitionPenalty: 1.3, seed: 9)]

        // Alone: each sequence decoded by itself.
        var alone: [[Int]] = []
        var aloneLogits: [[Float]] = []
        for i in cases.indices {
            let sequence = try engine.start(prompt: prompts[i].ids, images: prompts[i].images, sampling: sampling[i],
                                            stop: StopConditions(maxNewTokens: limits[i], stopTokenIDs: []))
            while !sequence.isFinished { try engine.step([sequence]) }
            alone.append(sequence.outputTokens)
            aloneLogits.append(sequence.nextLogits)
        }

        // Together: the third joins after two steps; finished ones stay in the list and are skipped.
        var active: [GenerationSequence] = []
        for i in 0..<2 {
            active.append(try engine.start(prompt: prompts[i].ids, images: prompts[i].images, sampling: sampling[i],
                                           stop: StopConditions(maxNewTokens: limits[i], stopTokenIDs: [])))
        }
        try engine.step(active)
        try engine.step(active)
        active.append(try engine.start(prompt: prompts[2].ids, images: prompts[2].images, sampling: sampling[2],
                                       stop: StopConditions(maxNewTokens: limits[2], stopTokenIDs: [])))
        while active.contains(where: { !$0.isFinished }) {
            try engine.step(active.filter { !$0.isFinished })
        }
        for i in cases.indices {
            #expect(active[i].outputTokens == alone[i], "\(generation) \(cases[i])")
            #expect(active[i].outputTokens.count == limits[i])
            #expect(active[i].position == prompts[i].ids.count + limits[i] - 1)
            #expect(relativeError(active[i].nextLogits, aloneLogits[i]) < 1e-5)
        }
    }

    @Test(arguments: ["gen2", "gen3"])
    func prefillOfSeveralPromptsTogetherEqualsEachAlone(generation: String) throws {
        let engine = try EngineFixtures.engine(generation)
        let cases = ["text", "img1", "multi", "img2"]
        let prompts = try cases.map { try EngineFixtures.prompt(generation, $0, engine: engine) }
        let stop = StopConditions(maxNewTokens: 5, stopTokenIDs: [])
        let requests = prompts.map { Engine.SequenceRequest(prompt: $0.ids, images: $0.images, sampling: .argmax, stop: stop) }
        let together = try engine.start(requests)
        #expect(together.count == cases.count)
        for (i, request) in requests.enumerated() {
            let alone = try engine.start([request])[0]
            #expect(together[i].position == prompts[i].ids.count, "\(cases[i])")
            #expect(relativeError(together[i].nextLogits, alone.nextLogits) < 1e-5, "\(cases[i])")
            while !alone.isFinished { try engine.step([alone]) }
            while !together[i].isFinished { try engine.step([together[i]]) }
            #expect(together[i].outputTokens == alone.outputTokens, "\(cases[i])")
        }
        // The fixture's own first logits, from the batched pass.
        let logits = try NPYArray(contentsOf: EngineFixtures.caseFolder(generation, "img1").appendingPathComponent("logits_last.npy")).floats
        #expect(relativeError(try engine.start(requests)[1].nextLogits, logits) < 1e-3)
    }

    @Test func oneBadRequestStartsNoneOfTheBatch() throws {
        let engine = try EngineFixtures.engine("gen2")
        let prompt = try EngineFixtures.prompt("gen2", "multi", engine: engine)
        let stop = StopConditions(maxNewTokens: 1, stopTokenIDs: [])
        #expect(throws: ModelError.self) {
            _ = try engine.start([Engine.SequenceRequest(prompt: prompt.ids, images: prompt.images, sampling: .argmax, stop: stop),
                                  Engine.SequenceRequest(prompt: prompt.ids, images: Array(prompt.images.prefix(1)),
                                                         sampling: .argmax, stop: stop)])
        }
    }

    @Test func imageCountMustMatchPlaceholderRuns() throws {
        let engine = try EngineFixtures.engine("gen2")
        let prompt = try EngineFixtures.prompt("gen2", "multi", engine: engine)
        #expect(throws: ModelError.self) {
            _ = try engine.start(prompt: prompt.ids, images: Array(prompt.images.prefix(1)), sampling: .argmax,
                                 stop: StopConditions(maxNewTokens: 1, stopTokenIDs: []))
        }
    }
}

@Suite("From JPEG and question to upstream's tokens")
struct EndToEndTests {
    /// What `minimindv ask` does: decode and preprocess the JPEGs, build the chat prompt with the
    /// model file's tokenizer, encode the images in one batch, generate greedily.
    @Test(arguments: ["gen2", "gen3"])
    func jpegsAndQuestionGiveUpstreamsPromptAndContinuation(generation: String) throws {
        let engine = try EngineFixtures.engine(generation)
        let root = Fixtures.generation(generation)
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: root.appendingPathComponent("tiny/manifest.json"))) as? [String: Any]
        let entry = try #require((manifest?["cases"] as? [String: Any])?["multi"] as? [String: Any])
        let names = try #require(entry["images"] as? [String])
        let template = try #require(entry["prompt_template"] as? String)
        let question = template.replacingOccurrences(of: "{img}\n", with: "")

        let file = try GGUFFile(path: try EngineFixtures.path(generation))
        let preprocessor = try ImagePreprocessor(settings: try file.preprocessSettings())
        var pixels: [Float] = []
        for name in names {
            let image = try ImageDecoder.decode(contentsOf: root.appendingPathComponent("images/\(name).jpg"),
                                                options: DecodeOptions(appliesExifOrientation: false))
            pixels += try preprocessor.pixelValues(image).values
        }
        let prompt = try file.modelTokenizer().chatPrompt([ChatMessage(role: "user", content: question, imageCount: names.count)],
                                                          image: try file.imagePlaceholder())
        let folder = EngineFixtures.caseFolder(generation, "multi")
        #expect(prompt.ids == (try NPYArray(contentsOf: folder.appendingPathComponent("input_ids.npy")).ints))
        let expected = try NPYArray(contentsOf: folder.appendingPathComponent("greedy_ids.npy")).ints
        let result = try engine.generate(prompt: prompt.ids, images: try engine.encodeImages(pixels: pixels, count: names.count),
                                         sampling: .argmax, stop: StopConditions(maxNewTokens: expected.count, stopTokenIDs: []))
        #expect(result.outputTokens == expected)
    }
}
