import ArgumentParser
import Conversion
import Foundation
import Formats

/// Set from the SIGINT/SIGTERM handler; the progress callback turns it into a cancellation,
/// which removes the partial output.
nonisolated(unsafe) private var conversionInterrupted: sig_atomic_t = 0

struct Convert: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert a MiniMind-V checkpoint, its vision encoder and tokenizer into one GGUF model file.",
        discussion: """
            Inputs as users have them: a trainer .pth (gen2 + CLIP folder, or gen3 + SigLIP2 folder), \
            or a transformers-format folder (config.json + pytorch_model.bin or model.safetensors) \
            with its vision folder. --tokenizer defaults to the checkpoint's folder.
            --type sets the weight matrices' type; norms, biases, position and class embeddings \
            stay f32. q8_0 applies to linear-layer matrices (and the embedding) whose rows are a \
            multiple of 32 long; the patch-embedding kernel, the MoE router and other matrices are f16.
            q4_0 is q8_0 with the decoder blocks' linear layers (attention, FFN, experts) in 4-bit Q4_0: \
            decode reads 45% fewer bytes per token and runs about 1.4-1.8x faster at batch 1 (1.2-1.4x \
            at batch 8); the embedding, output head, vision encoder and projector stay q8_0 (the file \
            shrinks by about a quarter). It costs accuracy: a 4-bit rounding step is 16 times q8_0's; \
            on the test fixtures' small decoders the first-token logits moved by half their largest \
            value (q8_0: 5-8%) and greedy answers differ from the float model's. See README, \
            "Quantisation types".
            """)

    @Option(help: "A .pth/.bin/.safetensors file or a transformers-format folder.")
    var checkpoint: String

    @Option(help: "The vision encoder folder (CLIP ViT-B/16 for gen2, SigLIP2 for gen3).")
    var vision: String?

    @Option(help: "Folder with tokenizer.json and tokenizer_config.json (default: the checkpoint's folder).")
    var tokenizer: String?

    @Option(help: "An LLM config.json, for a .pth whose sizes the tensors do not fix (default: config.json beside the checkpoint).")
    var config: String?

    @Option(help: "Weight type: f32, f16, bf16, q8_0 or q4_0 (4-bit decoder weights: fastest decode, least accurate).")
    var type: String = "f16"

    @Option(help: "The .gguf file to write.")
    var output: String

    func run() async throws {
        let outputType: OutputType
        do { outputType = try OutputType(parsing: type) } catch { throw ValidationError(error.message) }
        let onTerminal = isatty(STDERR_FILENO) == 1
        signal(SIGINT) { _ in conversionInterrupted = 1 }
        signal(SIGTERM) { _ in conversionInterrupted = 1 }
        var bar = ProgressBar(enabled: onTerminal)
        do {
            let report = try Converter.convert(
                checkpoint: checkpoint, vision: vision, tokenizer: tokenizer, config: config,
                type: outputType, output: output
            ) { written, total in
                if conversionInterrupted != 0 {
                    throw FormatError(.io, "interrupted: no model written to \(output)")
                }
                bar.update(written, total)
            }
            bar.finish()
            for note in report.notes { FileHandle.standardError.write(Data("note: \(note)\n".utf8)) }
            let kind = report.expertCount > 0 ? "MoE, \(report.expertCount) experts" : "dense"
            print(String(format: "wrote %@: gen%d %@, %@, %d tensors, %.1f MB in %.2f s (%.0f MB/s)",
                         report.output, report.generation, kind, report.type.rawValue, report.tensorCount,
                         Double(report.bytes) / 1e6, report.seconds, report.megabytesPerSecond))
        } catch let error as FormatError {
            bar.finish()
            FileHandle.standardError.write(Data("error: \(error.message)\n".utf8))
            throw ExitCode.failure
        }
    }
}

/// A one-line bar on stderr, redrawn at most every percent.
struct ProgressBar {
    let enabled: Bool
    private var lastPercent = -1

    init(enabled: Bool) { self.enabled = enabled }

    mutating func update(_ done: Int, _ total: Int) {
        guard enabled, total > 0 else { return }
        let percent = done * 100 / total
        guard percent != lastPercent else { return }
        lastPercent = percent
        let width = 30
        let filled = percent * width / 100
        let line = "\r[" + String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled) + "] "
            + String(format: "%3d%% %.1f/%.1f MB", percent, Double(done) / 1e6, Double(total) / 1e6)
        FileHandle.standardError.write(Data(line.utf8))
    }

    mutating func finish() {
        guard enabled, lastPercent >= 0 else { return }
        FileHandle.standardError.write(Data("\n".utf8))
        lastPercent = -1
    }
}
