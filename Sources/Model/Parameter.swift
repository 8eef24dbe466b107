import Formats
import Kernels
import Synchronization

/// One weight tensor as float32, ready for the kernels.
///
/// A float32 tensor of a memory-mapped file is used in place. A float16 or bfloat16 matrix of a
/// mapped file is multiplied in place (`lowPrecision`); a Q8_0 or Q4_0 matrix is packed at load into int8
/// panels (`panels`) on CPUs with int8 dot products, and its mapped pages released, else also
/// multiplied in place. Either is widened to float32 only if some caller asks for `pointer`;
/// other tensors (vectors, anything not mapped) are widened at load.
public final class Parameter: @unchecked Sendable {
    public let name: String
    /// PyTorch order, outermost first.
    public let shape: [Int]
    /// The values as float32 (for a low-precision matrix: widened on first use, then kept).
    public var pointer: UnsafePointer<Float> {
        if let eager { return eager }
        if let parent { return parent.pointer + sliceOffset }
        return widened.withLock { buffer in
            if let buffer { return UnsafePointer(buffer.pointer) }
            let made = FloatBuffer(count: count)
            if let lowPrecision { lowPrecision.expandRows(0..<lowPrecision.rows, into: made.pointer) }
            if let panels { panels.expandRows(0..<panels.rows, into: made.pointer) }
            buffer = made
            return UnsafePointer(made.pointer)
        }
    }
    private let eager: UnsafePointer<Float>?
    private let sliceOffset: Int
    private let widened = Mutex<FloatBuffer?>(nil)
    private let owned: FloatBuffer?
    /// Keeps the file mapping alive while `pointer` points into it.
    private let source: Tensor?
    /// The stacked tensor a slice points into.
    private let parent: Parameter?
    /// The stored F16/BF16/Q8_0 matrix, read in place from the file map, for products with few
    /// rows (decode), where reading weights dominates: half or a quarter of the float32 bytes.
    /// nil for a Q8_0 matrix held as `panels`.
    let lowPrecision: QuantizedMatrix?
    /// A Q8_0 matrix packed once into int8 panels for every product with it (decode, prefill,
    /// vision); the file's pages it came from are released and never read again.
    let panels: Int8PanelMatrix?

    /// - Parameter copyFloat32: copy float32 tensors instead of using them in place, so that nothing
    ///   reads the file after loading (see `WeightLoader.ownsWeights`).
    init(tensor: Tensor, copyFloat32: Bool = false) throws(ModelError) {
        name = tensor.name
        shape = tensor.shape
        let count = tensor.elementCount
        if tensor.dtype == .float32, tensor.bytes.isMapped, !copyFloat32,
           let address = tensor.bytes.withUnsafeBytes({ $0.baseAddress }),
           Int(bitPattern: address) % MemoryLayout<Float>.alignment == 0 {
            // The map outlives this object through `source`, so the address stays valid.
            eager = address.assumingMemoryBound(to: Float.self)
            sliceOffset = 0
            owned = nil
            source = tensor
            parent = nil
            lowPrecision = nil
            panels = nil
            return
        }
        let expectedBytes = tensor.dtype.byteCount(elements: count)
        guard let expectedBytes, expectedBytes == tensor.bytes.count else {
            throw ModelError(.invalidModel, "tensor \(tensor.name): \(tensor.bytes.count) bytes for \(count) \(tensor.dtype) values")
        }
        sliceOffset = 0
        parent = nil
        if let matrix = Self.lowPrecisionMatrix(tensor), matrix.rows * matrix.columns == count {
            eager = nil
            owned = nil
            if let packed = Self.int8Panels(matrix, shape: tensor.shape) {
                // From here on only the panels are read; the packing pulled the file's pages in.
                tensor.bytes.releaseResidentPages()
                panels = packed
                lowPrecision = nil
                source = nil
            } else {
                // Products read the mapped bytes; no float32 copy unless `pointer` is asked for.
                panels = nil
                lowPrecision = matrix
                source = tensor
            }
            return
        }
        let buffer = FloatBuffer(count: count)
        try tensor.bytes.withUnsafeBytes { (raw: UnsafeRawBufferPointer) throws(ModelError) in
            guard let base = raw.baseAddress else { return }
            switch tensor.dtype {
            case .float32:
                for i in 0..<count { buffer.pointer[i] = base.loadUnaligned(fromByteOffset: 4 * i, as: Float.self) }
            case .float16: Kernels.widenFloat16(base, count: count, into: buffer.pointer)
            case .bfloat16: Kernels.widenBFloat16(base, count: count, into: buffer.pointer)
            case .q8_0: Kernels.widenQ8_0(base, count: count, into: buffer.pointer)
            case .q4_0: Kernels.widenQ4_0(base, count: count, into: buffer.pointer)
            default:
                throw ModelError(.unsupported, "tensor \(tensor.name) is \(tensor.dtype); weights must be float32, float16, bfloat16, q8_0 or q4_0")
            }
        }
        eager = UnsafePointer(buffer.pointer)
        owned = buffer
        lowPrecision = nil
        panels = nil
        source = nil
    }

    /// Whether Q8_0 and Q4_0 matrices are packed into int8 panels at load: where the int8 products are
    /// fast (AVX512-VNNI). Elsewhere the float kernels read the stored rows.
    static var packsQ8_0: Bool { Int8PanelMatrix.isFast }

    /// `matrix` packed into int8 panels (a stacked `[experts, out, in]` tensor one expert per
    /// segment), or nil when it is not Q8_0/Q4_0 or this CPU has no int8 dot products.
    private static func int8Panels(_ matrix: QuantizedMatrix, shape: [Int]) -> Int8PanelMatrix? {
        guard matrix.format.isBlockQuantized, packsQ8_0 else { return nil }
        let segments = shape.count == 3 ? shape[0] : 1
        return try? Int8PanelMatrix(packing: matrix, segments: segments, pool: DecodePool.shared)
    }

    /// A matrix over the mapped bytes of a 2-D (or stacked 3-D) F16/BF16/Q8_0 tensor, nil otherwise.
    private static func lowPrecisionMatrix(_ tensor: Tensor) -> QuantizedMatrix? {
        let format: WeightFormat
        switch tensor.dtype {
        case .float16: format = .float16
        case .bfloat16: format = .bfloat16
        case .q8_0: format = .q8_0
        case .q4_0: format = .q4_0
        default: return nil
        }
        guard tensor.bytes.isMapped, tensor.shape.count >= 2, let columns = tensor.shape.last else { return nil }
        let rows = tensor.elementCount / max(columns, 1)
        // The map is kept alive by `source`; the matrix holds no owner to avoid a cycle.
        return tensor.bytes.withUnsafeBytes { raw in
            try? QuantizedMatrix(format: format, rows: rows, columns: columns, borrowing: raw, owner: nil)
        }
    }

    init(sliceOf stacked: Parameter, index: Int) {
        let inner = Array(stacked.shape.dropFirst())
        let size = inner.reduce(1, *)
        name = "\(stacked.name)[\(index)]"
        shape = inner
        eager = stacked.eager.map { $0 + index * size }
        sliceOffset = index * size
        owned = nil
        source = nil
        parent = stacked
        panels = stacked.panels.flatMap { whole in
            stacked.shape.count == 3 && index < stacked.shape[0] ? whole.segment(index) : nil
        }
        if let whole = stacked.lowPrecision, let columns = inner.last, columns == whole.columns,
           let rowBytes = whole.format.rowBytes(columns: columns) {
            let rows = size / max(columns, 1)
            lowPrecision = whole.withUnsafeBytes { raw in
                // Borrowed from the stacked parameter's map, which `parent` keeps alive.
                try? QuantizedMatrix(format: whole.format, rows: rows, columns: columns,
                                     borrowing: UnsafeRawBufferPointer(rebasing: raw[(index * rows * rowBytes)..<((index + 1) * rows * rowBytes)]),
                                     owner: nil)
            }
        } else {
            lowPrecision = nil
        }
    }

    /// Row `index` of this parameter seen as `[rows, width]`, as float32, without widening the
    /// whole tensor (an embedding lookup in a low-precision file).
    func copyRow(_ index: Int, width: Int, into destination: UnsafeMutablePointer<Float>) {
        if eager == nil, parent == nil, let lowPrecision, lowPrecision.columns == width {
            lowPrecision.expandRows(index..<(index + 1), into: destination)
        } else if eager == nil, parent == nil, let panels, panels.columns == width {
            panels.expandRows(index..<(index + 1), into: destination)
        } else {
            destination.update(from: pointer + index * width, count: width)
        }
    }

    public var count: Int { shape.reduce(1, *) }
    public var values: [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }
}

/// Reads weights by name with their expected shapes, so a wrong file fails at load with the
/// tensor's name instead of producing garbage.
struct WeightLoader {
    let file: any ModelFile
    /// Whether every weight is held in memory of our own (Q8_0 packed into int8 panels, float32
    /// copied, the rest widened) so that the file is not read after loading: set for files with
    /// Q8_0 matrices where they are packed. Then `releaseFilePages()` drops the whole file from
    /// resident memory. (Released pages must not be read again: the kernel maps whole large folios
    /// of the page cache on a fault, so reading one small in-place tensor would bring back the
    /// packed neighbours' pages too.)
    let ownsWeights: Bool
    private let loaded = LoadedTensors()

    init(file: any ModelFile) {
        self.file = file
        ownsWeights = Parameter.packsQ8_0 && ((file as? any TensorSource)?.tensors.contains { $0.dtype.isQuantized } ?? false)
    }

    /// Drops the pages of every tensor loaded so far from resident memory when `ownsWeights`
    /// (they were copied or packed); call once the model is built.
    func releaseFilePages() {
        guard ownsWeights else { return }
        for bytes in loaded.all { bytes.releaseResidentPages() }
    }

    func load(_ name: String, _ shape: [Int]) throws(ModelError) -> Parameter {
        guard let tensor = file.tensor(named: name) else {
            throw ModelError(.invalidModel, "tensor \(name) missing in \(file.sourceDescription): "
                + "is this a MiniMind-V model written by `minimindv convert`?")
        }
        guard tensor.shape == shape else {
            throw ModelError(.invalidModel, "tensor \(name) in \(file.sourceDescription) has shape \(tensor.shape); "
                + "the metadata implies \(shape)")
        }
        let parameter = try Parameter(tensor: tensor, copyFloat32: ownsWeights)
        if ownsWeights { loaded.append(tensor.bytes) }
        return parameter
    }

    func has(_ name: String) -> Bool { file.tensor(named: name) != nil }
}

/// The bytes of the tensors a loader has read, to release their pages once the model is built.
private final class LoadedTensors: Sendable {
    private let bytes = Mutex<[TensorBytes]>([])
    func append(_ tensor: TensorBytes) { bytes.withLock { $0.append(tensor) } }
    var all: [TensorBytes] { bytes.withLock { $0 } }
}
