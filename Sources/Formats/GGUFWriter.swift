#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One tensor to be written: name, element type and PyTorch-order shape.
public struct GGUFTensorInfo: Sendable, Equatable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]

    public init(name: String, dtype: DType, shape: [Int]) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
    }

    public var elementCount: Int { shape.reduce(1, *) }
    /// Bytes of the tensor's data, nil when the shape does not fill whole blocks.
    public var byteCount: Int? { dtype.byteCount(elements: elementCount) }
}

/// Writes a GGUF v3 file in one pass: header, metadata, tensor infos, then each tensor's data,
/// every tensor starting on a 32-byte boundary.
///
/// The file is written to a hidden temporary file in the destination folder and renamed over
/// the destination only when complete, so a failed or interrupted conversion never leaves a
/// half-written model under the requested name.
public struct GGUFWriter {
    public var metadata: GGUFMetadata
    public let alignment = GGUFFile.defaultAlignment
    /// GGML_MAX_NAME is 64 including the terminating zero.
    public static let maxNameLength = 63

    public init(metadata: GGUFMetadata = GGUFMetadata()) {
        self.metadata = metadata
    }

    /// The bytes before the tensor data (header, metadata, tensor infos, padding) and the data
    /// offset of each tensor relative to the data section.
    func header(for tensors: [GGUFTensorInfo]) throws(FormatError) -> (bytes: [UInt8], offsets: [Int], dataSize: Int) {
        var out = GGUFByteWriter()
        out.bytes.append(contentsOf: GGUFFile.magic)
        out.u32(GGUFFile.version)
        out.u64(UInt64(tensors.count))
        var metadata = self.metadata
        if metadata[ModelKey.alignment] == nil {
            try metadata.set(ModelKey.alignment, .uint32(UInt32(alignment)))
        } else if metadata[ModelKey.alignment] != .uint32(UInt32(alignment)) {
            throw FormatError(.unsupported, "\(ModelKey.alignment) must be \(alignment)")
        }
        out.u64(UInt64(metadata.count))
        for (key, value) in metadata.entries {
            out.string(key)
            out.u32(value.type.rawValue)
            try out.value(value, key: key)
        }
        var offsets: [Int] = []
        var offset = 0
        var names = Set<String>()
        for tensor in tensors {
            guard names.insert(tensor.name).inserted else {
                throw FormatError(.invalidModel, "tensor \(tensor.name) would be written twice")
            }
            guard tensor.name.utf8.count <= GGUFWriter.maxNameLength else {
                throw FormatError(.invalidModel, "tensor name \(tensor.name) is longer than \(GGUFWriter.maxNameLength) bytes")
            }
            guard (1...GGUFFile.maxDimensions).contains(tensor.shape.count), tensor.shape.allSatisfy({ $0 >= 0 }) else {
                throw FormatError(.invalidModel, "tensor \(tensor.name) has shape \(tensor.shape); GGUF holds 1 to \(GGUFFile.maxDimensions) dimensions")
            }
            guard tensor.dtype.ggmlType != nil, let size = tensor.byteCount,
                  tensor.dtype.blockSize == 1 || (tensor.shape.last ?? 0) % tensor.dtype.blockSize == 0 else {
                throw FormatError(.invalidModel, "tensor \(tensor.name) of shape \(tensor.shape) cannot be stored as \(tensor.dtype.rawValue)")
            }
            out.string(tensor.name)
            out.u32(UInt32(tensor.shape.count))
            for d in tensor.shape.reversed() { out.u64(UInt64(d)) }
            out.u32(tensor.dtype.ggmlType ?? 0)
            out.u64(UInt64(offset))
            offsets.append(offset)
            offset += padded(size)
        }
        out.bytes.append(contentsOf: repeatElement(0, count: padded(out.bytes.count) - out.bytes.count))
        return (out.bytes, offsets, offset)
    }

    func padded(_ n: Int) -> Int { (n + alignment - 1) / alignment * alignment }

    /// Writes the file. `fill(index, buffer)` must write tensor `index`'s bytes into `buffer`
    /// (exactly `tensors[index].byteCount` bytes); an error thrown there aborts the write and
    /// removes the temporary file. `progress(written, total)` is called after each tensor; an
    /// error it throws cancels the write the same way.
    public func write(
        to path: String,
        tensors: [GGUFTensorInfo],
        progress: ((Int, Int) throws -> Void)? = nil,
        fill: (Int, UnsafeMutableRawBufferPointer) throws -> Void
    ) throws {
        let (headerBytes, _, dataSize) = try header(for: tensors)
        let output = try PartialFile(destination: path)
        do {
            try output.write(headerBytes)
            let total = headerBytes.count + dataSize
            var written = headerBytes.count
            try progress?(written, total)
            let largest = tensors.compactMap { $0.byteCount.map(padded) }.max() ?? 0
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(largest, 1), alignment: 64)
            defer { buffer.deallocate() }
            for (index, tensor) in tensors.enumerated() {
                let size = tensor.byteCount ?? 0
                let span = padded(size)
                let window = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<size])
                try fill(index, window)
                if span > size {
                    UnsafeMutableRawBufferPointer(rebasing: buffer[size..<span]).initializeMemory(as: UInt8.self, repeating: 0)
                }
                try output.write(UnsafeRawBufferPointer(rebasing: buffer[0..<span]))
                written += span
                try progress?(written, total)
            }
            try output.commit()
        } catch {
            output.discard()
            throw error
        }
    }
}

/// A hidden `.<name>.partial-<pid>` file beside the destination, renamed over it on commit.
final class PartialFile {
    let destination: String
    let temporary: String
    private var fd: Int32

    init(destination: String) throws(FormatError) {
        self.destination = destination
        let slash = destination.lastIndex(of: "/")
        let folder = slash.map { String(destination[..<$0]) } ?? "."
        let name = slash.map { String(destination[destination.index(after: $0)...]) } ?? destination
        guard !name.isEmpty else { throw FormatError(.io, "output path \(destination) names a folder, not a file") }
        temporary = (folder.isEmpty ? "" : folder + "/") + ".\(name).partial-\(getpid())"
        fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw FormatError(.io, "cannot create \(temporary) (beside \(destination)): \(String(cString: strerror(errno)))")
        }
    }

    deinit {
        if fd >= 0 { discard() }
    }

    func write(_ bytes: [UInt8]) throws(FormatError) {
        var failure: FormatError?
        bytes.withUnsafeBytes { raw in
            do throws(FormatError) { try write(raw) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    func write(_ raw: UnsafeRawBufferPointer) throws(FormatError) {
        guard var base = raw.baseAddress else { return }
        var left = raw.count
        while left > 0 {
            let n = Glibc.write(fd, base, left)
            if n < 0 {
                if errno == EINTR { continue }
                throw FormatError(.io, "cannot write \(temporary): \(String(cString: strerror(errno)))")
            }
            base += n
            left -= n
        }
    }

    func commit() throws(FormatError) {
        guard fsync(fd) == 0 else { throw FormatError(.io, "cannot flush \(temporary): \(String(cString: strerror(errno)))") }
        close(fd)
        fd = -1
        guard rename(temporary, destination) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw FormatError(.io, "cannot rename \(temporary) to \(destination): \(reason)")
        }
    }

    func discard() {
        if fd >= 0 { close(fd) }
        fd = -1
        unlink(temporary)
    }
}

/// Little-endian encoder for the GGUF header.
struct GGUFByteWriter {
    var bytes: [UInt8] = []

    mutating func integer<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func u32(_ value: UInt32) { integer(value) }
    mutating func u64(_ value: UInt64) { integer(value) }

    mutating func string(_ value: String) {
        u64(UInt64(value.utf8.count))
        bytes.append(contentsOf: value.utf8)
    }

    mutating func value(_ value: GGUFValue, key: String) throws(FormatError) {
        switch value {
        case .uint8(let v): integer(v)
        case .int8(let v): integer(v)
        case .uint16(let v): integer(v)
        case .int16(let v): integer(v)
        case .uint32(let v): integer(v)
        case .int32(let v): integer(v)
        case .float32(let v): integer(v.bitPattern)
        case .bool(let v): integer(UInt8(v ? 1 : 0))
        case .string(let v): string(v)
        case .uint64(let v): integer(v)
        case .int64(let v): integer(v)
        case .float64(let v): integer(v.bitPattern)
        case .array(let type, let values):
            u32(type.rawValue)
            u64(UInt64(values.count))
            for element in values {
                guard element.type == type else {
                    throw FormatError(.invalidModel, "metadata \(key): an array of \(type.name) holds a \(element.type.name)")
                }
                try self.value(element, key: key)
            }
        }
    }
}
