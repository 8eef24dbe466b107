import ArgumentParser
import Engine
import Foundation
import Formats
import Imaging
import Model
import Tokenizer

struct Ask: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Answer a question about images (or a text-only question) with a model file.",
        discussion: """
            Streams the answer to stdout as it is generated. The prompt is built as upstream's eval \
            scripts build it: each image's placeholder run and a newline, then the question, in the \
            model's chat template. Sampling defaults are upstream's for the model's generation \
            (gen2: temperature 0.65, top-p 0.85; gen3: temperature 0.7, top-p 0.85, top-k 50).
            """)

    @Option(help: "The .gguf model file (from `minimindv convert`).")
    var model: String = ShippedModel.path

    @Option(name: .customLong("image"), help: "A JPEG or PNG image; repeat for several, in prompt order.")
    var images: [String] = []

    @Argument(help: "The question.")
    var question: String

    @Option(help: "A system prompt (gen2's template adds its default one when absent).")
    var system: String?

    @Option(help: "Stop after this many new tokens.")
    var maxTokens: Int = 512

    @Option(help: "Sampling temperature (> 0).")
    var temperature: Float?

    @Option(help: "Nucleus sampling: keep the most likely tokens up to this probability (0, 1].")
    var topP: Float?

    @Option(help: "Keep only the k most likely tokens (0 = off).")
    var topK: Int?

    @Option(help: "Penalise tokens already seen: positive logits divided, negative multiplied (1 = off).")
    var repetitionPenalty: Float?

    @Option(help: "Random seed; the same seed and settings give the same answer (default: random).")
    var seed: UInt64?

    @Flag(help: "Always take the most likely token.")
    var greedy = false

    @Option(help: "Compute threads (default: all cores).")
    var threads: Int?

    @Flag(help: "Print one JSON object (ids, text, timings) instead of streaming text.")
    var json = false

    @Option(help: "Write the logits at the last prompt position here (raw little-endian float32, vocab-size values).")
    var firstLogits: String?

    @Flag(help: "Ignore EXIF orientation (reproduces upstream's Pillow pixels exactly).")
    var noExifRotate = false

    @Option(help: CacheOption.help)
    var kvCache: CacheOption = .auto

    func validate() throws {
        if maxTokens < 1 { throw ValidationError("--max-tokens must be at least 1") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        if question.isEmpty { throw ValidationError("the question is empty") }
    }

    func run() async throws {
        let chat: ChatModel
        do { chat = try ChatModel(path: model) } catch { throw ValidationError("cannot open model \(model): \(error)") }
        let network = chat.network
        let tokenizer = chat.tokenizer
        let engine = try Engine(model: network, threads: threads, cachePrecision: kvCache.precision)

        // Images: decode, preprocess, encode in one batch.
        var features: [[Float]] = []
        var visionSeconds = 0.0
        if !images.isEmpty {
            guard network.visionEncoder != nil else { throw ValidationError("\(model) has no vision encoder: ask without --image") }
            var pixels: [Float] = []
            for path in images {
                let image = try ImageDecoder.decode(contentsOf: URL(fileURLWithPath: path),
                                                    options: DecodeOptions(appliesExifOrientation: !noExifRotate))
                pixels += try chat.pixelValues(of: image)
            }
            let start = Date()
            features = try engine.encodeImages(pixels: pixels, count: images.count)
            visionSeconds = Date().timeIntervalSince(start)
        }

        let prompt = try chat.prompt(question: question, system: system, imageCount: images.count)

        var sampling = chat.defaultSampling(seed: seed ?? UInt64.random(in: 0...UInt64.max))
        sampling.greedy = greedy
        if let temperature { sampling.temperature = temperature }
        if let topP { sampling.topP = topP }
        if let topK { sampling.topK = topK }
        if let repetitionPenalty { sampling.repetitionPenalty = repetitionPenalty }
        if let problem = sampling.problem { throw ValidationError(problem) }
        let endOfTurn = chat.endOfTurnID

        var decoder = tokenizer.bpe.streamingDecoder(skipSpecialTokens: true)
        let streams = !json
        let result = try engine.generate(
            prompt: prompt.ids, images: features, sampling: sampling,
            stop: StopConditions(maxNewTokens: maxTokens, stopTokenIDs: [endOfTurn])
        ) { token in
            guard streams else { return }
            let text = decoder.push(token)
            if !text.isEmpty {
                FileHandle.standardOutput.write(Data(text.utf8))
            }
        }
        if let firstLogits {
            let bytes = result.firstLogits.withUnsafeBytes { Data($0) }
            do { try bytes.write(to: URL(fileURLWithPath: firstLogits)) } catch {
                throw ValidationError("cannot write \(firstLogits): \(error.localizedDescription)")
            }
        }
        if json {
            let report = AskReport(
                promptIDs: prompt.ids, outputIDs: result.outputTokens,
                text: chat.text(of: result.outputTokens),
                visionMilliseconds: visionSeconds * 1000, prefillMilliseconds: result.prefillSeconds * 1000,
                decodeMilliseconds: result.decodeSeconds * 1000, tokensPerSecond: result.tokensPerSecond,
                finishReason: result.finishReason.rawValue)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            FileHandle.standardOutput.write(try encoder.encode(report) + Data("\n".utf8))
        } else {
            FileHandle.standardOutput.write(Data((decoder.finish() + "\n").utf8))
        }
    }
}

struct AskReport: Encodable {
    var promptIDs: [Int]
    var outputIDs: [Int]
    var text: String
    var visionMilliseconds: Double
    var prefillMilliseconds: Double
    var decodeMilliseconds: Double
    var tokensPerSecond: Double
    var finishReason: String

    enum CodingKeys: String, CodingKey {
        case promptIDs = "prompt_ids", outputIDs = "output_ids", text
        case visionMilliseconds = "vision_ms", prefillMilliseconds = "prefill_ms", decodeMilliseconds = "decode_ms"
        case tokensPerSecond = "tokens_per_second", finishReason = "finish_reason"
    }
}
