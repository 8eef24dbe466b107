import CKernels

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A weight matrix `[rows, columns]` in F32, F16, BF16, Q8_0 or Q4_0, multiplied without expanding it.
///
/// The bytes are either owned (copied in, 64-byte aligned) or borrowed from memory the caller
/// keeps alive, typically a memory-mapped GGUF file: pass the object owning that memory as
/// `owner` and the matrix retains it for as long as any copy of the matrix exists.
public struct QuantizedMatrix: @unchecked Sendable {
    public let format: WeightFormat
    public let rows: Int
    public let columns: Int
    private let storage: Storage

    /// Bytes of the whole matrix.
    public var byteCount: Int { storage.count }
    /// Start of the stored bytes, for the kernels of this module (valid while the matrix lives).
    var baseAddress: UnsafeRawPointer? { storage.base }

    /// A matrix over a copy of `bytes` (`rows * format.rowBytes(columns:)` of them).
    public init(format: WeightFormat, rows: Int, columns: Int, bytes: [UInt8]) throws(LowPrecisionError) {
        let count = try Self.expectedBytes(format: format, rows: rows, columns: columns)
        guard bytes.count == count else {
            throw LowPrecisionError("a \(rows)x\(columns) \(format) matrix takes \(count) bytes, got \(bytes.count)")
        }
        self.format = format
        self.rows = rows
        self.columns = columns
        storage = bytes.withUnsafeBytes { Storage(copying: $0) }
    }

    /// A matrix over `bytes`, which are not copied: they must stay valid and unchanged while
    /// `owner` lives (the matrix keeps `owner` alive), e.g. a region of a memory-mapped file.
    public init(format: WeightFormat, rows: Int, columns: Int, borrowing bytes: UnsafeRawBufferPointer,
                owner: AnyObject?) throws(LowPrecisionError) {
        let count = try Self.expectedBytes(format: format, rows: rows, columns: columns)
        guard bytes.count == count else {
            throw LowPrecisionError("a \(rows)x\(columns) \(format) matrix takes \(count) bytes, got \(bytes.count)")
        }
        guard count == 0 || bytes.baseAddress != nil else {
            throw LowPrecisionError("no memory for a \(rows)x\(columns) \(format) matrix")
        }
        self.format = format
        self.rows = rows
        self.columns = columns
        storage = Storage(borrowing: bytes, owner: owner)
    }

    /// Converts float32 `values` (row-major `[rows, columns]`) to `format` (rounding as
    /// `LowPrecision` documents).
    public init(converting values: [Float], rows: Int, columns: Int, to format: WeightFormat) throws(LowPrecisionError) {
        guard rows >= 0, columns >= 0, values.count == rows * columns else {
            throw LowPrecisionError("\(values.count) values do not make a \(rows)x\(columns) matrix")
        }
        _ = try Self.expectedBytes(format: format, rows: rows, columns: columns)
        try self.init(format: format, rows: rows, columns: columns, bytes: LowPrecision.encode(values, as: format))
    }

    private static func expectedBytes(format: WeightFormat, rows: Int, columns: Int) throws(LowPrecisionError) -> Int {
        guard rows >= 0, let rowBytes = format.rowBytes(columns: columns) else {
            throw LowPrecisionError("a \(format) matrix cannot have \(rows) rows of \(columns) columns"
                + (format.isBlockQuantized ? " (\(format) rows are whole blocks of 32)" : ""))
        }
        let (count, overflow) = rows.multipliedReportingOverflow(by: rowBytes)
        guard !overflow else { throw LowPrecisionError("a \(rows)x\(columns) matrix is too large") }
        return count
    }

    /// The stored bytes (valid only inside `body`).
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: storage.base, count: storage.count))
    }

    /// `y[i, r] = sum_k x[i, k] * W[r, k]` for `i < m`: `x` is `m` rows of `columns` floats,
    /// `xStride` apart; `y` gets `m` rows of `rows` floats, `yStride` apart.
    ///
    /// Weights are widened to float32 in registers (exact), products accumulate in float32, so
    /// the result equals a float32 product with the expanded weights up to summation order.
    /// Both pointers must be valid for the whole extent; `path` nil means the best for this CPU.
    public func multiply(_ x: UnsafePointer<Float>, rows m: Int, xStride: Int? = nil,
                         into y: UnsafeMutablePointer<Float>, yStride: Int? = nil,
                         pool: ComputePool? = nil, path: KernelPath? = nil) {
        let ldx = xStride ?? columns, ldy = yStride ?? rows
        precondition(m >= 0 && ldx >= columns && ldy >= rows, "multiply: bad shape m=\(m) ldx=\(ldx) ldy=\(ldy)")
        let rc = ck_matmul(pool?.raw, path?.rawValue ?? -1, format.tag, storage.base, rows, columns,
                           x, ldx, m, y, ldy)
        precondition(rc == 0, "multiply: \(format) matrix with \(columns) columns rejected")
    }

    /// The same product for output rows `outputRows` only, on the calling thread: for callers
    /// that bring their own parallel-for (e.g. `DispatchQueue.concurrentPerform` over row ranges
    /// that are multiples of 4). `y` still points at output column 0.
    public func multiply(_ x: UnsafePointer<Float>, rows m: Int, xStride: Int? = nil,
                         into y: UnsafeMutablePointer<Float>, yStride: Int? = nil,
                         outputRows: Range<Int>, path: KernelPath? = nil) {
        let ldx = xStride ?? columns, ldy = yStride ?? rows
        precondition(m >= 0 && ldx >= columns && ldy >= rows, "multiply: bad shape m=\(m) ldx=\(ldx) ldy=\(ldy)")
        precondition(outputRows.lowerBound >= 0 && outputRows.upperBound <= rows, "multiply: \(outputRows) outside 0..<\(rows)")
        let rc = ck_matmul_rows(path?.rawValue ?? -1, format.tag, storage.base, columns, x, ldx, m, y, ldy,
                                outputRows.lowerBound, outputRows.upperBound)
        precondition(rc == 0, "multiply: \(format) matrix with \(columns) columns rejected")
    }

    /// `x · W^T` for `m` rows of `x` (row-major `[m, columns]`); returns `[m, rows]`.
    public func multiply(_ x: [Float], rows m: Int, pool: ComputePool? = nil, path: KernelPath? = nil) -> [Float] {
        precondition(x.count == m * columns, "multiply: \(x.count) values are not \(m) rows of \(columns)")
        var y = [Float](repeating: 0, count: m * rows)
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in
                guard let xb = xp.baseAddress, let yb = yp.baseAddress else { return }
                multiply(xb, rows: m, into: yb, pool: pool, path: path)
            }
        }
        return y
    }

    /// Expands rows `range` to float32 into `destination` (`range.count * columns` floats).
    public func expandRows(_ range: Range<Int>, into destination: UnsafeMutablePointer<Float>) {
        precondition(range.lowerBound >= 0 && range.upperBound <= rows, "expandRows: \(range) outside 0..<\(rows)")
        _ = ck_expand_rows(format.tag, storage.base, columns, range.lowerBound, range.upperBound, destination)
    }

    /// Rows `range` as float32, row-major.
    public func expandRows(_ range: Range<Int>) -> [Float] {
        var out = [Float](repeating: 0, count: range.count * columns)
        out.withUnsafeMutableBufferPointer { p in
            if let base = p.baseAddress { expandRows(range, into: base) }
        }
        return out
    }
}

/// The bytes behind a matrix: an aligned copy it frees, or a borrowed region kept alive by `owner`.
private final class Storage: @unchecked Sendable {
    let base: UnsafeRawPointer?
    let count: Int
    private let owned: UnsafeMutableRawPointer?
    private let owner: AnyObject?

    init(copying bytes: UnsafeRawBufferPointer) {
        count = bytes.count
        owner = nil
        if bytes.count > 0, let source = bytes.baseAddress {
            let memory = UnsafeMutableRawPointer.allocate(byteCount: bytes.count, alignment: 64)
            memory.copyMemory(from: source, byteCount: bytes.count)
            owned = memory
            base = UnsafeRawPointer(memory)
        } else {
            owned = nil
            base = nil
        }
    }

    init(borrowing bytes: UnsafeRawBufferPointer, owner: AnyObject?) {
        base = bytes.baseAddress
        count = bytes.count
        owned = nil
        self.owner = owner
    }

    deinit { owned?.deallocate() }
}
