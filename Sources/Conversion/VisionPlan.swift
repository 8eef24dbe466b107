import Foundation
import Formats

/// The vision encoder folder (CLIP or SigLIP2) as the model file needs it.
struct VisionPlan {
    var kind = VisionEncoderKind.clip
    var hidden = 0
    var feedForward = 0
    var layers = 0
    var heads = 0
    var imageSize = 0
    var patchSize = 0
    var layerNormEps: Float = 1e-5
    var activation = VisionActivation.quickGELU
    var preprocess: PreprocessorConfig
    var tensors: [PlannedTensor] = []
    var files: [String] = []

    /// Image tokens per image: one per patch.
    var tokenCount: Int { (imageSize / patchSize) * (imageSize / patchSize) }

    /// What a MiniMind-V encoder does not use: the CLIP text tower and its projections,
    /// `logit_scale`, SigLIP's pooling head, index buffers.
    static func isDropped(_ name: String) -> Bool {
        name.hasPrefix("text_model.") || name == "text_projection.weight" || name == "visual_projection.weight"
            || name == "logit_scale" || name.hasPrefix("head.") || name.contains("mask") || name.hasSuffix("position_ids")
    }

    init(folder: String, type: OutputType) throws(FormatError) {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder), isFolder.boolValue else {
            throw FormatError(.invalidModel, "vision folder \(folder) not found: pass --vision DIR, the CLIP (gen2) or SigLIP2 (gen3) folder holding config.json, preprocessor_config.json and the weights")
        }
        let configPath = folder + "/config.json"
        let preprocessorPath = folder + "/preprocessor_config.json"
        for path in [configPath, preprocessorPath] where !FileManager.default.fileExists(atPath: path) {
            throw FormatError(.invalidModel, "\(path) not found: --vision must name a Hugging Face CLIP or SigLIP2 folder")
        }
        let config = try VisionConfig(path: configPath)
        preprocess = try PreprocessorConfig(path: preprocessorPath)
        let weights = try openTensorFile(path: folder)
        files = [configPath, preprocessorPath, weights.sourceDescription]
        let source = (weights.sourceDescription as NSString).lastPathComponent
        var table = TensorTable(weights.tensors, source: "\(folder)/\(source)", stripping: ["vision_model."], dropping: VisionPlan.isDropped)
        let hint = "is \(folder) a CLIP or SigLIP vision encoder?"

        let patch = try table.shape("embeddings.patch_embedding.weight", rank: 4, hint: hint)
        hidden = patch[0]
        patchSize = patch[2]
        let channels = patch[1]
        guard patch[3] == patchSize, channels == 3 else {
            throw FormatError(.invalidModel, "tensor vision_model.embeddings.patch_embedding.weight in \(table.source) has shape \(patch), expected [hidden, 3, p, p]")
        }
        kind = config.kind ?? (table.has("embeddings.class_embedding") ? .clip : .siglip)
        if let configured = config.hiddenSize, configured != hidden {
            throw FormatError(.invalidModel, "tensor vision_model.embeddings.patch_embedding.weight is \(hidden) wide but \(configPath) says hidden_size \(configured)")
        }
        if let configured = config.patchSize, configured != patchSize {
            throw FormatError(.invalidModel, "tensor vision_model.embeddings.patch_embedding.weight has \(patchSize)x\(patchSize) patches but \(configPath) says patch_size \(configured)")
        }
        guard let size = config.imageSize, size > 0, size % patchSize == 0 else {
            throw FormatError(.invalidModel, "\(configPath): image_size \(config.imageSize.map(String.init) ?? "missing"); expected a multiple of the patch size \(patchSize)")
        }
        imageSize = size
        let input = preprocess.inputSize
        guard input == [imageSize, imageSize] else {
            throw FormatError(.invalidModel, "\(preprocessorPath) produces \(input[0])x\(input[1]) images but the encoder expects \(imageSize)x\(imageSize) (config.json image_size)")
        }
        guard let headCount = config.headCount, headCount > 0, hidden % headCount == 0 else {
            throw FormatError(.invalidModel, "\(configPath): num_attention_heads \(config.headCount.map(String.init) ?? "missing") does not divide the hidden size \(hidden)")
        }
        heads = headCount
        layers = try table.indices(under: "encoder.layers.")
        guard layers > 0 else { throw table.missing("vision_model.encoder.layers.0.self_attn.q_proj.weight", hint) }
        if let configured = config.layerCount, configured != layers {
            throw FormatError(.invalidModel, "\(table.source) has \(layers) encoder layers but \(configPath) says num_hidden_layers \(configured)")
        }
        feedForward = try table.shape("encoder.layers.0.mlp.fc1.weight", rank: 2, hint: hint)[0]
        layerNormEps = Float(config.layerNormEps ?? (kind == .clip ? 1e-5 : 1e-6))
        guard let act = config.activation ?? (config.hiddenAct == nil ? (kind == .clip ? .quickGELU : .geluTanh) : nil) else {
            throw FormatError(.unsupported, "\(configPath): hidden_act \(config.hiddenAct ?? "") is not supported (quick_gelu, gelu_pytorch_tanh, gelu)")
        }
        activation = act

        let positions = tokenCount + (kind == .clip ? 1 : 0)
        tensors.add(TensorName.patchEmbedding, .floatMatrix, type, try table.take("embeddings.patch_embedding.weight", hint: hint))
        if kind == .siglip {
            tensors.add(TensorName.patchEmbeddingBias, .keepF32, type, try table.take("embeddings.patch_embedding.bias", shape: [hidden], hint: "SigLIP patch bias"))
        } else {
            tensors.add(TensorName.classEmbedding, .keepF32, type, try table.take("embeddings.class_embedding", shape: [hidden], hint: "CLIP class token"))
        }
        tensors.add(TensorName.positionEmbedding, .keepF32, type, try table.take("embeddings.position_embedding.weight", shape: [positions, hidden], hint: "\(positions) positions for \(imageSize) px / \(patchSize) px patches"))
        if kind == .clip {
            for part in ["weight", "bias"] {
                tensors.add(TensorName.preLayerNorm + "." + part, .keepF32, type, try table.take("pre_layrnorm." + part, shape: [hidden], hint: "CLIP pre-LayerNorm"))
            }
        }
        let parts: [(String, String, [Int])] = [
            ("self_attn.q_proj", "attn_q", [hidden, hidden]), ("self_attn.k_proj", "attn_k", [hidden, hidden]),
            ("self_attn.v_proj", "attn_v", [hidden, hidden]), ("self_attn.out_proj", "attn_out", [hidden, hidden]),
            ("layer_norm1", "ln1", [hidden]), ("layer_norm2", "ln2", [hidden]),
            ("mlp.fc1", "ffn_up", [feedForward, hidden]), ("mlp.fc2", "ffn_down", [hidden, feedForward]),
        ]
        for n in 0..<layers {
            for (from, to, shape) in parts {
                let p = "encoder.layers.\(n).\(from)."
                let role: TensorRole = shape.count == 1 ? .keepF32 : .matrix
                tensors.add(TensorName.vision(n, to), role, type, try table.take(p + "weight", shape: shape, hint: hint))
                tensors.add(TensorName.vision(n, to, "bias"), .keepF32, type, try table.take(p + "bias", shape: [shape[0]], hint: hint))
            }
        }
        // CLIP's post_layernorm belongs to the pooled output, which MiniMind-V does not use.
        for part in ["weight", "bias"] {
            if kind == .siglip {
                tensors.add(TensorName.postLayerNorm + "." + part, .keepF32, type, try table.take("post_layernorm." + part, shape: [hidden], hint: "SigLIP post-LayerNorm"))
            } else if table.has("post_layernorm." + part) {
                _ = try table.take("post_layernorm." + part, hint: "")
            }
        }
        try table.checkAllTaken()
    }
}
