import ArgumentParser

struct Inspect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the metadata and tensors of a model or checkpoint file.")

    @Argument(help: "A .gguf, .safetensors, .pth or .bin file.")
    var file: String

    func run() async throws {
        throw ValidationError("inspect is not implemented yet")
    }
}
