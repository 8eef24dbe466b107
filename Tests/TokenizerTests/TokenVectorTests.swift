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
                let expected = Array((skip ? v.decodedSkip : v.decoded).utf8)
                var decoder = tokenizer.streamingDecoder(skipSpecialTokens: skip)
                var offset = 0
                var ok = true
                // Each chunk must be exactly the next bytes of the full decode: a chunk that cut a
                // character would show U+FFFD where the full decode has the character.
                for id in v.ids + [-1] {
                    let chunk = Array((id >= 0 ? decoder.push(id) : decoder.finish()).utf8)
                    if offset + chunk.count > expected.count || !expected[offset..<(offset + chunk.count)].elementsEqual(chunk) { ok = false; break }
                    offset += chunk.count
                }
                #expect(ok && offset == expected.count, "line \(v.line) skip=\(skip)")
                checked += 1
            }
        }
        #expect(checked > 2000)
    }
}

@Suite struct CharacterClassTests {
    /// Tools/tokenizer/make_class_table.py probes Hugging Face's pre-tokenizer (Oniguruma's
    /// Unicode tables) for every code point; our classes must agree everywhere, not only on the
    /// characters the vectors happen to contain.
    @Test func codePointClassesMatchTheHuggingFacePreTokenizer() throws {
        let url = Fixtures.packageRoot.appendingPathComponent("Tests/Data/tokenizer/char-classes.json")
        let runs = try OrderedJSON.parse(Data(contentsOf: url))["runs"]?.arrayValue ?? []
        #expect(runs.count > 100)
        var starts: [Int] = [], classes: [Int] = []
        for run in runs {
            guard let pair = run.arrayValue, pair.count == 2, let start = pair[0].intValue, let cls = pair[1].intValue else { continue }
            starts.append(start)
            classes.append(cls)
        }
        var mismatches: [String] = []
        var r = 0
        // Every code point of the planes that have letters and numbers (0-3, 14); the unassigned
        // and private-use planes in steps, to keep the debug-build test fast.
        let codePoints = Array(0..<0x40000) + Array(stride(from: 0x40000, to: 0xE0000, by: 97)) + Array(0xE0000..<0xF0000)
            + Array(stride(from: 0xF0000, to: 0x110000, by: 97))
        for cp in codePoints {
            guard let scalar = Unicode.Scalar(UInt32(cp)) else { continue }
            while r + 1 < starts.count && starts[r + 1] <= cp { r += 1 }
            let ours = cp < 0x10000 ? Int(GPT2Split.bmpClasses[cp]) : Int(GPT2Split.classify(scalar).rawValue)
            if ours != classes[r] {
                mismatches.append(String(format: "U+%04X ours %d HF %d", cp, ours, classes[r]))
            }
        }
        let count = mismatches.count
        #expect(count == 0, "\(count) code points differ: \(mismatches.prefix(20))")
    }
}

@Suite struct ConcurrentEncodingTests {
    /// The engine and daemon share one tokenizer across tasks; the word cache must not mix words up.
    @Test func concurrentEncodesGiveHuggingFaceIDs() async throws {
        let tokenizer = try SharedTokenizers.bpe("gen3")
        let vectors = try TokenVector.load("gen3").filter { $0.text != nil }.prefix(400)
        let failures = await withTaskGroup(of: Int.self) { group in
            for worker in 0..<4 {
                group.addTask {
                    var bad = 0
                    for (k, v) in vectors.enumerated() where k % 4 == worker || k % 3 == 0 {
                        if tokenizer.encode(v.text ?? "") != v.ids { bad += 1 }
                    }
                    return bad
                }
            }
            return await group.reduce(0, +)
        }
        #expect(failures == 0)
    }
}
