/// UTF-8 decoding with U+FFFD for each maximal invalid subpart, as Rust's
/// `String::from_utf8_lossy` (used by Hugging Face's decoders) does.
enum UTF8Lossy {
    /// Decodes `bytes`; when `final` is false, a trailing incomplete-but-valid sequence is left
    /// undecoded and `consumed` stops before it, so that it can be completed by later bytes.
    static func decode(_ bytes: ArraySlice<UInt8>, final: Bool) -> (text: String, consumed: Int) {
        var out = [UInt8]()
        out.reserveCapacity(bytes.count)
        var i = bytes.startIndex
        let end = bytes.endIndex
        let replacement: [UInt8] = [0xEF, 0xBF, 0xBD]
        while i < end {
            let b0 = bytes[i]
            if b0 < 0x80 { out.append(b0); i += 1; continue }
            let need: Int
            var lo: UInt8 = 0x80, hi: UInt8 = 0xBF
            switch b0 {
            case 0xC2...0xDF: need = 1
            case 0xE0: need = 2; lo = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: need = 2
            case 0xED: need = 2; hi = 0x9F
            case 0xF0: need = 3; lo = 0x90
            case 0xF1...0xF3: need = 3
            case 0xF4: need = 3; hi = 0x8F
            default:
                out.append(contentsOf: replacement); i += 1; continue
            }
            var j = i + 1
            var ok = true
            for k in 0..<need {
                guard j < end else { ok = false; break }
                let b = bytes[j]
                let valid = k == 0 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF)
                guard valid else { ok = false; break }
                j += 1
            }
            if ok {
                out.append(contentsOf: bytes[i..<j])
                i = j
            } else if j == end && !final {
                // A valid prefix cut by the end of the buffer: wait for the rest.
                break
            } else {
                out.append(contentsOf: replacement)
                i = j
            }
        }
        return (String(decoding: out, as: UTF8.self), i - bytes.startIndex)
    }
}
