/// The bytes of one tensor: a window on a mapped file, or memory of our own when the
/// bytes had to be produced (non-contiguous PyTorch tensors, conversions).
public struct TensorBytes: Sendable {
    enum Storage: Sendable {
        case mapped(MappedFile, Range<Int>)
        case owned([UInt8])
    }

    let storage: Storage

    public init(file: MappedFile, range: Range<Int>) {
        storage = .mapped(file, range)
    }

    public init(_ bytes: [UInt8]) {
        storage = .owned(bytes)
    }

    public var count: Int {
        switch storage {
        case .mapped(_, let range): range.count
        case .owned(let bytes): bytes.count
        }
    }

    /// Whether the bytes are shared with a file map rather than copied.
    public var isMapped: Bool {
        if case .mapped = storage { return true }
        return false
    }

    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        switch storage {
        case .mapped(let file, let range):
            return try file.withBytes(range, body)
        case .owned(let bytes):
            // `Array.withUnsafeBytes` is rethrows-only; keep the typed error by capturing it.
            var result: Result<R, E>!
            bytes.withUnsafeBytes { raw in
                do throws(E) { result = .success(try body(raw)) } catch { result = .failure(error) }
            }
            return try result.get()
        }
    }

    /// For bytes of a file map that were copied and will not be read again: drops their pages
    /// from resident memory (`MappedFile.releaseResidentPages`). Owned bytes stay as they are.
    public func releaseResidentPages() {
        if case .mapped(let file, let range) = storage { file.releaseResidentPages(range) }
    }

    public var array: [UInt8] {
        switch storage {
        case .mapped(let file, let range): file.bytes(range)
        case .owned(let bytes): bytes
        }
    }
}

/// One named tensor as stored in a file: element type, shape (outermost first, as in
/// PyTorch and numpy) and its contiguous little-endian bytes.
public struct Tensor: Sendable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    public var bytes: TensorBytes

    public init(name: String, dtype: DType, shape: [Int], bytes: TensorBytes) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
    }

    public var elementCount: Int { shape.reduce(1, *) }
}

/// A file (or set of files) that yields named tensors: a safetensors file, a PyTorch
/// checkpoint, a GGUF model.
public protocol TensorSource: Sendable {
    /// Where the tensors came from, for error messages ("sft_vlm_512.pth").
    var sourceDescription: String { get }
    /// Every tensor, in file order.
    var tensors: [Tensor] { get }
}

extension TensorSource {
    public func tensor(named name: String) -> Tensor? {
        tensors.first { $0.name == name }
    }
}
