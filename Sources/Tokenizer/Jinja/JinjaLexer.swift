/// A place in a template, for error messages.
public struct TemplatePosition: Sendable, CustomStringConvertible {
    public let line: Int
    public let column: Int
    public var description: String { "line \(line), column \(column)" }
}

enum JinjaToken: Equatable {
    case name(String)
    case string(String)
    case int(Int)
    case float(Double)
    case op(String)
}

struct LexedToken {
    let token: JinjaToken
    let position: TemplatePosition
}

/// The template split into literal text and tags, with Jinja's whitespace control applied the
/// way transformers configures it (`trim_blocks=True`, `lstrip_blocks=True`).
enum TemplateSegment {
    case text(String)
    case output([LexedToken], TemplatePosition)
    case statement([LexedToken], TemplatePosition)
}

struct JinjaLexer {
    private let s: [Unicode.Scalar]
    private var pos = 0
    private var lineStarts: [Int] = [0]

    init(source: String) {
        // Jinja normalises \r\n and \r to \n and drops one trailing newline (keep_trailing_newline=False).
        var scalars: [Unicode.Scalar] = []
        var it = Array(source.unicodeScalars)
        var i = 0
        while i < it.count {
            if it[i] == "\r" {
                scalars.append("\n")
                if i + 1 < it.count && it[i + 1] == "\n" { i += 1 }
            } else {
                scalars.append(it[i])
            }
            i += 1
        }
        if scalars.last == "\n" { scalars.removeLast() }
        it = scalars
        s = it
        for (k, c) in s.enumerated() where c == "\n" { lineStarts.append(k + 1) }
    }

    func position(_ offset: Int) -> TemplatePosition {
        var lo = 0, hi = lineStarts.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if lineStarts[mid] <= offset { lo = mid } else { hi = mid - 1 }
        }
        return TemplatePosition(line: lo + 1, column: offset - lineStarts[lo] + 1)
    }

    private func error(_ message: String, at offset: Int) -> TokenizerError {
        TokenizerError("chat template: \(message) at \(position(offset))")
    }

    static func isSpace(_ c: Unicode.Scalar) -> Bool { c.properties.isWhitespace }

    mutating func segments() throws(TokenizerError) -> [TemplateSegment] {
        var out: [TemplateSegment] = []
        var lineStarting = true
        while pos < s.count {
            // Find the next tag opener.
            var j = pos
            var opener: Unicode.Scalar? = nil
            while j + 1 < s.count {
                if s[j] == "{" && (s[j + 1] == "{" || s[j + 1] == "%" || s[j + 1] == "#") { opener = s[j + 1]; break }
                j += 1
            }
            guard let kind = opener else {
                out.append(.text(String(String.UnicodeScalarView(s[pos...]))))
                pos = s.count
                break
            }
            var text = Array(s[pos..<j])
            let signIndex = j + 2
            let sign: Unicode.Scalar? = signIndex < s.count && (s[signIndex] == "-" || s[signIndex] == "+") ? s[signIndex] : nil
            if sign == "-" {
                while let last = text.last, Self.isSpace(last) { text.removeLast() }
            } else if sign != "+" && kind != "{" {
                let lPos = (text.lastIndex(of: "\n").map { $0 + 1 }) ?? 0
                if (lPos > 0 || lineStarting) && lPos < text.count && text[lPos...].allSatisfy(Self.isSpace) {
                    text.removeSubrange(lPos...)
                }
            }
            if !text.isEmpty { out.append(.text(String(String.UnicodeScalarView(text)))) }
            let tagStart = j
            pos = j + 2 + (sign == nil ? 0 : 1)
            switch kind {
            case "#":
                // Comment: up to the first "#}", with its own strip sign.
                var k = pos
                while k + 1 < s.count && !(s[k] == "#" && s[k + 1] == "}") { k += 1 }
                guard k + 1 < s.count else { throw error("missing end of comment tag", at: tagStart) }
                let stripAfter = k > pos && s[k - 1] == "-"
                let keep = k > pos && s[k - 1] == "+"
                pos = k + 2
                lineStarting = finishTag(stripAfter: stripAfter, trimNewline: !keep && !stripAfter, endedWithNewline: false)
            case "%":
                let (tokens, stripAfter, keep) = try lexTag(closing: "%", start: tagStart)
                if tokens.first?.token == .name("raw") { throw error("unsupported construct 'raw'", at: tagStart) }
                out.append(.statement(tokens, position(tagStart)))
                lineStarting = finishTag(stripAfter: stripAfter, trimNewline: !keep && !stripAfter, endedWithNewline: false)
            default:
                let (tokens, stripAfter, _) = try lexTag(closing: "}", start: tagStart)
                out.append(.output(tokens, position(tagStart)))
                lineStarting = finishTag(stripAfter: stripAfter, trimNewline: false, endedWithNewline: false)
            }
        }
        return out
    }

    /// Consumes what the tag end swallows; returns whether that match ended with a newline.
    private mutating func finishTag(stripAfter: Bool, trimNewline: Bool, endedWithNewline: Bool) -> Bool {
        var last: Unicode.Scalar? = nil
        if stripAfter {
            while pos < s.count && Self.isSpace(s[pos]) { last = s[pos]; pos += 1 }
        } else if trimNewline && pos < s.count && s[pos] == "\n" {
            last = "\n"
            pos += 1
        }
        return last == "\n"
    }

    /// Expression tokens up to the tag end (`%}` or `}}`) at bracket depth 0.
    private mutating func lexTag(closing: Unicode.Scalar, start: Int) throws(TokenizerError) -> ([LexedToken], Bool, Bool) {
        var tokens: [LexedToken] = []
        var depth: [Unicode.Scalar] = []
        while true {
            while pos < s.count && Self.isSpace(s[pos]) { pos += 1 }
            guard pos < s.count else { throw error("unclosed tag", at: start) }
            let c = s[pos]
            if depth.isEmpty {
                if (c == "-" || c == "+") && pos + 2 < s.count && s[pos + 1] == closing && s[pos + 2] == "}" {
                    pos += 3
                    return (tokens, c == "-", c == "+")
                }
                if c == closing && pos + 1 < s.count && s[pos + 1] == "}" {
                    pos += 2
                    return (tokens, false, false)
                }
            }
            let here = position(pos)
            if c == "'" || c == "\"" {
                tokens.append(LexedToken(token: .string(try lexString(quote: c)), position: here))
                continue
            }
            if c.properties.numericType != nil && ("0"..."9").contains(c) {
                tokens.append(LexedToken(token: lexNumber(), position: here))
                continue
            }
            if c == "_" || c.properties.isAlphabetic {
                var k = pos
                while k < s.count && (s[k] == "_" || s[k].properties.isAlphabetic || ("0"..."9").contains(s[k])) { k += 1 }
                tokens.append(LexedToken(token: .name(String(String.UnicodeScalarView(s[pos..<k]))), position: here))
                pos = k
                continue
            }
            let two = pos + 1 < s.count ? String(String.UnicodeScalarView([c, s[pos + 1]])) : ""
            if ["//", "**", "==", "!=", "<=", ">="].contains(two) {
                tokens.append(LexedToken(token: .op(two), position: here))
                pos += 2
                continue
            }
            switch c {
            case "(", "[", "{":
                depth.append(c == "(" ? ")" : c == "[" ? "]" : "}")
            case ")", "]", "}":
                guard let expected = depth.popLast(), expected == c else {
                    throw error("unexpected '\(c)'", at: pos)
                }
            case "+", "-", "*", "/", "%", "~", "<", ">", "=", ".", ":", "|", ",", ";":
                break
            default:
                throw error("unexpected character '\(c)'", at: pos)
            }
            tokens.append(LexedToken(token: .op(String(c)), position: here))
            pos += 1
        }
    }

    private mutating func lexNumber() -> JinjaToken {
        var k = pos
        var digits = ""
        while k < s.count && (("0"..."9").contains(s[k]) || s[k] == "_") { if s[k] != "_" { digits.unicodeScalars.append(s[k]) }; k += 1 }
        var isFloat = false
        if k + 1 < s.count && s[k] == "." && ("0"..."9").contains(s[k + 1]) {
            isFloat = true
            digits += "."
            k += 1
            while k < s.count && (("0"..."9").contains(s[k]) || s[k] == "_") { if s[k] != "_" { digits.unicodeScalars.append(s[k]) }; k += 1 }
        }
        if k < s.count && (s[k] == "e" || s[k] == "E") {
            var m = k + 1
            if m < s.count && (s[m] == "+" || s[m] == "-") { m += 1 }
            if m < s.count && ("0"..."9").contains(s[m]) {
                isFloat = true
                digits += String(String.UnicodeScalarView(s[k..<m]))
                k = m
                while k < s.count && ("0"..."9").contains(s[k]) { digits.unicodeScalars.append(s[k]); k += 1 }
            }
        }
        pos = k
        if !isFloat, let i = Int(digits) { return .int(i) }
        return .float(Double(digits) ?? 0)
    }

    /// A string literal, unescaped like Python's "unicode-escape" (what Jinja applies).
    private mutating func lexString(quote: Unicode.Scalar) throws(TokenizerError) -> String {
        let start = pos
        pos += 1
        var out = String.UnicodeScalarView()
        while true {
            guard pos < s.count else { throw error("unterminated string", at: start) }
            let c = s[pos]
            if c == quote { pos += 1; break }
            if c != "\\" { out.append(c); pos += 1; continue }
            pos += 1
            guard pos < s.count else { throw error("unterminated string", at: start) }
            let e = s[pos]
            pos += 1
            switch e {
            case "n": out.append("\n")
            case "t": out.append("\t")
            case "r": out.append("\r")
            case "\\": out.append("\\")
            case "'": out.append("'")
            case "\"": out.append("\"")
            case "a": out.append("\u{07}")
            case "b": out.append("\u{08}")
            case "f": out.append("\u{0C}")
            case "v": out.append("\u{0B}")
            case "\n": break
            case "0"..."7":
                var v = e.value - 48
                var n = 1
                while n < 3 && pos < s.count && ("0"..."7").contains(s[pos]) { v = v * 8 + s[pos].value - 48; pos += 1; n += 1 }
                out.append(Unicode.Scalar(v) ?? "\u{FFFD}")
            case "x", "u", "U":
                let count = e == "x" ? 2 : e == "u" ? 4 : 8
                guard pos + count <= s.count, let v = UInt32(String(String.UnicodeScalarView(s[pos..<pos + count])), radix: 16),
                      let scalar = Unicode.Scalar(v) else { throw error("bad \\\(e) escape in string", at: pos) }
                out.append(scalar)
                pos += count
            default:
                out.append("\\")
                out.append(e)
            }
        }
        return String(out)
    }
}
