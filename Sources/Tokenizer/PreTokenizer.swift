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

    static func classify(_ s: Unicode.Scalar) -> CharClass {
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
