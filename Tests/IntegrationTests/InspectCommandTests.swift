import Foundation
import Testing
import TestSupport

/// `minimindv inspect` as scripts use it: JSON out, checksums that prove two files hold the same weights.
@Suite struct InspectCommand {
    private static let gen3 = Fixtures.generation("gen3")

    private struct Listing: Decodable {
        struct Entry: Decodable {
            let name: String
            let dtype: String
            let shape: [Int]
            let sha256: String?
        }
        let format: String
        let tensors: [Entry]
    }

    private func inspect(_ path: String, _ flags: [String], in folder: URL) async throws -> Listing {
        let run = try await runMinimindv(["inspect"] + flags + [path], in: folder)
        #expect(run.status == 0, "\(run.stderr)")
        return try JSONDecoder().decode(Listing.self, from: Data(run.stdout.utf8))
    }

    @Test func jsonListsEveryCheckpointTensorInPyTorchWords() async throws {
        let folder = try Fixtures.temporaryDirectory("inspect")
        defer { try? FileManager.default.removeItem(at: folder) }
        let pth = Self.gen3.appendingPathComponent("tiny/sft_vlm_64.pth").path
        let listing = try await inspect(pth, ["--json"], in: folder)

        let manifest = try JSONSerialization.jsonObject(
            with: Data(contentsOf: Self.gen3.appendingPathComponent("tiny/manifest.json"))) as! [String: Any]
        let keys = (manifest["pth"] as! [String: Any])["keys"] as! [String: [Any]]
        #expect(listing.tensors.count == keys.count)
        for entry in listing.tensors {
            let expected = try #require(keys[entry.name], "unexpected tensor \(entry.name)")
            #expect(entry.shape == expected[0] as! [Int], "\(entry.name)")
            #expect(entry.dtype == expected[1] as! String, "\(entry.name)")
            #expect(entry.sha256 == nil)
        }
    }

    @Test func checksumsOfAnF16ConversionEqualThoseOfTheCheckpoint() async throws {
        let folder = try Fixtures.temporaryDirectory("inspect")
        defer { try? FileManager.default.removeItem(at: folder) }
        let pth = Self.gen3.appendingPathComponent("tiny/sft_vlm_64.pth").path
        let model = folder.appendingPathComponent("tiny.gguf").path
        let convert = try await runMinimindv([
            "convert", "--checkpoint", pth, "--vision", Self.gen3.appendingPathComponent("siglip2-base-p32-256-ve").path,
            "--tokenizer", Self.gen3.appendingPathComponent("tiny").path, "--type", "f16", "--output", model,
        ], in: folder)
        #expect(convert.status == 0, "\(convert.stderr)")

        let source = try await inspect(pth, ["--json", "--checksums"], in: folder)
        let converted = try await inspect(model, ["--json", "--checksums"], in: folder)
        #expect(source.format != converted.format)
        let before = Dictionary(uniqueKeysWithValues: source.tensors.map { ($0.name, $0) })
        let after = Dictionary(uniqueKeysWithValues: converted.tensors.map { ($0.name, $0) })
        // The trainer saves float16; f16 keeps those bytes, so the same weights hash the same under any name.
        let pairs = [
            ("model.embed_tokens.weight", "token_embd.weight"),
            ("model.layers.0.self_attn.q_proj.weight", "blk.0.attn_q.weight"),
            ("model.layers.1.mlp.down_proj.weight", "blk.1.ffn_down.weight"),
            ("vision_proj.mlp.3.weight", "mm.3.weight"),
        ]
        for (upstream, ours) in pairs {
            let a = try #require(before[upstream]), b = try #require(after[ours])
            #expect(a.dtype == "float16" && b.dtype == "float16")
            #expect(a.shape == b.shape)
            #expect(a.sha256 != nil && a.sha256 == b.sha256, "\(upstream) vs \(ours)")
        }
        // A weight that differs must not hash the same.
        #expect(before["model.layers.0.self_attn.q_proj.weight"]?.sha256 != after["blk.1.attn_q.weight"]?.sha256)
    }

    @Test func aFileThatIsNoModelIsAnErrorNotACrash() async throws {
        let folder = try Fixtures.temporaryDirectory("inspect")
        defer { try? FileManager.default.removeItem(at: folder) }
        let junk = folder.appendingPathComponent("junk.pth")
        try Data("this is not a checkpoint".utf8).write(to: junk)
        let run = try await runMinimindv(["inspect", junk.path], in: folder)
        #expect(run.status != 0)
        #expect(run.status < 128, "killed by a signal: \(run.status)")
        #expect(run.stderr.contains("junk.pth"), "\(run.stderr)")
    }
}
