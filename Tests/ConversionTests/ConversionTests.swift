import Foundation
import Testing
import TestSupport
@testable import Conversion
@testable import Formats

private func outputPath(_ label: String) throws -> String {
    try Fixtures.temporaryDirectory("convert-\(label)").appendingPathComponent("model.gguf").path
}

private func convert(_ set: FixtureSet, _ type: OutputType, label: String = "fixture") throws -> (GGUFFile, ConversionReport) {
    let output = try outputPath(label)
    let report = try Converter.convert(checkpoint: set.checkpoint, vision: set.vision, tokenizer: set.tokenizer, type: type, output: output)
    return (try GGUFFile(path: output), report)
}

/// Every tensor name the file must hold, with its PyTorch-order shape.
private func expectedTensors(_ m: GGUFMetadata) throws -> [String: [Int]] {
    let gen = try #require(m.integer(ModelKey.generation))
    let h = try #require(m.integer(ModelKey.embeddingLength)), layers = try #require(m.integer(ModelKey.blockCount))
    let heads = try #require(m.integer(ModelKey.headCount)), kv = try #require(m.integer(ModelKey.headCountKV))
    let hd = try #require(m.integer(ModelKey.keyLength)), ff = try #require(m.integer(ModelKey.feedForwardLength))
    let vocab = try #require(m.integer(ModelKey.vocabSize)), experts = try #require(m.integer(ModelKey.expertCount))
    let shared = try #require(m.integer(ModelKey.expertSharedCount))
    let vh = try #require(m.integer(ModelKey.visionEmbeddingLength)), vff = try #require(m.integer(ModelKey.visionFeedForwardLength))
    let vLayers = try #require(m.integer(ModelKey.visionBlockCount)), p = try #require(m.integer(ModelKey.visionPatchSize))
    let tokens = try #require(m.integer(ModelKey.imageTokenCount))
    let clip = m.string(ModelKey.visionEncoder) == VisionEncoderKind.clip.rawValue
    var t: [String: [Int]] = [TensorName.tokenEmbedding: [vocab, h], TensorName.outputNorm: [h]]
    if m.bool(ModelKey.tiedOutput) == false { t[TensorName.output] = [vocab, h] }
    for n in 0..<layers {
        t[TensorName.attentionNorm(n)] = [h]; t[TensorName.ffnNorm(n)] = [h]
        t[TensorName.attentionQ(n)] = [heads * hd, h]; t[TensorName.attentionOutput(n)] = [h, heads * hd]
        t[TensorName.attentionK(n)] = [kv * hd, h]; t[TensorName.attentionV(n)] = [kv * hd, h]
        if gen == 3 { t[TensorName.attentionQNorm(n)] = [hd]; t[TensorName.attentionKNorm(n)] = [hd] }
        if experts == 0 {
            t[TensorName.ffnGate(n)] = [ff, h]; t[TensorName.ffnUp(n)] = [ff, h]; t[TensorName.ffnDown(n)] = [h, ff]
        } else {
            t[TensorName.ffnRouter(n)] = [experts, h]
            t[TensorName.ffnGateExperts(n)] = [experts, ff, h]; t[TensorName.ffnUpExperts(n)] = [experts, ff, h]
            t[TensorName.ffnDownExperts(n)] = [experts, h, ff]
            if shared == 1 { t[TensorName.ffnGateShared(n)] = [ff, h]; t[TensorName.ffnUpShared(n)] = [ff, h]; t[TensorName.ffnDownShared(n)] = [h, ff] }
        }
    }
    t[TensorName.patchEmbedding] = [vh, 3, p, p]
    t[TensorName.positionEmbedding] = [tokens + (clip ? 1 : 0), vh]
    if clip {
        t[TensorName.classEmbedding] = [vh]; t[TensorName.preLayerNorm + ".weight"] = [vh]; t[TensorName.preLayerNorm + ".bias"] = [vh]
    } else {
        t[TensorName.patchEmbeddingBias] = [vh]; t[TensorName.postLayerNorm + ".weight"] = [vh]; t[TensorName.postLayerNorm + ".bias"] = [vh]
    }
    for n in 0..<vLayers {
        for (part, shape) in [("attn_q", [vh, vh]), ("attn_k", [vh, vh]), ("attn_v", [vh, vh]), ("attn_out", [vh, vh]),
                              ("ln1", [vh]), ("ln2", [vh]), ("ffn_up", [vff, vh]), ("ffn_down", [vh, vff])] {
            t[TensorName.vision(n, part)] = shape
            t[TensorName.vision(n, part, "bias")] = [shape[0]]
        }
    }
    if gen == 2 {
        t[TensorName.projector(0)] = [h, vh]; t[TensorName.projector(0, "bias")] = [h]
    } else {
        t[TensorName.projector(0)] = [vh]; t[TensorName.projector(0, "bias")] = [vh]
        t[TensorName.projector(1)] = [h, vh]; t[TensorName.projector(1, "bias")] = [h]
        t[TensorName.projector(3)] = [h, h]; t[TensorName.projector(3, "bias")] = [h]
    }
    return t
}

/// The type rule of OutputType's documentation, restated independently.
private func expectedType(_ name: String, _ shape: [Int], _ type: OutputType) -> DType {
    if shape.count == 1 || name == TensorName.positionEmbedding { return .float32 }
    let quantized = type == .q8_0 || type == .q4_0
    let float: DType = quantized ? .float16 : type.matrixType
    if name == TensorName.patchEmbedding || name.hasSuffix("ffn_gate_inp.weight") { return float }
    // Under q4_0 only the decoder blocks' linear layers are 4-bit; embedding, head, vision and
    // projector are Q8_0.
    let decoderLinear = name.hasPrefix("blk.") && (name.contains(".attn_") || name.contains(".ffn_"))
    if quantized { return shape.last! % 32 != 0 ? .float16 : type == .q4_0 && decoderLinear ? .q4_0 : .q8_0 }
    return type.matrixType
}

@Suite struct ConvertingFixtures {
    static let cases: [(FixtureSet, OutputType)] = FixtureSet.allCases.flatMap { set in OutputType.allCases.map { (set, $0) } }

    @Test(arguments: cases)
    func everyFixtureSetConvertsInEveryType(_ set: FixtureSet, _ type: OutputType) throws {
        let (file, report) = try convert(set, type)
        let m = file.metadata
        let config = try set.llmConfig()
        let gen = set.generation == "gen2" ? 2 : 3
        #expect(report.generation == gen && report.expertCount == 0)
        #expect(m.string(ModelKey.architecture) == "minimind")
        #expect(m.integer(ModelKey.fileType) == Int(type.fileType))
        #expect(m.integer(ModelKey.generation) == gen)
        #expect(m.integer(ModelKey.embeddingLength) == config["hidden_size"] as? Int)
        #expect(m.integer(ModelKey.blockCount) == config["num_hidden_layers"] as? Int)
        #expect(m.integer(ModelKey.headCount) == config["num_attention_heads"] as? Int)
        #expect(m.integer(ModelKey.headCountKV) == config["num_key_value_heads"] as? Int)
        #expect(m.integer(ModelKey.feedForwardLength) == config["intermediate_size"] as? Int)
        #expect(m.integer(ModelKey.vocabSize) == config["vocab_size"] as? Int)
        #expect(m.float(ModelKey.rmsNormEpsilon) == Float(try #require(config["rms_norm_eps"] as? Double)))
        #expect(m.bool(ModelKey.hasQKNorm) == (gen == 3))
        #expect(m.bool(ModelKey.tiedOutput) == true)
        #expect(m.integer(ModelKey.imageTokenID) == (gen == 2 ? 34 : 12))
        #expect(m.integer(ModelKey.imageTokenCount) == (gen == 2 ? 196 : 64))
        #expect(m.string(ModelKey.imagePlaceholder) == (gen == 2 ? "@" : "<|image_pad|>"))
        #expect(m.string(ModelKey.projectorType) == (gen == 2 ? ProjectorType.linear : .mlp).rawValue)
        #expect(m.string(ModelKey.visionEncoder) == (gen == 2 ? VisionEncoderKind.clip : .siglip).rawValue)
        #expect(m.string(ModelKey.visionActivation) == (gen == 2 ? VisionActivation.quickGELU : .geluTanh).rawValue)
        #expect(m.integer(ModelKey.visionImageSize) == (gen == 2 ? 224 : 256))
        #expect(m.integer(ModelKey.visionPatchSize) == (gen == 2 ? 16 : 32))
        #expect(m.string(ModelKey.resizeMode) == (gen == 2 ? ResizeMode.shortestEdge : .exact).rawValue)
        #expect(m.integers(ModelKey.resizeSize) == (gen == 2 ? [224] : [256, 256]))
        #expect(m.integers(ModelKey.cropSize) == (gen == 2 ? [224, 224] : nil))
        #expect(m.integer(ModelKey.resample) == (gen == 2 ? 3 : 2))
        #expect(m.floats(ModelKey.imageMean) == (gen == 2 ? [0.48145466, 0.4578275, 0.40821073] : [0.5, 0.5, 0.5]))
        #expect(m.strings(ModelKey.tokenizerTokens)?.count == 6400)
        #expect(m.integer(ModelKey.eosTokenID) == 2)
        #expect(m.string(ModelKey.chatTemplate)?.contains("<|im_start|>") == true)
        let tokenizerJSON = try String(contentsOfFile: set.tokenizer + "/tokenizer.json", encoding: .utf8)
        #expect(m.string(ModelKey.huggingFaceTokenizerJSON) == tokenizerJSON)

        let expected = try expectedTensors(m)
        #expect(Set(file.tensors.map(\.name)) == Set(expected.keys))
        for tensor in file.tensors {
            #expect(tensor.shape == expected[tensor.name], "\(tensor.name)")
            #expect(tensor.dtype == expectedType(tensor.name, tensor.shape, type), "\(tensor.name)")
        }
    }

    @Test func gen2TrainerCheckpointWithoutConfigGetsItsHeadsFromTheKVProjection() throws {
        let (file, report) = try convert(.gen2Pth, .f16)
        #expect(file.metadata.integer(ModelKey.headCount) == 4)
        #expect(file.metadata.integer(ModelKey.keyLength) == 16)
        #expect(report.notes.contains { $0.contains("2 KV heads") })
    }
}

@Suite struct RoundTrip {
    /// Converts, then compares every output tensor with the elements of its sources.
    func check(_ set: FixtureSet, _ type: OutputType) throws {
        let plan = try ConversionPlan(checkpoint: set.checkpoint, vision: set.vision, tokenizer: set.tokenizer, config: nil, type: type)
        let output = try outputPath("roundtrip")
        _ = try Converter.convert(checkpoint: set.checkpoint, vision: set.vision, tokenizer: set.tokenizer, type: type, output: output)
        let file = try GGUFFile(path: output)
        #expect(file.tensors.map(\.name) == plan.tensors.map(\.info.name))
        for (tensor, planned) in zip(file.tensors, plan.tensors) {
            let source = try planned.sources.flatMap { try $0.floatValues() }
            let back = try tensor.floatValues()
            #expect(back.count == source.count)
            switch tensor.dtype {
            case .float32:
                #expect(back == source, "\(tensor.name)")
            case .float16, .bfloat16:
                // Bit-exact: what the source value rounds to (identical bytes when the source has this type).
                var encoded = [UInt8](repeating: 0, count: source.count * 2)
                source.withUnsafeBufferPointer { s in encoded.withUnsafeMutableBytes { _ = Quantization.encode(s.baseAddress!, count: s.count, as: tensor.dtype, into: $0.baseAddress!) } }
                #expect(tensor.bytes.array == encoded, "\(tensor.name)")
                if planned.sources.allSatisfy({ $0.dtype == tensor.dtype }) {
                    #expect(tensor.bytes.array == planned.sources.flatMap(\.bytes.array), "\(tensor.name)")
                }
            case .q4_0:
                // Bit-exact with our quantiser (itself checked against gguf-py), and per block of 32
                // within a step of the scale: |x - x'| <= |d| + max|x| * 2^-11 (q is truncated after
                // adding 8.5, so rounding to nearest; the clamp at 15 costs up to one step).
                var encoded = [UInt8](repeating: 0, count: source.count / 32 * 18)
                source.withUnsafeBufferPointer { s in encoded.withUnsafeMutableBytes { _ = Quantization.encode(s.baseAddress!, count: s.count, as: .q4_0, into: $0.baseAddress!) } }
                #expect(tensor.bytes.array == encoded, "\(tensor.name)")
                var worst: Float = 0
                for b in 0..<(source.count / 32) {
                    let block = source[(b * 32)..<(b * 32 + 32)]
                    let amax = block.map(abs).max() ?? 0
                    let bound = amax / 8 + amax * 0x1p-11 + amax * 1e-6
                    for i in block.indices { worst = max(worst, abs(source[i] - back[i]) - bound) }
                }
                #expect(worst <= 0, "\(tensor.name)")
            case .q8_0:
                // Per block of 32: |x - x'| <= d/2 + max|x| * 2^-11 (d = max|x|/127 before its float16 rounding).
                var worst: Float = 0
                for b in 0..<(source.count / 32) {
                    let block = source[(b * 32)..<(b * 32 + 32)]
                    let amax = block.map(abs).max() ?? 0
                    let bound = amax / 127 / 2 + amax * 0x1p-11 + amax * 1e-6
                    for i in block.indices { worst = max(worst, abs(source[i] - back[i]) - bound) }
                }
                #expect(worst <= 0, "\(tensor.name)")
            default:
                Issue.record("unexpected type \(tensor.dtype) for \(tensor.name)")
            }
        }
    }

    @Test(arguments: OutputType.allCases)
    func gen3TrainerCheckpointValuesReadBack(_ type: OutputType) throws { try check(.gen3Pth, type) }

    @Test(arguments: OutputType.allCases)
    func gen2BFloat16SafetensorsValuesReadBack(_ type: OutputType) throws { try check(.gen2Safetensors, type) }

    @Test func checksumsProveTheSameWeightsAcrossFiles() throws {
        let (file, _) = try convert(.gen2Pth, .f16)
        let pth = try openTensorFile(path: FixtureSet.gen2Pth.checkpoint)
        let embedding = try #require(pth.tensor(named: "model.embed_tokens.weight"))
        #expect(try #require(file.tensor(named: TensorName.tokenEmbedding)).sha256 == embedding.sha256)
        let q = try #require(pth.tensor(named: "model.layers.1.self_attn.q_proj.weight"))
        #expect(try #require(file.tensor(named: TensorName.attentionQ(1))).sha256 == q.sha256)
        #expect(try #require(file.tensor(named: TensorName.attentionQ(0))).sha256 != q.sha256)
        // SHA-256 of no bytes, as a fixed point of the encoding.
        #expect(Tensor(name: "e", dtype: .float32, shape: [0], bytes: TensorBytes([])).sha256 == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }
}

@Suite struct TiedAndMoE {
    func build(_ set: FixtureSet, _ edit: (inout CheckpointBuilder) throws -> Void) throws -> (String, CheckpointBuilder) {
        var builder = try CheckpointBuilder(from: set == .gen2Pth || set == .gen3Pth ? set.checkpoint : set.checkpoint + "/" + (set == .gen2Bin || set == .gen3Bin ? "pytorch_model.bin" : "model.safetensors"))
        try edit(&builder)
        let path = try Fixtures.temporaryDirectory("ckpt").appendingPathComponent("edited.safetensors").path
        try builder.write(to: path)
        return (path, builder)
    }

    @Test func aDifferentOutputHeadIsWrittenAndTheFileSaysUntied() throws {
        let (path, builder) = try build(.gen2Pth) { b in
            b.replace("lm_head.weight", shape: [6400, 64], values: CheckpointBuilder.pattern(6400 * 64, seed: 9))
        }
        let output = try outputPath("untied")
        _ = try Converter.convert(checkpoint: path, vision: FixtureSet.gen2Pth.vision, tokenizer: FixtureSet.gen2Pth.tokenizer, type: .f32, output: output)
        let file = try GGUFFile(path: output)
        #expect(file.metadata.bool(ModelKey.tiedOutput) == false)
        #expect(try #require(file.tensor(named: TensorName.output)).floatValues() == builder.values("lm_head.weight"))
        #expect(try #require(file.tensor(named: TensorName.tokenEmbedding)).floatValues() == builder.values("model.embed_tokens.weight"))
    }

    @Test(arguments: [FixtureSet.gen2Pth, .gen3Pth])
    func expertsAreStackedInOrder(_ set: FixtureSet) throws {
        let shared = set == .gen2Pth ? 1 : 0
        let ff = 96
        let (path, builder) = try build(set) { $0.makeMoE(layers: 2, hidden: 64, ff: ff, experts: 4, shared: shared) }
        let output = try outputPath("moe")
        let report = try Converter.convert(checkpoint: path, vision: set.vision, tokenizer: set.tokenizer, type: .f32, output: output)
        #expect(report.expertCount == 4)
        let file = try GGUFFile(path: output)
        let m = file.metadata
        #expect(m.integer(ModelKey.expertCount) == 4)
        #expect(m.integer(ModelKey.expertUsedCount) == (set == .gen2Pth ? 2 : 1))
        #expect(m.integer(ModelKey.expertSharedCount) == shared)
        #expect(m.integer(ModelKey.feedForwardLength) == ff)
        #expect(Set(file.tensors.map(\.name)) == Set(try expectedTensors(m).keys))
        for n in 0..<2 {
            let stacked = try #require(file.tensor(named: TensorName.ffnDownExperts(n)))
            #expect(stacked.shape == [4, 64, ff])
            let experts = try (0..<4).flatMap { try builder.values("model.layers.\(n).mlp.experts.\($0).down_proj.weight") }
            #expect(try stacked.floatValues() == experts)
            #expect(try #require(file.tensor(named: TensorName.ffnRouter(n))).floatValues() == builder.values("model.layers.\(n).mlp.gate.weight"))
            if shared == 1 {
                #expect(try #require(file.tensor(named: TensorName.ffnUpShared(n))).floatValues() == builder.values("model.layers.\(n).mlp.shared_experts.0.up_proj.weight"))
            }
        }
        // Q8_0 stacks whole expert matrices: each expert's blocks stay contiguous.
        let q8 = try outputPath("moe-q8")
        _ = try Converter.convert(checkpoint: path, vision: set.vision, tokenizer: set.tokenizer, type: .q8_0, output: q8)
        let gate = try #require(try GGUFFile(path: q8).tensor(named: TensorName.ffnGateExperts(1)))
        #expect(gate.dtype == .q8_0 && gate.bytes.count == 4 * ff * 64 / 32 * 34)
        #expect(try #require(try GGUFFile(path: q8).tensor(named: TensorName.ffnRouter(1))).dtype == .float16)
        // Q4_0: experts in 4 bits, 18 bytes per block, still one contiguous matrix per expert.
        let q4 = try outputPath("moe-q4")
        _ = try Converter.convert(checkpoint: path, vision: set.vision, tokenizer: set.tokenizer, type: .q4_0, output: q4)
        let q4File = try GGUFFile(path: q4)
        let down = try #require(q4File.tensor(named: TensorName.ffnDownExperts(1)))
        #expect(down.dtype == .q4_0 && down.bytes.count == 4 * 64 * ff / 32 * 18)
        #expect(try #require(q4File.tensor(named: TensorName.ffnRouter(1))).dtype == .float16)
        #expect(q4File.metadata.integer(ModelKey.fileType) == 2)
    }
}

@Suite struct Refusals {
    func refusal(_ set: FixtureSet = .gen2Pth, vision: String?? = .none, type: OutputType = .f16,
                 _ edit: ((inout CheckpointBuilder) -> Void)? = nil) throws -> String {
        var checkpoint = set.checkpoint
        if let edit {
            var builder = try CheckpointBuilder(from: set.checkpoint)
            edit(&builder)
            checkpoint = try Fixtures.temporaryDirectory("bad").appendingPathComponent("bad.safetensors").path
            try builder.write(to: checkpoint)
        }
        let output = try outputPath("refused")
        do {
            _ = try Converter.convert(checkpoint: checkpoint, vision: vision ?? set.vision, tokenizer: set.tokenizer, type: type, output: output)
        } catch let error as FormatError {
            #expect(!FileManager.default.fileExists(atPath: output))
            #expect(try FileManager.default.contentsOfDirectory(atPath: (output as NSString).deletingLastPathComponent).isEmpty)
            return error.message
        }
        Issue.record("conversion succeeded")
        return ""
    }

    @Test func aMissingTensorIsNamed() throws {
        let message = try refusal { $0.remove("model.norm.weight") }
        #expect(message.contains("model.norm.weight missing in bad.safetensors"), "\(message)")
        let message2 = try refusal(.gen3Pth) { $0.remove("model.layers.1.self_attn.k_norm.weight") }
        #expect(message2.contains("model.layers.1.self_attn.k_norm.weight missing"), "\(message2)")
    }

    @Test func aWrongShapeIsNamedWithTheExpectedShape() throws {
        let message = try refusal { $0.replace("model.layers.1.mlp.up_proj.weight", shape: [190, 64], values: .init(repeating: 0, count: 190 * 64)) }
        #expect(message.contains("model.layers.1.mlp.up_proj.weight") && message.contains("[190, 64]") && message.contains("expected [192, 64]"), "\(message)")
    }

    @Test func kProjectionRowsThatAreNotAMultipleOfTheHeadDimAreRefused() throws {
        let message = try refusal(.gen3Pth) { b in
            for n in 0..<2 { b.replace("model.layers.\(n).self_attn.k_proj.weight", shape: [40, 64], values: .init(repeating: 0, count: 40 * 64)) }
        }
        #expect(message.contains("k_proj.weight") && message.contains("not a multiple of head_dim 16"), "\(message)")
    }

    @Test func aVisionEncoderWhoseWidthDiffersFromTheProjectorInputIsRefused() throws {
        let message = try refusal(.gen2Pth, vision: FixtureSet.gen3Pth.vision)
        #expect(message.contains("outputs 64 features but the projector") && message.contains("takes 768"), "\(message)")
    }

    @Test func aMissingVisionFolderIsRefused() throws {
        let none = try refusal(vision: .some(nil))
        #expect(none.contains("pass --vision DIR"), "\(none)")
        let absent = try refusal(vision: "/nonexistent/clip")
        #expect(absent.contains("vision folder /nonexistent/clip not found"), "\(absent)")
    }

    @Test func mixedGenerationsAreRefused() throws {
        let message = try refusal { b in
            for n in 0..<2 {
                b.add("model.layers.\(n).self_attn.q_norm.weight", shape: [16], values: .init(repeating: 1, count: 16))
                b.add("model.layers.\(n).self_attn.k_norm.weight", shape: [16], values: .init(repeating: 1, count: 16))
            }
        }
        #expect(message.contains("mixes generations"), "\(message)")
    }

    @Test func unknownTensorsAreRefusedByName() throws {
        let message = try refusal { $0.add("model.layers.0.extra.weight", shape: [4], values: [1, 2, 3, 4]) }
        #expect(message.contains("model.layers.0.extra.weight"), "\(message)")
    }

    @Test func aTokenizerFolderWithoutTokenizerFilesIsRefused() throws {
        let output = try outputPath("tok")
        #expect {
            try Converter.convert(checkpoint: FixtureSet.gen2Pth.checkpoint, vision: FixtureSet.gen2Pth.vision, tokenizer: FixtureSet.gen2Pth.vision, output: output)
        } throws: { error in
            (error as? FormatError)?.message.contains("tokenizer.json not found") == true
        }
    }

    @Test func anUnknownTypeIsRefusedWithTheChoices() throws {
        #expect { try OutputType(parsing: "q4_1") } throws: { error in
            (error as? FormatError)?.message == "unknown --type q4_1: choose one of f32, f16, bf16, q8_0, q4_0"
        }
        #expect(try OutputType(parsing: "Q8_0") == .q8_0)
        #expect(try OutputType(parsing: "Q4_0") == .q4_0)
    }
}

@Suite struct ShardedFolders {
    @Test func aShardedTransformersFolderConvertsToTheSameFileAsTheSingleOne() throws {
        let set = FixtureSet.gen3Safetensors
        let builder = try CheckpointBuilder(from: set.checkpoint + "/model.safetensors")
        let folder = try Fixtures.temporaryDirectory("sharded")
        var index: [String: String] = [:]
        for (shard, range) in [(1, 0..<(builder.tensors.count / 2)), (2, (builder.tensors.count / 2)..<builder.tensors.count)] {
            var part = builder
            part.tensors = Array(builder.tensors[range])
            let name = "model-0000\(shard)-of-00002.safetensors"
            try part.write(to: folder.appendingPathComponent(name).path)
            for t in part.tensors { index[t.name] = name }
        }
        let indexJSON = try JSONSerialization.data(withJSONObject: ["metadata": [:] as [String: Any], "weight_map": index])
        try indexJSON.write(to: folder.appendingPathComponent("model.safetensors.index.json"))
        for file in ["config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"] {
            try FileManager.default.copyItem(atPath: set.checkpoint + "/" + file, toPath: folder.appendingPathComponent(file).path)
        }
        let sharded = try outputPath("sharded")
        _ = try Converter.convert(checkpoint: folder.path, vision: set.vision, output: sharded)
        let (single, _) = try convert(set, .f16)
        let shardedFile = try GGUFFile(path: sharded)
        #expect(shardedFile.tensors.map(\.name) == single.tensors.map(\.name))
        #expect(shardedFile.tensors.map(\.sha256) == single.tensors.map(\.sha256))
        #expect(shardedFile.metadata.string(ModelKey.chatTemplate) == single.metadata.string(ModelKey.chatTemplate))
        #expect(shardedFile.metadata.strings(ModelKey.sourceFiles)?.first?.hasSuffix("model.safetensors.index.json") == true)
    }
}

@Suite struct Interruption {
    @Test func aConversionCancelledMidWayLeavesNothingBehind() throws {
        let set = FixtureSet.gen2Pth
        let output = try outputPath("cancel")
        struct Cancelled: Error {}
        var calls = 0
        #expect(throws: Cancelled.self) {
            try Converter.convert(checkpoint: set.checkpoint, vision: set.vision, tokenizer: set.tokenizer, output: output) { written, total in
                calls += 1
                if written > total / 2 { throw Cancelled() }
            }
        }
        #expect(calls > 2)
        #expect(try FileManager.default.contentsOfDirectory(atPath: (output as NSString).deletingLastPathComponent).isEmpty)
    }
}
