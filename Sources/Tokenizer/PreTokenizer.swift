/// The GPT-2 split that Hugging Face's `ByteLevel` pre-tokenizer applies with `use_regex`:
///
///     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
///
/// matched by hand on UTF-8 bytes (alternatives tried in order, each greedy, as Oniguruma does),
/// with `\s` = Unicode White_Space, `\p{L}` = general category L*, `\p{N}` = N*.
enum GPT2Split {
    enum CharClass: UInt8 { case other = 0, letter = 1, number = 2, space = 3 }

    /// Classes of the Basic Multilingual Plane, computed once.
    static let bmpClasses: [UInt8] = {
        var table = [UInt8](repeating: 0, count: 0x10000)
        for v in 0..<0x10000 {
            if let s = Unicode.Scalar(UInt32(v)) { table[v] = classify(s).rawValue }
        }
        return table
    }()

    /// Letters and numbers that Swift's Unicode tables (17.0) know but the Oniguruma inside
    /// `tokenizers` 0.21/0.22 (Unicode 16.0) does not: to Hugging Face they are unassigned, so
    /// "other". Found by Tools/tokenizer/make_class_table.py; CharacterClassTests checks every
    /// code point, so a newer Swift with newer tables shows up there.
    static let newerThanTokenizers: [ClosedRange<UInt32>] = [
        0x088F...0x088F, 0x0C5C...0x0C5C, 0x0CDC...0x0CDC, 0xA7CE...0xA7CF, 0xA7D2...0xA7D2, 0xA7D4...0xA7D4,
        0xA7F1...0xA7F1, 0x10940...0x10959, 0x10EC5...0x10EC7, 0x11DB0...0x11DDB, 0x11DE0...0x11DE9,
        0x16EA0...0x16EB8, 0x16EBB...0x16ED3, 0x16FF2...0x16FF6, 0x187F8...0x187FF, 0x18D09...0x18D1E,
        0x18D80...0x18DF2, 0x1E6C0...0x1E6DE, 0x1E6E0...0x1E6E2, 0x1E6E4...0x1E6E5, 0x1E6E7...0x1E6ED,
        0x1E6F0...0x1E6F4, 0x1E6FE...0x1E6FF, 0x2B73A...0x2B73F, 0x2CEA2...0x2CEAD, 0x323B0...0x33479,
    ]

    static func classify(_ s: Unicode.Scalar) -> CharClass {
        if s.value >= 0x88F, newerThanTokenizers.contains(where: { $0.contains(s.value) }) { return .other }
        let p = s.properties
        if p.isWhitespace { return .space }
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
        case .decimalNumber, .letterNumber, .otherNumber: return .number
        default: return .other
        }
    }

    @inline(__always)
    static func scalar(_ b: UnsafeBufferPointer<UInt8>, _ i: Int) -> (value: UInt32, length: Int) {
        let b0 = UInt32(b[i])
        if b0 < 0x80 { return (b0, 1) }
        if b0 < 0xE0 { return ((b0 & 0x1F) << 6 | UInt32(b[i + 1] & 0x3F), 2) }
        if b0 < 0xF0 { return ((b0 & 0x0F) << 12 | UInt32(b[i + 1] & 0x3F) << 6 | UInt32(b[i + 2] & 0x3F), 3) }
        return ((b0 & 0x07) << 18 | UInt32(b[i + 1] & 0x3F) << 12 | UInt32(b[i + 2] & 0x3F) << 6 | UInt32(b[i + 3] & 0x3F), 4)
    }

    @inline(__always)
    static func classAt(_ b: UnsafeBufferPointer<UInt8>, _ i: Int, _ table: UnsafeBufferPointer<UInt8>) -> (CharClass, Int) {
        let (v, n) = scalar(b, i)
        if v < 0x10000 { return (CharClass(rawValue: table[Int(v)]) ?? .other, n) }
        return (Unicode.Scalar(v).map(classify) ?? .other, n)
    }

    /// Calls `word` with the byte range of each piece of `bytes[start..<end]` (valid UTF-8).
    static func split(_ b: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int, _ word: (Int, Int) -> Void) {
        bmpClasses.withUnsafeBufferPointer { table in
            var i = start
            while i < end {
                let c0 = b[i]
                // Contractions: 's 't 're 've 'm 'll 'd (lower case only, as in the pattern).
                if c0 == UInt8(ascii: "'"), i + 1 < end {
                    let c1 = b[i + 1]
                    if c1 == UInt8(ascii: "s") || c1 == UInt8(ascii: "t") || c1 == UInt8(ascii: "m") || c1 == UInt8(ascii: "d") {
                        word(i, i + 2); i += 2; continue
                    }
                    if i + 2 < end {
                        let c2 = b[i + 2]
                        if (c1 == UInt8(ascii: "r") && c2 == UInt8(ascii: "e")) || (c1 == UInt8(ascii: "v") && c2 == UInt8(ascii: "e"))
                            || (c1 == UInt8(ascii: "l") && c2 == UInt8(ascii: "l")) {
                            word(i, i + 3); i += 3; continue
                        }
                    }
                }
                var (cls, n) = classAt(b, i, table)
                var runStart = i
                var j = i + n
                if c0 == 0x20, j < end {
                    // " ?X+": a single space joins the letter, number or other run after it.
                    let (next, m) = classAt(b, j, table)
                    if next != .space {
                        cls = next
                        runStart = i
                        j += m
                    }
                }
                if cls != .space {
                    while j < end {
                        let (c, m) = classAt(b, j, table)
                        if c != cls { break }
                        j += m
                    }
                    word(runStart, j); i = j; continue
                }
                // Whitespace: "\s+(?!\S)" leaves the last space for the word after it; "\s+" otherwise.
                var lastStart = i
                while j < end {
                    let (c, m) = classAt(b, j, table)
                    if c != .space { break }
                    lastStart = j
                    j += m
                }
                if j < end && lastStart > i {
                    word(i, lastStart); i = lastStart
                } else {
                    word(i, j); i = j
                }
            }
        }
    }
}
