import Foundation
import Testing
import TestSupport
@testable import Tokenizer

/// Renders written by Tools/tokenizer/make_template_vectors.py with transformers' apply_chat_template.
struct TemplateVector {
    let line: Int
    let template: String?
    let messages: [OrderedJSON]
    let tools: [OrderedJSON]?
    let addGenerationPrompt: Bool
    let flags: [String: OrderedJSON]
    let text: String?
    let error: String?

    static func load(_ name: String) throws -> [TemplateVector] {
        let url = Fixtures.packageRoot.appendingPathComponent("Tests/Data/tokenizer/\(name).jsonl")
        let lines = try String(contentsOf: url, encoding: .utf8).split(separator: "\n")
        return try lines.enumerated().dropFirst().map { n, line in
            let v = try OrderedJSON.parse(String(line))
            var flags: [String: OrderedJSON] = [:]
            if case .object(let pairs)? = v["kwargs"] { for (k, x) in pairs { flags[k] = x } }
            return TemplateVector(line: n + 1, template: v["template"]?.stringValue, messages: v["messages"]?.arrayValue ?? [],
                                  tools: v["tools"]?.arrayValue, addGenerationPrompt: v["add_generation_prompt"]?.boolValue ?? false,
                                  flags: flags, text: v["text"]?.stringValue, error: v["error"]?.stringValue)
        }
    }
}

@Suite struct ChatTemplateTests {
    func check(_ vectors: [TemplateVector], _ tokenizer: ModelTokenizer) throws {
        for v in vectors {
            var flags = v.flags
            let rendered: Result<String, TokenizerError>
            if let source = v.template {
                let template = try ChatTemplate(source)
                var variables = tokenizer.templateVariables
                for (k, x) in flags { variables[k] = x }
                variables["messages"] = .array(v.messages)
                variables["tools"] = v.tools.map { .array($0) } ?? .null
                variables["add_generation_prompt"] = .bool(v.addGenerationPrompt)
                rendered = Result { () throws(TokenizerError) in try template.render(variables) }
            } else {
                flags["documents"] = .null
                rendered = Result { () throws(TokenizerError) in
                    try tokenizer.renderChat(messages: v.messages, tools: v.tools, addGenerationPrompt: v.addGenerationPrompt, flags: flags)
                }
            }
            switch (rendered, v.text) {
            case (.success(let ours), let expected?):
                #expect(ours.utf8.elementsEqual(expected.utf8), "line \(v.line):\n\(ours.debugDescription)\nexpected\n\(expected.debugDescription)")
            case (.failure(let e), let expected?):
                Issue.record("line \(v.line): \(e) but transformers rendered \(expected.debugDescription.prefix(200))")
            case (.success(let ours), nil):
                Issue.record("line \(v.line): rendered \(ours.debugDescription.prefix(200)) but transformers failed: \(v.error ?? "")")
            case (.failure, nil):
                break  // both refuse
            }
        }
    }

    @Test(arguments: ["gen2", "gen3"])
    func generationTemplatesRenderByteIdenticallyToTransformers(generation: String) throws {
        let vectors = try TemplateVector.load("\(generation)-templates")
        #expect(vectors.filter { $0.text != nil }.count >= 30)
        if generation == "gen3" {
            #expect(vectors.contains { $0.tools != nil && $0.text != nil })
            #expect(vectors.contains { $0.flags["open_thinking"] == .bool(true) })
            #expect(vectors.contains { v in v.messages.contains { $0["content"]?.stringValue?.contains("<think>") == true } })
        }
        try check(vectors, SharedTokenizers.model(generation))
    }

    @Test func featuresBeyondTheShippedTemplatesRenderLikeTransformers() throws {
        let vectors = try TemplateVector.load("extra-templates")
        #expect(vectors.count >= 30)
        try check(vectors, SharedTokenizers.model("gen3"))
    }

    @Test func unsupportedConstructsAreNamedWithTheirPosition() throws {
        let cases: [(String, String)] = [
            ("{% macro greet(n) %}hi{% endmacro %}", "unsupported construct 'macro' at line 1, column 1"),
            ("a\n  {% include 'x.j2' %}", "unsupported construct 'include' at line 2, column 3"),
            ("{{ x | wordwrap(3) }}", "unsupported filter 'wordwrap' at line 1, column 6"),
            ("{% if x %}open", "missing {% endif %}"),
            ("{{ 'unterminated }}", "unterminated string at line 1, column 4"),
            ("{% for x in %}{% endfor %}", "expected an expression"),
            ("{{ x is prime }}", "unsupported test 'prime'"),
            ("{% endfor %}", "unexpected 'endfor'"),
            ("{{ a ]] }}", "unexpected ']'"),
        ]
        for (source, expected) in cases {
            do {
                let t = try ChatTemplate(source)
                _ = try t.render(["x": .int(1)])
                Issue.record("\(source.debugDescription) rendered without error")
            } catch {
                #expect(error.message.contains(expected), "\(source.debugDescription): \(error.message)")
            }
        }
    }

    @Test func raiseExceptionAndUndefinedAttributesAreErrorsNotRenders() throws {
        let raise = try ChatTemplate("{{ raise_exception('Only user and assistant roles') }}")
        #expect(throws: TokenizerError("chat template raised an exception: Only user and assistant roles at line 1, column 19")) { try raise.render([:]) }
        let undefined = try ChatTemplate("{{ message.content }}")
        #expect(throws: TokenizerError.self) { try undefined.render([:]) }
    }

    @Test func whitespaceControlFollowsTrimAndLstripBlocks() throws {
        let t = try ChatTemplate("A\n    {% if true %}\n  B\n    {%- endif %}\n{{- ' C ' -}}\n  D\n")
        #expect(try t.render([:]) == "A\n  B C D")
    }
}
