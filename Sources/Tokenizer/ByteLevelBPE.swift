import Foundation
import Synchronization

/// A Hugging Face `tokenizer.json` with a byte-level BPE model, encoding and decoding exactly as
/// the `tokenizers` library does for the files MiniMind-V ships (no normalizer, `ByteLevel`
/// pre-tokenizer with the GPT-2 regex, `ByteLevel` decoder, added tokens matched first).
public final class BPETokenizer: Sendable {
    /// One entry of `added_tokens`.
    public struct AddedToken: Sendable {
        public let id: Int
        public let content: String
        public let special: Bool
    }

    public let vocabularySize: Int
    public let addedTokens: [AddedToken]
    /// Token string (byte-level alphabet) of every id; `nil` for holes in the id space.
    public let tokens: [String?]
    private let tokenIDs: [String: Int]
    private let byteTokenIDs: [Int32]          // initial symbol of each byte, -1 if missing
    private let merges: [UInt64: UInt64]       // (left << 32 | right) -> (rank << 32 | merged id)
    private let tokenBytes: [[UInt8]]          // what each id decodes to
    private let isSpecial: [Bool]
    private let addedMatcher: AddedTokenMatcher
    private let useRegex: Bool
    private let cache = Mutex(WordCache())

    /// Reads the contents of a `tokenizer.json`.
    public convenience init(json: Data) throws(TokenizerError) {
        let root: OrderedJSON
        do { root = try OrderedJSON.parse(json) } catch { throw TokenizerError("tokenizer.json is not valid JSON: \(error)") }
        try self.init(root: root)
    }

    public init(root: OrderedJSON) throws(TokenizerError) {
        guard case .object = root else { throw TokenizerError("tokenizer.json: the top level must be an object") }
        guard let model = root["model"], case .object = model else {
            throw TokenizerError("tokenizer.json has no \"model\": is this a Hugging Face tokenizer.json?")
        }
        let modelType = model["type"]?.stringValue ?? "BPE"
        guard modelType == "BPE" else { throw TokenizerError("tokenizer.json: model type \(modelType) is not supported (only byte-level BPE)") }
        for key in ["continuing_subword_prefix", "end_of_word_suffix", "dropout"] {
            if let v = model[key], !v.isNull { throw TokenizerError("tokenizer.json: model.\(key) is not supported") }
        }
        if model["byte_fallback"]?.boolValue == true { throw TokenizerError("tokenizer.json: model.byte_fallback is not supported") }
        if model["ignore_merges"]?.boolValue == true { throw TokenizerError("tokenizer.json: model.ignore_merges is not supported") }
        if let n = root["normalizer"], !n.isNull {
            throw TokenizerError("tokenizer.json: normalizer \(n["type"]?.stringValue ?? "?") is not supported (byte-level BPE without normalizer only)")
        }
        guard let pre = root["pre_tokenizer"], pre["type"]?.stringValue == "ByteLevel" else {
            throw TokenizerError("tokenizer.json: pre_tokenizer \(root["pre_tokenizer"]?["type"]?.stringValue ?? "null") is not supported (ByteLevel only)")
        }
        if pre["add_prefix_space"]?.boolValue == true { throw TokenizerError("tokenizer.json: ByteLevel add_prefix_space is not supported") }
        useRegex = pre["use_regex"]?.boolValue ?? true
        if let d = root["decoder"], !d.isNull, d["type"]?.stringValue != "ByteLevel" {
            throw TokenizerError("tokenizer.json: decoder \(d["type"]?.stringValue ?? "?") is not supported (ByteLevel only)")
        }

        guard case .object(let vocabPairs)? = model["vocab"] else { throw TokenizerError("tokenizer.json: model.vocab is missing or not an object") }
        var ids: [String: Int] = [:]
        ids.reserveCapacity(vocabPairs.count)
        var maxID = -1
        for (token, value) in vocabPairs {
            guard let id = value.intValue, id >= 0, id < 10_000_000 else { throw TokenizerError("tokenizer.json: vocab entry \"\(token)\" has no valid id") }
            ids[token] = id
            maxID = max(maxID, id)
        }

        var added: [AddedToken] = []
        for entry in root["added_tokens"]?.arrayValue ?? [] {
            guard let id = entry["id"]?.intValue, id >= 0, id < 10_000_000, let content = entry["content"]?.stringValue, !content.isEmpty else {
                throw TokenizerError("tokenizer.json: an added_tokens entry lacks id or content")
            }
            for flag in ["single_word", "lstrip", "rstrip"] where entry[flag]?.boolValue == true {
                throw TokenizerError("tokenizer.json: added token \(content) uses \(flag), which is not supported")
            }
            added.append(AddedToken(id: id, content: content, special: entry["special"]?.boolValue ?? false))
            maxID = max(maxID, id)
        }
        addedTokens = added

        var tokens = [String?](repeating: nil, count: maxID + 1)
        for (token, id) in ids { tokens[id] = token }
        for a in added { tokens[a.id] = a.content }
        self.tokens = tokens
        vocabularySize = maxID + 1
        tokenIDs = ids

        let byteToChar = ByteLevelAlphabet.byteToScalar
        byteTokenIDs = (0..<256).map { b in Int32(ids[String(Character(byteToChar[b]))] ?? -1) }

        guard let mergeList = model["merges"]?.arrayValue else { throw TokenizerError("tokenizer.json: model.merges is missing") }
        var merges: [UInt64: UInt64] = [:]
        merges.reserveCapacity(mergeList.count)
        for (rank, entry) in mergeList.enumerated() {
            let pair: (String, String)
            if let s = entry.stringValue {
                let parts = s.split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2 else { throw TokenizerError("tokenizer.json: merge #\(rank) \"\(s)\" is not two tokens separated by one space") }
                pair = (String(parts[0]), String(parts[1]))
            } else if let a = entry.arrayValue, a.count == 2, let l = a[0].stringValue, let r = a[1].stringValue {
                pair = (l, r)
            } else {
                throw TokenizerError("tokenizer.json: merge #\(rank) is neither \"a b\" nor [\"a\", \"b\"]")
            }
            guard let l = ids[pair.0] else { throw TokenizerError("tokenizer.json: merge #\(rank) names \"\(pair.0)\", which is not in the vocabulary") }
            guard let r = ids[pair.1] else { throw TokenizerError("tokenizer.json: merge #\(rank) names \"\(pair.1)\", which is not in the vocabulary") }
            guard let m = ids[pair.0 + pair.1] else {
                throw TokenizerError("tokenizer.json: merge #\(rank) makes \"\(pair.0 + pair.1)\", which is not in the vocabulary")
            }
            let key = UInt64(l) << 32 | UInt64(r)
            if merges[key] == nil { merges[key] = UInt64(rank) << 32 | UInt64(m) }
        }
        self.merges = merges

        let charToByte = ByteLevelAlphabet.scalarToByte
        var bytes = [[UInt8]](repeating: [], count: maxID + 1)
        for (id, token) in tokens.enumerated() {
            guard let token else { continue }
            var out: [UInt8] = []
            for s in token.unicodeScalars {
                if let b = charToByte[s] { out.append(b) } else { out.append(contentsOf: Array(String(s).utf8)) }
            }
            bytes[id] = out
        }
        tokenBytes = bytes
        var special = [Bool](repeating: false, count: maxID + 1)
        for a in added where a.special { special[a.id] = true }
        isSpecial = special
        addedMatcher = AddedTokenMatcher(added.map { (Array($0.content.utf8), $0.id) })
    }

    /// The id of a token string (byte-level alphabet, or an added token's content).
    public func id(of token: String) -> Int? {
        if let a = addedTokens.first(where: { $0.content == token }) { return a.id }
        return tokenIDs[token]
    }

    public func isSpecialToken(_ id: Int) -> Bool { id >= 0 && id < isSpecial.count && isSpecial[id] }

    /// Token ids of `text`, as `tokenizer.encode(text)` gives them (no post-processor in these files).
    public func encode(_ text: String) -> [Int] {
        var text = text
        return text.withUTF8 { buffer in
            var out: [Int] = []
            out.reserveCapacity(buffer.count / 2 + 1)
            cache.withLock { cache in
                var segmentStart = 0
                addedMatcher.scan(buffer) { matchStart, matchEnd, id in
                    if matchStart > segmentStart { encodeSegment(buffer, segmentStart, matchStart, &cache, &out) }
                    out.append(id)
                    segmentStart = matchEnd
                }
                if buffer.count > segmentStart { encodeSegment(buffer, segmentStart, buffer.count, &cache, &out) }
            }
            return out
        }
    }

    private func encodeSegment(_ b: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int, _ cache: inout WordCache, _ out: inout [Int]) {
        if useRegex {
            GPT2Split.split(b, start, end) { ws, we in encodeWord(b, ws, we, &cache, &out) }
        } else {
            encodeWord(b, start, end, &cache, &out)
        }
    }

    private func encodeWord(_ b: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int, _ cache: inout WordCache, _ out: inout [Int]) {
        if end - start == 1 {
            let id = byteTokenIDs[Int(b[start])]
            if id >= 0 { out.append(Int(id)) }
            return
        }
        let word = UnsafeBufferPointer(rebasing: b[start..<end])
        if cache.lookup(word, into: &out) { return }
        let ids = bpe(word)
        cache.insert(word, ids)
        for id in ids { out.append(Int(id)) }
    }

    /// Merges by rank the way `tokenizers`' `Word::merge_all` does: a queue ordered by
    /// (rank, position), stale entries skipped.
    private func bpe(_ word: UnsafeBufferPointer<UInt8>) -> [Int32] {
        var symbols: [Int32] = []
        symbols.reserveCapacity(word.count)
        for byte in word {
            let id = byteTokenIDs[Int(byte)]
            if id >= 0 { symbols.append(id) }
        }
        let n = symbols.count
        if n < 2 { return symbols }
        var prev = [Int32](repeating: -1, count: n)
        var next = [Int32](repeating: -1, count: n)
        var alive = [Bool](repeating: true, count: n)
        for i in 0..<n {
            prev[i] = Int32(i - 1)
            next[i] = i + 1 < n ? Int32(i + 1) : -1
        }
        var queue = MergeQueue()
        for i in 0..<(n - 1) {
            if let m = merges[UInt64(UInt32(symbols[i])) << 32 | UInt64(UInt32(symbols[i + 1]))] {
                queue.push(rank: UInt32(m >> 32), pos: UInt32(i), newID: UInt32(truncatingIfNeeded: m))
            }
        }
        while let top = queue.pop() {
            let pos = Int(top.pos)
            guard alive[pos], next[pos] >= 0 else { continue }
            let right = Int(next[pos])
            guard let m = merges[UInt64(UInt32(symbols[pos])) << 32 | UInt64(UInt32(symbols[right]))],
                  UInt32(truncatingIfNeeded: m) == top.newID else { continue }
            symbols[pos] = Int32(top.newID)
            alive[right] = false
            next[pos] = next[right]
            if next[right] >= 0 { prev[Int(next[right])] = Int32(pos) }
            if prev[pos] >= 0 {
                let p = Int(prev[pos])
                if let m = merges[UInt64(UInt32(symbols[p])) << 32 | UInt64(UInt32(symbols[pos]))] {
                    queue.push(rank: UInt32(m >> 32), pos: UInt32(p), newID: UInt32(truncatingIfNeeded: m))
                }
            }
            if next[pos] >= 0 {
                let nx = Int(next[pos])
                if let m = merges[UInt64(UInt32(symbols[pos])) << 32 | UInt64(UInt32(symbols[nx]))] {
                    queue.push(rank: UInt32(m >> 32), pos: UInt32(pos), newID: UInt32(truncatingIfNeeded: m))
                }
            }
        }
        var result: [Int32] = []
        var i = 0
        while i >= 0 && i < n {
            result.append(symbols[i])
            i = Int(next[i])
        }
        return result
    }

    /// The bytes id `id` stands for (empty for unknown ids).
    public func bytes(of id: Int) -> [UInt8] {
        id >= 0 && id < tokenBytes.count ? tokenBytes[id] : []
    }

    func appendBytes(of id: Int, skipSpecialTokens: Bool, to out: inout [UInt8]) {
        guard id >= 0, id < tokenBytes.count else { return }
        if skipSpecialTokens && isSpecial[id] { return }
        out.append(contentsOf: tokenBytes[id])
    }

    /// Text of `ids`, as `tokenizer.decode(ids, skip_special_tokens:)` gives it: invalid UTF-8
    /// becomes U+FFFD, unknown ids are dropped.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
        var bytes: [UInt8] = []
        for id in ids { appendBytes(of: id, skipSpecialTokens: skipSpecialTokens, to: &bytes) }
        return UTF8Lossy.decode(bytes[...], final: true).text
    }

    /// A decoder for streaming generation: feed ids one by one, get text that is never a broken character.
    public func streamingDecoder(skipSpecialTokens: Bool = true) -> StreamingDecoder {
        StreamingDecoder(tokenizer: self, skipSpecialTokens: skipSpecialTokens)
    }
}

/// Incremental decoding: bytes of an unfinished UTF-8 character are held back until it
/// completes (or cannot), so every chunk is valid text and the chunks join to the full decode.
public struct StreamingDecoder: Sendable {
    let tokenizer: BPETokenizer
    let skipSpecialTokens: Bool
    private var pending: [UInt8] = []

    init(tokenizer: BPETokenizer, skipSpecialTokens: Bool) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
    }

    /// The text that `id` completes (possibly empty).
    public mutating func push(_ id: Int) -> String {
        tokenizer.appendBytes(of: id, skipSpecialTokens: skipSpecialTokens, to: &pending)
        let (text, consumed) = UTF8Lossy.decode(pending[...], final: false)
        pending.removeFirst(consumed)
        return text
    }

    /// Whatever is still held (an unfinished character becomes U+FFFD, as a full decode gives it).
    public mutating func finish() -> String {
        let (text, _) = UTF8Lossy.decode(pending[...], final: true)
        pending.removeAll()
        return text
    }
}

/// GPT-2's reversible byte <-> printable character mapping.
enum ByteLevelAlphabet {
    static let byteToScalar: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var extra: UInt32 = 0
        for b in 0..<256 {
            let printable = (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
            if printable {
                table[b] = Unicode.Scalar(UInt8(b))
            } else {
                table[b] = Unicode.Scalar(256 + extra)!
                extra += 1
            }
        }
        return table
    }()

    static let scalarToByte: [Unicode.Scalar: UInt8] = {
        var map: [Unicode.Scalar: UInt8] = [:]
        for (b, s) in byteToScalar.enumerated() { map[s] = UInt8(b) }
        return map
    }()
}

/// Leftmost-longest matching of added tokens in raw UTF-8, as `tokenizers`' AddedVocabulary does.
struct AddedTokenMatcher: Sendable {
    private var byFirstByte: [[([UInt8], Int)]] = Array(repeating: [], count: 256)

    init(_ tokens: [([UInt8], Int)]) {
        for (bytes, id) in tokens where !bytes.isEmpty { byFirstByte[Int(bytes[0])].append((bytes, id)) }
        for i in 0..<256 { byFirstByte[i].sort { $0.0.count > $1.0.count } }
    }

    func scan(_ b: UnsafeBufferPointer<UInt8>, _ found: (Int, Int, Int) -> Void) {
        var i = 0
        let n = b.count
        while i < n {
            let candidates = byFirstByte[Int(b[i])]
            var matched = false
            if !candidates.isEmpty {
                for (bytes, id) in candidates where bytes.count <= n - i {
                    var equal = true
                    for k in 1..<bytes.count where b[i + k] != bytes[k] { equal = false; break }
                    if equal {
                        found(i, i + bytes.count, id)
                        i += bytes.count
                        matched = true
                        break
                    }
                }
            }
            if !matched { i += 1 }
        }
    }
}

/// Binary min-heap of pending merges ordered by (rank, position).
struct MergeQueue {
    struct Entry { var rank: UInt32; var pos: UInt32; var newID: UInt32 }
    private var heap: [Entry] = []

    @inline(__always) private static func less(_ a: Entry, _ b: Entry) -> Bool {
        a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos
    }

    mutating func push(rank: UInt32, pos: UInt32, newID: UInt32) {
        heap.append(Entry(rank: rank, pos: pos, newID: newID))
        var i = heap.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard Self.less(heap[i], heap[parent]) else { break }
            heap.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> Entry? {
        guard let first = heap.first else { return nil }
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < heap.count && Self.less(heap[l], heap[m]) { m = l }
                if r < heap.count && Self.less(heap[r], heap[m]) { m = r }
                if m == i { break }
                heap.swapAt(i, m)
                i = m
            }
        }
        return first
    }
}

/// BPE results per pre-token word, keyed by the word's bytes (not by `String`, whose equality
/// would merge canonically equivalent but differently encoded words).
struct WordCache: Sendable {
    private var slots: [Int32] = Array(repeating: -1, count: 1 << 16)   // entry index or -1
    private var keyStart: [Int] = []
    private var keyLength: [Int32] = []
    private var valueStart: [Int] = []
    private var valueLength: [Int32] = []
    private var hashes: [UInt64] = []
    private var keyBytes: [UInt8] = []
    private var values: [Int32] = []
    private static let maxEntries = 1 << 15

    @inline(__always) private static func hash(_ w: UnsafeBufferPointer<UInt8>) -> UInt64 {
        var h: UInt64 = 0xcbf29ce484222325
        for b in w { h = (h ^ UInt64(b)) &* 0x100000001b3 }
        return h
    }

    func lookup(_ w: UnsafeBufferPointer<UInt8>, into out: inout [Int]) -> Bool {
        let h = Self.hash(w)
        let mask = slots.count - 1
        var s = Int(truncatingIfNeeded: h) & mask
        while true {
            let e = Int(slots[s])
            if e < 0 { return false }
            if hashes[e] == h && Int(keyLength[e]) == w.count {
                let ks = keyStart[e]
                var equal = true
                for k in 0..<w.count where keyBytes[ks + k] != w[k] { equal = false; break }
                if equal {
                    let vs = valueStart[e]
                    for k in 0..<Int(valueLength[e]) { out.append(Int(values[vs + k])) }
                    return true
                }
            }
            s = (s + 1) & mask
        }
    }

    mutating func insert(_ w: UnsafeBufferPointer<UInt8>, _ ids: [Int32]) {
        if hashes.count >= Self.maxEntries { self = WordCache() }
        let h = Self.hash(w)
        let e = hashes.count
        hashes.append(h)
        keyStart.append(keyBytes.count)
        keyLength.append(Int32(w.count))
        keyBytes.append(contentsOf: w)
        valueStart.append(values.count)
        valueLength.append(Int32(ids.count))
        values.append(contentsOf: ids)
        let mask = slots.count - 1
        var s = Int(truncatingIfNeeded: h) & mask
        while slots[s] >= 0 { s = (s + 1) & mask }
        slots[s] = Int32(e)
    }
}
