import Foundation

/// A JSON value as Hugging Face config files hold them.
public enum JSONValue: Sendable, Equatable, Decodable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let v = try? container.decode(Bool.self) { self = .bool(v) }
        else if let v = try? container.decode(Int.self) { self = .int(v) }
        else if let v = try? container.decode(Double.self) { self = .double(v) }
        else if let v = try? container.decode(String.self) { self = .string(v) }
        else if let v = try? container.decode([JSONValue].self) { self = .array(v) }
        else { self = .object(try container.decode([String: JSONValue].self)) }
    }

    /// Parses `data`; `path` names the file in the error.
    public static func parse(_ data: Data, path: String) throws(FormatError) -> JSONValue {
        do {
            return try JSONDecoder().decode(JSONValue.self, from: data)
        } catch {
            throw FormatError(.malformed, "\(path) is not valid JSON: \(error)")
        }
    }

    public static func read(_ path: String) throws(FormatError) -> (value: JSONValue, text: String) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FormatError(.io, "cannot read \(path)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw FormatError(.malformed, "\(path) is not UTF-8 text")
        }
        return (try parse(data, path: path), text)
    }

    public subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    public var int: Int? {
        switch self {
        case .int(let v): v
        case .double(let v): v.rounded() == v && abs(v) < 1e15 ? Int(v) : nil
        default: nil
        }
    }

    public var double: Double? {
        switch self {
        case .int(let v): Double(v)
        case .double(let v): v
        default: nil
        }
    }

    public var bool: Bool? {
        if case .bool(let v) = self { return v }
        return nil
    }

    public var string: String? {
        if case .string(let v) = self { return v }
        return nil
    }

    public var array: [JSONValue]? {
        if case .array(let v) = self { return v }
        return nil
    }

    public var object: [String: JSONValue]? {
        if case .object(let v) = self { return v }
        return nil
    }

    public var isNull: Bool { self == .null }
}

/// The MiniMind(-V) LLM `config.json` of a transformers-format folder. Every field is optional:
/// the converter takes sizes from the tensors and uses these to fill in and cross-check.
public struct LLMConfig: Sendable {
    public let path: String
    public let json: JSONValue

    public init(path: String) throws(FormatError) {
        self.path = path
        json = try JSONValue.read(path).value
        guard json.object != nil else { throw FormatError(.malformed, "\(path) is not a JSON object") }
    }

    public init(json: JSONValue, path: String) {
        self.json = json
        self.path = path
    }

    private func int(_ key: String) -> Int? { json[key]?.int }
    private func double(_ key: String) -> Double? { json[key]?.double }

    public var modelType: String? { json["model_type"]?.string }
    public var hiddenSize: Int? { int("hidden_size") }
    public var layerCount: Int? { int("num_hidden_layers") }
    public var headCount: Int? { int("num_attention_heads") }
    public var kvHeadCount: Int? { int("num_key_value_heads") }
    public var headDim: Int? { int("head_dim") }
    public var intermediateSize: Int? { int("intermediate_size") }
    public var moeIntermediateSize: Int? { int("moe_intermediate_size") }
    public var vocabSize: Int? { int("vocab_size") }
    public var rmsNormEps: Double? { double("rms_norm_eps") }
    public var ropeTheta: Double? { double("rope_theta") }
    public var maxPositionEmbeddings: Int? { int("max_position_embeddings") }
    public var useMoE: Bool? { json["use_moe"]?.bool }
    /// gen2 says `n_routed_experts`, gen3 `num_experts`.
    public var expertCount: Int? { int("num_experts") ?? int("n_routed_experts") }
    public var expertsPerToken: Int? { int("num_experts_per_tok") }
    public var sharedExpertCount: Int? { int("n_shared_experts") }
    public var normTopKProb: Bool? { json["norm_topk_prob"]?.bool }
    public var tieWordEmbeddings: Bool? { json["tie_word_embeddings"]?.bool }
    public var imageIDs: [Int]? { json["image_ids"]?.array?.compactMap(\.int) }
    public var imageSpecialToken: String? { json["image_special_token"]?.string }
    public var imageTokenLength: Int? { int("image_token_len") }
    public var imageHiddenSize: Int? { int("image_hidden_size") }
}

/// A vision encoder's `config.json`: a SigLIP(2) vision config, a CLIP vision config, or a full
/// CLIPModel config whose `vision_config` is the part that matters.
public struct VisionConfig: Sendable {
    public let path: String
    public let json: JSONValue
    /// The object holding the vision fields (`vision_config` for a full CLIP/SigLIP model).
    public let vision: JSONValue
    public let modelType: String?

    public init(path: String) throws(FormatError) {
        self.path = path
        json = try JSONValue.read(path).value
        guard json.object != nil else { throw FormatError(.malformed, "\(path) is not a JSON object") }
        if let nested = json["vision_config"], nested.object != nil {
            vision = nested
            modelType = nested["model_type"]?.string ?? json["model_type"]?.string
        } else {
            vision = json
            modelType = json["model_type"]?.string
        }
    }

    /// CLIP or SigLIP, from `model_type`; nil when the config does not say.
    public var kind: VisionEncoderKind? {
        guard let type = modelType?.lowercased() else { return nil }
        if type.hasPrefix("clip") { return .clip }
        if type.hasPrefix("siglip") { return .siglip }
        return nil
    }

    private func int(_ key: String) -> Int? { vision[key]?.int }
    public var hiddenSize: Int? { int("hidden_size") }
    public var intermediateSize: Int? { int("intermediate_size") }
    public var layerCount: Int? { int("num_hidden_layers") }
    public var headCount: Int? { int("num_attention_heads") }
    public var imageSize: Int? { int("image_size") }
    public var patchSize: Int? { int("patch_size") }
    public var channelCount: Int? { int("num_channels") }
    public var layerNormEps: Double? { vision["layer_norm_eps"]?.double }
    public var hiddenAct: String? { vision["hidden_act"]?.string }

    /// Our name for the MLP activation, or nil for one the engine does not implement.
    public var activation: VisionActivation? {
        switch hiddenAct {
        case "quick_gelu": .quickGELU
        case "gelu_pytorch_tanh", "gelu_new", "gelu_fast": .geluTanh
        case "gelu": .geluErf
        default: nil
        }
    }
}

/// `preprocessor_config.json` of a CLIP or SigLIP folder, reduced to what the engine applies.
public struct PreprocessorConfig: Sendable, Equatable {
    public var resizeMode: ResizeMode
    /// `[shortest edge]` or `[height, width]`.
    public var size: [Int]
    /// `[height, width]`, nil when there is no centre crop.
    public var cropSize: [Int]?
    /// Pillow resampling code: 2 bilinear, 3 bicubic.
    public var resample: Int
    public var rescaleFactor: Float
    public var mean: [Float]
    public var std: [Float]

    public init(path: String) throws(FormatError) {
        let json = try JSONValue.read(path).value
        try self.init(json: json, path: path)
    }

    public init(json: JSONValue, path: String) throws(FormatError) {
        let processor = (json["image_processor_type"]?.string ?? json["feature_extractor_type"]?.string ?? "").lowercased()
        let isSiglip = processor.contains("siglip")
        func square(_ value: JSONValue?, _ key: String) throws(FormatError) -> (mode: ResizeMode, size: [Int])? {
            guard let value, !value.isNull else { return nil }
            if let n = value.int, n > 0 { return (.shortestEdge, [n]) }
            if let n = value["shortest_edge"]?.int, n > 0 { return (.shortestEdge, [n]) }
            if let h = value["height"]?.int, let w = value["width"]?.int, h > 0, w > 0 { return (.exact, [h, w]) }
            throw FormatError(.invalidModel, "\(path): \(key) is \(value); expected an integer, {\"shortest_edge\": n} or {\"height\": h, \"width\": w}")
        }
        guard let resize = try square(json["size"], "size") else {
            throw FormatError(.invalidModel, "\(path) has no \"size\": cannot tell how images are resized")
        }
        resizeMode = resize.mode
        size = resize.size
        let crops = json["do_center_crop"]?.bool ?? (json["crop_size"] != nil && !isSiglip)
        if crops, let crop = try square(json["crop_size"], "crop_size") {
            cropSize = crop.size.count == 1 ? [crop.size[0], crop.size[0]] : crop.size
        } else if crops {
            throw FormatError(.invalidModel, "\(path): do_center_crop is true but there is no crop_size")
        } else {
            cropSize = nil
        }
        // transformers' defaults: CLIP resizes bicubic, SigLIP bilinear.
        resample = json["resample"]?.int ?? (isSiglip ? 2 : 3)
        guard [2, 3].contains(resample) else {
            throw FormatError(.unsupported, "\(path): resample \(resample) is not supported (2 bilinear and 3 bicubic are)")
        }
        let rescale = json["do_rescale"]?.bool ?? true
        rescaleFactor = rescale ? Float(json["rescale_factor"]?.double ?? 1.0 / 255.0) : 1
        let normalize = json["do_normalize"]?.bool ?? true
        func triple(_ key: String) throws(FormatError) -> [Float]? {
            guard let value = json[key] else { return nil }
            if let d = value.double { return [Float(d), Float(d), Float(d)] }
            let values = value.array?.compactMap(\.double) ?? []
            guard values.count == 3 else { throw FormatError(.invalidModel, "\(path): \(key) should hold 3 numbers (R, G, B), found \(value)") }
            return values.map(Float.init)
        }
        if normalize {
            guard let mean = try triple("image_mean"), let std = try triple("image_std") else {
                throw FormatError(.invalidModel, "\(path): do_normalize needs image_mean and image_std")
            }
            guard std.allSatisfy({ $0 > 0 }) else { throw FormatError(.invalidModel, "\(path): image_std must be positive") }
            self.mean = mean
            self.std = std
        } else {
            mean = [0, 0, 0]
            std = [1, 1, 1]
        }
    }

    /// The square side the encoder sees: the crop if any, else the resize target.
    public var inputSize: [Int] { cropSize ?? (size.count == 2 ? size : [size[0], size[0]]) }
}
