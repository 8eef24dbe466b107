#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only memory map of a whole file.
///
/// Tensors read from checkpoints and GGUF files point into the map instead of being copied;
/// the map lives as long as any tensor that refers to it.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let count: Int
    private let base: UnsafeRawPointer?
    /// A map of a file (pages can be dropped and read again) rather than anonymous memory.
    private let isFileBacked: Bool

    public init(path: String) throws(FormatError) {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw FormatError(.io, "cannot open \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw FormatError(.io, "cannot stat \(path): \(String(cString: strerror(errno)))")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw FormatError(.io, "\(path) is not a regular file")
        }
        count = Int(info.st_size)
        isFileBacked = true
        if count == 0 {
            base = nil
            return
        }
        let address = mmap(nil, count, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let address, address != MAP_FAILED else {
            throw FormatError(.io, "cannot map \(path): \(String(cString: strerror(errno)))")
        }
        base = UnsafeRawPointer(address)
    }

    /// Bytes already in memory, served like a mapped file named `path` (for error messages):
    /// readers and tests can then parse data that never touched the disk.
    public init(bytes: [UInt8], path: String) throws(FormatError) {
        self.path = path
        count = bytes.count
        isFileBacked = false
        if count == 0 {
            base = nil
            return
        }
        let address = mmap(nil, count, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let address, address != MAP_FAILED else {
            throw FormatError(.io, "cannot allocate \(count) bytes for \(path): \(String(cString: strerror(errno)))")
        }
        bytes.withUnsafeBytes { raw in
            if let source = raw.baseAddress { address.copyMemory(from: source, byteCount: raw.count) }
        }
        mprotect(address, count, PROT_READ)
        base = UnsafeRawPointer(address)
    }

    deinit {
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), count) }
    }

    /// Calls `body` with the bytes in `range`, which must lie inside the file.
    public func withBytes<R, E: Error>(
        _ range: Range<Int>, _ body: (UnsafeRawBufferPointer) throws(E) -> R
    ) throws(E) -> R {
        precondition(range.lowerBound >= 0 && range.upperBound <= count, "range \(range) outside \(path) (\(count) bytes)")
        guard let base else { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        return try body(UnsafeRawBufferPointer(start: base + range.lowerBound, count: range.count))
    }

    /// Calls `body` with the whole file.
    public func withBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try withBytes(0..<count, body)
    }

    /// A copy of the bytes in `range`, which must lie inside the file.
    public func bytes(_ range: Range<Int>) -> [UInt8] {
        withBytes(range) { Array($0) }
    }

    /// Drops the pages covering `range` from this process's resident memory, for bytes that were
    /// copied elsewhere and will not be read again (they would be read from the file again if they
    /// were). The pages at both ends may hold neighbouring bytes: those too are only re-read on
    /// use, since the map is read-only. Does nothing for in-memory "files", whose pages are the
    /// only copy.
    public func releaseResidentPages(_ range: Range<Int>) {
        precondition(range.lowerBound >= 0 && range.upperBound <= count, "range \(range) outside \(path) (\(count) bytes)")
        guard isFileBacked, let base, !range.isEmpty else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (Int(bitPattern: base) + range.lowerBound) / page * page
        let end = (Int(bitPattern: base) + range.upperBound + page - 1) / page * page
        guard let address = UnsafeMutableRawPointer(bitPattern: start) else { return }
        madvise(address, end - start, MADV_DONTNEED)
    }

    /// Tells the kernel we will read the file front to back (conversion) or at random (inference).
    public func advise(sequential: Bool) {
        guard let base else { return }
        madvise(UnsafeMutableRawPointer(mutating: base), count, sequential ? MADV_SEQUENTIAL : MADV_RANDOM)
    }
}
