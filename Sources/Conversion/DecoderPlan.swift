import Foundation
import Formats

/// The MiniMind LLM and projector as found in a checkpoint: every size, read from the tensors
/// and cross-checked against the config when there is one.
struct DecoderPlan {
    var generation = 2
    var vocabSize = 0
    var hidden = 0
    var layers = 0
    var heads = 0
    var kvHeads = 0
    var headDim = 0
    var feedForward = 0
    var experts = 0
    var expertsUsed = 0
    var sharedExperts = 0
    var expertWeightsNorm = true
    var rmsEps: Float = 1e-5
    var ropeTheta: Float = 1e6
    var contextLength = 32768
    var tied = true
    var projector = ProjectorType.linear
    /// Input width of the projector: must equal the vision encoder's hidden size.
    var projectorInput = 0
    var tensors: [PlannedTensor] = []
    var notes: [String] = []

    static let checkpointHint = "is this a MiniMind-V checkpoint?"

    /// Keys a loader drops: upstream drops `mask` buffers; the trainer strips `vision_encoder.*`
    /// (and we ignore it if present: the vision folder is the source of truth); RoPE tables are buffers.
    static func isDropped(_ name: String) -> Bool {
        name.contains("mask") || name.hasPrefix("vision_encoder.") || name.contains("rotary_emb.")
            || name.hasPrefix("freqs_") || name.contains(".freqs_")
    }

    init(table: inout TensorTable, config: LLMConfig?, type: OutputType) throws(FormatError) {
        let hint = DecoderPlan.checkpointHint
        let source = table.source
        // Generation: gen3 adds per-head q/k norms and an MLP projector; both must agree.
        let hasQNorm = table.has("model.layers.0.self_attn.q_norm.weight")
        let hasMLP = table.has("vision_proj.mlp.1.weight")
        let hasLinear = table.has("vision_proj.vision_proj.0.weight")
        switch (hasMLP, hasLinear) {
        case (true, false): projector = .mlp
        case (false, true): projector = .linear
        case (true, true):
            throw FormatError(.invalidModel, "\(source) holds both projectors (vision_proj.mlp.* and vision_proj.vision_proj.0.*); expected one")
        case (false, false):
            throw FormatError(.invalidModel, "tensor vision_proj.vision_proj.0.weight (gen2) or vision_proj.mlp.1.weight (gen3) missing in \(source): is this a MiniMind-V (vision) checkpoint rather than a text-only MiniMind?")
        }
        generation = hasQNorm ? 3 : 2
        if (generation == 3) != (projector == .mlp) {
            throw FormatError(.invalidModel, "\(source) mixes generations: \(hasQNorm ? "q_norm/k_norm (gen3)" : "no q_norm (gen2)") with the \(projector == .mlp ? "MLP projector (gen3)" : "linear projector (gen2)")")
        }

        // Embedding and output head. A safetensors export keeps one of two tied names.
        var embedding: Tensor
        var output: Tensor?
        if table.has("model.embed_tokens.weight") {
            embedding = try table.take("model.embed_tokens.weight", hint: hint)
            if table.has("lm_head.weight") { output = try table.take("lm_head.weight", shape: embedding.shape, hint: "the output head must match the embedding") }
        } else if table.has("lm_head.weight") {
            embedding = try table.take("lm_head.weight", hint: hint)
            notes.append("model.embed_tokens.weight is stored under its tied name lm_head.weight")
        } else {
            throw table.missing("model.embed_tokens.weight", hint)
        }
        guard embedding.shape.count == 2 else {
            throw FormatError(.invalidModel, "tensor model.embed_tokens.weight in \(source) has shape \(embedding.shape), expected [vocab, hidden]")
        }
        vocabSize = embedding.shape[0]
        hidden = embedding.shape[1]
        if let output {
            tied = try Self.sameValues(embedding, output)
        }
        if let configVocab = config?.vocabSize, configVocab != vocabSize {
            throw FormatError(.invalidModel, "tensor model.embed_tokens.weight in \(source) has \(vocabSize) rows but config.json says vocab_size \(configVocab)")
        }
        if let configHidden = config?.hiddenSize, configHidden != hidden {
            throw FormatError(.invalidModel, "tensor model.embed_tokens.weight in \(source) is \(hidden) wide but config.json says hidden_size \(configHidden)")
        }
        if let tie = config?.tieWordEmbeddings, tie, !tied {
            notes.append("config.json says tie_word_embeddings but lm_head.weight differs from the embedding: writing both")
        }

        layers = try table.indices(under: "model.layers.")
        guard layers > 0 else { throw table.missing("model.layers.0.self_attn.q_proj.weight", hint) }
        if let configLayers = config?.layerCount, configLayers != layers {
            throw FormatError(.invalidModel, "\(source) has \(layers) layers (model.layers.N) but config.json says num_hidden_layers \(configLayers)")
        }

        // Attention geometry: q rows = heads * head_dim, k rows = kv_heads * head_dim.
        let qRows = try table.shape("model.layers.0.self_attn.q_proj.weight", rank: 2, hint: hint)[0]
        let kRows = try table.shape("model.layers.0.self_attn.k_proj.weight", rank: 2, hint: hint)[0]
        if hasQNorm {
            headDim = try table.shape("model.layers.0.self_attn.q_norm.weight", rank: 1, hint: hint)[0]
            if let configured = config?.headDim, configured != headDim {
                throw FormatError(.invalidModel, "tensor model.layers.0.self_attn.q_norm.weight in \(source) has \(headDim) elements but config.json says head_dim \(configured)")
            }
            if let configured = config?.headCount {
                heads = configured
            } else {
                heads = headDim > 0 ? qRows / headDim : 0
            }
        } else if let configured = config?.headCount {
            heads = configured
            headDim = config?.headDim ?? (heads > 0 ? qRows / heads : 0)
        } else {
            // A trainer .pth has no config. MiniMind2's trainer never changes its 2 KV heads, and
            // with q rows = heads * head_dim that fixes every other size.
            kvHeads = config?.kvHeadCount ?? 2
            headDim = kRows / kvHeads
            heads = headDim > 0 ? qRows / headDim : 0
            notes.append("no config.json: assuming MiniMind2's \(kvHeads) KV heads, so head_dim \(headDim) and \(heads) attention heads (pass --config to override)")
        }
        guard heads > 0, headDim > 0, headDim % 2 == 0, heads * headDim == qRows else {
            throw FormatError(.invalidModel, "tensor model.layers.0.self_attn.q_proj.weight in \(source) has \(qRows) rows, not \(heads) heads x head_dim \(headDim) (an even head_dim is needed for RoPE)")
        }
        guard kRows % headDim == 0, kRows > 0 else {
            throw FormatError(.invalidModel, "tensor model.layers.0.self_attn.k_proj.weight in \(source) has \(kRows) rows, not a multiple of head_dim \(headDim)")
        }
        kvHeads = kRows / headDim
        guard heads % kvHeads == 0 else {
            throw FormatError(.invalidModel, "\(source): \(heads) attention heads cannot share \(kvHeads) KV heads evenly (k_proj.weight has \(kRows) rows, head_dim \(headDim))")
        }
        if let configured = config?.kvHeadCount, configured != kvHeads {
            throw FormatError(.invalidModel, "tensor model.layers.0.self_attn.k_proj.weight in \(source) has \(kRows) rows = \(kvHeads) KV heads of \(headDim), but config.json says num_key_value_heads \(configured)")
        }

        // FFN: dense, or routed experts (+ shared experts in gen2).
        experts = try table.indices(under: "model.layers.0.mlp.experts.")
        if experts > 0 {
            feedForward = try table.shape("model.layers.0.mlp.experts.0.gate_proj.weight", rank: 2, hint: hint)[0]
            sharedExperts = try table.indices(under: "model.layers.0.mlp.shared_experts.")
            guard sharedExperts <= 1 else {
                throw FormatError(.unsupported, "\(source) has \(sharedExperts) shared experts per layer; the model file holds at most 1")
            }
            if let configured = config?.expertCount, configured != experts {
                throw FormatError(.invalidModel, "\(source) has \(experts) experts (model.layers.0.mlp.experts.N) but config.json says \(configured)")
            }
            expertsUsed = config?.expertsPerToken ?? (generation == 2 ? 2 : 1)
            guard (1...experts).contains(expertsUsed) else {
                throw FormatError(.invalidModel, "config.json: num_experts_per_tok \(expertsUsed) is not between 1 and the \(experts) experts")
            }
            expertWeightsNorm = config?.normTopKProb ?? true
        } else {
            feedForward = try table.shape("model.layers.0.mlp.gate_proj.weight", rank: 2, hint: hint)[0]
        }
        rmsEps = Float(config?.rmsNormEps ?? (generation == 2 ? 1e-5 : 1e-6))
        ropeTheta = Float(config?.ropeTheta ?? 1e6)
        contextLength = config?.maxPositionEmbeddings ?? 32768

        // The tensors, in llama.cpp order.
        tensors.add(TensorName.tokenEmbedding, .matrix, type, embedding)
        let attentionWidth = heads * headDim
        let kvWidth = kvHeads * headDim
        for n in 0..<layers {
            let p = "model.layers.\(n)."
            tensors.add(TensorName.attentionNorm(n), .keepF32, type, try table.take(p + "input_layernorm.weight", shape: [hidden], hint: hint))
            tensors.add(TensorName.attentionQ(n), .decoderMatrix, type, try table.take(p + "self_attn.q_proj.weight", shape: [attentionWidth, hidden], hint: "\(heads) heads x \(headDim)"))
            tensors.add(TensorName.attentionK(n), .decoderMatrix, type, try table.take(p + "self_attn.k_proj.weight", shape: [kvWidth, hidden], hint: "\(kvHeads) KV heads x \(headDim)"))
            tensors.add(TensorName.attentionV(n), .decoderMatrix, type, try table.take(p + "self_attn.v_proj.weight", shape: [kvWidth, hidden], hint: "\(kvHeads) KV heads x \(headDim)"))
            tensors.add(TensorName.attentionOutput(n), .decoderMatrix, type, try table.take(p + "self_attn.o_proj.weight", shape: [hidden, attentionWidth], hint: hint))
            if generation == 3 {
                tensors.add(TensorName.attentionQNorm(n), .keepF32, type, try table.take(p + "self_attn.q_norm.weight", shape: [headDim], hint: "gen3 per-head norm"))
                tensors.add(TensorName.attentionKNorm(n), .keepF32, type, try table.take(p + "self_attn.k_norm.weight", shape: [headDim], hint: "gen3 per-head norm"))
            }
            tensors.add(TensorName.ffnNorm(n), .keepF32, type, try table.take(p + "post_attention_layernorm.weight", shape: [hidden], hint: hint))
            if experts == 0 {
                tensors.add(TensorName.ffnGate(n), .decoderMatrix, type, try table.take(p + "mlp.gate_proj.weight", shape: [feedForward, hidden], hint: "dense FFN"))
                tensors.add(TensorName.ffnUp(n), .decoderMatrix, type, try table.take(p + "mlp.up_proj.weight", shape: [feedForward, hidden], hint: "dense FFN"))
                tensors.add(TensorName.ffnDown(n), .decoderMatrix, type, try table.take(p + "mlp.down_proj.weight", shape: [hidden, feedForward], hint: "dense FFN"))
            } else {
                let layerExperts = try table.indices(under: p + "mlp.experts.")
                guard layerExperts == experts else {
                    throw FormatError(.invalidModel, "\(source): layer \(n) has \(layerExperts) experts, layer 0 has \(experts)")
                }
                tensors.add(TensorName.ffnRouter(n), .floatMatrix, type, try table.take(p + "mlp.gate.weight", shape: [experts, hidden], hint: "MoE router"))
                var gates: [Tensor] = [], ups: [Tensor] = [], downs: [Tensor] = []
                for e in 0..<experts {
                    let q = p + "mlp.experts.\(e)."
                    gates.append(try table.take(q + "gate_proj.weight", shape: [feedForward, hidden], hint: "expert FFN"))
                    ups.append(try table.take(q + "up_proj.weight", shape: [feedForward, hidden], hint: "expert FFN"))
                    downs.append(try table.take(q + "down_proj.weight", shape: [hidden, feedForward], hint: "expert FFN"))
                }
                tensors.add(TensorName.ffnGateExperts(n), .decoderMatrix, type, gates, shape: [experts, feedForward, hidden])
                tensors.add(TensorName.ffnUpExperts(n), .decoderMatrix, type, ups, shape: [experts, feedForward, hidden])
                tensors.add(TensorName.ffnDownExperts(n), .decoderMatrix, type, downs, shape: [experts, hidden, feedForward])
                if sharedExperts == 1 {
                    let q = p + "mlp.shared_experts.0."
                    tensors.add(TensorName.ffnGateShared(n), .decoderMatrix, type, try table.take(q + "gate_proj.weight", shape: [feedForward, hidden], hint: "shared expert"))
                    tensors.add(TensorName.ffnUpShared(n), .decoderMatrix, type, try table.take(q + "up_proj.weight", shape: [feedForward, hidden], hint: "shared expert"))
                    tensors.add(TensorName.ffnDownShared(n), .decoderMatrix, type, try table.take(q + "down_proj.weight", shape: [hidden, feedForward], hint: "shared expert"))
                } else if table.has(p + "mlp.shared_experts.0.gate_proj.weight") {
                    throw FormatError(.invalidModel, "\(source): layer \(n) has a shared expert, layer 0 has none")
                }
            }
        }
        tensors.add(TensorName.outputNorm, .keepF32, type, try table.take("model.norm.weight", shape: [hidden], hint: hint))
        if !tied, let output {
            tensors.add(TensorName.output, .matrix, type, output)
        }

        // Projector.
        switch projector {
        case .linear:
            let weight = try table.shape("vision_proj.vision_proj.0.weight", rank: 2, hint: hint)
            projectorInput = weight[1]
            tensors.add(TensorName.projector(0), .matrix, type, try table.take("vision_proj.vision_proj.0.weight", shape: [hidden, projectorInput], hint: "Linear(vision hidden -> hidden)"))
            tensors.add(TensorName.projector(0, "bias"), .keepF32, type, try table.take("vision_proj.vision_proj.0.bias", shape: [hidden], hint: "projector bias"))
        case .mlp:
            projectorInput = try table.shape("vision_proj.mlp.0.weight", rank: 1, hint: "gen3 projector LayerNorm")[0]
            tensors.add(TensorName.projector(0), .keepF32, type, try table.take("vision_proj.mlp.0.weight", shape: [projectorInput], hint: "projector LayerNorm"))
            tensors.add(TensorName.projector(0, "bias"), .keepF32, type, try table.take("vision_proj.mlp.0.bias", shape: [projectorInput], hint: "projector LayerNorm"))
            tensors.add(TensorName.projector(1), .matrix, type, try table.take("vision_proj.mlp.1.weight", shape: [hidden, projectorInput], hint: "Linear(vision hidden -> hidden)"))
            tensors.add(TensorName.projector(1, "bias"), .keepF32, type, try table.take("vision_proj.mlp.1.bias", shape: [hidden], hint: "projector bias"))
            tensors.add(TensorName.projector(3), .matrix, type, try table.take("vision_proj.mlp.3.weight", shape: [hidden, hidden], hint: "Linear(hidden -> hidden)"))
            tensors.add(TensorName.projector(3, "bias"), .keepF32, type, try table.take("vision_proj.mlp.3.bias", shape: [hidden], hint: "projector bias"))
        }
        if let configured = config?.imageHiddenSize, configured != projectorInput {
            throw FormatError(.invalidModel, "the projector in \(source) takes \(projectorInput) inputs but config.json says image_hidden_size \(configured)")
        }
        try table.checkAllTaken()
    }

    /// Whether two tensors hold the same values (the tied-embedding test).
    static func sameValues(_ a: Tensor, _ b: Tensor) throws(FormatError) -> Bool {
        guard a.shape == b.shape else { return false }
        if a.dtype == b.dtype {
            return a.bytes.withUnsafeBytes { x in
                b.bytes.withUnsafeBytes { y in
                    x.count == y.count && (x.count == 0 || memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0)
                }
            }
        }
        return try a.floatValues() == b.floatValues()
    }
}
