extension Tensor {
    /// The elements widened to Float32, in row-major order.
    ///
    /// float32, float16, bfloat16 (the upper 16 bits of a Float32), float64 (rounded) and
    /// Q8_0 (scale times int8); other types are refused with the tensor's name.
    public func floatValues() throws(FormatError) -> [Float] {
        let count = elementCount
        guard let expected = dtype.byteCount(elements: count), expected == bytes.count else {
            throw FormatError(.malformed, "tensor \(name): \(dtype.rawValue) shape \(shape) needs \(dtype.byteCount(elements: count).map(String.init) ?? "a whole number of blocks of") bytes but holds \(bytes.count)")
        }
        switch dtype {
        case .float32:
            return bytes.withUnsafeBytes { raw in
                (0..<count).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
            }
        case .float16:
            return bytes.withUnsafeBytes { raw in
                (0..<count).map { Float(Float16(bitPattern: UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self)))) }
            }
        case .bfloat16:
            return bytes.withUnsafeBytes { raw in
                (0..<count).map { Float(bitPattern: UInt32(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self))) << 16) }
            }
        case .float64:
            return bytes.withUnsafeBytes { raw in
                (0..<count).map { Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self)))) }
            }
        case .q8_0:
            return bytes.withUnsafeBytes { raw in
                var values = [Float](repeating: 0, count: count)
                for block in 0..<(count / 32) {
                    let base = block * 34
                    let scale = Float(Float16(bitPattern: UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: base, as: UInt16.self))))
                    for i in 0..<32 {
                        values[block * 32 + i] = scale * Float(Int8(bitPattern: raw[base + 2 + i]))
                    }
                }
                return values
            }
        case .int64, .int32, .int16, .int8, .uint8, .bool:
            throw FormatError(.unsupported, "tensor \(name) holds \(dtype.rawValue) values, not floating point; it cannot be read as weights")
        }
    }
}
