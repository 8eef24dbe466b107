/// A GGUF v3 file, memory-mapped. Tensors are windows on the map; shapes are exposed in PyTorch
/// order (outermost first), i.e. GGUF's `ne` dims reversed.
///
/// Everything read from the file is checked before use: magic and version, counts against the
/// file size, string lengths, the alignment, tensor offsets and sizes inside the data section,
/// no overlaps, no duplicate keys or tensor names. Bad input is a `FormatError`, never a crash.
public struct GGUFFile: TensorSource {
    public static let magic: [UInt8] = Array("GGUF".utf8)
    public static let version: UInt32 = 3
    public static let defaultAlignment = 32
    /// ggml's limit (GGML_MAX_DIMS).
    public static let maxDimensions = 4

    public let file: MappedFile
    public let metadata: GGUFMetadata
    public let tensors: [Tensor]
    public let alignment: Int
    /// Byte offset of the tensor data section.
    public let dataOffset: Int

    public var sourceDescription: String { file.path }

    public init(path: String) throws(FormatError) {
        try self.init(file: MappedFile(path: path))
    }

    public init(file: MappedFile) throws(FormatError) {
        self.file = file
        let path = file.path
        let parsed = try file.withBytes { (raw) throws(FormatError) -> (GGUFMetadata, [(String, DType, [Int], Int)], Int, Int) in
            var reader = GGUFByteReader(raw, path: path)
            let magic = try reader.bytes(4, what: "magic")
            guard magic.elementsEqual(GGUFFile.magic) else {
                throw FormatError(.malformed, "\(path) is not a GGUF file (it does not start with \"GGUF\")")
            }
            let version = try reader.u32("version")
            guard version == GGUFFile.version else {
                throw FormatError(.unsupported, "\(path) is GGUF version \(version); only version 3 is supported")
            }
            let tensorCount = try reader.u64("tensor count")
            let keyCount = try reader.u64("metadata count")
            // Every tensor info takes at least 8+4+8+4+8 bytes and every key/value 8+4+1.
            guard tensorCount <= UInt64(raw.count / 32), keyCount <= UInt64(raw.count / 13) else {
                throw FormatError(.malformed, "\(path): header claims \(tensorCount) tensors and \(keyCount) keys, more than the file (\(raw.count) bytes) can hold")
            }
            var metadata = GGUFMetadata()
            for _ in 0..<Int(keyCount) {
                let key = try reader.string("metadata key")
                let type = try reader.valueType(key)
                let value = try reader.value(type, key: key, depth: 0)
                try metadata.set(key, value)
            }
            var alignment = GGUFFile.defaultAlignment
            if let value = metadata[ModelKey.alignment] {
                guard case .uint32(let a) = value, a > 0, a & (a - 1) == 0, a <= 1 << 20 else {
                    throw FormatError(.malformed, "\(path): \(ModelKey.alignment) must be a u32 power of two, found \(value.summary())")
                }
                alignment = Int(a)
            }
            var infos: [(String, DType, [Int], Int)] = []
            var names = Set<String>()
            for _ in 0..<Int(tensorCount) {
                let name = try reader.string("tensor name")
                guard names.insert(name).inserted else {
                    throw FormatError(.malformed, "\(path): tensor \(name) appears twice")
                }
                let dimCount = try reader.u32("dimension count of \(name)")
                guard dimCount >= 1, dimCount <= GGUFFile.maxDimensions else {
                    throw FormatError(.malformed, "\(path): tensor \(name) has \(dimCount) dimensions (1 to \(GGUFFile.maxDimensions) allowed)")
                }
                var dims: [Int] = []
                for _ in 0..<dimCount {
                    let d = try reader.u64("dimension of \(name)")
                    guard d <= UInt64(Int32.max) else {
                        throw FormatError(.malformed, "\(path): tensor \(name) has a dimension of \(d)")
                    }
                    dims.append(Int(d))
                }
                let typeTag = try reader.u32("type of \(name)")
                guard let dtype = DType(ggmlType: typeTag) else {
                    throw FormatError(.unsupported, "\(path): tensor \(name) has ggml type \(typeTag), which this reader does not handle (F32, F16, BF16, Q8_0, Q4_0 and integer types only)")
                }
                let offset = try reader.u64("offset of \(name)")
                guard offset <= UInt64(raw.count) else {
                    throw FormatError(.malformed, "\(path): tensor \(name) starts at data offset \(offset), past the end of the file")
                }
                infos.append((name, dtype, Array(dims.reversed()), Int(offset)))
            }
            let dataOffset = (reader.offset + alignment - 1) / alignment * alignment
            return (metadata, infos, alignment, dataOffset)
        }
        metadata = parsed.0
        alignment = parsed.2
        dataOffset = parsed.3
        guard dataOffset <= file.count || parsed.1.isEmpty else {
            throw FormatError(.malformed, "\(path): the tensor data section would start at byte \(dataOffset), past the end of the file (\(file.count) bytes): the file is truncated")
        }
        var tensors: [Tensor] = []
        var spans: [(Range<Int>, String)] = []
        for (name, dtype, shape, offset) in parsed.1 {
            guard offset % alignment == 0 else {
                throw FormatError(.malformed, "\(path): tensor \(name) data offset \(offset) is not a multiple of the alignment \(alignment)")
            }
            var elements = 1
            for d in shape {
                let (product, overflow) = elements.multipliedReportingOverflow(by: d)
                guard !overflow else { throw FormatError(.malformed, "\(path): tensor \(name) shape \(shape) is too large") }
                elements = product
            }
            guard let size = dtype.byteCount(elements: elements) else {
                throw FormatError(.malformed, "\(path): tensor \(name) of type \(dtype.rawValue) has \(elements) elements, not a whole number of blocks of \(dtype.blockSize)")
            }
            let start = dataOffset + offset
            guard start <= file.count, size <= file.count - start else {
                throw FormatError(.malformed, "\(path): tensor \(name) (\(size) bytes at \(start)) runs past the end of the file (\(file.count) bytes): the file is truncated")
            }
            spans.append((start..<(start + size), name))
            tensors.append(Tensor(name: name, dtype: dtype, shape: shape, bytes: TensorBytes(file: file, range: start..<(start + size))))
        }
        spans.sort { $0.0.lowerBound < $1.0.lowerBound }
        for (a, b) in zip(spans, spans.dropFirst()) where a.0.upperBound > b.0.lowerBound {
            throw FormatError(.malformed, "\(path): tensors \(a.1) and \(b.1) overlap")
        }
        self.tensors = tensors
    }
}

/// A bounds-checked little-endian cursor over the GGUF header.
struct GGUFByteReader {
    let raw: UnsafeRawBufferPointer
    let path: String
    var offset = 0
    /// Arrays nest; a hostile file must not recurse us out of stack.
    static let maxDepth = 4

    init(_ raw: UnsafeRawBufferPointer, path: String) {
        self.raw = raw
        self.path = path
    }

    var remaining: Int { raw.count - offset }

    func truncated(_ what: String) -> FormatError {
        FormatError(.malformed, "\(path) is truncated: it ends inside the \(what) (byte \(offset) of \(raw.count))")
    }

    mutating func bytes(_ n: Int, what: String) throws(FormatError) -> UnsafeRawBufferPointer {
        guard n >= 0, n <= remaining else { throw truncated(what) }
        defer { offset += n }
        return UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + n)])
    }

    mutating func scalar<T: FixedWidthInteger>(_ type: T.Type, _ what: String) throws(FormatError) -> T {
        let size = MemoryLayout<T>.size
        guard size <= remaining, let base = raw.baseAddress else { throw truncated(what) }
        defer { offset += size }
        return T(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: T.self))
    }

    mutating func u32(_ what: String) throws(FormatError) -> UInt32 { try scalar(UInt32.self, what) }
    mutating func u64(_ what: String) throws(FormatError) -> UInt64 { try scalar(UInt64.self, what) }

    mutating func string(_ what: String) throws(FormatError) -> String {
        let length = try u64("length of a \(what)")
        guard length <= UInt64(remaining) else {
            throw FormatError(.malformed, "\(path): a \(what) at byte \(offset) claims \(length) bytes, more than the \(remaining) left in the file")
        }
        let bytes = try self.bytes(Int(length), what: what)
        guard let string = String(validating: bytes, as: UTF8.self) else {
            throw FormatError(.malformed, "\(path): a \(what) at byte \(offset - Int(length)) is not valid UTF-8")
        }
        return string
    }

    mutating func valueType(_ key: String) throws(FormatError) -> GGUFValueType {
        let tag = try u32("type of \(key)")
        guard let type = GGUFValueType(rawValue: tag) else {
            throw FormatError(.malformed, "\(path): metadata \(key) has unknown value type \(tag)")
        }
        return type
    }

    mutating func value(_ type: GGUFValueType, key: String, depth: Int) throws(FormatError) -> GGUFValue {
        switch type {
        case .uint8: return .uint8(try scalar(UInt8.self, key))
        case .int8: return .int8(try scalar(Int8.self, key))
        case .uint16: return .uint16(try scalar(UInt16.self, key))
        case .int16: return .int16(try scalar(Int16.self, key))
        case .uint32: return .uint32(try scalar(UInt32.self, key))
        case .int32: return .int32(try scalar(Int32.self, key))
        case .float32: return .float32(Float(bitPattern: try scalar(UInt32.self, key)))
        case .uint64: return .uint64(try scalar(UInt64.self, key))
        case .int64: return .int64(try scalar(Int64.self, key))
        case .float64: return .float64(Double(bitPattern: try scalar(UInt64.self, key)))
        case .bool:
            let byte = try scalar(UInt8.self, key)
            guard byte <= 1 else { throw FormatError(.malformed, "\(path): metadata \(key) is a bool with value \(byte)") }
            return .bool(byte == 1)
        case .string:
            return .string(try string("value of \(key)"))
        case .array:
            guard depth < GGUFByteReader.maxDepth else {
                throw FormatError(.malformed, "\(path): metadata \(key) nests arrays deeper than \(GGUFByteReader.maxDepth)")
            }
            let elementType = try valueType(key)
            let count = try u64("length of \(key)")
            // Each element takes at least one byte (8 for strings and arrays).
            let minimum = UInt64(elementType.fixedSize ?? 8)
            guard count <= UInt64(remaining) / minimum else {
                throw FormatError(.malformed, "\(path): metadata \(key) claims \(count) elements, more than the file can hold")
            }
            var values: [GGUFValue] = []
            values.reserveCapacity(Int(count))
            for _ in 0..<Int(count) {
                values.append(try value(elementType, key: key, depth: depth + 1))
            }
            return .array(elementType, values)
        }
    }
}
