import Foundation

/// A Hugging Face tokenizer folder (`tokenizer.json`, `tokenizer_config.json`, optionally
/// `chat_template.jinja`), read for the model file: the raw texts verbatim plus llama.cpp's view
/// (token list, types, merges, special ids).
public struct HFTokenizerFiles: Sendable {
    public static let tokenizerFile = "tokenizer.json"
    public static let configFile = "tokenizer_config.json"
    public static let chatTemplateFile = "chat_template.jinja"

    public let folder: String
    public let tokenizerJSON: String
    public let configJSON: String
    /// Tokens by id; ids nothing names are "[PADn]".
    public private(set) var tokens: [String]
    /// llama.cpp token types: 1 normal, 3 control (special added), 4 user-defined (added), 5 unused.
    public private(set) var tokenTypes: [Int]
    public let merges: [String]
    public let chatTemplate: String?
    public let bosToken: String?
    public let eosToken: String?
    public let padToken: String?
    public let unknownToken: String?
    private let ids: [String: Int]

    public init(folder: String) throws(FormatError) {
        self.folder = folder
        let tokenizerPath = folder + "/" + HFTokenizerFiles.tokenizerFile
        let configPath = folder + "/" + HFTokenizerFiles.configFile
        for path in [tokenizerPath, configPath] where !FileManager.default.fileExists(atPath: path) {
            throw FormatError(.invalidModel, "\(path) not found: pass --tokenizer DIR, a folder holding tokenizer.json and tokenizer_config.json")
        }
        let (tokenizer, tokenizerText) = try JSONValue.read(tokenizerPath)
        let (config, configText) = try JSONValue.read(configPath)
        tokenizerJSON = tokenizerText
        configJSON = configText
        guard let model = tokenizer["model"], model["type"]?.string == "BPE", let vocab = model["vocab"]?.object else {
            throw FormatError(.unsupported, "\(tokenizerPath): expected a BPE model with a vocab (MiniMind's byte-level BPE)")
        }
        var ids: [String: Int] = [:]
        for (token, id) in vocab {
            guard let id = id.int, id >= 0, id < 1 << 24 else {
                throw FormatError(.malformed, "\(tokenizerPath): token \(token) has an invalid id")
            }
            ids[token] = id
        }
        var added: [(Int, String, Bool)] = []
        for entry in tokenizer["added_tokens"]?.array ?? [] {
            guard let id = entry["id"]?.int, id >= 0, id < 1 << 24, let content = entry["content"]?.string else {
                throw FormatError(.malformed, "\(tokenizerPath): an added token lacks an id or content")
            }
            added.append((id, content, entry["special"]?.bool ?? false))
            ids[content] = id
        }
        let count = (ids.values.max() ?? -1) + 1
        var tokens = (0..<count).map { "[PAD\($0)]" }
        var types = [Int](repeating: 5, count: count)
        for (token, id) in vocab {
            if let id = id.int { tokens[id] = token; types[id] = 1 }
        }
        for (id, content, special) in added {
            tokens[id] = content
            types[id] = special ? 3 : 4
        }
        self.tokens = tokens
        tokenTypes = types
        self.ids = ids
        var merges: [String] = []
        for merge in model["merges"]?.array ?? [] {
            if let s = merge.string { merges.append(s) }
            else if let pair = merge.array?.compactMap(\.string), pair.count == 2 { merges.append(pair[0] + " " + pair[1]) }
            else { throw FormatError(.malformed, "\(tokenizerPath): a merge is neither \"a b\" nor [a, b]") }
        }
        self.merges = merges
        func special(_ key: String) -> String? {
            guard let value = config[key] else { return nil }
            return value.string ?? value["content"]?.string
        }
        bosToken = special("bos_token")
        eosToken = special("eos_token")
        padToken = special("pad_token")
        unknownToken = special("unk_token")
        var template: String? = config["chat_template"]?.string
        if template == nil, let named = config["chat_template"]?.array {
            template = named.first { $0["name"]?.string == "default" }?["template"]?.string ?? named.first?["template"]?.string
        }
        let jinjaPath = folder + "/" + HFTokenizerFiles.chatTemplateFile
        if template == nil, let data = FileManager.default.contents(atPath: jinjaPath) {
            template = String(data: data, encoding: .utf8)
        }
        chatTemplate = template
    }

    /// The id of `token` (a vocabulary entry or an added token).
    public func id(of token: String) -> Int? { ids[token] }

    /// Pads the token list to `count` entries (the embedding's rows), as llama.cpp expects.
    public mutating func pad(to count: Int) {
        while tokens.count < count {
            tokens.append("[PAD\(tokens.count)]")
            tokenTypes.append(5)
        }
    }
}
