import Foundation
import Formats
import Imaging
import Model
import Tokenizer

/// A model file opened for answering questions: the network plus what the file carries for
/// building its prompts (tokenizer, image placeholder) and feeding its encoder (preprocessing).
/// Shared by `ask` and the daemon so that both build prompts and pixels the same way.
public final class ChatModel: @unchecked Sendable {
    public let file: GGUFFile
    public let network: VisionLanguageModel
    public let tokenizer: ModelTokenizer
    public let imagePlaceholder: ImagePlaceholder
    /// nil for a text-only model file.
    public let preprocessor: ImagePreprocessor?

    /// Opens and maps the GGUF file written by `minimindv convert`.
    public init(path: String) throws {
        file = try GGUFFile(path: path)
        file.file.advise(sequential: false)
        network = try VisionLanguageModel(file: file)
        tokenizer = try file.modelTokenizer()
        imagePlaceholder = try file.imagePlaceholder()
        preprocessor = network.visionEncoder == nil ? nil : try ImagePreprocessor(settings: try file.preprocessSettings())
    }

    public var generation: Int { network.config.generation }
    public var contextLength: Int { network.config.contextLength }
    /// The id that ends an answer: the tokenizer's eos token, else the model's.
    public var endOfTurnID: Int { tokenizer.endOfTurnID ?? network.config.endOfTurnID }

    /// The prompt as upstream's eval scripts build it: for each image its placeholder run and a
    /// newline, then the question, in the model's chat template with the generation prompt
    /// (gen2's template adds its default system turn when `system` is nil).
    public func prompt(question: String, system: String? = nil, imageCount: Int) throws(TokenizerError) -> ChatPrompt {
        var messages: [ChatMessage] = []
        if let system { messages.append(ChatMessage(role: "system", content: system)) }
        messages.append(ChatMessage(role: "user", content: question, imageCount: imageCount))
        return try tokenizer.chatPrompt(messages, image: imagePlaceholder)
    }

    /// Preprocesses a decoded image into what the encoder takes (`3 × size × size`, channel-first).
    public func pixelValues(of image: RGBImage) throws -> [Float] {
        guard let preprocessor else {
            throw ModelError(.invalidInput, "\(file.sourceDescription) has no vision encoder: ask without images")
        }
        return try preprocessor.pixelValues(image).values
    }

    /// Upstream's sampling defaults for this model's generation.
    public func defaultSampling(seed: UInt64) -> SamplingSettings {
        SamplingSettings.upstreamDefaults(generation: generation, seed: seed)
    }

    /// The answer's text: special tokens dropped, invalid UTF-8 replaced.
    public func text(of tokens: [Int]) -> String {
        tokenizer.decode(tokens, skipSpecialTokens: true)
    }
}
