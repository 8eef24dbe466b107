import CKernels

extension Kernels {
    /// IEEE half-precision little-endian values to float32 (F16C where the CPU has it).
    public static func widenFloat16(_ src: UnsafeRawPointer, count: Int, into out: UnsafeMutablePointer<Float>) {
        ck_f16_to_f32(src.assumingMemoryBound(to: UInt16.self), out, count)
    }

    /// bfloat16 little-endian values to float32 (the upper half of a float32).
    public static func widenBFloat16(_ src: UnsafeRawPointer, count: Int, into out: UnsafeMutablePointer<Float>) {
        for i in 0..<count {
            let bits = UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
            out[i] = Float(bitPattern: UInt32(bits) << 16)
        }
    }

    /// Bytes of one GGUF Q8_0 block: a float16 scale then 32 signed bytes.
    public static let q8_0BlockBytes = 34
    public static let q8_0BlockValues = 32

    /// GGUF Q8_0 blocks to float32: value = scale · q. `count` must be a multiple of 32.
    public static func widenQ8_0(_ src: UnsafeRawPointer, count: Int, into out: UnsafeMutablePointer<Float>) {
        for block in 0..<(count / q8_0BlockValues) {
            let base = block * q8_0BlockBytes
            let scaleBits = UInt16(littleEndian: src.loadUnaligned(fromByteOffset: base, as: UInt16.self))
            let scale = Float(Float16(bitPattern: scaleBits))
            let dst = out + block * q8_0BlockValues
            for j in 0..<q8_0BlockValues {
                let q = src.load(fromByteOffset: base + 2 + j, as: Int8.self)
                dst[j] = scale * Float(q)
            }
        }
    }

    /// GGUF Q4_0 blocks to float32: value = scale · (q - 8). `count` must be a multiple of 32.
    public static func widenQ4_0(_ src: UnsafeRawPointer, count: Int, into out: UnsafeMutablePointer<Float>) {
        ck_q4_0_to_f32(src, out, count)
    }
}

extension Kernels {
    /// float32 to IEEE half precision, rounded to nearest even (F16C where the CPU has it).
    public static func narrowToFloat16(_ src: UnsafePointer<Float>, count: Int, into out: UnsafeMutableRawPointer) {
        ck_f32_to_f16(src, out.assumingMemoryBound(to: UInt16.self), count)
    }
}

extension Kernels {
    /// `rows` KV-cache rows of `heads` × `headDim` float32 values to int8, one scale per row and
    /// head (`scales[row · heads + head]`, max|x| / 127): the int8 cache's rounding.
    public static func narrowToScaledInt8(_ src: UnsafePointer<Float>, rows: Int, heads: Int, headDim: Int,
                                          into out: UnsafeMutableRawPointer, scales: UnsafeMutablePointer<Float>) {
        ck_kv_quantize_i8(src, rows, heads, headDim, out.assumingMemoryBound(to: Int8.self), scales)
    }

    /// The float32 values of rows narrowed by `narrowToScaledInt8`.
    public static func widenScaledInt8(_ src: UnsafeRawPointer, scales: UnsafePointer<Float>, rows: Int, heads: Int,
                                       headDim: Int, into out: UnsafeMutablePointer<Float>) {
        ck_kv_dequantize_i8(src.assumingMemoryBound(to: Int8.self), scales, rows, heads, headDim, out)
    }
}

extension Kernels {
    /// Positions an int8 cache's key block holds (see `narrowToInt8KeyBlocks`).
    public static let int8KeyBlockPositions = 16

    /// `rows` float32 key rows (`[rows, heads · headDim]`) written as positions `first...` of an int8
    /// cache's key blocks (16 positions a block, laid out for integer dot products; `ck_decode.h`),
    /// each head's row rounded like `narrowToScaledInt8`, scales at `scales[t · heads + head]`.
    public static func narrowToInt8KeyBlocks(_ src: UnsafePointer<Float>, rows: Int, first: Int, heads: Int, headDim: Int,
                                             into blocks: UnsafeMutableRawPointer, scales: UnsafeMutablePointer<Float>) {
        ck_kv_store_i8_keys(src, rows, first, heads, headDim, blocks.assumingMemoryBound(to: UInt8.self), scales)
    }

    /// Positions `0..<rows` of int8 key blocks as float32 rows `[rows, heads · headDim]`.
    public static func widenInt8KeyBlocks(_ blocks: UnsafeRawPointer, scales: UnsafePointer<Float>, rows: Int, heads: Int,
                                          headDim: Int, into out: UnsafeMutablePointer<Float>) {
        ck_kv_load_i8_keys(blocks.assumingMemoryBound(to: UInt8.self), scales, rows, heads, headDim, out)
    }
}
