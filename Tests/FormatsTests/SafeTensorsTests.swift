import Foundation
import Formats
import Testing
import TestSupport

@Suite struct SafeTensorsReading {
    /// The pth key list of a tiny fixture: name -> "[shape] dtype".
    static func manifestKeys(_ generation: String) throws -> [(String, [Int])] {
        let manifest = try Files.json(Files.fixture(generation, "tiny/manifest.json"))
        let pth = try #require(manifest["pth"] as? [String: Any])
        let keys = try #require(pth["keys"] as? [String: Any])
        // JSONSerialization loses order; the order of the .pth itself is checked elsewhere.
        return try keys.map { name, value in
            let entry = try #require(value as? [Any])
            return (name, try #require(entry.first as? [Int]))
        }.sorted { $0.0 < $1.0 }
    }

    @Test(arguments: ["gen2", "gen3"])
    func transformersFolderHoldsTheManifestKeysAsBFloat16(generation: String) throws {
        let file = try SafeTensorsFile(path: Files.fixture(generation, "tiny/hf-safetensors/model.safetensors"))
        let manifest = try Files.json(Files.fixture(generation, "tiny/manifest.json"))
        let folders = try #require(manifest["hf_folders"] as? [String: Any])
        let tiedKept = try #require(folders["model.safetensors_keys_for_tied"] as? [String])
        let expectedMetadata = try #require(folders["model.safetensors_metadata"] as? [String: String])
        #expect(file.metadata == expectedMetadata)
        #expect(file.unsupportedTensors.isEmpty)

        // One of the two tied names is kept; every other manifest key is present with its shape.
        let tiedNames: Set = ["model.embed_tokens.weight", "lm_head.weight"]
        let expected = try Self.manifestKeys(generation).filter { !tiedNames.contains($0.0) || tiedKept.contains($0.0) }
        let actual = file.tensors.map { ($0.name, $0.shape) }.sorted { $0.0 < $1.0 }
        #expect(actual.map(\.0) == expected.map(\.0))
        #expect(actual.map(\.1) == expected.map(\.1))
        #expect(file.tensors.allSatisfy { $0.dtype == .bfloat16 && $0.bytes.isMapped })
    }

    @Test func clipFolderHoldsTheVisionTowerTheConfigDescribes() throws {
        let file = try SafeTensorsFile(path: Files.fixture("gen2", "clip-vit-base-patch16/model.safetensors"))
        let config = try #require(try Files.json(Files.fixture("gen2", "clip-vit-base-patch16/config.json"))["vision_config"] as? [String: Any])
        let hidden = try #require(config["hidden_size"] as? Int)
        let layers = try #require(config["num_hidden_layers"] as? Int)
        let mlp = try #require(config["intermediate_size"] as? Int)
        let patch = try #require(config["patch_size"] as? Int)
        let image = try #require(config["image_size"] as? Int)
        let positions = (image / patch) * (image / patch) + 1

        #expect(file.metadata == ["format": "pt"])
        #expect(file.tensors.allSatisfy { $0.dtype == .float16 })
        #expect(file.tensor(named: "vision_model.embeddings.patch_embedding.weight")?.shape == [hidden, 3, patch, patch])
        #expect(file.tensor(named: "vision_model.embeddings.position_embedding.weight")?.shape == [positions, hidden])
        #expect(file.tensor(named: "vision_model.embeddings.class_embedding")?.shape == [hidden])
        #expect(file.tensor(named: "vision_model.pre_layrnorm.weight")?.shape == [hidden])
        #expect(file.tensor(named: "logit_scale")?.shape == [])
        for layer in 0..<layers {
            let prefix = "vision_model.encoder.layers.\(layer)."
            #expect(file.tensor(named: prefix + "self_attn.q_proj.weight")?.shape == [hidden, hidden])
            #expect(file.tensor(named: prefix + "mlp.fc1.weight")?.shape == [mlp, hidden])
            #expect(file.tensor(named: prefix + "mlp.fc2.bias")?.shape == [hidden])
        }
        #expect(file.tensor(named: "vision_model.encoder.layers.\(layers).self_attn.q_proj.weight") == nil)
        #expect(file.tensors.filter { $0.name.hasPrefix("vision_model.") }.count == 3 + 4 + 16 * layers)
    }

    @Test func siglipFolderHoldsTheVisionTowerTheConfigDescribes() throws {
        let file = try SafeTensorsFile(path: Files.fixture("gen3", "siglip2-base-p32-256-ve/model.safetensors"))
        let config = try Files.json(Files.fixture("gen3", "siglip2-base-p32-256-ve/config.json"))
        let vision = (config["vision_config"] as? [String: Any]) ?? config
        let hidden = try #require(vision["hidden_size"] as? Int)
        let layers = try #require(vision["num_hidden_layers"] as? Int)
        let patch = try #require(vision["patch_size"] as? Int)
        let image = try #require(vision["image_size"] as? Int)
        #expect(file.tensors.allSatisfy { $0.dtype == .float16 })
        #expect(file.tensor(named: "vision_model.embeddings.patch_embedding.weight")?.shape == [hidden, 3, patch, patch])
        #expect(file.tensor(named: "vision_model.embeddings.patch_embedding.bias")?.shape == [hidden])
        #expect(file.tensor(named: "vision_model.embeddings.position_embedding.weight")?.shape == [(image / patch) * (image / patch), hidden])
        #expect(file.tensor(named: "vision_model.post_layernorm.weight")?.shape == [hidden])
        #expect(file.tensor(named: "vision_model.encoder.layers.\(layers - 1).layer_norm2.bias")?.shape == [hidden])
        // Every byte of the data area belongs to exactly one tensor and values decode.
        let total = file.tensors.reduce(0) { $0 + $1.bytes.count }
        let header = try Files.bytes(file.path).prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        #expect(total == file.file.count - 8 - header)
        let norm = try #require(file.tensor(named: "vision_model.post_layernorm.weight")).floatValues()
        #expect(norm.allSatisfy { $0.isFinite && $0 > 0.4 && $0 < 1.6 })
    }

    @Test func tensorsComeInDataOrder() throws {
        let file = try SafeTensorsFile(path: Files.fixture("gen3", "tiny/hf-safetensors/model.safetensors"))
        let starts = file.tensors.map { tensor -> Int in
            guard case let range? = file.file.range(of: tensor) else { return -1 }
            return range.lowerBound
        }
        #expect(starts == starts.sorted())
        #expect(!starts.contains(-1))
    }

    @Test func unknownDTypesAreReadAndReportedByName() throws {
        let header = #"{"a":{"dtype":"F8_E4M3","shape":[2,2],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"c":{"dtype":"X9","shape":[3],"data_offsets":[8,11]}}"#
        let data: [UInt8] = [1, 2, 3, 4] + withUnsafeBytes(of: Float(1.5).bitPattern.littleEndian, Array.init) + [7, 8, 9]
        let file = try SafeTensorsFile(path: Files.temporary(safetensorsBytes(header: header, data: data)))
        #expect(file.tensors.map(\.name) == ["b"])
        #expect(try file.tensors[0].floatValues() == [1.5])
        #expect(file.unsupportedTensors.map(\.dtypeName) == ["F8_E4M3", "X9"])
        #expect(file.unsupportedTensors.map(\.shape) == [[2, 2], [3]])
        #expect(file.unsupportedTensors[1].bytes.array == [7, 8, 9])
    }
}

@Test func safetensorsWhoseHeaderLengthLooksLikeAPickleOpensAsSafetensors() throws {
    // 640 = 0x0280: the file starts with 0x80 0x02, the opening bytes of a protocol-2 pickle.
    var header = #"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#
    header += String(repeating: " ", count: 640 - header.utf8.count)
    let bytes = safetensorsBytes(header: header, data: withUnsafeBytes(of: Float(3).bitPattern.littleEndian, Array.init))
    #expect(Array(bytes.prefix(2)) == [0x80, 0x02])
    let source = try openTensorFile(file: MappedFile(bytes: bytes, path: "padded.safetensors"))
    #expect(source is SafeTensorsFile)
    #expect(try source.tensors.first?.floatValues() == [3])
}

extension MappedFile {
    /// Where a mapped tensor's bytes lie in this file (tests only).
    func range(of tensor: Tensor) -> Range<Int>? {
        let whole = withBytes { $0.baseAddress }
        let part = tensor.bytes.withUnsafeBytes { $0.baseAddress }
        guard let whole, let part else { return nil }
        let start = part - whole
        return start..<(start + tensor.bytes.count)
    }
}

@Suite struct SafeTensorsValidation {
    func open(_ header: String, _ data: [UInt8]) throws -> FormatError? {
        let path = try Files.temporary(safetensorsBytes(header: header, data: data))
        return formatError { () throws(FormatError) in _ = try SafeTensorsFile(path: path) }
    }

    @Test func headerLengthLargerThanTheFileIsAnError() throws {
        var bytes = safetensorsBytes(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0])
        bytes.replaceSubrange(0..<8, with: withUnsafeBytes(of: UInt64(4096).littleEndian, Array.init))
        let path = try Files.temporary(bytes)
        let error = formatError { () throws(FormatError) in _ = try SafeTensorsFile(path: path) }
        #expect(error?.kind == .malformed)
        #expect(error?.message.contains("header claims 4096 bytes") == true)

        bytes.replaceSubrange(0..<8, with: withUnsafeBytes(of: UInt64.max.littleEndian, Array.init))
        let huge = try Files.temporary(bytes)
        #expect(formatError { () throws(FormatError) in _ = try SafeTensorsFile(path: huge) }?.message.contains("exceeds") == true)
    }

    @Test func offsetsPastTheEndAreAnError() throws {
        let error = try open(#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, [UInt8](repeating: 0, count: 12))
        #expect(error?.message.contains("tensor w") == true)
        #expect(error?.message.contains("past the end") == true)
    }

    @Test func overlappingTensorsAreAnError() throws {
        let error = try open(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, [UInt8](repeating: 0, count: 12))
        #expect(error?.message.contains("overlap") == true)
        #expect(error?.message.contains("a (bytes 0..<8)") == true)
    }

    @Test func shapeDisagreeingWithByteLengthIsAnError() throws {
        let error = try open(#"{"w":{"dtype":"BF16","shape":[3,2],"data_offsets":[0,8]}}"#, [UInt8](repeating: 0, count: 8))
        #expect(error?.message.contains("tensor w: shape [3, 2] of BF16 needs 12") == true)
    }

    @Test func malformedHeadersAreErrors() throws {
        let cases = [
            #"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}"#,            // unterminated
            #"[1,2,3]"#,                                                          // not an object
            #"{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#,          // negative dim
            #"{"w":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#,           // reversed
            #"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
            #"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,99999999999999999999999]}}"#,
            #"{"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}}"#,
            #"{"__metadata__":{"n":1}}"#,
            #"{"w":{"dtype":7,"shape":[1],"data_offsets":[0,4]}}"#,
            String(repeating: "[", count: 10_000),
        ]
        for header in cases {
            let error = try open(header, [0, 0, 0, 0])
            #expect(error?.kind == .malformed, "\(header.prefix(60))")
        }
    }

    @Test func tooShortFilesAreErrors() throws {
        for count in 0..<8 {
            let path = try Files.temporary([UInt8](repeating: 1, count: count))
            #expect(formatError { () throws(FormatError) in _ = try SafeTensorsFile(path: path) }?.kind == .malformed)
        }
    }
}
