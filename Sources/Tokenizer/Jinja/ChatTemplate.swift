/// A Hugging Face chat template (the Jinja subset chat templates use), parsed once and rendered
/// the way transformers' `apply_chat_template(tokenize=False)` renders it.
public struct ChatTemplate: @unchecked Sendable {
    // Nodes hold closures-free values only; the tree is never mutated after parsing.
    private let nodes: [Node]
    public let source: String

    /// Parses `source`; constructs outside the supported subset are errors naming them and their position.
    public init(_ source: String) throws(TokenizerError) {
        var lexer = JinjaLexer(source: source)
        let segments = try lexer.segments()
        var parser = JinjaParser(segments: segments)
        nodes = try parser.parseTemplate()
        self.source = source
    }

    /// Renders with the given variables (`messages`, `tools`, `add_generation_prompt`, special
    /// tokens, extra flags such as `open_thinking`).
    public func render(_ variables: [String: OrderedJSON]) throws(TokenizerError) -> String {
        var interpreter = JinjaInterpreter(globals: variables.mapValues(JinjaValue.init))
        return try interpreter.render(nodes)
    }
}
