import Foundation
import Testing
import TestSupport

/// The KV cache precision as users meet it: a Q4_0 file keeps int8 keys and values unless told
/// otherwise, and `ask` answers a real photo with it.
@Suite struct KVCacheCommand {
    private static let gen3 = Fixtures.generation("gen3")

    private struct Answer: Decodable {
        let output_ids: [Int]
    }

    @Test func aQ4_0FileDecodesWithAnInt8CacheByDefault() async throws {
        let folder = try Fixtures.temporaryDirectory("kv-cache")
        defer { try? FileManager.default.removeItem(at: folder) }
        let model = folder.appendingPathComponent("tiny-q4_0.gguf").path
        let convert = try await runMinimindv([
            "convert", "--checkpoint", Self.gen3.appendingPathComponent("tiny/sft_vlm_64.pth").path,
            "--vision", Self.gen3.appendingPathComponent("siglip2-base-p32-256-ve").path,
            "--tokenizer", Self.gen3.appendingPathComponent("tiny").path, "--type", "q4_0", "--output", model,
        ], in: folder)
        #expect(convert.status == 0, "\(convert.stderr)")

        let bench = try await runMinimindv(["bench", "--model", model, "--parts", "decode", "--batches", "1",
                                            "--decode-tokens", "2", "--repeats", "1"], in: folder)
        #expect(bench.status == 0, "\(bench.stderr)")
        let row = bench.stdout.split(separator: "\n").first { $0.hasPrefix("KV cache") }
        #expect(row?.hasSuffix("int8") == true, "\(bench.stdout)")

        // The same greedy answer whether int8 is the default or asked for; f16 is still there.
        let photo = Self.gen3.appendingPathComponent("images/image-01-golden-dog-balloons.jpg").path
        func ask(_ flags: [String]) async throws -> [Int] {
            let run = try await runMinimindv(["ask", "--model", model, "--image", photo, "--greedy", "--max-tokens", "8",
                                              "--json"] + flags + ["What is in the picture?"], in: folder)
            #expect(run.status == 0, "\(run.stderr)")
            return try JSONDecoder().decode(Answer.self, from: Data(run.stdout.utf8)).output_ids
        }
        let byDefault = try await ask([]), int8 = try await ask(["--kv-cache", "int8"]), f16 = try await ask(["--kv-cache", "f16"])
        #expect(!byDefault.isEmpty)
        #expect(byDefault == int8)
        #expect(!f16.isEmpty)
    }
}
