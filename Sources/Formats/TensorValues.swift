extension Tensor {
    /// The elements widened to Float32, in row-major order.
    ///
    /// float32, float16, bfloat16 (the upper 16 bits of a Float32), float64 (rounded) and
    /// Q8_0 (scale times int8), Q4_0 (scale times q - 8); other types are refused with the tensor's name.
    public func floatValues() throws(FormatError) -> [Float] {
        let count = elementCount
        guard let expected = dtype.byteCount(elements: count), expected == bytes.count else {
            throw FormatError(.malformed, "tensor \(name): \(dtype.rawValue) shape \(shape) needs \(dtype.byteCount(elements: count).map(String.init) ?? "a whole number of blocks of") bytes but holds \(bytes.count)")
        }
        switch dtype {
        case .float32, .float16, .bfloat16, .float64, .q8_0, .q4_0:
            break
        case .int64, .int32, .int16, .int8, .uint8, .bool:
            throw FormatError(.unsupported, "tensor \(name) holds \(dtype.rawValue) values, not floating point; it cannot be read as weights")
        }
        let type = dtype
        return bytes.withUnsafeBytes { raw in
            [Float](unsafeUninitializedCapacity: count) { out, initialized in
                Self.widen(type, raw, into: out)
                initialized = count
            }
        }
    }

    /// Plain loops over raw pointers: these run for every weight at conversion time, also in
    /// unoptimised (debug) builds, where closures per element cost a microsecond each.
    private static func widen(_ dtype: DType, _ raw: UnsafeRawBufferPointer, into out: UnsafeMutableBufferPointer<Float>) {
        guard let source = raw.baseAddress, let target = out.baseAddress else { return }
        let count = out.count
        switch dtype {
        case .float32:
            target.withMemoryRebound(to: UInt8.self, capacity: count * 4) { $0.update(from: source.assumingMemoryBound(to: UInt8.self), count: count * 4) }
            #if _endian(big)
            for i in 0..<count { target[i] = Float(bitPattern: UInt32(littleEndian: target[i].bitPattern)) }
            #endif
        case .float16:
            var i = 0
            while i < count {
                let bits = UInt16(littleEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                target[i] = Float(Float16(bitPattern: bits))
                i += 1
            }
        case .bfloat16:
            var i = 0
            while i < count {
                let bits = UInt16(littleEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                target[i] = Float(bitPattern: UInt32(bits) &<< 16)
                i += 1
            }
        case .float64:
            var i = 0
            while i < count {
                target[i] = Float(Double(bitPattern: UInt64(littleEndian: source.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))))
                i += 1
            }
        case .q8_0:
            var block = 0
            while block < count / 32 {
                let base = block * 34
                let scale = Float(Float16(bitPattern: UInt16(littleEndian: source.loadUnaligned(fromByteOffset: base, as: UInt16.self))))
                var i = 0
                while i < 32 {
                    target[block * 32 + i] = scale * Float(Int8(bitPattern: source.load(fromByteOffset: base + 2 + i, as: UInt8.self)))
                    i += 1
                }
                block += 1
            }
        case .q4_0:
            var block = 0
            while block < count / 32 {
                let base = block * 18
                let scale = Float(Float16(bitPattern: UInt16(littleEndian: source.loadUnaligned(fromByteOffset: base, as: UInt16.self))))
                var i = 0
                while i < 16 {
                    let byte = source.load(fromByteOffset: base + 2 + i, as: UInt8.self)
                    target[block * 32 + i] = scale * Float(Int(byte & 0x0F) - 8)
                    target[block * 32 + i + 16] = scale * Float(Int(byte >> 4) - 8)
                    i += 1
                }
                block += 1
            }
        default:
            break
        }
    }
}
