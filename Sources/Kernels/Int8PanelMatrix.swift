import CKernels

/// A Q8_0 or Q4_0 weight matrix `[rows, columns]` packed once into panels of 32 output rows in the
/// operand layout of the int8 dot-product instructions (AVX512-VNNI), for every product with it: no
/// repacking per call, and the packed copy replaces the stored rows (same number of bytes).
///
/// Lossless: it holds the file's int8 (or 4-bit, two rows' per byte) values and float16 scales,
/// reordered (`expandRows` gives exactly the stored matrix's values). Products quantise x per row
/// and block of 32 like Q8_0 weights and sum the integer products exactly in int32; see `multiplyMany`.
public struct Int8PanelMatrix: @unchecked Sendable {
    public let rows: Int
    public let columns: Int
    /// The values' format: the file's Q8_0 or Q4_0.
    public let format: WeightFormat
    private let storage: PanelStorage
    private let byteOffset: Int

    /// Output rows per panel: the unit the threads split.
    public static let panelRows = Int(CK_Q8_PANEL)
    /// Whether the products run as VNNI int8 dot products on this CPU (else portable C, correct
    /// but slower than widening the weights: callers should keep Q8_0 rows there).
    public static var isFast: Bool { ck_q8_gemm_fast() != 0 }

    /// Bytes of the packed panels (whole panels of 32 rows per stacked matrix).
    public var byteCount: Int { segments.count * segments.bytes }
    /// Matrices stacked in this one (MoE experts), 1 for a plain matrix.
    public var segmentCount: Int { segments.count }
    var base: UnsafeRawPointer { UnsafeRawPointer(storage.memory + byteOffset) }

    /// Packs a Q8_0 or Q4_0 `matrix`, its panels spread over `pool`. With `segments` > 1 the rows are that
    /// many stacked matrices (MoE experts), each packed into panels of its own so that
    /// `segment(_:)` is a matrix; the row count must divide evenly.
    public init(packing matrix: QuantizedMatrix, segments: Int = 1, pool: ComputePool? = nil) throws(LowPrecisionError) {
        guard matrix.format.isBlockQuantized else {
            throw LowPrecisionError("only Q8_0 and Q4_0 matrices pack into int8 panels, not \(matrix.format)")
        }
        guard segments >= 1, matrix.rows % segments == 0, matrix.columns > 0 else {
            throw LowPrecisionError("a \(matrix.rows)x\(matrix.columns) matrix does not split into \(segments) int8 panel matrices")
        }
        let segmentRows = matrix.rows / segments, columns = matrix.columns
        let format = matrix.format
        let layout = PanelLayout(format)
        let segmentBytes = layout.packedBytes(segmentRows, columns)
        let rowBytes = matrix.byteCount / max(matrix.rows, 1)
        let storage = PanelStorage(byteCount: segmentBytes * segments)
        let panelsPerSegment = (segmentRows + Self.panelRows - 1) / Self.panelRows
        // Tasks of up to 8 panels: few hand-overs, still many per thread for the big matrices.
        let chunk = 8, chunksPerSegment = (panelsPerSegment + chunk - 1) / chunk
        matrix.withUnsafeBytes { raw in
            guard let source = raw.baseAddress else { return }
            let pack = { (task: Int) in
                let segment = task / chunksPerSegment, first = (task % chunksPerSegment) * chunk
                let from = source + segment * segmentRows * rowBytes, to = storage.memory + segment * segmentBytes
                let last = min(first + chunk, panelsPerSegment)
                _ = layout.pack(from, segmentRows, columns, to, first, last)
            }
            let tasks = segments * chunksPerSegment
            if let pool, tasks > 1 { pool.parallelFor(tasks, pack) } else { for t in 0..<tasks { pack(t) } }
        }
        self.init(rows: matrix.rows, columns: columns, format: format, storage: storage, byteOffset: 0,
                  segments: (segments, segmentBytes))
    }

    /// How many stacked matrices this one holds and the bytes of each.
    fileprivate let segments: (count: Int, bytes: Int)

    private init(rows: Int, columns: Int, format: WeightFormat, storage: PanelStorage, byteOffset: Int,
                 segments: (count: Int, bytes: Int)) {
        self.rows = rows
        self.columns = columns
        self.format = format
        self.storage = storage
        self.byteOffset = byteOffset
        self.segments = segments
    }

    /// Matrix `index` of a matrix packed with `segments` (it shares the memory).
    public func segment(_ index: Int) -> Int8PanelMatrix {
        let (count, bytes) = segments
        precondition(index >= 0 && index < count, "segment \(index) of \(count)")
        return Int8PanelMatrix(rows: rows / count, columns: columns, format: format, storage: storage,
                               byteOffset: byteOffset + index * bytes, segments: (1, bytes))
    }

    /// `out[m, rows] = x[m, columns] · Wᵀ (+ bias)`, or added to `out` with `accumulate`: x is
    /// quantised per row and block of 32 (scale max|x| / 127, round half to even), the int8 (or
    /// 4-bit) blocks multiplied exactly in int32 (four times the float32 arithmetic rate on VNNI),
    /// each block's sum scaled by both scales in float32. Rows of x are `columns` floats apart, rows of `out`
    /// `rows` apart. Panels are split over `pool`; `path` `.portable` forces the portable C.
    public func multiplyMany(_ x: UnsafePointer<Float>, rows m: Int, bias: UnsafePointer<Float>? = nil,
                             into out: UnsafeMutablePointer<Float>, accumulate: Bool = false,
                             pool: ComputePool? = nil, path: KernelPath? = nil) {
        guard m > 0, rows > 0 else { return }
        let k = columns
        let q = QuantizedRows(x, rows: m, columns: k, pool: pool)

        // One task per panel (of each stacked matrix: their outputs are side by side in `out`) and
        // chunk of rows, chunk-major (see `rowChunk`).
        let isa = path?.rawValue ?? -1, n = rows, weights = base, (count, bytes) = segments
        let segmentRows = rows / count, perSegment = (segmentRows + Self.panelRows - 1) / Self.panelRows
        let chunkRows = Self.rowChunk(columns: k, rows: m), panels = count * perSegment, blocks = k / 32
        let tag = format.tag
        let run = { (task: Int) in
            let r0 = (task / panels) * chunkRows, mr = min(chunkRows, m - r0), p = task % panels
            let segment = p / perSegment, panel = p % perSegment, first = segment * segmentRows
            _ = ck_packed_panels(isa, tag, weights + segment * bytes, segmentRows, k, q.values + r0 * k, q.scales + r0 * blocks,
                       q.offsets + r0 * blocks, mr, bias.map { $0 + first }, out + r0 * n + first, n,
                       accumulate ? 1 : 0, panel, panel + 1)
        }
        let tasks = (m + chunkRows - 1) / chunkRows * panels
        if let pool { pool.parallelFor(tasks, run) } else { for t in 0..<tasks { run(t) } }
        withExtendedLifetime(q) {}
    }

    /// Rows of x per task: every panel re-reads its task's rows of quantised x, so a chunk is kept
    /// to ~384 KiB (L2-resident beside the panel while a thread's successive tasks run the next
    /// panels); without chunks a vision batch (8 x 197 rows x 3072 values, 4.8 MB) streamed from
    /// L3 once per 32 output columns. A multiple of 6, the many-row tile. Measured on MiniMind2-V
    /// q8_0 vision (9 runs each, 2 threads, two rounds): no difference beyond the noise here, batch 8
    /// 88.2 / 99.0 ms per image with it and 87.7 / 99.1 without; kept for bigger batches and smaller caches.
    public static func rowChunk(columns k: Int, rows m: Int) -> Int {
        let rows = max(6, (384 * 1024 / max(k, 1)) / 6 * 6)
        return m <= rows + rows / 2 ? m : rows
    }

    /// Several products of many rows that share their input (Q/K/V, gate/up): x is quantised once
    /// and the panels of every matrix run as one job. Each product's output has `matrix.rows` floats a row.
    public static func multiplyMany(_ x: UnsafePointer<Float>, rows m: Int, columns k: Int,
                                    by products: [DecodeKernels.PanelProduct], pool: ComputePool? = nil,
                                    path: KernelPath? = nil) {
        guard m > 0, !products.isEmpty else { return }
        for product in products {
            precondition(product.matrix.columns == k && product.matrix.segments.count == 1,
                         "multiplyMany: a \(product.matrix.columns)-column or stacked matrix among \(k)-column ones")
        }
        let q = QuantizedRows(x, rows: m, columns: k, pool: pool)
        let isa = path?.rawValue ?? -1
        let panels = products.flatMap { product in
            (0..<((product.matrix.rows + panelRows - 1) / panelRows)).map { (product, $0) }
        }
        let chunkRows = rowChunk(columns: k, rows: m), blocks = k / 32
        let run = { (task: Int) in
            let r0 = (task / panels.count) * chunkRows, mr = min(chunkRows, m - r0)
            let (product, panel) = panels[task % panels.count], n = product.matrix.rows
            _ = ck_packed_panels(isa, product.matrix.format.tag, product.matrix.base, n, k, q.values + r0 * k, q.scales + r0 * blocks,
                       q.offsets + r0 * blocks, mr, product.bias, product.output + r0 * n, n,
                       product.accumulate ? 1 : 0, panel, panel + 1)
        }
        let tasks = (m + chunkRows - 1) / chunkRows * panels.count
        if let pool { pool.parallelFor(tasks, run) } else { for t in 0..<tasks { run(t) } }
        withExtendedLifetime(q) {}
    }

    /// `x · Wᵀ` for `m` rows of `x` (row-major `[m, columns]`); returns `[m, rows]`.
    public func multiplyMany(_ x: [Float], rows m: Int, pool: ComputePool? = nil, path: KernelPath? = nil) -> [Float] {
        precondition(x.count == m * columns, "multiplyMany: \(x.count) values are not \(m) rows of \(columns)")
        var y = [Float](repeating: 0, count: m * rows)
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in
                guard let xb = xp.baseAddress, let yb = yp.baseAddress else { return }
                multiplyMany(xb, rows: m, into: yb, pool: pool, path: path)
            }
        }
        return y
    }

    /// Expands rows `range` to float32 into `destination` (`range.count * columns` floats):
    /// exactly the values of the Q8_0 or Q4_0 rows this matrix was packed from.
    public func expandRows(_ range: Range<Int>, into destination: UnsafeMutablePointer<Float>) {
        precondition(range.lowerBound >= 0 && range.upperBound <= rows, "expandRows: \(range) outside 0..<\(rows)")
        let (count, bytes) = segments, segmentRows = rows / count
        for segment in 0..<count {
            let first = segment * segmentRows
            let lo = max(range.lowerBound, first), hi = min(range.upperBound, first + segmentRows)
            guard lo < hi else { continue }
            let from = base + segment * bytes, to = destination + (lo - range.lowerBound) * columns
            PanelLayout(format).expand(from, columns, lo - first, hi - first, to)
        }
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

/// The C functions of one panel layout (Q8_0: int8 records; Q4_0: two rows' nibbles a byte).
private struct PanelLayout {
    let packedBytes: (Int, Int) -> Int
    let pack: (UnsafeRawPointer?, Int, Int, UnsafeMutableRawPointer?, Int, Int) -> Int32
    let expand: (UnsafeRawPointer?, Int, Int, Int, UnsafeMutablePointer<Float>?) -> Void

    init(_ format: WeightFormat) {
        if format == .q4_0 {
            packedBytes = ck_q4_packed_bytes
            pack = ck_q4_pack_panels
            expand = ck_q4_packed_expand_rows
        } else {
            packedBytes = ck_q8_packed_bytes
            pack = ck_q8_pack_panels
            expand = ck_q8_packed_expand_rows
        }
    }
}

/// 64-byte aligned memory for packed panels, freed with the last matrix using it.
private final class PanelStorage: @unchecked Sendable {
    let memory: UnsafeMutableRawPointer

    init(byteCount: Int) {
        memory = UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 64), alignment: 64)
    }

    deinit { memory.deallocate() }
}

extension DecodeKernels {
    /// One product of `multiply(_:rows:columns:by:pool:path:)` with packed Q8_0 or Q4_0 weights.
    public struct PanelProduct {
        public var matrix: Int8PanelMatrix
        public var bias: UnsafePointer<Float>?
        /// `m` rows of `matrix.rows` floats.
        public var output: UnsafeMutablePointer<Float>
        /// Add to `output` instead of overwriting it (a residual).
        public var accumulate: Bool

        public init(matrix: Int8PanelMatrix, bias: UnsafePointer<Float>? = nil, output: UnsafeMutablePointer<Float>,
                    accumulate: Bool = false) {
            self.matrix = matrix
            self.bias = bias
            self.output = output
            self.accumulate = accumulate
        }
    }

    /// `y_j (+)= x W_jᵀ + b_j` for every product, as one pool job: x (`m` rows of `columns`
    /// floats, densely packed) is quantised once, the panels of all matrices split over the threads.
    public static func multiply(_ x: UnsafePointer<Float>, rows m: Int, columns: Int, by products: [PanelProduct],
                                pool: ComputePool?, path: KernelPath? = nil) {
        let descriptors = products.map { product in
            precondition(product.matrix.columns == columns, "multiply: a \(product.matrix.columns)-column matrix among \(columns)-column ones")
            precondition(product.matrix.segments.count == 1, "multiply: a stacked matrix (take its segments)")
            return ck_q8_packed_product(packed: product.matrix.base, rows: product.matrix.rows, bias: product.bias,
                                        y: product.output, ldy: product.matrix.rows, accumulate: product.accumulate ? 1 : 0,
                                        format: product.matrix.format.tag)
        }
        let rc = descriptors.withUnsafeBufferPointer { buffer in
            ck_q8_packed_many(pool?.raw, path?.rawValue ?? -1, buffer.baseAddress, buffer.count, columns, x, columns, m)
        }
        precondition(rc == 0, "multiply: int8 panels with \(columns) columns rejected (or out of memory)")
    }
}

/// Rows of x quantised for the panel products: int8 values per row, and per row and block of 32 the
/// scale and the offset 128 · Σ q (`ck_q8_quantize_rows`), in blocks of 64 rows over the pool.
final class QuantizedRows {
    let values: UnsafeMutablePointer<Int8>
    let scales: UnsafeMutablePointer<Float>
    let offsets: UnsafeMutablePointer<Int32>

    init(_ x: UnsafePointer<Float>, rows m: Int, columns k: Int, pool: ComputePool?) {
        let blocks = k / 32
        let values = UnsafeMutablePointer<Int8>.allocate(capacity: m * k)
        let scales = UnsafeMutablePointer<Float>.allocate(capacity: m * blocks)
        let offsets = UnsafeMutablePointer<Int32>.allocate(capacity: m * blocks)
        let rowBlocks = (m + 63) / 64
        let quantize = { (block: Int) in
            let first = block * 64, count = min(64, m - first)
            ck_q8_quantize_rows(x + first * k, k, count, k, values + first * k, scales + first * blocks, offsets + first * blocks)
        }
        if let pool, rowBlocks > 1 { pool.parallelFor(rowBlocks, quantize) } else { for b in 0..<rowBlocks { quantize(b) } }
        self.values = values
        self.scales = scales
        self.offsets = offsets
    }

    deinit {
        values.deallocate()
        scales.deallocate()
        offsets.deallocate()
    }
}
