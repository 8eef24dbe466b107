/// Element conversions between the float types of checkpoints and model files, and GGUF's Q8_0.
///
/// Q8_0 follows ggml's `quantize_row_q8_0_ref` (and gguf-py's `quants.py`) bit for bit: per block
/// of 32 values, `d = max|x| / 127` in float32, `q = roundf(x * (1 / d))`, `d` stored as float16.
/// Q4_0 follows `quantize_row_q4_0_ref`: `d = m / -8` for the value `m` of largest magnitude
/// (sign kept), `q = min(15, trunc(x * (1 / d) + 8.5))`, two 4-bit q per byte.
public enum Quantization {
    public static let q8BlockSize = 32
    public static let q8BlockBytes = 34
    public static let q4BlockBytes = 18

    // MARK: scalar conversions

    /// float32 -> bfloat16 with round-to-nearest-even, as PyTorch's `.to(torch.bfloat16)`.
    @inline(__always)
    public static func bfloat16Bits(_ value: Float) -> UInt16 {
        let bits = value.bitPattern
        if value.isNaN { return UInt16(truncatingIfNeeded: bits >> 16) | 0x0040 }
        let rounding: UInt32 = 0x7FFF &+ ((bits >> 16) & 1)
        return UInt16(truncatingIfNeeded: (bits &+ rounding) >> 16)
    }

    @inline(__always)
    public static func float(bfloat16Bits bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    @inline(__always)
    public static func float16Bits(_ value: Float) -> UInt16 {
        Float16(value).bitPattern
    }

    /// float16 -> float32, exact. Bit arithmetic rather than `Float16`, whose conversion is a
    /// library call per element on baseline x86-64 (no F16C).
    @inline(__always)
    public static func float(float16Bits bits: UInt16) -> Float {
        let h = UInt32(bits)
        let sign = (h & 0x8000) << 16
        let magnitude = h & 0x7FFF
        if magnitude >= 0x7C00 {  // infinity, NaN
            return Float(bitPattern: sign | 0x7F80_0000 | ((magnitude & 0x03FF) << 13))
        }
        if magnitude >= 0x0400 {  // normal: rebias the exponent from 15 to 127
            return Float(bitPattern: sign | ((magnitude << 13) &+ 0x3800_0000))
        }
        let subnormal = Float(magnitude) * 0x1p-24  // exact
        return sign == 0 ? subnormal : -subnormal
    }

    // MARK: bulk conversions

    /// Widens `count` elements of `dtype` at `source` to float32. Returns false for a dtype
    /// that is not a float type this project converts (int tensors are never widened).
    @discardableResult
    public static func decode(
        _ source: UnsafeRawPointer, dtype: DType, count: Int, into destination: UnsafeMutablePointer<Float>
    ) -> Bool {
        switch dtype {
        case .float32:
            destination.update(from: source.assumingMemoryBound(to: Float.self), count: count)
        case .float16:
            for i in 0..<count {
                destination[i] = float(float16Bits: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
            }
        case .bfloat16:
            for i in 0..<count {
                destination[i] = float(bfloat16Bits: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
            }
        case .float64:
            for i in 0..<count {
                destination[i] = Float(source.loadUnaligned(fromByteOffset: 8 * i, as: Double.self))
            }
        case .q8_0:
            guard count % q8BlockSize == 0 else { return false }
            dequantizeQ8_0(source, count: count, into: destination)
        case .q4_0:
            guard count % q8BlockSize == 0 else { return false }
            dequantizeQ4_0(source, count: count, into: destination)
        default:
            return false
        }
        return true
    }

    /// Narrows `count` float32 values to `dtype` (float32, float16, bfloat16, q8_0 or q4_0) at `destination`.
    /// For q8_0 and q4_0, `count` must be a multiple of 32. Returns false for any other dtype.
    @discardableResult
    public static func encode(
        _ source: UnsafePointer<Float>, count: Int, as dtype: DType, into destination: UnsafeMutableRawPointer
    ) -> Bool {
        switch dtype {
        case .float32:
            destination.copyMemory(from: source, byteCount: 4 * count)
        case .float16:
            for i in 0..<count {
                destination.storeBytes(of: float16Bits(source[i]).littleEndian, toByteOffset: 2 * i, as: UInt16.self)
            }
        case .bfloat16:
            for i in 0..<count {
                destination.storeBytes(of: bfloat16Bits(source[i]).littleEndian, toByteOffset: 2 * i, as: UInt16.self)
            }
        case .q8_0:
            guard count % q8BlockSize == 0 else { return false }
            quantizeQ8_0(source, count: count, into: destination)
        case .q4_0:
            guard count % q8BlockSize == 0 else { return false }
            quantizeQ4_0(source, count: count, into: destination)
        default:
            return false
        }
        return true
    }

    // MARK: Q8_0

    /// Quantizes `count` (a multiple of 32) values into `count / 32` blocks of 34 bytes.
    public static func quantizeQ8_0(_ source: UnsafePointer<Float>, count: Int, into destination: UnsafeMutableRawPointer) {
        for block in 0..<(count / q8BlockSize) {
            let x = source + block * q8BlockSize
            var amax: Float = 0
            for j in 0..<q8BlockSize { amax = max(amax, abs(x[j])) }
            let d = amax / 127
            let id: Float = d == 0 ? 0 : 1 / d
            let out = destination + block * q8BlockBytes
            out.storeBytes(of: float16Bits(d).littleEndian, as: UInt16.self)
            let q = (out + 2).assumingMemoryBound(to: Int8.self)
            if amax.isFinite {
                // |x * id| <= 127 (+ rounding), so the branch-free rounding applies to every value.
                for j in 0..<q8BlockSize { q[j] = roundFinite(x[j] * id) }
            } else {
                for j in 0..<q8BlockSize { q[j] = roundToInt8(x[j] * id) }
            }
        }
    }

    /// `roundf` for |v| < 2^22 without a libm call or branches: adding 1.5 * 2^23 leaves the
    /// nearest-even integer in the low mantissa bits; a tie that went towards zero is then
    /// moved away from zero, which is what roundf (and gguf-py's np_roundf) do.
    @inline(__always)
    static func roundFinite(_ v: Float) -> Int8 {
        let magic: Float = 0x1.8p23
        var i = Int32(bitPattern: (v + magic).bitPattern) &- Int32(bitPattern: magic.bitPattern)
        let diff = v - Float(i)  // exact
        i &+= (v > 0 && diff == 0.5) ? 1 : 0
        i &-= (v < 0 && diff == -0.5) ? 1 : 0
        return Int8(truncatingIfNeeded: Swift.max(-127, Swift.min(127, i)))
    }

    /// C's `roundf` (half away from zero), as gguf-py's `np_roundf`, into [-127, 127]: the
    /// integer part by truncation plus one when the exact remainder reaches a half. Avoids a
    /// libm call per weight.
    @inline(__always)
    static func roundToInt8(_ v: Float) -> Int8 {
        guard v.magnitude < 128 else {
            // Only non-finite weights get here; they must not trap.
            return v.isNaN ? 0 : (v > 0 ? 127 : -127)
        }
        var i = Int32(v)
        let remainder = v - Float(i)  // exact for |v| < 2^23
        if remainder >= 0.5 { i += 1 } else if remainder <= -0.5 { i -= 1 }
        return Int8(Swift.max(-127, Swift.min(127, i)))
    }

    /// Expands Q8_0 blocks back to float32: `x = d * q`.
    public static func dequantizeQ8_0(_ source: UnsafeRawPointer, count: Int, into destination: UnsafeMutablePointer<Float>) {
        for block in 0..<(count / q8BlockSize) {
            let input = source + block * q8BlockBytes
            let d = float(float16Bits: input.loadUnaligned(as: UInt16.self))
            let out = destination + block * q8BlockSize
            for j in 0..<q8BlockSize {
                out[j] = d * Float(input.load(fromByteOffset: 2 + j, as: Int8.self))
            }
        }
    }

    // MARK: Q4_0

    /// Quantizes `count` (a multiple of 32) values into `count / 32` blocks of 18 bytes.
    public static func quantizeQ4_0(_ source: UnsafePointer<Float>, count: Int, into destination: UnsafeMutableRawPointer) {
        for block in 0..<(count / q8BlockSize) {
            let x = source + block * q8BlockSize
            // The first value of largest magnitude, with its sign: d is negative when it is positive.
            var amax: Float = 0, extreme: Float = 0
            for j in 0..<q8BlockSize where amax < abs(x[j]) {
                amax = abs(x[j])
                extreme = x[j]
            }
            let d = extreme / -8
            let id: Float = d == 0 ? 0 : 1 / d
            let out = destination + block * q4BlockBytes
            out.storeBytes(of: float16Bits(d).littleEndian, as: UInt16.self)
            for j in 0..<16 {
                let low = nibble(x[j] * id), high = nibble(x[j + 16] * id)
                out.storeBytes(of: low | (high << 4), toByteOffset: 2 + j, as: UInt8.self)
            }
        }
    }

    /// `min(15, trunc(v + 8.5))` as ggml computes it (the sum rounded to float32 first), without
    /// trapping on the NaN of a non-finite block.
    @inline(__always)
    static func nibble(_ v: Float) -> UInt8 {
        let shifted = v + 8.5
        guard shifted >= 0 else { return 0 }
        return shifted < 15 ? UInt8(shifted) : 15
    }

    /// Expands Q4_0 blocks back to float32: `x = d * (q - 8)`.
    public static func dequantizeQ4_0(_ source: UnsafeRawPointer, count: Int, into destination: UnsafeMutablePointer<Float>) {
        for block in 0..<(count / q8BlockSize) {
            let input = source + block * q4BlockBytes
            let d = float(float16Bits: input.loadUnaligned(as: UInt16.self))
            let out = destination + block * q8BlockSize
            for j in 0..<16 {
                let byte = input.load(fromByteOffset: 2 + j, as: UInt8.self)
                out[j] = d * Float(Int32(byte & 0x0F) - 8)
                out[j + 16] = d * Float(Int32(byte >> 4) - 8)
            }
        }
    }

    /// Convenience for tests and small tensors: the float32 values of raw `bytes` of `dtype`.
    public static func floats(_ bytes: UnsafeRawBufferPointer, dtype: DType) -> [Float]? {
        guard dtype.isFloatingPoint, let base = bytes.baseAddress ?? (bytes.isEmpty ? UnsafeRawPointer(bitPattern: 1) : nil) else { return nil }
        let count = dtype.isQuantized ? bytes.count / dtype.byteSize * dtype.blockSize : bytes.count / dtype.byteSize
        guard dtype.byteCount(elements: count) == bytes.count else { return nil }
        if count == 0 { return [] }
        var ok = false
        let values = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            ok = decode(base, dtype: dtype, count: count, into: buffer.baseAddress!)
            initialized = count
        }
        return ok ? values : nil
    }
}
