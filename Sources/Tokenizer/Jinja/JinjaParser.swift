indirect enum Expr {
    case literal(JinjaValue)
    case name(String, TemplatePosition)
    case list([Expr])
    case tuple([Expr])
    case dict([(Expr, Expr)])
    case attribute(Expr, String, TemplatePosition)
    case index(Expr, Expr, TemplatePosition)
    case slice(Expr, Expr?, Expr?, Expr?, TemplatePosition)
    case call(Expr, [Expr], [(String, Expr)], TemplatePosition)
    case filter(Expr, String, [Expr], [(String, Expr)], TemplatePosition)
    case test(Expr, String, [Expr], Bool, TemplatePosition)
    case unary(String, Expr, TemplatePosition)
    case binary(String, Expr, Expr, TemplatePosition)
    case and(Expr, Expr)
    case or(Expr, Expr)
    case conditional(Expr, Expr, Expr?)
}

indirect enum Node {
    case text(String)
    case output(Expr)
    case ifBlock([(Expr, [Node])], [Node]?)
    case forBlock(targets: [String], iterable: Expr, condition: Expr?, body: [Node], elseBody: [Node]?, position: TemplatePosition)
    case set(targets: [SetTarget], value: Expr, position: TemplatePosition)
    case setBlock(name: String, body: [Node])
    case breakLoop(TemplatePosition)
    case continueLoop(TemplatePosition)
}

enum SetTarget {
    case name(String)
    case attribute(String, String)
}

/// Builds the node tree of a lexed template; anything outside the supported subset is an error
/// that names the construct and where it is.
struct JinjaParser {
    private let segments: [TemplateSegment]
    private var index = 0

    init(segments: [TemplateSegment]) { self.segments = segments }

    static func error(_ message: String, _ position: TemplatePosition) -> TokenizerError {
        TokenizerError("chat template: \(message) at \(position)")
    }

    mutating func parseTemplate() throws(TokenizerError) -> [Node] {
        let (nodes, end) = try parseBody(until: [])
        if let (name, _, position) = end { throw Self.error("unexpected '\(name)'", position) }
        return nodes
    }

    /// Parses nodes until a statement whose keyword is in `until`; returns that statement's tokens.
    private mutating func parseBody(until: Set<String>) throws(TokenizerError) -> ([Node], (String, [LexedToken], TemplatePosition)?) {
        var nodes: [Node] = []
        while index < segments.count {
            let segment = segments[index]
            index += 1
            switch segment {
            case .text(let t):
                nodes.append(.text(t))
            case .output(let tokens, let position):
                var p = ExpressionParser(tokens: tokens, start: position)
                let e = try p.parseExpression()
                try p.expectEnd()
                nodes.append(.output(e))
            case .statement(let tokens, let position):
                guard case .name(let keyword)? = tokens.first?.token else { throw Self.error("expected a statement keyword", position) }
                if until.contains(keyword) { return (nodes, (keyword, tokens, position)) }
                nodes.append(contentsOf: try parseStatement(keyword, tokens, position))
            }
        }
        if !until.isEmpty {
            throw TokenizerError("chat template: missing {% \(until.sorted().first { $0.hasPrefix("end") } ?? until.sorted()[0]) %} at the end of the template")
        }
        return (nodes, nil)
    }

    private mutating func parseStatement(_ keyword: String, _ tokens: [LexedToken], _ position: TemplatePosition) throws(TokenizerError) -> [Node] {
        var p = ExpressionParser(tokens: Array(tokens.dropFirst()), start: position)
        switch keyword {
        case "if":
            var branches: [(Expr, [Node])] = []
            var condition = try p.parseExpression()
            try p.expectEnd()
            while true {
                let (body, end) = try parseBody(until: ["elif", "else", "endif"])
                branches.append((condition, body))
                guard let (kw, endTokens, endPosition) = end else { throw Self.error("missing endif", position) }
                switch kw {
                case "elif":
                    var q = ExpressionParser(tokens: Array(endTokens.dropFirst()), start: endPosition)
                    condition = try q.parseExpression()
                    try q.expectEnd()
                case "else":
                    let (elseBody, end2) = try parseBody(until: ["endif"])
                    guard end2 != nil else { throw Self.error("missing endif", position) }
                    return [.ifBlock(branches, elseBody)]
                default:
                    return [.ifBlock(branches, nil)]
                }
            }
        case "for":
            var targets: [String] = []
            repeat {
                targets.append(try p.expectName())
            } while p.accept(.op(","))
            try p.expectKeyword("in")
            let iterable = try p.parseExpression(allowConditional: false)
            var condition: Expr? = nil
            if p.accept(.name("if")) { condition = try p.parseExpression() }
            if p.accept(.name("recursive")) { throw Self.error("unsupported construct 'recursive' loop", position) }
            try p.expectEnd()
            let (body, end) = try parseBody(until: ["else", "endfor"])
            var elseBody: [Node]? = nil
            if end?.0 == "else" {
                let (e, end2) = try parseBody(until: ["endfor"])
                guard end2 != nil else { throw Self.error("missing endfor", position) }
                elseBody = e
            }
            return [.forBlock(targets: targets, iterable: iterable, condition: condition, body: body, elseBody: elseBody, position: position)]
        case "set":
            var targets: [SetTarget] = []
            repeat {
                let name = try p.expectName()
                if p.accept(.op(".")) {
                    targets.append(.attribute(name, try p.expectName()))
                } else {
                    targets.append(.name(name))
                }
            } while p.accept(.op(","))
            if p.atEnd {
                guard targets.count == 1, case .name(let name) = targets[0] else { throw Self.error("block set needs one plain name", position) }
                let (body, end) = try parseBody(until: ["endset"])
                guard end != nil else { throw Self.error("missing endset", position) }
                return [.setBlock(name: name, body: body)]
            }
            try p.expectOp("=")
            let value = try p.parseTupleOrExpression()
            try p.expectEnd()
            return [.set(targets: targets, value: value, position: position)]
        case "break":
            try p.expectEnd()
            return [.breakLoop(position)]
        case "continue":
            try p.expectEnd()
            return [.continueLoop(position)]
        case "generation":
            // transformers' AssistantTracker: renders its body unchanged.
            try p.expectEnd()
            let (body, end) = try parseBody(until: ["endgeneration"])
            guard end != nil else { throw Self.error("missing endgeneration", position) }
            return body
        case "elif", "else", "endif", "endfor", "endset", "endgeneration":
            throw Self.error("unexpected '\(keyword)'", position)
        default:
            throw Self.error("unsupported construct '\(keyword)'", position)
        }
    }
}

struct ExpressionParser {
    private let tokens: [LexedToken]
    private var i = 0
    private let start: TemplatePosition

    init(tokens: [LexedToken], start: TemplatePosition) {
        self.tokens = tokens
        self.start = start
    }

    var atEnd: Bool { i >= tokens.count }
    private var here: TemplatePosition { i < tokens.count ? tokens[i].position : (tokens.last?.position ?? start) }
    private var peek: JinjaToken? { i < tokens.count ? tokens[i].token : nil }

    private func error(_ message: String) -> TokenizerError { JinjaParser.error(message, here) }

    mutating func accept(_ t: JinjaToken) -> Bool {
        if peek == t { i += 1; return true }
        return false
    }

    mutating func expectOp(_ op: String) throws(TokenizerError) {
        guard accept(.op(op)) else { throw error("expected '\(op)'\(describePeek())") }
    }

    mutating func expectKeyword(_ word: String) throws(TokenizerError) {
        guard accept(.name(word)) else { throw error("expected '\(word)'\(describePeek())") }
    }

    mutating func expectName() throws(TokenizerError) -> String {
        guard case .name(let n)? = peek else { throw error("expected a name\(describePeek())") }
        i += 1
        return n
    }

    mutating func expectEnd() throws(TokenizerError) {
        guard atEnd else { throw error("unexpected \(describe(tokens[i].token))") }
    }

    private func describePeek() -> String { peek.map { ", found \(describe($0))" } ?? ", found the end of the tag" }

    private func describe(_ t: JinjaToken) -> String {
        switch t {
        case .name(let n): return "'\(n)'"
        case .string: return "a string"
        case .int(let v): return "\(v)"
        case .float(let v): return "\(v)"
        case .op(let o): return "'\(o)'"
        }
    }

    mutating func parseTupleOrExpression() throws(TokenizerError) -> Expr {
        let first = try parseExpression()
        guard peek == .op(",") else { return first }
        var items = [first]
        while accept(.op(",")) {
            if atEnd { break }
            items.append(try parseExpression())
        }
        return .tuple(items)
    }

    mutating func parseExpression(allowConditional: Bool = true) throws(TokenizerError) -> Expr {
        let value = try parseOr()
        guard allowConditional, accept(.name("if")) else { return value }
        let condition = try parseOr()
        var otherwise: Expr? = nil
        if accept(.name("else")) { otherwise = try parseExpression() }
        return .conditional(condition, value, otherwise)
    }

    private mutating func parseOr() throws(TokenizerError) -> Expr {
        var left = try parseAnd()
        while accept(.name("or")) { left = .or(left, try parseAnd()) }
        return left
    }

    private mutating func parseAnd() throws(TokenizerError) -> Expr {
        var left = try parseNot()
        while accept(.name("and")) { left = .and(left, try parseNot()) }
        return left
    }

    private mutating func parseNot() throws(TokenizerError) -> Expr {
        let position = here
        if accept(.name("not")) { return .unary("not", try parseNot(), position) }
        return try parseCompare()
    }

    private mutating func parseCompare() throws(TokenizerError) -> Expr {
        var left = try parseMath1()
        while true {
            let position = here
            if case .op(let o)? = peek, ["==", "!=", "<", ">", "<=", ">="].contains(o) {
                i += 1
                left = .binary(o, left, try parseMath1(), position)
            } else if accept(.name("in")) {
                left = .binary("in", left, try parseMath1(), position)
            } else if peek == .name("not"), i + 1 < tokens.count, tokens[i + 1].token == .name("in") {
                i += 2
                left = .binary("not in", left, try parseMath1(), position)
            } else {
                return left
            }
        }
    }

    private mutating func parseMath1() throws(TokenizerError) -> Expr {
        var left = try parseConcat()
        while case .op(let o)? = peek, o == "+" || o == "-" {
            let position = here
            i += 1
            left = .binary(o, left, try parseConcat(), position)
        }
        return left
    }

    private mutating func parseConcat() throws(TokenizerError) -> Expr {
        var left = try parseMath2()
        while peek == .op("~") {
            let position = here
            i += 1
            left = .binary("~", left, try parseMath2(), position)
        }
        return left
    }

    private mutating func parseMath2() throws(TokenizerError) -> Expr {
        var left = try parsePow()
        while case .op(let o)? = peek, ["*", "/", "//", "%"].contains(o) {
            let position = here
            i += 1
            left = .binary(o, left, try parsePow(), position)
        }
        return left
    }

    private mutating func parsePow() throws(TokenizerError) -> Expr {
        var left = try parseUnary(withFilter: true)
        while peek == .op("**") {
            let position = here
            i += 1
            left = .binary("**", left, try parseUnary(withFilter: true), position)
        }
        return left
    }

    private mutating func parseUnary(withFilter: Bool) throws(TokenizerError) -> Expr {
        let position = here
        var node: Expr
        if accept(.op("-")) {
            node = .unary("-", try parseUnary(withFilter: false), position)
        } else if accept(.op("+")) {
            node = .unary("+", try parseUnary(withFilter: false), position)
        } else {
            node = try parsePrimary()
        }
        node = try parsePostfix(node)
        if withFilter { node = try parseFilterExpr(node) }
        return node
    }

    private mutating func parsePrimary() throws(TokenizerError) -> Expr {
        let position = here
        guard let t = peek else { throw error("expected an expression, found the end of the tag") }
        i += 1
        switch t {
        case .name(let n):
            switch n {
            case "true", "True": return .literal(.bool(true))
            case "false", "False": return .literal(.bool(false))
            case "none", "None": return .literal(.none)
            default: return .name(n, position)
            }
        case .string(var s):
            while case .string(let more)? = peek { s += more; i += 1 }
            return .literal(.string(s))
        case .int(let v): return .literal(.int(v))
        case .float(let v): return .literal(.double(v))
        case .op("("):
            if accept(.op(")")) { return .tuple([]) }
            let first = try parseExpression()
            if accept(.op(")")) { return first }
            var items = [first]
            while accept(.op(",")) {
                if peek == .op(")") { break }
                items.append(try parseExpression())
            }
            try expectOp(")")
            return .tuple(items)
        case .op("["):
            var items: [Expr] = []
            while !accept(.op("]")) {
                if !items.isEmpty { try expectOp(","); if accept(.op("]")) { break } }
                items.append(try parseExpression())
            }
            return .list(items)
        case .op("{"):
            var pairs: [(Expr, Expr)] = []
            while !accept(.op("}")) {
                if !pairs.isEmpty { try expectOp(","); if accept(.op("}")) { break } }
                let key = try parseExpression()
                try expectOp(":")
                pairs.append((key, try parseExpression()))
            }
            return .dict(pairs)
        default:
            i -= 1
            throw error("unexpected \(describe(t))")
        }
    }

    private mutating func parsePostfix(_ base: Expr) throws(TokenizerError) -> Expr {
        var node = base
        while true {
            let position = here
            if accept(.op(".")) {
                switch peek {
                case .name(let n)?: i += 1; node = .attribute(node, n, position)
                case .int(let v)?: i += 1; node = .index(node, .literal(.int(v)), position)
                default: throw error("expected an attribute name after '.'")
                }
            } else if accept(.op("[")) {
                node = try parseSubscript(node, position)
            } else if peek == .op("(") {
                i += 1
                let (args, kwargs) = try parseCallArguments()
                node = .call(node, args, kwargs, position)
            } else {
                return node
            }
        }
    }

    private mutating func parseSubscript(_ base: Expr, _ position: TemplatePosition) throws(TokenizerError) -> Expr {
        var parts: [Expr?] = [nil]
        var isSlice = false
        while !accept(.op("]")) {
            if accept(.op(":")) {
                isSlice = true
                parts.append(nil)
                guard parts.count <= 3 else { throw error("too many ':' in slice") }
                continue
            }
            guard parts[parts.count - 1] == nil else { throw error("expected ']'") }
            parts[parts.count - 1] = try parseExpression()
        }
        if !isSlice {
            guard let index = parts[0] else { throw error("empty subscript") }
            return .index(base, index, position)
        }
        while parts.count < 3 { parts.append(nil) }
        return .slice(base, parts[0], parts[1], parts[2], position)
    }

    private mutating func parseCallArguments() throws(TokenizerError) -> ([Expr], [(String, Expr)]) {
        var args: [Expr] = []
        var kwargs: [(String, Expr)] = []
        while !accept(.op(")")) {
            if !(args.isEmpty && kwargs.isEmpty) { try expectOp(","); if accept(.op(")")) { break } }
            if case .name(let n)? = peek, i + 1 < tokens.count, tokens[i + 1].token == .op("=") {
                i += 2
                kwargs.append((n, try parseExpression()))
            } else {
                if peek == .op("*") || peek == .op("**") { throw error("unsupported construct '*args'/'**kwargs' in a call") }
                args.append(try parseExpression())
            }
        }
        return (args, kwargs)
    }

    private mutating func parseFilterExpr(_ base: Expr) throws(TokenizerError) -> Expr {
        var node = base
        while true {
            let position = here
            if accept(.op("|")) {
                var name = try expectName()
                while accept(.op(".")) { name += "." + (try expectName()) }
                var args: [Expr] = [], kwargs: [(String, Expr)] = []
                if accept(.op("(")) { (args, kwargs) = try parseCallArguments() }
                node = .filter(node, name, args, kwargs, position)
                node = try parsePostfix(node)
            } else if accept(.name("is")) {
                let negated = accept(.name("not"))
                var name = try expectName()
                while accept(.op(".")) { name += "." + (try expectName()) }
                var args: [Expr] = []
                if accept(.op("(")) {
                    let (a, _) = try parseCallArguments()
                    args = a
                } else if let t = peek, Self.startsTestArgument(t) {
                    args = [try parsePrimaryWithPostfix()]
                }
                node = .test(node, name, args, negated, position)
            } else {
                return node
            }
        }
    }

    private mutating func parsePrimaryWithPostfix() throws(TokenizerError) -> Expr {
        try parsePostfix(try parsePrimary())
    }

    private static func startsTestArgument(_ t: JinjaToken) -> Bool {
        switch t {
        case .string, .int, .float: return true
        case .op(let o): return o == "[" || o == "{" || o == "("
        case .name(let n): return !["else", "or", "and", "is", "in", "if", "not"].contains(n)
        }
    }
}
