import Formats

/// The `--type` of a conversion: the element type of weight matrices in the model file.
///
/// Whatever the type, 1-D tensors (norm weights, biases, the class embedding) and the
/// position embedding are written as F32. With `q8_0`, Q8_0 applies to the weight matrices of
/// linear layers (2-D, or 3-D stacked experts) whose innermost dimension is a multiple of 32,
/// the token embedding and output head included; every other tensor of 2 or more dimensions
/// (the patch-embedding convolution kernel, the MoE router, a matrix whose rows are not a
/// multiple of 32 long) is written as F16.
///
/// `q4_0` is `q8_0` with the decoder's linear layers (attention Q/K/V/O, the FFN's gate, up and
/// down, MoE and shared experts) in Q4_0: decode reads every one of them for each token, so half
/// their bytes is about half its time. The token embedding, the output head, the vision encoder
/// and the projector stay Q8_0 (the vision encoder is bound by arithmetic, not bytes; the head's
/// 4-bit rounding would move every logit directly).
public enum OutputType: String, CaseIterable, Sendable {
    case f32, f16, bf16, q8_0, q4_0

    /// `general.file_type` (llama.cpp's LLAMA_FTYPE): 0 all F32, 1 mostly F16, 2 mostly Q4_0,
    /// 7 mostly Q8_0, 32 mostly BF16.
    public var fileType: UInt32 {
        switch self {
        case .f32: 0
        case .f16: 1
        case .q4_0: 2
        case .q8_0: 7
        case .bf16: 32
        }
    }

    /// The element type of weight matrices.
    public var matrixType: DType {
        switch self {
        case .f32: .float32
        case .f16: .float16
        case .bf16: .bfloat16
        case .q8_0: .q8_0
        case .q4_0: .q4_0
        }
    }

    /// Whether matrices are block-quantised (Q8_0, and Q4_0 for the decoder's linear layers).
    var isQuantized: Bool { self == .q8_0 || self == .q4_0 }

    public init(parsing text: String) throws(FormatError) {
        guard let type = OutputType(rawValue: text.lowercased()) else {
            throw FormatError(.unsupported, "unknown --type \(text): choose one of \(OutputType.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        self = type
    }
}

/// What a tensor is, which decides its element type in the model file.
enum TensorRole: Sendable {
    /// Norm weights, biases, class and position embeddings: always F32.
    case keepF32
    /// A linear layer's weight (or stacked experts, or an embedding table): the --type, Q8_0 when
    /// rows allow (also under q4_0).
    case matrix
    /// A linear layer of the decoder's blocks (attention, FFN, experts): as `matrix`, but Q4_0 under q4_0.
    case decoderMatrix
    /// A matrix that stays at float precision even under Q8_0 (convolution kernel, MoE router).
    case floatMatrix

    func dtype(for type: OutputType, shape: [Int]) -> DType {
        switch self {
        case .keepF32:
            return .float32
        case .matrix where type.isQuantized, .decoderMatrix where type.isQuantized:
            if shape.count >= 2, let inner = shape.last, inner % Quantization.q8BlockSize == 0 {
                return self == .decoderMatrix ? type.matrixType : .q8_0
            }
            return .float16
        case .matrix, .decoderMatrix, .floatMatrix:
            return type.isQuantized ? .float16 : type.matrixType
        }
    }
}
