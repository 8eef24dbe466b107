/// How a model marks an image in its prompt; the values come from the model file
/// (`minimind.image.placeholder`, `minimind.image.token_count`, `minimind.image.prompt_marker`).
public struct ImagePlaceholder: Sendable, Equatable {
    /// The text one image token is spelled with: "@" (gen2) or "<|image_pad|>" (gen3).
    public let placeholder: String
    /// Image tokens per image: 196 (gen2) or 64 (gen3).
    public let tokenCount: Int
    /// What a user writes where an image goes: "" (gen2: images go before the question) or "<image>" (gen3).
    public let promptMarker: String

    public init(placeholder: String, tokenCount: Int, promptMarker: String) {
        self.placeholder = placeholder
        self.tokenCount = tokenCount
        self.promptMarker = promptMarker
    }

    public static let minimind2 = ImagePlaceholder(placeholder: "@", tokenCount: 196, promptMarker: "")
    public static let minimind3 = ImagePlaceholder(placeholder: "<|image_pad|>", tokenCount: 64, promptMarker: "<image>")

    /// The run of placeholders one image becomes.
    public var expansion: String { String(repeating: placeholder, count: tokenCount) }
}

/// One turn of a chat; `imageCount` images belong to this (user) turn, in order.
public struct ChatMessage: Sendable {
    public var role: String
    public var content: String
    public var imageCount: Int

    public init(role: String, content: String, imageCount: Int = 0) {
        self.role = role
        self.content = content
        self.imageCount = imageCount
    }
}

/// A prompt ready for the model: the text, its ids, and where each image's placeholder run is.
public struct ChatPrompt: Sendable {
    public let text: String
    public let ids: [Int]
    /// Token ranges to overwrite with the k-th image's features, in image order.
    public let imageRuns: [Range<Int>]
}

extension ModelTokenizer {
    /// Messages (+ images) -> prompt text -> token ids, as upstream's evaluation builds them:
    /// gen2 puts `"@" * 196 + "\n"` per image before the question; gen3 replaces each `<image>`
    /// in the text by `"<|image_pad|>" * 64`, and puts `"<image>\n"` per image before a question
    /// that has no marker.
    public func chatPrompt(_ messages: [ChatMessage], image: ImagePlaceholder, addGenerationPrompt: Bool = true,
                           flags: [String: OrderedJSON] = [:]) throws(TokenizerError) -> ChatPrompt {
        guard image.tokenCount > 0 else { throw TokenizerError("image token count must be positive") }
        let placeholderIDs = encode(image.placeholder)
        guard placeholderIDs.count == 1, let placeholderID = placeholderIDs.first else {
            throw TokenizerError("image placeholder \"\(image.placeholder)\" is not one token in this tokenizer (\(placeholderIDs)): is the model file's tokenizer the right one?")
        }
        var rendered: [OrderedJSON] = []
        var totalImages = 0
        for message in messages {
            let content = try Self.expandImages(message.content, count: message.imageCount, image: image)
            totalImages += message.imageCount
            rendered.append(.object([("role", .string(message.role)), ("content", .string(content))]))
        }
        let text = try renderChat(messages: rendered, addGenerationPrompt: addGenerationPrompt, flags: flags)
        let ids = encode(text)
        let runs = Self.placeholderRuns(ids, id: placeholderID, length: image.tokenCount)
        guard runs.count == totalImages else {
            throw TokenizerError("the prompt holds \(runs.count) image placeholder runs of \(image.tokenCount) tokens but \(totalImages) images were given: does the text itself contain \"\(image.placeholder)\"?")
        }
        return ChatPrompt(text: text, ids: ids, imageRuns: runs)
    }

    static func expandImages(_ content: String, count: Int, image: ImagePlaceholder) throws(TokenizerError) -> String {
        guard count > 0 || !image.promptMarker.isEmpty else { return content }
        if image.promptMarker.isEmpty {
            return String(repeating: image.expansion + "\n", count: count) + content
        }
        let parts = JinjaBuiltins.pythonSplit(content, image.promptMarker, -1)
        let markers = parts.count - 1
        if markers == 0 {
            guard count > 0 else { return content }
            return String(repeating: image.expansion + "\n", count: count) + content
        }
        guard markers == count else {
            throw TokenizerError("the message has \(markers) \(image.promptMarker) markers but \(count) images: put one \(image.promptMarker) per image, or none")
        }
        return parts.joined(separator: image.expansion)
    }

    /// Each window of exactly `length` consecutive placeholder ids, left to right (as upstream
    /// finds them); longer runs hold several windows.
    static func placeholderRuns(_ ids: [Int], id: Int, length: Int) -> [Range<Int>] {
        var runs: [Range<Int>] = []
        var i = 0
        while i + length <= ids.count {
            if ids[i] == id, ids[i..<(i + length)].allSatisfy({ $0 == id }) {
                runs.append(i..<(i + length))
                i += length
            } else {
                i += 1
            }
        }
        return runs
    }
}
