import Foundation

/// `namespace()` objects: the one mutable value, shared by reference as in Jinja.
final class JinjaNamespace {
    var fields: [(String, JinjaValue)]
    init(_ fields: [(String, JinjaValue)]) { self.fields = fields }
    subscript(name: String) -> JinjaValue? {
        get { fields.first { $0.0 == name }?.1 }
        set {
            if let k = fields.firstIndex(where: { $0.0 == name }) { fields[k].1 = newValue ?? .undefined(name) } else { fields.append((name, newValue ?? .undefined(name))) }
        }
    }
}

struct JinjaFunction {
    let name: String
    let call: ([JinjaValue], [(String, JinjaValue)]) throws(TokenizerError) -> JinjaValue
}

/// A value while rendering: Python's types as Jinja sees them.
enum JinjaValue {
    case undefined(String)
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case list([JinjaValue])
    case dict([(String, JinjaValue)])
    case namespace(JinjaNamespace)
    case function(JinjaFunction)

    init(_ json: OrderedJSON) {
        switch json {
        case .null: self = .none
        case .bool(let b): self = .bool(b)
        case .int(let i): self = .int(i)
        case .double(let d): self = .double(d)
        case .string(let s): self = .string(s)
        case .array(let a): self = .list(a.map(JinjaValue.init))
        case .object(let o): self = .dict(o.map { ($0.0, JinjaValue($0.1)) })
        }
    }

    var typeName: String {
        switch self {
        case .undefined: return "undefined"
        case .none: return "NoneType"
        case .bool: return "bool"
        case .int: return "int"
        case .double: return "float"
        case .string: return "str"
        case .list: return "list"
        case .dict: return "dict"
        case .namespace: return "Namespace"
        case .function: return "function"
        }
    }

    var isTrue: Bool {
        switch self {
        case .undefined, .none: return false
        case .bool(let b): return b
        case .int(let i): return i != 0
        case .double(let d): return d != 0
        case .string(let s): return !s.isEmpty
        case .list(let l): return !l.isEmpty
        case .dict(let d): return !d.isEmpty
        case .namespace, .function: return true
        }
    }

    var isUndefined: Bool { if case .undefined = self { return true } else { return false } }

    /// Python's `str()`.
    var text: String {
        switch self {
        case .undefined: return ""
        case .string(let s): return s
        default: return repr
        }
    }

    /// Python's `repr()`.
    var repr: String {
        switch self {
        case .undefined: return ""
        case .none: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let i): return String(i)
        case .double(let d): return d.isNaN ? "nan" : d.isInfinite ? (d < 0 ? "-inf" : "inf") : OrderedJSON.pythonFloat(d)
        case .string(let s): return Self.pythonRepr(s)
        case .list(let l): return "[" + l.map(\.repr).joined(separator: ", ") + "]"
        case .dict(let d): return "{" + d.map { Self.pythonRepr($0.0) + ": " + $0.1.repr }.joined(separator: ", ") + "}"
        case .namespace(let ns): return "<Namespace " + ns.fields.map { "\($0.0)=\($0.1.repr)" }.joined(separator: ", ") + ">"
        case .function(let f): return "<function \(f.name)>"
        }
    }

    static func pythonRepr(_ s: String) -> String {
        let quote: Character = s.contains("'") && !s.contains("\"") ? "\"" : "'"
        var out = String(quote)
        for u in s.unicodeScalars {
            switch u {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if Character(u) == quote { out += "\\" + String(quote) }
                else if u.value < 0x20 || u.value == 0x7F { out += String(format: "\\x%02x", u.value) }
                else { out.unicodeScalars.append(u) }
            }
        }
        out.append(quote)
        return out
    }

    /// For `tojson`; undefined values and functions cannot be serialised.
    func json() throws(TokenizerError) -> OrderedJSON {
        switch self {
        case .undefined(let name): throw TokenizerError("chat template: tojson of undefined value '\(name)'")
        case .none: return .null
        case .bool(let b): return .bool(b)
        case .int(let i): return .int(i)
        case .double(let d): return .double(d)
        case .string(let s): return .string(s)
        case .list(let l):
            var items: [OrderedJSON] = []
            for v in l { items.append(try v.json()) }
            return .array(items)
        case .dict(let d):
            var pairs: [(String, OrderedJSON)] = []
            for (k, v) in d { pairs.append((k, try v.json())) }
            return .object(pairs)
        case .namespace: throw TokenizerError("chat template: tojson of a namespace")
        case .function(let f): throw TokenizerError("chat template: tojson of function \(f.name)")
        }
    }

    static func equal(_ a: JinjaValue, _ b: JinjaValue) -> Bool {
        switch (a, b) {
        case (.undefined, .undefined), (.none, .none): return true
        case let (.string(x), .string(y)): return x.utf8.elementsEqual(y.utf8)
        case let (.list(x), .list(y)): return x.count == y.count && zip(x, y).allSatisfy { equal($0, $1) }
        case let (.dict(x), .dict(y)):
            return x.count == y.count && x.allSatisfy { pair in y.contains { $0.0.utf8.elementsEqual(pair.0.utf8) && equal($0.1, pair.1) } }
        case let (.namespace(x), .namespace(y)): return x === y
        default:
            if let x = a.number, let y = b.number { return x == y }
            return false
        }
    }

    /// Numeric value (bool counts as int, as in Python).
    var number: Double? {
        switch self {
        case .bool(let b): return b ? 1 : 0
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }

    var intLike: Int? {
        switch self {
        case .bool(let b): return b ? 1 : 0
        case .int(let i): return i
        default: return nil
        }
    }
}

extension String {
    /// Python-style code point access.
    var scalarArray: [Unicode.Scalar] { Array(unicodeScalars) }
    init(scalars: some Sequence<Unicode.Scalar>) {
        var v = String.UnicodeScalarView()
        v.append(contentsOf: scalars)
        self = String(v)
    }
}
