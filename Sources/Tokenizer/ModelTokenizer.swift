import Foundation

/// One model's tokenizer: the BPE of `tokenizer.json` plus the chat template and special tokens
/// of `tokenizer_config.json`. Built from the two files' contents, so it does not care whether
/// they came from a folder or from the model file's metadata.
public final class ModelTokenizer: Sendable {
    public let bpe: BPETokenizer
    public let chatTemplate: ChatTemplate?
    /// The special-token variables transformers passes to templates (`bos_token`, `eos_token`, ...).
    public let templateVariables: [String: OrderedJSON]
    /// End of turn: generation stops here (`eos_token` of tokenizer_config.json).
    public let endOfTurnID: Int?

    public init(tokenizerJSON: Data, tokenizerConfigJSON: Data) throws(TokenizerError) {
        let bpe = try BPETokenizer(json: tokenizerJSON)
        self.bpe = bpe
        let config: OrderedJSON
        do { config = try OrderedJSON.parse(tokenizerConfigJSON) } catch {
            throw TokenizerError("tokenizer_config.json is not valid JSON: \(error)")
        }
        guard case .object = config else { throw TokenizerError("tokenizer_config.json: the top level must be an object") }

        switch config["chat_template"] {
        case .string(let source)?:
            chatTemplate = try ChatTemplate(source)
        case .array(let named)?:
            // The list form [{"name": ..., "template": ...}]; transformers uses "default".
            let chosen = named.first { $0["name"]?.stringValue == "default" } ?? named.first
            guard let source = chosen?["template"]?.stringValue else {
                throw TokenizerError("tokenizer_config.json: chat_template list has no template")
            }
            chatTemplate = try ChatTemplate(source)
        default:
            chatTemplate = nil
        }

        func tokenText(_ v: OrderedJSON?) -> String? { v?.stringValue ?? v?["content"]?.stringValue }
        var variables: [String: OrderedJSON] = [:]
        for key in ["bos_token", "eos_token", "unk_token", "pad_token"] {
            if let t = tokenText(config[key]) { variables[key] = .string(t) }
        }
        let additional = (config["additional_special_tokens"]?.arrayValue ?? []).compactMap { tokenText($0) }
        variables["additional_special_tokens"] = .array(additional.map { .string($0) })
        templateVariables = variables
        endOfTurnID = (variables["eos_token"]?.stringValue).flatMap { bpe.id(of: $0) }
    }

    /// Reads `tokenizer.json` and `tokenizer_config.json` from a folder.
    public convenience init(folder: URL) throws(TokenizerError) {
        let json: Data, config: Data
        do { json = try Data(contentsOf: folder.appendingPathComponent("tokenizer.json")) } catch {
            throw TokenizerError("cannot read \(folder.appendingPathComponent("tokenizer.json").path): \(error.localizedDescription)")
        }
        do { config = try Data(contentsOf: folder.appendingPathComponent("tokenizer_config.json")) } catch {
            throw TokenizerError("cannot read \(folder.appendingPathComponent("tokenizer_config.json").path): \(error.localizedDescription)")
        }
        try self.init(tokenizerJSON: json, tokenizerConfigJSON: config)
    }

    public func encode(_ text: String) -> [Int] { bpe.encode(text) }

    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
        bpe.decode(ids, skipSpecialTokens: skipSpecialTokens)
    }

    /// The chat as transformers' `apply_chat_template(messages, tools=, add_generation_prompt=,
    /// tokenize=False, **flags)` renders it.
    public func renderChat(messages: [OrderedJSON], tools: [OrderedJSON]? = nil, addGenerationPrompt: Bool,
                           flags: [String: OrderedJSON] = [:]) throws(TokenizerError) -> String {
        guard let chatTemplate else { throw TokenizerError("tokenizer_config.json has no chat_template") }
        var variables = templateVariables
        for (k, v) in flags { variables[k] = v }
        variables["messages"] = .array(messages)
        variables["tools"] = tools.map { .array($0) } ?? .null
        variables["documents"] = .null
        variables["add_generation_prompt"] = .bool(addGenerationPrompt)
        return try chatTemplate.render(variables)
    }
}
