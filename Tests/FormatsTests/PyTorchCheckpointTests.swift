import Foundation
import Formats
import Testing
import TestSupport

@Suite struct PyTorchFixtureReading {
    /// The manifest's pth keys in file order (read from the raw JSON text: order matters here).
    static func manifestKeys(_ generation: String) throws -> [(name: String, shape: [Int], dtype: String)] {
        let manifest = try Files.json(Files.fixture(generation, "tiny/manifest.json"))
        let pth = try #require(manifest["pth"] as? [String: Any])
        let keys = try #require(pth["keys"] as? [String: Any])
        let text = try String(contentsOfFile: Files.fixture(generation, "tiny/manifest.json"), encoding: .utf8)
        let ordered = keys.keys.sorted {
            (text.range(of: "\"\($0)\"")?.lowerBound ?? text.endIndex) < (text.range(of: "\"\($1)\"")?.lowerBound ?? text.endIndex)
        }
        return try ordered.map { name in
            let entry = try #require(keys[name] as? [Any])
            return (name, try #require(entry[0] as? [Int]), try #require(entry[1] as? String))
        }
    }

    @Test(arguments: ["gen2", "gen3"])
    func trainerCheckpointHoldsTheManifestKeysInOrder(generation: String) throws {
        let checkpoint = try PyTorchCheckpoint(path: Files.fixture(generation, "tiny/sft_vlm_64.pth"))
        let expected = try Self.manifestKeys(generation)
        #expect(checkpoint.layout == .zip)
        #expect(checkpoint.stateDictKey == nil)
        #expect(!checkpoint.isBigEndian)
        #expect(checkpoint.tensors.map(\.name) == expected.map(\.name))
        #expect(checkpoint.tensors.map(\.shape) == expected.map(\.shape))
        #expect(checkpoint.tensors.map(\.dtype.rawValue) == expected.map(\.dtype))
        #expect(checkpoint.tensors.allSatisfy { $0.bytes.isMapped })
        // The trainer saves two separate, equal fp16 copies of the tied weights.
        let embedding = try #require(checkpoint.tensor(named: "model.embed_tokens.weight"))
        let head = try #require(checkpoint.tensor(named: "lm_head.weight"))
        #expect(embedding.bytes.array == head.bytes.array)
    }

    @Test(arguments: ["gen2", "gen3"])
    func transformersBinSharesOneStorageForTheTiedWeights(generation: String) throws {
        let checkpoint = try PyTorchCheckpoint(path: Files.fixture(generation, "tiny/hf-bin/pytorch_model.bin"))
        let expected = try Self.manifestKeys(generation)
        #expect(Set(checkpoint.tensors.map(\.name)) == Set(expected.map(\.name)))
        #expect(checkpoint.tensors.allSatisfy { $0.dtype == .bfloat16 })
        let embedding = try #require(checkpoint.tensor(named: "model.embed_tokens.weight"))
        let head = try #require(checkpoint.tensor(named: "lm_head.weight"))
        #expect(try embedding.floatValues() == head.floatValues())
        #expect(checkpoint.file.range(of: embedding) == checkpoint.file.range(of: head))
    }

    @Test(arguments: ["gen2", "gen3"])
    func binAndSafetensorsFoldersHoldIdenticalWeights(generation: String) throws {
        let bin = try PyTorchCheckpoint(path: Files.fixture(generation, "tiny/hf-bin/pytorch_model.bin"))
        let safetensors = try SafeTensorsFile(path: Files.fixture(generation, "tiny/hf-safetensors/model.safetensors"))
        for tensor in safetensors.tensors {
            let other = try #require(bin.tensor(named: tensor.name))
            #expect(other.shape == tensor.shape)
            #expect(other.bytes.array == tensor.bytes.array, "\(tensor.name)")
        }
    }

    @Test(arguments: ["gen2", "gen3"])
    func trainerFloat16AndTransformersBFloat16AgreeUpToBFloat16Rounding(generation: String) throws {
        let pth = try PyTorchCheckpoint(path: Files.fixture(generation, "tiny/sft_vlm_64.pth"))
        let bin = try PyTorchCheckpoint(path: Files.fixture(generation, "tiny/hf-bin/pytorch_model.bin"))
        var compared = 0
        for tensor in pth.tensors {
            let half = try tensor.floatValues()
            let brain = try #require(bin.tensor(named: tensor.name)).floatValues()
            #expect(half.count == brain.count)
            // Both were rounded from the same float32 weights: bfloat16 (8 significant bits) is off by
            // at most 2^-8 relative, float16 by 2^-11 relative or 2^-25 absolute (subnormals).
            let outside = indicesOutside(half, brain, relative: 0x1p-8 + 0x1p-11, absolute: 0x1p-24)
            #expect(outside.isEmpty, "\(tensor.name): \(outside.prefix(3).map { (half[$0], brain[$0]) })")
            #expect(indicesOutside(half, [Float](repeating: 0, count: half.count), relative: 0, absolute: 0).count > half.count / 2)
            compared += 1
        }
        #expect(compared == pth.tensors.count)
    }

    @Test func openTensorFileDispatchesByContent() throws {
        let pth = try openTensorFile(path: Files.fixture("gen2", "tiny/sft_vlm_64.pth"))
        #expect(pth is PyTorchCheckpoint)
        let safetensors = try openTensorFile(path: Files.fixture("gen3", "siglip2-base-p32-256-ve/model.safetensors"))
        #expect(safetensors is SafeTensorsFile)
        let folder = try openTensorFile(path: Files.fixture("gen3", "tiny/hf-bin"))
        #expect(folder is PyTorchCheckpoint)
        let preferred = try openTensorFile(path: Files.fixture("gen2", "tiny/hf-safetensors"))
        #expect(preferred is SafeTensorsFile)
        let gguf = try Files.temporary(Array("GGUF".utf8) + [3, 0, 0, 0] + [UInt8](repeating: 0, count: 16))
        let error = formatError { () throws(FormatError) in _ = try openTensorFile(path: gguf) }
        #expect(error?.message.contains("GGUFFile") == true)
        let text = try Files.temporary(Array("hello, world".utf8))
        #expect(formatError { () throws(FormatError) in _ = try openTensorFile(path: text) }?.kind == .malformed)
    }
}
