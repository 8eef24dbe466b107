/// Element types of tensors as they appear in checkpoints and in GGUF files.
///
/// Names follow PyTorch (`float32`, `bfloat16`, ...) because that is how users talk about
/// their checkpoints; `ggmlType` gives the GGUF tag where GGUF has one.
public enum DType: String, Sendable, CaseIterable, Codable {
    case float64, float32, float16, bfloat16
    case int64, int32, int16, int8, uint8, bool
    /// GGUF's Q8_0: blocks of 32 values stored as one float16 scale and 32 int8.
    case q8_0
    /// GGUF's Q4_0: blocks of 32 values stored as one float16 scale and 16 bytes of 4-bit
    /// unsigned q (value j in the low nibble of byte j, value j + 16 in its high nibble);
    /// x = (q - 8) * d.
    case q4_0

    /// Bytes per element; for block types, bytes per block (see `blockSize`).
    public var byteSize: Int {
        switch self {
        case .float64, .int64: 8
        case .float32, .int32: 4
        case .float16, .bfloat16, .int16: 2
        case .int8, .uint8, .bool: 1
        case .q8_0: 34
        case .q4_0: 18
        }
    }

    /// Elements per block: 1 for plain types, 32 for Q8_0 and Q4_0.
    public var blockSize: Int { isQuantized ? 32 : 1 }

    /// Whether this is one of GGUF's block-quantised types (Q8_0, Q4_0): never in a checkpoint.
    public var isQuantized: Bool { self == .q8_0 || self == .q4_0 }

    /// Bytes taken by `elements` values, or nil when `elements` does not fill whole blocks.
    public func byteCount(elements: Int) -> Int? {
        guard elements % blockSize == 0 else { return nil }
        let (product, overflow) = (elements / blockSize).multipliedReportingOverflow(by: byteSize)
        return overflow ? nil : product
    }

    /// The safetensors spelling (`F32`, `BF16`, ...).
    public var safetensorsName: String {
        switch self {
        case .float64: "F64"
        case .float32: "F32"
        case .float16: "F16"
        case .bfloat16: "BF16"
        case .int64: "I64"
        case .int32: "I32"
        case .int16: "I16"
        case .int8: "I8"
        case .uint8: "U8"
        case .bool: "BOOL"
        case .q8_0: "Q8_0"
        case .q4_0: "Q4_0"
        }
    }

    public init?(safetensorsName: String) {
        guard let match = DType.allCases.first(where: { $0.safetensorsName == safetensorsName }) else { return nil }
        self = match
    }

    /// The GGUF/ggml type tag, for the types this project writes or reads in GGUF.
    public var ggmlType: UInt32? {
        switch self {
        case .float32: 0
        case .float16: 1
        case .q4_0: 2
        case .q8_0: 8
        case .int8: 24
        case .int16: 25
        case .int32: 26
        case .int64: 27
        case .float64: 28
        case .bfloat16: 30
        case .uint8, .bool: nil
        }
    }

    public init?(ggmlType: UInt32) {
        guard let match = DType.allCases.first(where: { $0.ggmlType == ggmlType }) else { return nil }
        self = match
    }

    /// Whether values of this type can be widened to Float32 for inference.
    public var isFloatingPoint: Bool {
        switch self {
        case .float64, .float32, .float16, .bfloat16, .q8_0, .q4_0: true
        default: false
        }
    }
}
