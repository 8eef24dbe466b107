import Foundation

private enum LoopSignal { case none, breakLoop, continueLoop }

/// Renders a parsed template. Scoping follows Jinja: a `for` body has its own scope per iteration
/// (assignments there do not leak out), `if` does not; `namespace()` objects are shared.
struct JinjaInterpreter {
    private var scopes: [[String: JinjaValue]]
    private var output = ""

    init(globals: [String: JinjaValue]) {
        scopes = [Self.builtins, globals]
    }

    static func error(_ message: String, _ position: TemplatePosition? = nil) -> TokenizerError {
        TokenizerError("chat template: \(message)" + (position.map { " at \($0)" } ?? ""))
    }

    mutating func render(_ nodes: [Node]) throws(TokenizerError) -> String {
        scopes.append([:])
        _ = try run(nodes)
        return output
    }

    private func lookup(_ name: String) -> JinjaValue {
        for scope in scopes.reversed() { if let v = scope[name] { return v } }
        return .undefined(name)
    }

    private mutating func assign(_ name: String, _ value: JinjaValue) { scopes[scopes.count - 1][name] = value }

    private mutating func run(_ nodes: [Node]) throws(TokenizerError) -> LoopSignal {
        for node in nodes {
            switch node {
            case .text(let t):
                output += t
            case .output(let e):
                output += try eval(e).text
            case .ifBlock(let branches, let elseBody):
                var taken = false
                for (condition, body) in branches where try eval(condition).isTrue {
                    taken = true
                    let s = try run(body)
                    if s != .none { return s }
                    break
                }
                if !taken, let elseBody {
                    let s = try run(elseBody)
                    if s != .none { return s }
                }
            case .forBlock(let targets, let iterable, let condition, let body, let elseBody, let position):
                try runFor(targets, iterable, condition, body, elseBody, position)
            case .set(let targets, let valueExpr, let position):
                let value = try eval(valueExpr)
                if targets.count == 1 {
                    try assignTarget(targets[0], value, position)
                } else {
                    let items = try iterate(value, position)
                    guard items.count == targets.count else {
                        throw Self.error("cannot unpack \(items.count) values into \(targets.count) names", position)
                    }
                    for (t, v) in zip(targets, items) { try assignTarget(t, v, position) }
                }
            case .setBlock(let name, let body):
                let saved = output
                output = ""
                _ = try run(body)
                let captured = output
                output = saved
                assign(name, .string(captured))
            case .breakLoop:
                return .breakLoop
            case .continueLoop:
                return .continueLoop
            }
        }
        return .none
    }

    private mutating func assignTarget(_ target: SetTarget, _ value: JinjaValue, _ position: TemplatePosition) throws(TokenizerError) {
        switch target {
        case .name(let n):
            assign(n, value)
        case .attribute(let object, let field):
            guard case .namespace(let ns) = lookup(object) else {
                throw Self.error("cannot assign attribute '\(field)' on '\(object)', which is not a namespace", position)
            }
            ns[field] = value
        }
    }

    private mutating func runFor(_ targets: [String], _ iterableExpr: Expr, _ condition: Expr?, _ body: [Node], _ elseBody: [Node]?,
                                 _ position: TemplatePosition) throws(TokenizerError) {
        var items = try iterate(try eval(iterableExpr), position)
        if let condition {
            var kept: [JinjaValue] = []
            for item in items {
                scopes.append([:])
                try bindTargets(targets, item, position)
                let keep = try eval(condition).isTrue
                scopes.removeLast()
                if keep { kept.append(item) }
            }
            items = kept
        }
        if items.isEmpty {
            if let elseBody { _ = try run(elseBody) }
            return
        }
        let count = items.count
        for (k, item) in items.enumerated() {
            let loop: [(String, JinjaValue)] = [
                ("index", .int(k + 1)), ("index0", .int(k)), ("revindex", .int(count - k)), ("revindex0", .int(count - k - 1)),
                ("first", .bool(k == 0)), ("last", .bool(k == count - 1)), ("length", .int(count)),
                ("previtem", k > 0 ? items[k - 1] : .undefined("previtem")),
                ("nextitem", k + 1 < count ? items[k + 1] : .undefined("nextitem")),
            ]
            scopes.append(["loop": .dict(loop)])
            defer { scopes.removeLast() }
            try bindTargets(targets, item, position)
            let signal = try run(body)
            if signal == .breakLoop { break }
        }
    }

    private mutating func bindTargets(_ targets: [String], _ item: JinjaValue, _ position: TemplatePosition) throws(TokenizerError) {
        if targets.count == 1 {
            assign(targets[0], item)
            return
        }
        let parts = try iterate(item, position)
        guard parts.count == targets.count else {
            throw Self.error("cannot unpack \(parts.count) values into \(targets.count) loop variables", position)
        }
        for (t, v) in zip(targets, parts) { assign(t, v) }
    }

    func iterate(_ value: JinjaValue, _ position: TemplatePosition) throws(TokenizerError) -> [JinjaValue] {
        switch value {
        case .undefined: return []
        case .list(let l): return l
        case .dict(let d): return d.map { .string($0.0) }
        case .string(let s): return s.unicodeScalars.map { .string(String(scalars: [$0])) }
        default: throw Self.error("'\(value.typeName)' object is not iterable", position)
        }
    }

    // MARK: expressions

    private mutating func eval(_ e: Expr) throws(TokenizerError) -> JinjaValue {
        switch e {
        case .literal(let v): return v
        case .name(let n, _): return lookup(n)
        case .list(let items):
            var out: [JinjaValue] = []
            for item in items { out.append(try eval(item)) }
            return .list(out)
        case .tuple(let items):
            var out: [JinjaValue] = []
            for item in items { out.append(try eval(item)) }
            return .list(out)
        case .dict(let pairs):
            var out: [(String, JinjaValue)] = []
            for (k, v) in pairs {
                let key = try eval(k)
                let value = try eval(v)
                let name = key.text
                if let idx = out.firstIndex(where: { $0.0 == name }) { out[idx].1 = value } else { out.append((name, value)) }
            }
            return .dict(out)
        case .attribute(let base, let name, let position):
            return try Self.attribute(try eval(base), name, position)
        case .index(let base, let index, let position):
            return try Self.item(try eval(base), try eval(index), position)
        case .slice(let base, let a, let b, let c, let position):
            let value = try eval(base)
            let start = try a.map { x throws(TokenizerError) in try eval(x) }
            let stop = try b.map { x throws(TokenizerError) in try eval(x) }
            let step = try c.map { x throws(TokenizerError) in try eval(x) }
            return try Self.slice(value, start, stop, step, position)
        case .call(let callee, let argExprs, let kwargExprs, let position):
            let f = try eval(callee)
            var args: [JinjaValue] = []
            for a in argExprs { args.append(try eval(a)) }
            var kwargs: [(String, JinjaValue)] = []
            for (k, v) in kwargExprs { kwargs.append((k, try eval(v))) }
            guard case .function(let fn) = f else {
                if case .undefined(let n) = f { throw Self.error("'\(n)' is undefined and cannot be called", position) }
                throw Self.error("'\(f.typeName)' object is not callable", position)
            }
            do { return try fn.call(args, kwargs) } catch { throw Self.located(error, position) }
        case .filter(let base, let name, let argExprs, let kwargExprs, let position):
            let value = try eval(base)
            var args: [JinjaValue] = []
            for a in argExprs { args.append(try eval(a)) }
            var kwargs: [(String, JinjaValue)] = []
            for (k, v) in kwargExprs { kwargs.append((k, try eval(v))) }
            do { return try JinjaBuiltins.filter(name, value, args, kwargs, position) } catch { throw Self.located(error, position) }
        case .test(let base, let name, let argExprs, let negated, let position):
            let value = try eval(base)
            var args: [JinjaValue] = []
            for a in argExprs { args.append(try eval(a)) }
            let result = try JinjaBuiltins.test(name, value, args, position)
            return .bool(negated ? !result : result)
        case .unary(let op, let operand, let position):
            let v = try eval(operand)
            switch op {
            case "not": return .bool(!v.isTrue)
            case "-":
                switch v {
                case .int(let i): return .int(-i)
                case .double(let d): return .double(-d)
                case .bool(let b): return .int(b ? -1 : 0)
                default: throw Self.error("bad operand type for unary -: '\(v.typeName)'", position)
                }
            default:
                guard v.number != nil else { throw Self.error("bad operand type for unary +: '\(v.typeName)'", position) }
                return v
            }
        case .binary(let op, let l, let r, let position):
            return try Self.binary(op, try eval(l), try eval(r), position)
        case .and(let l, let r):
            let left = try eval(l)
            return left.isTrue ? try eval(r) : left
        case .or(let l, let r):
            let left = try eval(l)
            return left.isTrue ? left : try eval(r)
        case .conditional(let condition, let value, let otherwise):
            if try eval(condition).isTrue { return try eval(value) }
            return try otherwise.map { x throws(TokenizerError) in try eval(x) } ?? .undefined("conditional")
        }
    }

    private static func located(_ error: TokenizerError, _ position: TemplatePosition) -> TokenizerError {
        error.message.contains(" at line ") ? error : TokenizerError(error.message + " at \(position)")
    }

    static func attribute(_ value: JinjaValue, _ name: String, _ position: TemplatePosition) throws(TokenizerError) -> JinjaValue {
        switch value {
        case .undefined(let n):
            throw error("'\(n)' is undefined (reading its attribute '\(name)')", position)
        case .dict(let d):
            if let method = JinjaBuiltins.method(value, name) { return method }
            return d.first { $0.0 == name }?.1 ?? .undefined(name)
        case .namespace(let ns):
            return ns[name] ?? .undefined(name)
        default:
            return JinjaBuiltins.method(value, name) ?? .undefined(name)
        }
    }

    static func item(_ value: JinjaValue, _ index: JinjaValue, _ position: TemplatePosition) throws(TokenizerError) -> JinjaValue {
        switch value {
        case .undefined(let n):
            throw error("'\(n)' is undefined (reading its item \(index.repr))", position)
        case .dict(let d):
            if case .string(let key) = index {
                if let v = d.first(where: { $0.0 == key })?.1 { return v }
                return JinjaBuiltins.method(value, key) ?? .undefined(key)
            }
            return .undefined(index.text)
        case .list(let l):
            guard let i = index.intLike else {
                if case .string(let key) = index { return JinjaBuiltins.method(value, key) ?? .undefined(key) }
                throw error("list indices must be integers, not \(index.typeName)", position)
            }
            let k = i < 0 ? l.count + i : i
            return k >= 0 && k < l.count ? l[k] : .undefined("[\(i)]")
        case .string(let s):
            guard let i = index.intLike else {
                if case .string(let key) = index { return JinjaBuiltins.method(value, key) ?? .undefined(key) }
                throw error("string indices must be integers", position)
            }
            let scalars = s.scalarArray
            let k = i < 0 ? scalars.count + i : i
            return k >= 0 && k < scalars.count ? .string(String(scalars: [scalars[k]])) : .undefined("[\(i)]")
        case .namespace(let ns):
            return ns[index.text] ?? .undefined(index.text)
        default:
            if case .string(let key) = index { return attributeOrUndefined(value, key) }
            return .undefined(index.text)
        }
    }

    private static func attributeOrUndefined(_ value: JinjaValue, _ name: String) -> JinjaValue {
        JinjaBuiltins.method(value, name) ?? .undefined(name)
    }

    static func slice(_ value: JinjaValue, _ start: JinjaValue?, _ stop: JinjaValue?, _ step: JinjaValue?,
                      _ position: TemplatePosition) throws(TokenizerError) -> JinjaValue {
        func bound(_ v: JinjaValue?) throws(TokenizerError) -> Int? {
            guard let v, !(v.isUndefined), !(v.isNone) else { return nil }
            guard let i = v.intLike else { throw error("slice indices must be integers", position) }
            return i
        }
        let stepValue = try bound(step) ?? 1
        guard stepValue != 0 else { throw error("slice step cannot be zero", position) }
        func pick(_ count: Int) throws(TokenizerError) -> [Int] {
            func clamp(_ i: Int?, _ defaultValue: Int, _ lower: Int, _ upper: Int) -> Int {
                guard var i else { return defaultValue }
                if i < 0 { i += count }
                return Swift.min(Swift.max(i, lower), upper)
            }
            var indices: [Int] = []
            if stepValue > 0 {
                var i = clamp(try bound(start), 0, 0, count)
                let end = clamp(try bound(stop), count, 0, count)
                while i < end { indices.append(i); i += stepValue }
            } else {
                var i = clamp(try bound(start), count - 1, -1, count - 1)
                let end = clamp(try bound(stop), -1, -1, count - 1)
                while i > end { indices.append(i); i += stepValue }
            }
            return indices
        }
        switch value {
        case .list(let l): return .list(try pick(l.count).map { l[$0] })
        case .string(let s):
            let scalars = s.scalarArray
            return .string(String(scalars: try pick(scalars.count).map { scalars[$0] }))
        case .undefined(let n): throw error("'\(n)' is undefined (slicing it)", position)
        default: throw error("'\(value.typeName)' object cannot be sliced", position)
        }
    }

    static func binary(_ op: String, _ a: JinjaValue, _ b: JinjaValue, _ position: TemplatePosition) throws(TokenizerError) -> JinjaValue {
        switch op {
        case "==": return .bool(JinjaValue.equal(a, b))
        case "!=": return .bool(!JinjaValue.equal(a, b))
        case "<", ">", "<=", ">=":
            let order = try compare(a, b, op, position)
            switch op {
            case "<": return .bool(order < 0)
            case ">": return .bool(order > 0)
            case "<=": return .bool(order <= 0)
            default: return .bool(order >= 0)
            }
        case "in": return .bool(try contains(b, a, position))
        case "not in": return .bool(!(try contains(b, a, position)))
        case "~": return .string(a.text + b.text)
        default: break
        }
        if case .undefined(let n) = a { throw error("'\(n)' is undefined (operand of '\(op)')", position) }
        if case .undefined(let n) = b { throw error("'\(n)' is undefined (operand of '\(op)')", position) }
        switch (op, a, b) {
        case ("+", .string(let x), .string(let y)): return .string(x + y)
        case ("+", .list(let x), .list(let y)): return .list(x + y)
        case ("*", .string(let s), _) where b.intLike != nil:
            return .string(String(repeating: s, count: Swift.max(0, b.intLike ?? 0)))
        case ("*", _, .string(let s)) where a.intLike != nil:
            return .string(String(repeating: s, count: Swift.max(0, a.intLike ?? 0)))
        case ("*", .list(let l), _) where b.intLike != nil:
            return .list(Array(repeating: l, count: Swift.max(0, b.intLike ?? 0)).flatMap { $0 })
        default: break
        }
        if let x = a.intLike, let y = b.intLike {
            switch op {
            case "+": return .int(x &+ y)
            case "-": return .int(x &- y)
            case "*": return .int(x &* y)
            case "/":
                guard y != 0 else { throw error("division by zero", position) }
                return .double(Double(x) / Double(y))
            case "//":
                guard y != 0 else { throw error("integer division by zero", position) }
                let q = x / y
                return .int((x % y != 0 && (x < 0) != (y < 0)) ? q - 1 : q)
            case "%":
                guard y != 0 else { throw error("modulo by zero", position) }
                let r = x % y
                return .int(r != 0 && (r < 0) != (y < 0) ? r + y : r)
            case "**":
                guard y >= 0 else { return .double(pow(Double(x), Double(y))) }
                var result = 1
                for _ in 0..<y { result = result &* x }
                return .int(result)
            default: break
            }
        }
        if let x = a.number, let y = b.number {
            switch op {
            case "+": return .double(x + y)
            case "-": return .double(x - y)
            case "*": return .double(x * y)
            case "/":
                guard y != 0 else { throw error("division by zero", position) }
                return .double(x / y)
            case "//":
                guard y != 0 else { throw error("division by zero", position) }
                return .double((x / y).rounded(.down))
            case "%":
                guard y != 0 else { throw error("modulo by zero", position) }
                let r = fmod(x, y)
                return .double(r != 0 && (r < 0) != (y < 0) ? r + y : r)
            case "**": return .double(pow(x, y))
            default: break
            }
        }
        throw error("unsupported operand types for \(op): '\(a.typeName)' and '\(b.typeName)'", position)
    }

    static func compare(_ a: JinjaValue, _ b: JinjaValue, _ op: String, _ position: TemplatePosition) throws(TokenizerError) -> Int {
        if let x = a.number, let y = b.number { return x < y ? -1 : x > y ? 1 : 0 }
        if case .string(let x) = a, case .string(let y) = b {
            if x.unicodeScalars.elementsEqual(y.unicodeScalars) { return 0 }
            return x.unicodeScalars.lexicographicallyPrecedes(y.unicodeScalars) ? -1 : 1
        }
        if case .list(let x) = a, case .list(let y) = b {
            for (p, q) in zip(x, y) where !JinjaValue.equal(p, q) { return try compare(p, q, op, position) }
            return x.count < y.count ? -1 : x.count > y.count ? 1 : 0
        }
        throw error("'\(op)' not supported between '\(a.typeName)' and '\(b.typeName)'", position)
    }

    static func contains(_ container: JinjaValue, _ item: JinjaValue, _ position: TemplatePosition) throws(TokenizerError) -> Bool {
        switch container {
        case .string(let s):
            guard case .string(let needle) = item else { throw error("'in <string>' requires string as left operand, not \(item.typeName)", position) }
            return JinjaBuiltins.find(Array(s.utf8), Array(needle.utf8), from: 0) != nil
        case .list(let l): return l.contains { JinjaValue.equal($0, item) }
        case .dict(let d): return d.contains { JinjaValue.equal(.string($0.0), item) }
        case .namespace(let ns): return ns[item.text] != nil
        case .undefined(let n): throw error("'\(n)' is undefined (right operand of 'in')", position)
        default: throw error("argument of type '\(container.typeName)' is not iterable", position)
        }
    }

    static var builtins: [String: JinjaValue] { JinjaBuiltins.globals }
}

extension JinjaValue {
    var isNone: Bool { if case .none = self { return true } else { return false } }
}
