import Foundation

/// Filters, tests, global functions and the Python `str`/`dict`/`list` methods templates call.
enum JinjaBuiltins {
    static func error(_ message: String, _ position: TemplatePosition? = nil) -> TokenizerError {
        JinjaInterpreter.error(message, position)
    }

    static func kwarg(_ kwargs: [(String, JinjaValue)], _ name: String) -> JinjaValue? { kwargs.first { $0.0 == name }?.1 }

    static func argument(_ args: [JinjaValue], _ kwargs: [(String, JinjaValue)], _ index: Int, _ name: String) -> JinjaValue? {
        index < args.count ? args[index] : kwarg(kwargs, name)
    }

    static var globals: [String: JinjaValue] { [
        "raise_exception": .function(JinjaFunction(name: "raise_exception") { args, _ throws(TokenizerError) in
            throw TokenizerError("chat template raised an exception: \(args.first?.text ?? "")")
        }),
        "namespace": .function(JinjaFunction(name: "namespace") { args, kwargs throws(TokenizerError) in
            var fields: [(String, JinjaValue)] = []
            if case .dict(let d)? = args.first { fields = d }
            for (k, v) in kwargs {
                if let i = fields.firstIndex(where: { $0.0 == k }) { fields[i].1 = v } else { fields.append((k, v)) }
            }
            return .namespace(JinjaNamespace(fields))
        }),
        "range": .function(JinjaFunction(name: "range") { args, _ throws(TokenizerError) in
            let ints = args.compactMap(\.intLike)
            guard ints.count == args.count, (1...3).contains(ints.count) else { throw error("range() takes 1 to 3 integers") }
            let (start, stop, step) = ints.count == 1 ? (0, ints[0], 1) : (ints[0], ints[1], ints.count == 3 ? ints[2] : 1)
            guard step != 0 else { throw error("range() step must not be zero") }
            guard abs((stop - start) / step) < 1_000_000 else { throw error("range() is too long") }
            return .list(Array(stride(from: start, to: stop, by: step)).map { .int($0) })
        }),
        "dict": .function(JinjaFunction(name: "dict") { args, kwargs throws(TokenizerError) in
            var fields: [(String, JinjaValue)] = []
            if case .dict(let d)? = args.first { fields = d }
            for (k, v) in kwargs {
                if let i = fields.firstIndex(where: { $0.0 == k }) { fields[i].1 = v } else { fields.append((k, v)) }
            }
            return .dict(fields)
        }),
        "strftime_now": .function(JinjaFunction(name: "strftime_now") { args, _ throws(TokenizerError) in
            .string(strftime(args.first?.text ?? "", Date()))
        }),
    ] }

    /// A small strftime for `strftime_now` (the directives chat templates use).
    static func strftime(_ format: String, _ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = .current
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second, .weekday], from: date)
        let months = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"]
        let days = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
        func two(_ v: Int?) -> String { String(format: "%02d", v ?? 0) }
        var out = ""
        var it = format.makeIterator()
        while let ch = it.next() {
            guard ch == "%", let d = it.next() else { out.append(ch); continue }
            switch d {
            case "Y": out += String(c.year ?? 0)
            case "m": out += two(c.month)
            case "d": out += two(c.day)
            case "-": if let e = it.next() { out += e == "d" ? String(c.day ?? 0) : e == "m" ? String(c.month ?? 0) : "%-\(e)" }
            case "H": out += two(c.hour)
            case "M": out += two(c.minute)
            case "S": out += two(c.second)
            case "B": out += months[(c.month ?? 1) - 1]
            case "b": out += String(months[(c.month ?? 1) - 1].prefix(3))
            case "A": out += days[(c.weekday ?? 1) - 1]
            case "a": out += String(days[(c.weekday ?? 1) - 1].prefix(3))
            case "%": out += "%"
            default: out += "%\(d)"
            }
        }
        return out
    }

    // MARK: filters

    static func filter(_ name: String, _ value: JinjaValue, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)],
                       _ position: TemplatePosition) throws(TokenizerError) -> JinjaValue {
        switch name {
        case "tojson":
            let indent = argument(args, kwargs, 0, "indent")?.intLike
            let sortKeys = kwarg(kwargs, "sort_keys")?.isTrue ?? false
            return .string(try value.json().pythonJSON(indent: indent, sortKeys: sortKeys))
        case "trim":
            guard case .string(let s) = value else { return .string(pythonStrip(value.text, nil, left: true, right: true)) }
            return .string(pythonStrip(s, argument(args, kwargs, 0, "chars")?.optionalText, left: true, right: true))
        case "length", "count":
            switch value {
            case .string(let s): return .int(s.unicodeScalars.count)
            case .list(let l): return .int(l.count)
            case .dict(let d): return .int(d.count)
            case .undefined: return .int(0)
            default: throw error("object of type '\(value.typeName)' has no len()", position)
            }
        case "lower": return .string(value.text.lowercased())
        case "upper": return .string(value.text.uppercased())
        case "capitalize":
            let s = value.text.scalarArray
            guard let first = s.first else { return .string("") }
            return .string(String(first).uppercased() + String(scalars: s.dropFirst()).lowercased())
        case "title": return .string(value.text.capitalized)
        case "default", "d":
            let fallback = argument(args, kwargs, 0, "default_value") ?? .string("")
            let boolean = argument(args, kwargs, 1, "boolean")?.isTrue ?? false
            if value.isUndefined || (boolean && !value.isTrue) { return fallback }
            return value
        case "join":
            let separator = argument(args, kwargs, 0, "d")?.text ?? ""
            var items = try iterate(value, position)
            if let attribute = argument(args, kwargs, 1, "attribute") {
                var mapped: [JinjaValue] = []
                for item in items { mapped.append(try JinjaInterpreter.item(item, attribute, position)) }
                items = mapped
            }
            return .string(items.map(\.text).joined(separator: separator))
        case "first":
            return try iterate(value, position).first ?? .undefined("first")
        case "last":
            return try iterate(value, position).last ?? .undefined("last")
        case "list": return .list(try iterate(value, position))
        case "string": return .string(value.text)
        case "int":
            if let i = value.intLike { return .int(i) }
            if case .double(let d) = value { return .int(Int(d)) }
            return .int(Int(value.text.trimmingCharacters(in: .whitespaces)) ?? (argument(args, kwargs, 0, "default")?.intLike ?? 0))
        case "float":
            if let n = value.number { return .double(n) }
            return .double(Double(value.text.trimmingCharacters(in: .whitespaces)) ?? 0)
        case "abs":
            if case .int(let i) = value { return .int(abs(i)) }
            if let n = value.number { return .double(abs(n)) }
            throw error("bad operand type for abs(): '\(value.typeName)'", position)
        case "replace":
            guard args.count >= 2 else { throw error("replace needs two arguments", position) }
            return .string(pythonReplace(value.text, args[0].text, args[1].text, args.count > 2 ? args[2].intLike : nil))
        case "items":
            guard case .dict(let d) = value else {
                if value.isUndefined { return .list([]) }
                throw error("items filter needs a mapping, got \(value.typeName)", position)
            }
            return .list(d.map { .list([.string($0.0), $0.1]) })
        case "reverse":
            if case .string(let s) = value { return .string(String(scalars: s.scalarArray.reversed())) }
            return .list(try iterate(value, position).reversed())
        case "unique":
            var out: [JinjaValue] = []
            for v in try iterate(value, position) where !out.contains(where: { JinjaValue.equal($0, v) }) { out.append(v) }
            return .list(out)
        case "safe":
            return value
        case "map":
            let items = try iterate(value, position)
            if let attribute = kwarg(kwargs, "attribute") {
                var out: [JinjaValue] = []
                for item in items {
                    var v = try JinjaInterpreter.item(item, attribute, position)
                    if v.isUndefined, let d = kwarg(kwargs, "default") { v = d }
                    out.append(v)
                }
                return .list(out)
            }
            guard let filterName = args.first?.text else { throw error("map needs a filter name or attribute=", position) }
            var out: [JinjaValue] = []
            for item in items { out.append(try filter(filterName, item, Array(args.dropFirst()), [], position)) }
            return .list(out)
        case "selectattr", "rejectattr":
            guard let attribute = args.first else { throw error("\(name) needs an attribute name", position) }
            var out: [JinjaValue] = []
            for item in try iterate(value, position) {
                let v = try JinjaInterpreter.item(item, attribute, position)
                let passes = args.count > 1 ? try test(args[1].text, v, Array(args.dropFirst(2)), position) : v.isTrue
                if passes == (name == "selectattr") { out.append(item) }
            }
            return .list(out)
        case "select", "reject":
            var out: [JinjaValue] = []
            for item in try iterate(value, position) {
                let passes = args.isEmpty ? item.isTrue : try test(args[0].text, item, Array(args.dropFirst()), position)
                if passes == (name == "select") { out.append(item) }
            }
            return .list(out)
        case "round":
            guard let n = value.number else { throw error("round needs a number", position) }
            let precision = argument(args, kwargs, 0, "precision")?.intLike ?? 0
            let scale = pow(10.0, Double(precision))
            return .double((n * scale).rounded(.toNearestOrEven) / scale)
        case "wordcount":
            return .int(value.text.split(whereSeparator: { $0.isWhitespace }).count)
        default:
            throw error("unsupported filter '\(name)'", position)
        }
    }

    static func iterate(_ value: JinjaValue, _ position: TemplatePosition) throws(TokenizerError) -> [JinjaValue] {
        switch value {
        case .undefined: return []
        case .list(let l): return l
        case .dict(let d): return d.map { .string($0.0) }
        case .string(let s): return s.unicodeScalars.map { .string(String(scalars: [$0])) }
        default: throw error("'\(value.typeName)' object is not iterable", position)
        }
    }

    // MARK: tests

    static func test(_ name: String, _ value: JinjaValue, _ args: [JinjaValue], _ position: TemplatePosition) throws(TokenizerError) -> Bool {
        switch name {
        case "defined": return !value.isUndefined
        case "undefined": return value.isUndefined
        case "none": return value.isNone
        case "string": if case .string = value { return true } else { return false }
        case "number": if case .int = value { return true }; if case .double = value { return true }; return false
        case "integer": if case .int = value { return true } else { return false }
        case "float": if case .double = value { return true } else { return false }
        case "boolean": if case .bool = value { return true } else { return false }
        case "true": if case .bool(true) = value { return true } else { return false }
        case "false": if case .bool(false) = value { return true } else { return false }
        case "mapping": if case .dict = value { return true } else { return false }
        case "sequence", "iterable":
            switch value {
            case .list, .string, .dict: return true
            case .undefined: return name == "iterable"
            default: return false
            }
        case "callable": if case .function = value { return true } else { return false }
        case "odd", "even":
            guard let i = value.intLike else { throw error("'\(name)' test needs an integer", position) }
            return (i % 2 != 0) == (name == "odd")
        case "divisibleby":
            guard let i = value.intLike, let d = args.first?.intLike, d != 0 else { throw error("divisibleby needs integers", position) }
            return i % d == 0
        case "eq", "equalto", "==": return JinjaValue.equal(value, args.first ?? .undefined("argument"))
        case "ne", "!=": return !JinjaValue.equal(value, args.first ?? .undefined("argument"))
        case "lt", "<", "gt", ">", "le", "<=", "ge", ">=":
            guard let other = args.first else { throw error("'\(name)' test needs an argument", position) }
            let order = try JinjaInterpreter.compare(value, other, name, position)
            switch name {
            case "lt", "<": return order < 0
            case "gt", ">": return order > 0
            case "le", "<=": return order <= 0
            default: return order >= 0
            }
        case "in":
            guard let container = args.first else { throw error("'in' test needs an argument", position) }
            return try JinjaInterpreter.contains(container, value, position)
        case "lower": return value.text == value.text.lowercased()
        case "upper": return value.text == value.text.uppercased()
        case "sameas":
            switch (value, args.first) {
            case (.none, .none?): return true
            case let (.bool(a), .bool(b)?): return a == b
            default: return false
            }
        default:
            throw error("unsupported test '\(name)'", position)
        }
    }

    // MARK: methods

    static func method(_ receiver: JinjaValue, _ name: String) -> JinjaValue? {
        func bound(_ body: @escaping ([JinjaValue], [(String, JinjaValue)]) throws(TokenizerError) -> JinjaValue) -> JinjaValue {
            .function(JinjaFunction(name: name, call: body))
        }
        switch receiver {
        case .string(let s):
            switch name {
            case "startswith", "endswith":
                return bound { args, _ throws(TokenizerError) in
                    var candidates: [String] = []
                    switch args.first {
                    case .string(let p)?: candidates = [p]
                    case .list(let l)?: candidates = l.map(\.text)
                    default: throw error("\(name) needs a string argument")
                    }
                    let bytes = Array(s.utf8)
                    return .bool(candidates.contains { p in
                        let pb = Array(p.utf8)
                        return name == "startswith" ? bytes.starts(with: pb) : bytes.count >= pb.count && Array(bytes.suffix(pb.count)) == pb
                    })
                }
            case "strip", "lstrip", "rstrip":
                return bound { args, _ throws(TokenizerError) in
                    .string(pythonStrip(s, args.first?.optionalText, left: name != "rstrip", right: name != "lstrip"))
                }
            case "split", "rsplit":
                return bound { args, kwargs throws(TokenizerError) in
                    let separator = argument(args, kwargs, 0, "sep")?.optionalText
                    let maxSplit = argument(args, kwargs, 1, "maxsplit")?.intLike ?? -1
                    if separator == "" { throw error("empty separator in split") }
                    let parts = name == "split" ? pythonSplit(s, separator, maxSplit) : pythonRSplit(s, separator, maxSplit)
                    return .list(parts.map { .string($0) })
                }
            case "replace":
                return bound { args, _ throws(TokenizerError) in
                    guard args.count >= 2 else { throw error("replace needs two arguments") }
                    return .string(pythonReplace(s, args[0].text, args[1].text, args.count > 2 ? args[2].intLike : nil))
                }
            case "upper": return bound { _, _ in .string(s.uppercased()) }
            case "lower": return bound { _, _ in .string(s.lowercased()) }
            case "title": return bound { _, _ in .string(s.capitalized) }
            case "capitalize":
                return bound { _, _ in
                    let a = s.scalarArray
                    return .string(a.isEmpty ? "" : String(a[0]).uppercased() + String(scalars: a.dropFirst()).lowercased())
                }
            case "find", "count", "index":
                return bound { args, _ throws(TokenizerError) in
                    let needle = Array((args.first?.text ?? "").utf8)
                    let hay = Array(s.utf8)
                    if name == "count" {
                        if needle.isEmpty { return .int(s.unicodeScalars.count + 1) }
                        var n = 0, from = 0
                        while let at = find(hay, needle, from: from) { n += 1; from = at + needle.count }
                        return .int(n)
                    }
                    guard let at = find(hay, needle, from: 0) else {
                        if name == "index" { throw error("substring not found") }
                        return .int(-1)
                    }
                    return .int(String(decoding: hay[..<at], as: UTF8.self).unicodeScalars.count)
                }
            case "join":
                return bound { args, _ throws(TokenizerError) in
                    .string(try iterate(args.first ?? .list([]), TemplatePosition(line: 0, column: 0)).map(\.text).joined(separator: s))
                }
            case "isdigit", "isalpha", "isspace", "isupper", "islower":
                return bound { _, _ in
                    let scalars = s.unicodeScalars
                    guard !scalars.isEmpty else { return .bool(false) }
                    switch name {
                    case "isdigit": return .bool(scalars.allSatisfy { $0.properties.numericType != nil })
                    case "isalpha": return .bool(scalars.allSatisfy { $0.properties.isAlphabetic })
                    case "isspace": return .bool(scalars.allSatisfy { $0.properties.isWhitespace })
                    case "isupper": return .bool(s == s.uppercased() && s != s.lowercased())
                    default: return .bool(s == s.lowercased() && s != s.uppercased())
                    }
                }
            default: return nil
            }
        case .dict(let d):
            switch name {
            case "items": return bound { _, _ in .list(d.map { .list([.string($0.0), $0.1]) }) }
            case "keys": return bound { _, _ in .list(d.map { .string($0.0) }) }
            case "values": return bound { _, _ in .list(d.map(\.1)) }
            case "get":
                return bound { args, _ in
                    let key = args.first?.text ?? ""
                    return d.first { $0.0 == key }?.1 ?? (args.count > 1 ? args[1] : .none)
                }
            default: return nil
            }
        case .list(let l):
            switch name {
            case "index":
                return bound { args, _ throws(TokenizerError) in
                    guard let i = l.firstIndex(where: { JinjaValue.equal($0, args.first ?? .none) }) else { throw error("value is not in list") }
                    return .int(i)
                }
            case "count":
                return bound { args, _ in .int(l.filter { JinjaValue.equal($0, args.first ?? .none) }.count) }
            default: return nil
            }
        default:
            return nil
        }
    }

    // MARK: Python string semantics (code points, not grapheme clusters)

    static func find(_ hay: [UInt8], _ needle: [UInt8], from: Int) -> Int? {
        if needle.isEmpty { return from <= hay.count ? from : nil }
        guard hay.count >= needle.count else { return nil }
        var i = from
        let first = needle[0]
        while i + needle.count <= hay.count {
            if hay[i] == first {
                var k = 1
                while k < needle.count && hay[i + k] == needle[k] { k += 1 }
                if k == needle.count { return i }
            }
            i += 1
        }
        return nil
    }

    static func pythonStrip(_ s: String, _ chars: String?, left: Bool, right: Bool) -> String {
        let set = chars.map { Set($0.unicodeScalars) }
        func strip(_ c: Unicode.Scalar) -> Bool { set.map { $0.contains(c) } ?? c.properties.isWhitespace }
        var a = s.scalarArray[...]
        if left { while let f = a.first, strip(f) { a.removeFirst() } }
        if right { while let l = a.last, strip(l) { a.removeLast() } }
        return String(scalars: a)
    }

    static func pythonSplit(_ s: String, _ separator: String?, _ maxSplit: Int) -> [String] {
        guard let separator else {
            var parts: [String] = []
            var current: [Unicode.Scalar] = []
            var scalars = s.scalarArray[...]
            while let f = scalars.first, f.properties.isWhitespace { scalars.removeFirst() }
            while let c = scalars.first {
                scalars.removeFirst()
                if c.properties.isWhitespace {
                    parts.append(String(scalars: current))
                    current = []
                    while let f = scalars.first, f.properties.isWhitespace { scalars.removeFirst() }
                    if maxSplit >= 0 && parts.count == maxSplit {
                        if !scalars.isEmpty { parts.append(String(scalars: scalars)) }
                        return parts
                    }
                } else {
                    current.append(c)
                }
            }
            if !current.isEmpty { parts.append(String(scalars: current)) }
            return parts
        }
        let hay = Array(s.utf8), needle = Array(separator.utf8)
        var parts: [String] = []
        var from = 0
        while maxSplit < 0 || parts.count < maxSplit, let at = find(hay, needle, from: from) {
            parts.append(String(decoding: hay[from..<at], as: UTF8.self))
            from = at + needle.count
        }
        parts.append(String(decoding: hay[from...], as: UTF8.self))
        return parts
    }

    static func pythonRSplit(_ s: String, _ separator: String?, _ maxSplit: Int) -> [String] {
        guard maxSplit >= 0 else { return pythonSplit(s, separator, -1) }
        guard let separator else {
            let reversed = String(scalars: s.scalarArray.reversed())
            return pythonSplit(reversed, nil, maxSplit).map { String(scalars: $0.scalarArray.reversed()) }.reversed()
        }
        let all = pythonSplit(s, separator, -1)
        let keep = all.count - min(all.count - 1, maxSplit)
        return [all[..<keep].joined(separator: separator)] + all[keep...]
    }

    static func pythonReplace(_ s: String, _ old: String, _ new: String, _ count: Int?) -> String {
        let hay = Array(s.utf8), needle = Array(old.utf8)
        if needle.isEmpty {
            var out = new
            var n = 1
            for u in s.unicodeScalars {
                out.unicodeScalars.append(u)
                if count == nil || n < count! { out += new; n += 1 }
            }
            return count == 0 ? s : out
        }
        var out: [UInt8] = []
        var from = 0, done = 0
        while count == nil || done < count!, let at = find(hay, needle, from: from) {
            out.append(contentsOf: hay[from..<at])
            out.append(contentsOf: new.utf8)
            from = at + needle.count
            done += 1
        }
        out.append(contentsOf: hay[from...])
        return String(decoding: out, as: UTF8.self)
    }
}

extension JinjaValue {
    /// The text of a string argument, nil for none/undefined (Python's `chars=None`).
    var optionalText: String? {
        switch self {
        case .none, .undefined: return nil
        default: return text
        }
    }
}
