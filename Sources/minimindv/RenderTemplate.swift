import ArgumentParser
import Foundation
import Tokenizer

struct RenderTemplate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "render-template",
        abstract: "Render the chat template of a model, as transformers' apply_chat_template(tokenize=False) does.",
        discussion: """
            Reads {"messages": [...], "add_generation_prompt": bool, "tools": [...], ...extra flags} \
            (such as "open_thinking"): with --jsonl one object per stdin line, answered by one line \
            {"text"} or {"error"}; without, one object from all of stdin, answered by the raw text.
            """)

    @Option(help: "A .gguf model file, or a folder with tokenizer.json and tokenizer_config.json.")
    var tokenizer: String

    @Flag(help: "Read JSON Lines from stdin and write JSON Lines to stdout.")
    var jsonl = false

    func run() async throws {
        let model = try TokenizerSource.load(tokenizer)
        if jsonl {
            JSONLines.process { request in .object([("text", .string(try render(model, request)))]) }
            return
        }
        let input = FileHandle.standardInput.readDataToEndOfFile()
        let request = try OrderedJSON.parse(input)
        print(try render(model, request), terminator: "")
    }

    private func render(_ model: ModelTokenizer, _ request: OrderedJSON) throws -> String {
        guard case .object(let pairs) = request else { throw TokenizerError("the request must be a JSON object") }
        guard let messages = request["messages"]?.arrayValue else { throw TokenizerError("\"messages\" must be a list of messages") }
        var tools: [OrderedJSON]? = nil
        if let t = request["tools"], !t.isNull {
            guard let list = t.arrayValue else { throw TokenizerError("\"tools\" must be a list") }
            tools = list
        }
        var flags: [String: OrderedJSON] = [:]
        for (key, value) in pairs where !["messages", "tools", "add_generation_prompt"].contains(key) { flags[key] = value }
        let addGenerationPrompt = request["add_generation_prompt"]?.boolValue ?? false
        return try model.renderChat(messages: messages, tools: tools, addGenerationPrompt: addGenerationPrompt, flags: flags)
    }
}
