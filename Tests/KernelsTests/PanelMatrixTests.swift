import Kernels
import Testing

/// Q8_0 and Q4_0 matrices packed once into int8 panels (`Int8PanelMatrix`, 4-bit values two rows
/// per byte for Q4_0): the same values as the file's blocks, and products that follow the integer
/// definition on the VNNI and portable paths, alone, stacked and in the decode step's shared jobs.
@Suite("Q8_0 and Q4_0 weights packed into int8 panels")
struct PanelMatrixTests {
    /// Paths that run the panels on this CPU: portable C always, VNNI where the CPU has it.
    static var paths: [KernelPath?] { [.portable] + (Int8PanelMatrix.isFast ? [nil] : []) }
    static let formats: [WeightFormat] = [.q8_0, .q4_0]

    /// Blocks with every scale 1 and integer weights from `rng` (Q8_0: -127...127; Q4_0: q - 8 in
    /// -8...7): products with integer x of |x| ≤ 127 and one ±127 per block (so dx = 1) are
    /// integers, exact in float32.
    func integerMatrix(_ format: WeightFormat, rows: Int, columns: Int, rng: inout TestRandom) throws -> (QuantizedMatrix, [Int]) {
        var bytes: [UInt8] = [], values = [Int](repeating: 0, count: rows * columns)
        for r in 0..<rows {
            for b in 0..<(columns / 32) {
                bytes += [0x00, 0x3C]   // float16 1.0, little-endian
                if format == .q8_0 {
                    for j in 0..<32 {
                        let q = Int((rng.next() * 127).rounded())
                        values[r * columns + b * 32 + j] = q
                        bytes.append(UInt8(bitPattern: Int8(q)))
                    }
                } else {
                    var q = [Int](repeating: 0, count: 32)
                    for j in 0..<32 {
                        q[j] = min(15, Int((rng.next() + 1) * 8))
                        values[r * columns + b * 32 + j] = q[j] - 8
                    }
                    for j in 0..<16 { bytes.append(UInt8(q[j] | q[j + 16] << 4)) }
                }
            }
        }
        return (try QuantizedMatrix(format: format, rows: rows, columns: columns, bytes: bytes), values)
    }

    func integerActivations(rows m: Int, columns k: Int, rng: inout TestRandom) -> [Float] {
        var x = (0..<(m * k)).map { _ in (rng.next() * 126).rounded() }
        for block in 0..<(m * k / 32) { x[block * 32 + Int(rng.next() * 15.5 + 16)] = rng.next() < 0 ? -127 : 127 }
        return x
    }

    func integerProduct(_ x: [Float], m: Int, k: Int, _ w: [Int], n: Int) -> [Float] {
        var y = [Float](repeating: 0, count: m * n)
        for i in 0..<m {
            for r in 0..<n {
                var sum = 0
                for c in 0..<k { sum += Int(x[i * k + c]) * w[r * k + c] }
                y[i * n + r] = Float(sum)
            }
        }
        return y
    }

    @Test(arguments: formats, [(1, 32), (17, 64), (31, 64), (32, 96), (70, 256), (100, 1408)])
    func packingKeepsEveryStoredValue(format: WeightFormat, shape: (rows: Int, columns: Int)) throws {
        let (rows, columns) = shape
        var rng = TestRandom(seed: UInt64(rows * (format == .q8_0 ? 7 : 11) + columns))
        let matrix = try QuantizedMatrix(converting: rng.values(rows * columns, scale: 3), rows: rows, columns: columns, to: format)
        let panels = try Int8PanelMatrix(packing: matrix, pool: ComputePool(threads: 2))
        #expect(panels.format == format)
        #expect(panels.expandRows(0..<rows) == matrix.expandRows(0..<rows))
        #expect(panels.expandRows((rows / 2)..<rows) == matrix.expandRows((rows / 2)..<rows))
        // Whole panels of 32 rows, per block 32 · 32 values plus 32 float16 scales: as many bytes as
        // the file's rows (34 per Q8_0 block, 18 per Q4_0 block) once the last panel is full.
        #expect(panels.byteCount == (rows + 31) / 32 * 32 * (columns / 32) * (format == .q8_0 ? 34 : 18))
    }

    @Test(arguments: formats)
    func stackedMatricesPackAsSegments(format: WeightFormat) throws {
        var rng = TestRandom(seed: format == .q8_0 ? 3 : 4)
        let experts = 3, rows = 40, columns = 64   // 40 rows: each expert's last panel is partial
        let stacked = try QuantizedMatrix(converting: rng.values(experts * rows * columns), rows: experts * rows,
                                          columns: columns, to: format)
        let panels = try Int8PanelMatrix(packing: stacked, segments: experts)
        #expect(panels.expandRows(0..<(experts * rows)) == stacked.expandRows(0..<(experts * rows)))
        let x = rng.values(5 * columns)
        let whole = panels.multiplyMany(x, rows: 5)
        for e in 0..<experts {
            let alone = try Int8PanelMatrix(packing: QuantizedMatrix(converting: stacked.expandRows((e * rows)..<((e + 1) * rows)),
                                                                      rows: rows, columns: columns, to: format))
            #expect(panels.segment(e).format == format)
            #expect(panels.segment(e).expandRows(0..<rows) == alone.expandRows(0..<rows))
            let y = panels.segment(e).multiplyMany(x, rows: 5)
            #expect(y == alone.multiplyMany(x, rows: 5))
            for i in 0..<5 { #expect(Array(whole[(i * experts * rows + e * rows)..<(i * experts * rows + (e + 1) * rows)]) == Array(y[(i * rows)..<((i + 1) * rows)])) }
        }
    }

    /// Integer x and weights with unit scales: every step of the definition is exact, so the
    /// result must equal the integer product bit for bit (int32 block sums, the +128 correction of
    /// Q8_0's unsigned bytes, the 8 · Σ qx of Q4_0's unsigned nibbles).
    @Test(arguments: formats, [1, 2, 3, 4, 5, 6, 7, 8, 13, 16, 17, 50])
    func packedProductsSumExactlyOnEveryPath(format: WeightFormat, m: Int) throws {
        var rng = TestRandom(seed: UInt64(m + (format == .q8_0 ? 0 : 50)))
        let n = 45, k = 256
        let (matrix, w) = try integerMatrix(format, rows: n, columns: k, rng: &rng)
        #expect(matrix.expandRows(0..<n) == w.map(Float.init))
        let panels = try Int8PanelMatrix(packing: matrix)
        let x = integerActivations(rows: m, columns: k, rng: &rng)
        let expected = integerProduct(x, m: m, k: k, w, n: n)
        for path in Self.paths {
            #expect(panels.multiplyMany(x, rows: m, path: path) == expected, "many rows, path \(String(describing: path))")
            var y = [Float](repeating: .nan, count: m * n)
            x.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in
                    DecodeKernels.multiply(xp.baseAddress!, rows: m, columns: k,
                                           by: [DecodeKernels.PanelProduct(matrix: panels, output: yp.baseAddress!)],
                                           pool: ComputePool(threads: 2), path: path)
                }
            }
            #expect(y == expected, "decode job, path \(String(describing: path))")
        }
    }

    /// Every VNNI tile (1-6 rows; 7-8 rows in one pass; their mixes up to 17 rows) does each
    /// output's float work in the portable definition's order: real-valued results are identical.
    @Test(arguments: formats, Array(1...17))
    func vectorTilesGiveThePortableResultsBitForBit(format: WeightFormat, m: Int) throws {
        guard Int8PanelMatrix.isFast else { return }
        var rng = TestRandom(seed: UInt64((format == .q8_0 ? 300 : 700) + m))
        let n = 70, k = 384
        let x = rng.values(m * k)
        let matrix = try QuantizedMatrix(converting: rng.values(n * k, scale: 0.05), rows: n, columns: k, to: format)
        let panels = try Int8PanelMatrix(packing: matrix)
        let bias = rng.values(n), start = rng.values(m * n)
        let portable = panels.multiplyMany(x, rows: m, path: .portable)
        #expect(panels.multiplyMany(x, rows: m) == portable)
        #expect(portable.allSatisfy { $0.isFinite } && portable.contains { $0 != 0 })
        // With bias and accumulation, through the pool.
        func withBias(_ path: KernelPath?) -> [Float] {
            var y = start
            x.withUnsafeBufferPointer { xp in
                bias.withUnsafeBufferPointer { bp in
                    y.withUnsafeMutableBufferPointer { yp in
                        panels.multiplyMany(xp.baseAddress!, rows: m, bias: bp.baseAddress!, into: yp.baseAddress!,
                                            accumulate: true, pool: ComputePool(threads: 2), path: path)
                    }
                }
            }
            return y
        }
        #expect(withBias(nil) == withBias(.portable))
    }

    /// Many rows over long inputs run in chunks of rows (x stays in L2 across panels): every row
    /// comes out exactly as it does alone, through both many-row entry points.
    @Test func rowChunksGiveEachRowAsItComesAlone() throws {
        var rng = TestRandom(seed: 77)
        let m = 300, n = 40, k = 3072
        #expect(Int8PanelMatrix.rowChunk(columns: k, rows: m) < m, "the case really is chunked")
        let x = rng.values(m * k)
        let panels = try Int8PanelMatrix(packing: QuantizedMatrix(converting: rng.values(n * k, scale: 0.05), rows: n,
                                                                  columns: k, to: .q8_0))
        let pool = ComputePool(threads: 2)
        let alone = (0..<m).flatMap { r in panels.multiplyMany(Array(x[(r * k)..<((r + 1) * k)]), rows: 1) }
        #expect(panels.multiplyMany(x, rows: m, pool: pool) == alone)
        var shared = [Float](repeating: .nan, count: m * n)
        x.withUnsafeBufferPointer { xp in
            shared.withUnsafeMutableBufferPointer { yp in
                Int8PanelMatrix.multiplyMany(xp.baseAddress!, rows: m, columns: k,
                                             by: [DecodeKernels.PanelProduct(matrix: panels, output: yp.baseAddress!)], pool: pool)
            }
        }
        #expect(shared == alone)
    }

    /// Real-valued weights and activations: within 1e-2 (relative to the largest output) of the
    /// float32 product with the expanded weights, the error being the rounding of x.
    @Test(arguments: formats, [1, 8, 16, 64, 128])
    func packedProductsStayCloseToTheFloat32Product(format: WeightFormat, m: Int) throws {
        var rng = TestRandom(seed: format == .q8_0 ? 7 : 9)
        let n = 96, k = 768
        let x = rng.values(m * k)
        let matrix = try QuantizedMatrix(converting: rng.values(n * k, scale: 0.05), rows: n, columns: k, to: format)
        let exact = matrix.multiply(x, rows: m)   // float32 arithmetic on the expanded weights
        let scale = exact.map { abs($0) }.max() ?? 1
        let panels = try Int8PanelMatrix(packing: matrix)
        for path in Self.paths {
            let error = maxAbsDifference(panels.multiplyMany(x, rows: m, path: path), exact) / scale
            #expect(error < 1e-2, "path \(String(describing: path)): error \(error)")
            #expect(error > 1e-6, "it really is the quantised path")
        }
    }

    /// Several matrices sharing x (the decode step's job, and the many-row job of prefill and
    /// vision), with bias and accumulation, split over a pool, give what each matrix gives alone
    /// through the many-row product.
    @Test(arguments: [1, 2, 5, 8, 16, 50, 100], [false, true])
    func sharedJobsMatchEachProductAlone(m: Int, manyRowJob: Bool) throws {
        var rng = TestRandom(seed: UInt64(100 + m))
        let k = 512, sizes = [512, 128, 70, 1408]
        let matrices = try sizes.map { try Int8PanelMatrix(packing: QuantizedMatrix(converting: rng.values($0 * k, scale: 0.1), rows: $0, columns: k, to: .q8_0)) }
        let biases = sizes.map { rng.values($0) }, starts = sizes.map { rng.values(m * $0) }
        let x = rng.values(m * k)
        for path in Self.paths {
            var outputs = starts
            let biasMemory = biases.map(heapCopy), outputMemory = outputs.map(heapCopy)
            defer { (biasMemory + outputMemory).forEach { $0.deallocate() } }
            let products = (0..<sizes.count).map {
                DecodeKernels.PanelProduct(matrix: matrices[$0], bias: UnsafePointer(biasMemory[$0]), output: outputMemory[$0],
                                           accumulate: $0 % 2 == 1)
            }
            x.withUnsafeBufferPointer {
                if manyRowJob {
                    Int8PanelMatrix.multiplyMany($0.baseAddress!, rows: m, columns: k, by: products, pool: ComputePool(threads: 2), path: path)
                } else {
                    DecodeKernels.multiply($0.baseAddress!, rows: m, columns: k, by: products, pool: ComputePool(threads: 2), path: path)
                }
            }
            for j in 0..<sizes.count { outputs[j] = Array(UnsafeBufferPointer(start: outputMemory[j], count: m * sizes[j])) }
            for j in 0..<sizes.count {
                var expected = starts[j]
                x.withUnsafeBufferPointer { xp in
                    expected.withUnsafeMutableBufferPointer { ep in
                        matrices[j].multiplyMany(xp.baseAddress!, rows: m, bias: UnsafePointer(biasMemory[j]), into: ep.baseAddress!,
                                                 accumulate: j % 2 == 1, path: path)
                    }
                }
                #expect(outputs[j] == expected, "product \(j), path \(String(describing: path))")
            }
        }
    }

    /// A decode step's shared job may hold Q8_0 and Q4_0 panels at once (x quantised once for both).
    @Test(arguments: [1, 8, 16, 50])
    func sharedJobsMixQ8_0AndQ4_0Panels(m: Int) throws {
        var rng = TestRandom(seed: UInt64(900 + m))
        let k = 256, sizes = [256, 70, 130]
        let formats: [WeightFormat] = [.q4_0, .q8_0, .q4_0]
        let matrices = try (0..<sizes.count).map {
            try Int8PanelMatrix(packing: QuantizedMatrix(converting: rng.values(sizes[$0] * k, scale: 0.1), rows: sizes[$0],
                                                         columns: k, to: formats[$0]))
        }
        let x = rng.values(m * k)
        for path in Self.paths {
            let outputs = sizes.map { heapCopy([Float](repeating: .nan, count: m * $0)) }
            defer { outputs.forEach { $0.deallocate() } }
            let products = (0..<sizes.count).map { DecodeKernels.PanelProduct(matrix: matrices[$0], output: outputs[$0]) }
            x.withUnsafeBufferPointer {
                DecodeKernels.multiply($0.baseAddress!, rows: m, columns: k, by: products, pool: ComputePool(threads: 2), path: path)
            }
            for j in 0..<sizes.count {
                #expect(Array(UnsafeBufferPointer(start: outputs[j], count: m * sizes[j])) == matrices[j].multiplyMany(x, rows: m, path: path),
                        "product \(j) (\(formats[j])), path \(String(describing: path))")
            }
        }
    }
}
