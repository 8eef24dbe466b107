import ArgumentParser

@main
struct MiniMindV: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "minimindv",
        abstract: "Run MiniMind-V vision-language models on the CPU.",
        discussion: """
            Convert a checkpoint once, then ask questions about images from the command line \
            or run the spool daemon that answers queued jobs into a SQLite database.
            """,
        version: "0.1.0",
        subcommands: [
            // One line per subcommand; each lives in its own file.
            Convert.self,
            Inspect.self,
            Tokenize.self,
            RenderTemplate.self,
            Preprocess.self,
            Serve.self,
            Submit.self,
            Results.self,
            Ask.self,
            Bench.self,
        ]
    )
}
