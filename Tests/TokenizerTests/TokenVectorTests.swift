import Foundation
import Testing
import TestSupport
@testable import Tokenizer

/// Vectors written by Tools/tokenizer/make_token_vectors.py with Hugging Face transformers/tokenizers.
struct TokenVector {
    let line: Int
    let text: String?
    let ids: [Int]
    let decoded: String
    let decodedSkip: String

    static func load(_ generation: String) throws -> [TokenVector] {
        let url = Fixtures.packageRoot.appendingPathComponent("Tests/Data/tokenizer/\(generation)-tokens.jsonl")
        let lines = try String(contentsOf: url, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: true)
        var out: [TokenVector] = []
        for (n, line) in lines.enumerated().dropFirst() {
            let v = try OrderedJSON.parse(String(line))
            out.append(TokenVector(line: n + 1, text: v["text"]?.stringValue, ids: v["ids"]?.arrayValue?.compactMap(\.intValue) ?? [],
                                   decoded: v["decoded"]?.stringValue ?? "", decodedSkip: v["decoded_skip"]?.stringValue ?? ""))
        }
        return out
    }
}

enum SharedTokenizers {
    static func folder(_ generation: String) -> URL { Fixtures.minimind.appendingPathComponent(generation) }

    // Loaded once per test process: parsing the vocabulary is the slow part in debug builds.
    nonisolated(unsafe) private static var loaded: [String: ModelTokenizer] = [:]
    private static let lock = NSLock()

    static func model(_ generation: String) throws -> ModelTokenizer {
        lock.lock()
        defer { lock.unlock() }
        if let t = loaded[generation] { return t }
        let t = try ModelTokenizer(folder: folder(generation))
        loaded[generation] = t
        return t
    }

    static func bpe(_ generation: String) throws -> BPETokenizer { try model(generation).bpe }
}

@Suite struct TokenVectorTests {
    @Test(arguments: ["gen2", "gen3"])
    func encodingEqualsHuggingFaceOnEveryVector(generation: String) throws {
        let tokenizer = try SharedTokenizers.bpe(generation)
        let vectors = try TokenVector.load(generation)
        let texts = vectors.filter { $0.text != nil }
        #expect(texts.count >= 1000)
        #expect(texts.contains { $0.text!.unicodeScalars.count > 10_000 })
        var mismatches = 0
        for v in texts {
            let ids = tokenizer.encode(v.text!)
            if ids != v.ids {
                mismatches += 1
                if mismatches <= 5 { Issue.record("line \(v.line): \(v.text!.debugDescription.prefix(200)) -> \(ids.prefix(40)) expected \(v.ids.prefix(40))") }
            }
        }
        #expect(mismatches == 0)
    }

    @Test(arguments: ["gen2", "gen3"])
    func decodingEqualsHuggingFaceWithAndWithoutSpecialTokens(generation: String) throws {
        let tokenizer = try SharedTokenizers.bpe(generation)
        var mismatches = 0
        for v in try TokenVector.load(generation) {
            let full = tokenizer.decode(v.ids, skipSpecialTokens: false)
            let skip = tokenizer.decode(v.ids, skipSpecialTokens: true)
            if !full.utf8.elementsEqual(v.decoded.utf8) || !skip.utf8.elementsEqual(v.decodedSkip.utf8) {
                mismatches += 1
                if mismatches <= 5 { Issue.record("line \(v.line): \(full.debugDescription.prefix(120)) | \(skip.debugDescription.prefix(120)) expected \(v.decoded.debugDescription.prefix(120)) | \(v.decodedSkip.debugDescription.prefix(120))") }
            }
        }
        #expect(mismatches == 0)
    }

    @Test(arguments: ["gen2", "gen3"])
    func streamingDecodeJoinsToTheFullDecodeInValidChunks(generation: String) throws {
        let tokenizer = try SharedTokenizers.bpe(generation)
        var checked = 0
        for v in try TokenVector.load(generation) {
            for skip in [false, true] {
                var decoder = tokenizer.streamingDecoder(skipSpecialTokens: skip)
                var joined = ""
                for id in v.ids {
                    let chunk = decoder.push(id)
                    // A Swift String holds only valid UTF-8; what matters is that a chunk never
                    // splits a character, i.e. it never carries a U+FFFD the full decode lacks there.
                    joined += chunk
                }
                joined += decoder.finish()
                let expected = skip ? v.decodedSkip : v.decoded
                #expect(joined.utf8.elementsEqual(expected.utf8), "line \(v.line)")
                checked += 1
            }
        }
        #expect(checked > 2000)
    }
}
