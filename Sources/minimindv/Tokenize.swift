import ArgumentParser
import Foundation
import Formats
import Tokenizer

struct Tokenize: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Encode text with a model's tokenizer, or decode ids.",
        discussion: """
            With --jsonl, reads one JSON object per stdin line: {"text": ...} is encoded and \
            {"ids": [...]} decoded; each gives one line {"ids", "decoded", "decoded_skip_special"} \
            or {"error"}. Otherwise prints the ids and pieces of TEXT.
            """)

    @Option(help: "A .gguf model file, or a folder with tokenizer.json and tokenizer_config.json.")
    var tokenizer: String

    @Flag(help: "Read JSON Lines from stdin and write JSON Lines to stdout.")
    var jsonl = false

    @Argument(help: "The text to tokenize (without --jsonl).")
    var text: String?

    func validate() throws {
        if jsonl && text != nil { throw ValidationError("give TEXT or --jsonl, not both") }
        if !jsonl && text == nil { throw ValidationError("give the TEXT to tokenize, or --jsonl to read JSON Lines from stdin") }
    }

    func run() async throws {
        let model = try TokenizerSource.load(tokenizer)
        guard let text else {
            JSONLines.process { request in
                let ids: [Int]
                if let t = request["text"]?.stringValue {
                    ids = model.encode(t)
                } else if let list = request["ids"]?.arrayValue {
                    let parsed = list.compactMap(\.intValue)
                    guard parsed.count == list.count else { return .object([("error", .string("\"ids\" must be a list of integers"))]) }
                    ids = parsed
                } else {
                    return .object([("error", .string("expected {\"text\": string} or {\"ids\": [integers]}"))])
                }
                return .object([
                    ("ids", .array(ids.map { .int($0) })),
                    ("decoded", .string(model.decode(ids, skipSpecialTokens: false))),
                    ("decoded_skip_special", .string(model.decode(ids, skipSpecialTokens: true))),
                ])
            }
            return
        }
        let ids = model.encode(text)
        print("\(ids.count) tokens")
        let width = String(ids.max() ?? 0).count
        for (i, id) in ids.enumerated() {
            // A piece that is part of a character shows its bytes; the text would only be U+FFFD.
            let bytes = model.bpe.bytes(of: id)
            let piece = String(validating: bytes, as: UTF8.self)?.debugDescription
                ?? "<" + bytes.map { "0x" + String($0, radix: 16, uppercase: true) }.joined(separator: " ") + ">"
            let special = model.bpe.isSpecialToken(id) ? "  (special)" : ""
            print("\(String(i).leftPadded(String(ids.count - 1).count))  \(String(id).leftPadded(width))  \(piece)\(special)")
        }
        print("ids: \(ids.map(String.init).joined(separator: " "))")
    }
}

/// Loads a tokenizer from a model file (the Hugging Face files stored verbatim in its metadata)
/// or from a folder holding those files.
enum TokenizerSource {
    static func load(_ path: String) throws -> ModelTokenizer {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw TokenizerError("\(path) does not exist: give a .gguf model or a folder with tokenizer.json and tokenizer_config.json")
        }
        if isDirectory.boolValue {
            return try ModelTokenizer(folder: URL(fileURLWithPath: path))
        }
        let file = try GGUFFile(path: path)
        guard let json = file.metadata.string(ModelKey.huggingFaceTokenizerJSON) else {
            throw TokenizerError("\(path) has no \(ModelKey.huggingFaceTokenizerJSON) metadata: was it written by minimindv convert?")
        }
        guard let config = file.metadata.string(ModelKey.huggingFaceTokenizerConfig) else {
            throw TokenizerError("\(path) has no \(ModelKey.huggingFaceTokenizerConfig) metadata: was it written by minimindv convert?")
        }
        return try ModelTokenizer(tokenizerJSON: Data(json.utf8), tokenizerConfigJSON: Data(config.utf8))
    }
}

/// One JSON object per stdin line in, one per stdout line out (flushed, so scripts can talk to us).
enum JSONLines {
    static func process(_ handle: (OrderedJSON) throws -> OrderedJSON) {
        while let line = readLine(strippingNewline: true) {
            if line.allSatisfy(\.isWhitespace) { continue }
            let reply: OrderedJSON
            do {
                let request = try OrderedJSON.parse(line)
                guard case .object = request else { throw TokenizerError("each line must be a JSON object") }
                reply = try handle(request)
            } catch {
                reply = .object([("error", .string("\(error)"))])
            }
            FileHandle.standardOutput.write(Data((reply.compactJSON() + "\n").utf8))
        }
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
