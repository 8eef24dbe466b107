/// Element conversions between the float types of checkpoints and model files, and GGUF's Q8_0.
///
/// Q8_0 follows ggml's `quantize_row_q8_0_ref` (and gguf-py's `quants.py`) bit for bit: per block
/// of 32 values, `d = max|x| / 127` in float32, `q = roundf(x * (1 / d))`, `d` stored as float16.
public enum Quantization {
    public static let q8BlockSize = 32
    public static let q8BlockBytes = 34

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

    @inline(__always)
    public static func float(float16Bits bits: UInt16) -> Float {
        Float(Float16(bitPattern: bits))
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
        default:
            return false
        }
        return true
    }

    /// Narrows `count` float32 values to `dtype` (float32, float16, bfloat16 or q8_0) at `destination`.
    /// For q8_0, `count` must be a multiple of 32. Returns false for any other dtype.
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
            for j in 0..<q8BlockSize {
                // `rounded()` is round-half-away-from-zero, C's roundf.
                let q = (x[j] * id).rounded()
                // Only non-finite weights can leave [-127, 127]; they must not trap.
                let clamped: Int8 = q.isNaN ? 0 : Int8(Swift.max(-127, Swift.min(127, q)))
                out.storeBytes(of: clamped, toByteOffset: 2 + j, as: Int8.self)
            }
        }
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

    /// Convenience for tests and small tensors: the float32 values of raw `bytes` of `dtype`.
    public static func floats(_ bytes: UnsafeRawBufferPointer, dtype: DType) -> [Float]? {
        guard dtype.isFloatingPoint, let base = bytes.baseAddress ?? (bytes.isEmpty ? UnsafeRawPointer(bitPattern: 1) : nil) else { return nil }
        let count = dtype == .q8_0 ? bytes.count / q8BlockBytes * q8BlockSize : bytes.count / dtype.byteSize
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
