import Foundation
import Testing
import TestSupport
import Conversion
import Formats

/// Runs Tools/convert/check_gguf.py (the reference `gguf` package from PyPI) on our output.
private func pythonView(_ path: String, q8Reference: String? = nil) throws -> [String: Any] {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    let script = Fixtures.packageRoot.appendingPathComponent("Tools/convert/check_gguf.py").path
    process.arguments = ["python3", script, path] + (q8Reference.map { ["--q8-reference", $0] } ?? [])
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    let errors = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    #expect(process.terminationStatus == 0, "check_gguf.py failed (is `pip install gguf numpy` done?): \(errors)")
    return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
}

private let ggmlTypeNames: [DType: String] = [.float32: "F32", .float16: "F16", .bfloat16: "BF16", .q8_0: "Q8_0", .q4_0: "Q4_0"]

@Suite struct ReadByGGUFPy {
    @Test(arguments: [(FixtureSet.gen2Pth, OutputType.f16), (.gen3Safetensors, .bf16), (.gen3Pth, .q8_0), (.gen2Bin, .q8_0), (.gen2Pth, .q4_0)])
    func theReferenceReaderSeesOurTensorsAndKeys(_ set: FixtureSet, _ type: OutputType) throws {
        let folder = try Fixtures.temporaryDirectory("gguf-py")
        let output = folder.appendingPathComponent("model.gguf").path
        _ = try Converter.convert(checkpoint: set.checkpoint, vision: set.vision, tokenizer: set.tokenizer, type: type, output: output)
        var reference: String?
        if type == .q8_0 || type == .q4_0 {
            reference = folder.appendingPathComponent("model-f32.gguf").path
            _ = try Converter.convert(checkpoint: set.checkpoint, vision: set.vision, tokenizer: set.tokenizer, type: .f32, output: reference!)
        }
        let view = try pythonView(output, q8Reference: reference)
        let ours = try GGUFFile(path: output)

        let tensors = try #require(view["tensors"] as? [[String: Any]])
        #expect(tensors.map { $0["name"] as? String } == ours.tensors.map(\.name))
        for (theirs, mine) in zip(tensors, ours.tensors) {
            #expect(theirs["type"] as? String == ggmlTypeNames[mine.dtype], "\(mine.name)")
            #expect(theirs["shape"] as? [Int] == mine.shape, "\(mine.name)")
            #expect(theirs["bytes"] as? Int == mine.bytes.count, "\(mine.name)")
            #expect((theirs["offset"] as? Int).map { $0 % 32 } == 0, "\(mine.name)")
        }
        #expect(tensors.contains { $0["name"] as? String == "token_embd.weight" })
        #expect(tensors.contains { $0["name"] as? String == "v.blk.0.attn_q.weight" })

        let metadata = try #require(view["metadata"] as? [String: [String: Any]])
        #expect(Set(metadata.keys) == Set(ours.metadata.keys))
        #expect(metadata[ModelKey.architecture]?["value"] as? String == "minimind")
        #expect(metadata[ModelKey.blockCount]?["value"] as? Int == ours.metadata.integer(ModelKey.blockCount))
        #expect(metadata[ModelKey.imageTokenID]?["type"] as? [String] == ["UINT32"])
        #expect(metadata[ModelKey.tokenizerTokens]?["type"] as? [String] == ["ARRAY", "STRING"])
        #expect((metadata[ModelKey.tokenizerTokens]?["value"] as? [String: Int])?["count"] == 6400)
        // JSON carries the float32 as a decimal; it must come back to the same float32.
        #expect((metadata[ModelKey.imageMean]?["value"] as? [Double])?.map(Float.init) == ours.metadata.floats(ModelKey.imageMean))
        #expect(metadata[ModelKey.chatTemplate]?["type"] as? [String] == ["STRING"])

        if type == .q8_0 || type == .q4_0 {
            // Under q4_0 the embedding and vision matrices are Q8_0: both types are checked.
            for (dtype, key) in [(DType.q8_0, "q8_0_bit_exact"), (.q4_0, "q4_0_bit_exact")] {
                let exact = try #require(view[key] as? [String: Any])
                let count = ours.tensors.filter { $0.dtype == dtype }.count
                #expect(count > 0 || (type == .q8_0 && dtype == .q4_0))
                #expect(exact["matched"] as? Int == count)
                #expect((exact["mismatched"] as? [String])?.isEmpty == true, "\(exact)")
            }
        }
    }
}
