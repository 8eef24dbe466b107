import CKernels

/// Element formats of weight matrices that the low-precision kernels read in place.
///
/// Row-major `[rows = out, columns = in]` like PyTorch Linear weights and GGUF tensors
/// (GGUF's `ne[0]` is `columns`).
public enum WeightFormat: Sendable, CaseIterable, CustomStringConvertible {
    /// IEEE float32.
    case float32
    /// IEEE binary16.
    case float16
    /// bfloat16: the upper 16 bits of a float32.
    case bfloat16
    /// GGUF's Q8_0: blocks of 32 values stored as a float16 scale `d` and 32 int8 `q`; value = d * q.
    case q8_0
    /// GGUF's Q4_0: blocks of 32 values stored as a float16 scale `d` and 16 bytes of 4-bit `q`
    /// (value j in the low nibble of byte j, value j + 16 in the high one); value = d * (q - 8).
    case q4_0

    /// The format with this GGML type tag (0 F32, 1 F16, 2 Q4_0, 8 Q8_0, 30 BF16), or nil.
    public init?(ggmlType: UInt32) {
        switch ggmlType {
        case 0: self = .float32
        case 1: self = .float16
        case 2: self = .q4_0
        case 8: self = .q8_0
        case 30: self = .bfloat16
        default: return nil
        }
    }

    /// The GGML type tag.
    public var ggmlType: UInt32 {
        switch self {
        case .float32: 0
        case .float16: 1
        case .q4_0: 2
        case .q8_0: 8
        case .bfloat16: 30
        }
    }

    /// Values per storage block: 32 for Q8_0 and Q4_0, 1 otherwise. Row lengths must be multiples of it.
    public var valuesPerBlock: Int { isBlockQuantized ? 32 : 1 }

    /// Whether this is one of GGUF's block formats (Q8_0, Q4_0), which pack into int8 panels.
    public var isBlockQuantized: Bool { self == .q8_0 || self == .q4_0 }

    /// Bytes of one row of `columns` values, or nil when `columns` is negative or not a whole
    /// number of blocks.
    public func rowBytes(columns: Int) -> Int? {
        guard columns >= 0, columns % valuesPerBlock == 0 else { return nil }
        let (bytes, overflow) = (columns / valuesPerBlock).multipliedReportingOverflow(by: blockBytes)
        return overflow ? nil : bytes
    }

    var blockBytes: Int {
        switch self {
        case .float32: 4
        case .float16, .bfloat16: 2
        case .q8_0: 34
        case .q4_0: 18
        }
    }

    var tag: Int32 { Int32(ggmlType) }

    public var description: String {
        switch self {
        case .float32: "f32"
        case .float16: "f16"
        case .bfloat16: "bf16"
        case .q8_0: "q8_0"
        case .q4_0: "q4_0"
        }
    }
}

/// Which instruction set the C kernels use; `best` is chosen from the CPU at run time.
public enum KernelPath: Int32, Sendable, CaseIterable, Comparable, CustomStringConvertible {
    /// Plain C at the baseline ISA: runs on any CPU.
    case portable = 0
    /// AVX2 + FMA + F16C (Haswell and newer).
    case avx2 = 1
    /// AVX-512 F/BW/VL/DQ.
    case avx512 = 2
    /// AVX-512 with AVX512_BF16 dot products for `.bfloat16` weights: x is rounded to bfloat16
    /// first (up to 2^-9 relative error per x value; about doubles the BF16 product error), for
    /// twice the arithmetic rate. Opt-in only; other formats run as `.avx512`.
    case avx512bf16 = 3

    /// The best exact path this CPU supports (never `.avx512bf16`, which rounds x).
    public static var best: KernelPath { KernelPath(rawValue: ck_isa_best()) ?? .portable }
    /// Every path this CPU can run, slowest first.
    public static var available: [KernelPath] {
        allCases.filter { $0 <= best && $0 != .avx512bf16 } + (best == .avx512 && hasAVX512BF16 ? [.avx512bf16] : [])
    }
    /// Whether the CPU has AVX512_BF16 and AVX512_VNNI.
    public static var hasAVX512BF16: Bool { ck_cpu_has_avx512bf16() != 0 }
    public static var hasAVX512VNNI: Bool { ck_cpu_has_avx512vnni() != 0 }

    public static func < (a: KernelPath, b: KernelPath) -> Bool { a.rawValue < b.rawValue }

    public var description: String {
        switch self {
        case .portable: "portable"
        case .avx2: "avx2"
        case .avx512: "avx512"
        case .avx512bf16: "avx512bf16"
        }
    }
}

/// A shape or size that does not fit a weight format, with what to check.
public struct LowPrecisionError: Error, CustomStringConvertible, Equatable {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// Conversions between float32 and the reduced-precision weight formats.
///
/// All of them are bit-exact with numpy/gguf-py: float16 and bfloat16 round to nearest even
/// (overflow to infinity, NaN stays NaN), Q8_0 and Q4_0 quantise as ggml's
/// `quantize_row_q8_0_ref` and `quantize_row_q4_0_ref`.
public enum LowPrecision {
    /// float32 -> IEEE half bits, round to nearest even.
    public static func float16Bits(_ values: [Float]) -> [UInt16] {
        var out = [UInt16](repeating: 0, count: values.count)
        values.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                ck_f32_to_f16(src.baseAddress, dst.baseAddress, src.count)
            }
        }
        return out
    }

    /// IEEE half bits -> float32 (exact).
    public static func floats(float16Bits bits: [UInt16]) -> [Float] {
        var out = [Float](repeating: 0, count: bits.count)
        bits.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in ck_f16_to_f32(src.baseAddress, dst.baseAddress, src.count) }
        }
        return out
    }

    /// float32 -> bfloat16 bits, round to nearest even, NaN kept (quiet), as gguf-py does.
    public static func bfloat16Bits(_ values: [Float]) -> [UInt16] {
        var out = [UInt16](repeating: 0, count: values.count)
        values.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in ck_f32_to_bf16(src.baseAddress, dst.baseAddress, src.count) }
        }
        return out
    }

    /// bfloat16 bits -> float32 (exact).
    public static func floats(bfloat16Bits bits: [UInt16]) -> [Float] {
        var out = [Float](repeating: 0, count: bits.count)
        bits.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in ck_bf16_to_f32(src.baseAddress, dst.baseAddress, src.count) }
        }
        return out
    }

    /// float32 -> Q8_0 blocks (34 bytes per 32 values), bit-exact with gguf-py for finite input.
    public static func q8_0Blocks(_ values: [Float]) throws(LowPrecisionError) -> [UInt8] {
        try blocks(values, format: "Q8_0", blockBytes: 34, ck_f32_to_q8_0)
    }

    /// Q8_0 blocks -> float32 (d * q, exact).
    public static func floats(q8_0Blocks bytes: [UInt8]) throws(LowPrecisionError) -> [Float] {
        try floats(bytes, format: "Q8_0", blockBytes: 34, ck_q8_0_to_f32)
    }

    /// float32 -> Q4_0 blocks (18 bytes per 32 values), bit-exact with gguf-py for finite input.
    public static func q4_0Blocks(_ values: [Float]) throws(LowPrecisionError) -> [UInt8] {
        try blocks(values, format: "Q4_0", blockBytes: 18, ck_f32_to_q4_0)
    }

    /// Q4_0 blocks -> float32 (d * (q - 8), exact).
    public static func floats(q4_0Blocks bytes: [UInt8]) throws(LowPrecisionError) -> [Float] {
        try floats(bytes, format: "Q4_0", blockBytes: 18, ck_q4_0_to_f32)
    }

    /// Blocks of 32 values, `blockBytes` each, written by a C quantiser.
    private static func blocks(_ values: [Float], format: String, blockBytes: Int,
                               _ quantize: (UnsafePointer<Float>?, UnsafeMutableRawPointer?, Int) -> Void) throws(LowPrecisionError) -> [UInt8] {
        guard values.count % 32 == 0 else {
            throw LowPrecisionError("\(format) needs a multiple of 32 values, got \(values.count)")
        }
        var out = [UInt8](repeating: 0, count: values.count / 32 * blockBytes)
        values.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBytes { dst in quantize(src.baseAddress, dst.baseAddress, src.count) }
        }
        return out
    }

    /// Whole blocks of 32 values, `blockBytes` each, expanded by a C dequantiser.
    private static func floats(_ bytes: [UInt8], format: String, blockBytes: Int,
                               _ expand: (UnsafeRawPointer?, UnsafeMutablePointer<Float>?, Int) -> Void) throws(LowPrecisionError) -> [Float] {
        guard bytes.count % blockBytes == 0 else {
            throw LowPrecisionError("\(format) data must be whole \(blockBytes)-byte blocks, got \(bytes.count) bytes")
        }
        var out = [Float](repeating: 0, count: bytes.count / blockBytes * 32)
        bytes.withUnsafeBytes { src in
            out.withUnsafeMutableBufferPointer { dst in expand(src.baseAddress, dst.baseAddress, dst.count) }
        }
        return out
    }

    /// Encodes `values` (a whole number of rows of `format`) into the format's bytes.
    public static func encode(_ values: [Float], as format: WeightFormat) throws(LowPrecisionError) -> [UInt8] {
        switch format {
        case .float32:
            return values.withUnsafeBytes { Array($0) }
        case .float16:
            return float16Bits(values).withUnsafeBytes { Array($0) }
        case .bfloat16:
            return bfloat16Bits(values).withUnsafeBytes { Array($0) }
        case .q8_0:
            return try q8_0Blocks(values)
        case .q4_0:
            return try q4_0Blocks(values)
        }
    }
}
