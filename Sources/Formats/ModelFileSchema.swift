/// Every metadata key and tensor name of our GGUF model file, in one place.
///
/// The converter writes these and the model loader reads them; nothing else spells them.
/// Names follow llama.cpp where it has one (`token_embd.weight`, `blk.N.attn_q.weight`,
/// `v.blk.N.attn_q.weight`, `clip.vision.*`); what llama.cpp has no word for lives under
/// `minimind.*`. Shapes below are PyTorch order (outermost first); GGUF stores dims reversed.
public enum ModelKey {
    // MARK: general
    public static let architecture = "general.architecture"       // "minimind"
    public static let name = "general.name"
    public static let fileType = "general.file_type"               // 0 f32, 1 f16, 2 q4_0, 7 q8_0, 32 bf16
    public static let alignment = "general.alignment"
    public static let quantizationVersion = "general.quantization_version"
    public static let sourceFiles = "general.source.files"         // [string]: what convert read

    public static let architectureName = "minimind"

    // MARK: decoder (`minimind.*`, llama.cpp's per-architecture names)
    public static let generation = "minimind.generation"                       // u32: 2 or 3
    public static let vocabSize = "minimind.vocab_size"                        // u32
    public static let contextLength = "minimind.context_length"                // u32
    public static let embeddingLength = "minimind.embedding_length"            // u32 hidden
    public static let blockCount = "minimind.block_count"                      // u32 layers
    public static let feedForwardLength = "minimind.feed_forward_length"       // u32 (per expert for MoE)
    public static let headCount = "minimind.attention.head_count"              // u32
    public static let headCountKV = "minimind.attention.head_count_kv"         // u32
    public static let keyLength = "minimind.attention.key_length"              // u32 head dim
    public static let rmsNormEpsilon = "minimind.attention.layer_norm_rms_epsilon" // f32
    public static let hasQKNorm = "minimind.attention.qk_norm"                 // bool (gen3)
    public static let ropeFreqBase = "minimind.rope.freq_base"                 // f32
    public static let expertCount = "minimind.expert_count"                    // u32, 0 = dense
    public static let expertUsedCount = "minimind.expert_used_count"           // u32 top-k
    public static let expertSharedCount = "minimind.expert_shared_count"       // u32
    public static let expertWeightsNorm = "minimind.expert_weights_norm"       // bool (norm_topk_prob)
    public static let tiedOutput = "minimind.tied_output"                      // bool: no output.weight
    public static let imageTokenID = "minimind.image.token_id"                 // u32: 34 or 12
    public static let imageTokenCount = "minimind.image.token_count"           // u32: 196 or 64
    public static let imagePlaceholder = "minimind.image.placeholder"          // string: "@" or "<|image_pad|>"
    public static let imagePromptMarker = "minimind.image.prompt_marker"       // string: "" (gen2) or "<image>" (gen3)

    // MARK: vision encoder (llama.cpp's `clip.*` where it has a word)
    public static let hasVisionEncoder = "clip.has_vision_encoder"              // bool
    public static let projectorType = "clip.projector_type"                     // ProjectorType raw value
    public static let visionEncoder = "clip.vision.encoder"                     // VisionEncoderKind raw value
    public static let visionImageSize = "clip.vision.image_size"                // u32 (square input)
    public static let visionPatchSize = "clip.vision.patch_size"                // u32
    public static let visionEmbeddingLength = "clip.vision.embedding_length"    // u32
    public static let visionFeedForwardLength = "clip.vision.feed_forward_length" // u32
    public static let visionBlockCount = "clip.vision.block_count"              // u32
    public static let visionHeadCount = "clip.vision.attention.head_count"      // u32
    public static let visionLayerNormEpsilon = "clip.vision.attention.layer_norm_epsilon" // f32
    public static let visionActivation = "clip.vision.activation"               // VisionActivation raw value
    public static let visionProjectionDim = "clip.vision.projection_dim"        // u32 = decoder hidden
    public static let projectorLayerNormEpsilon = "clip.vision.projector.layer_norm_epsilon" // f32 (mlp projector)
    public static let imageMean = "clip.vision.image_mean"                      // [f32] x3
    public static let imageStd = "clip.vision.image_std"                        // [f32] x3

    // MARK: preprocessing (from preprocessor_config.json)
    public static let resizeMode = "minimind.preprocess.resize_mode"    // ResizeMode raw value
    public static let resizeSize = "minimind.preprocess.size"           // [u32]: [edge] or [height, width]
    public static let cropSize = "minimind.preprocess.crop_size"        // [u32]: [height, width], absent = no crop
    public static let resample = "minimind.preprocess.resample"         // u32 Pillow code: 2 bilinear, 3 bicubic
    public static let rescaleFactor = "minimind.preprocess.rescale_factor" // f32, 1/255

    // MARK: tokenizer (llama.cpp's `tokenizer.ggml.*` for other readers; the verbatim
    // Hugging Face files for ours, so that our tokenizer reads exactly what transformers reads)
    public static let tokenizerModel = "tokenizer.ggml.model"             // "gpt2"
    public static let tokenizerPre = "tokenizer.ggml.pre"                 // "minimind"
    public static let tokenizerTokens = "tokenizer.ggml.tokens"           // [string]
    public static let tokenizerTokenTypes = "tokenizer.ggml.token_type"   // [i32] 1 normal, 3 control, 4 user
    public static let tokenizerMerges = "tokenizer.ggml.merges"           // [string] "a b"
    public static let bosTokenID = "tokenizer.ggml.bos_token_id"          // u32
    public static let eosTokenID = "tokenizer.ggml.eos_token_id"          // u32 (end of turn)
    public static let paddingTokenID = "tokenizer.ggml.padding_token_id"  // u32
    public static let unknownTokenID = "tokenizer.ggml.unknown_token_id"  // u32
    public static let chatTemplate = "tokenizer.chat_template"            // string (Jinja)
    public static let huggingFaceTokenizerJSON = "tokenizer.huggingface.json"     // tokenizer.json verbatim
    public static let huggingFaceTokenizerConfig = "tokenizer.huggingface.config" // tokenizer_config.json verbatim
}

public enum ProjectorType: String, Sendable {
    /// gen2: `vision_proj.vision_proj.0`, Linear(vision hidden -> hidden) with bias.
    case linear = "minimind_linear"
    /// gen3: `vision_proj.mlp`: LayerNorm, Linear, GELU (erf), Linear.
    case mlp = "minimind_mlp"
}

public enum VisionEncoderKind: String, Sendable {
    /// CLIP ViT: class token, pre-LayerNorm, quick-GELU, no post-LayerNorm on the output, class row dropped.
    case clip
    /// SigLIP(2): no class token, patch bias, tanh GELU, post-LayerNorm applied.
    case siglip
}

public enum VisionActivation: String, Sendable {
    case quickGELU = "quick_gelu"
    case geluTanh = "gelu_tanh"
    case geluErf = "gelu"
}

public enum ResizeMode: String, Sendable {
    /// Scale so the shorter side equals size[0], keeping aspect (CLIP), then optionally crop.
    case shortestEdge = "shortest_edge"
    /// Scale to exactly size = [height, width] (SigLIP).
    case exact
}

/// Tensor names in the model file. Shapes are PyTorch order.
public enum TensorName {
    // MARK: decoder
    public static let tokenEmbedding = "token_embd.weight"     // [vocab, hidden]
    public static let output = "output.weight"                 // [vocab, hidden], only when not tied
    public static let outputNorm = "output_norm.weight"        // [hidden]

    public static func attentionNorm(_ layer: Int) -> String { "blk.\(layer).attn_norm.weight" }     // [hidden]
    public static func attentionQ(_ layer: Int) -> String { "blk.\(layer).attn_q.weight" }           // [heads*hd, hidden]
    public static func attentionK(_ layer: Int) -> String { "blk.\(layer).attn_k.weight" }           // [kv*hd, hidden]
    public static func attentionV(_ layer: Int) -> String { "blk.\(layer).attn_v.weight" }           // [kv*hd, hidden]
    public static func attentionOutput(_ layer: Int) -> String { "blk.\(layer).attn_output.weight" } // [hidden, heads*hd]
    public static func attentionQNorm(_ layer: Int) -> String { "blk.\(layer).attn_q_norm.weight" }  // [hd] (gen3)
    public static func attentionKNorm(_ layer: Int) -> String { "blk.\(layer).attn_k_norm.weight" }  // [hd] (gen3)
    public static func ffnNorm(_ layer: Int) -> String { "blk.\(layer).ffn_norm.weight" }            // [hidden]
    public static func ffnGate(_ layer: Int) -> String { "blk.\(layer).ffn_gate.weight" }            // [ff, hidden]
    public static func ffnUp(_ layer: Int) -> String { "blk.\(layer).ffn_up.weight" }                // [ff, hidden]
    public static func ffnDown(_ layer: Int) -> String { "blk.\(layer).ffn_down.weight" }            // [hidden, ff]
    // MoE: experts stacked along the outermost axis, as llama.cpp does.
    public static func ffnRouter(_ layer: Int) -> String { "blk.\(layer).ffn_gate_inp.weight" }      // [experts, hidden]
    public static func ffnGateExperts(_ layer: Int) -> String { "blk.\(layer).ffn_gate_exps.weight" } // [experts, ff, hidden]
    public static func ffnUpExperts(_ layer: Int) -> String { "blk.\(layer).ffn_up_exps.weight" }     // [experts, ff, hidden]
    public static func ffnDownExperts(_ layer: Int) -> String { "blk.\(layer).ffn_down_exps.weight" } // [experts, hidden, ff]
    public static func ffnGateShared(_ layer: Int) -> String { "blk.\(layer).ffn_gate_shexp.weight" } // [ff, hidden]
    public static func ffnUpShared(_ layer: Int) -> String { "blk.\(layer).ffn_up_shexp.weight" }     // [ff, hidden]
    public static func ffnDownShared(_ layer: Int) -> String { "blk.\(layer).ffn_down_shexp.weight" } // [hidden, ff]

    // MARK: vision encoder
    public static let patchEmbedding = "v.patch_embd.weight"     // [vh, 3, p, p]
    public static let patchEmbeddingBias = "v.patch_embd.bias"   // [vh] (SigLIP)
    public static let classEmbedding = "v.class_embd"            // [vh] (CLIP)
    public static let positionEmbedding = "v.position_embd.weight" // [positions, vh]
    public static let preLayerNorm = "v.pre_ln"                  // .weight/.bias [vh] (CLIP)
    public static let postLayerNorm = "v.post_ln"                // .weight/.bias [vh] (SigLIP)
    public static func visionBlock(_ layer: Int) -> String { "v.blk.\(layer)" }
    // Suffixes under visionBlock(n), each with .weight and .bias:
    // attn_q, attn_k, attn_v [vh, vh]; attn_out [vh, vh]; ln1, ln2 [vh]; ffn_up [vff, vh]; ffn_down [vh, vff]
    public static func vision(_ layer: Int, _ part: String, _ kind: String = "weight") -> String {
        "v.blk.\(layer).\(part).\(kind)"
    }

    // MARK: projector: upstream's module index n becomes mm.n
    // gen2: mm.0 Linear [hidden, vh]. gen3: mm.0 LayerNorm [vh], mm.1 Linear [hidden, vh], mm.3 Linear [hidden, hidden].
    public static func projector(_ index: Int, _ kind: String = "weight") -> String { "mm.\(index).\(kind)" }
}
