import Kernels
import Testing

/// Q4_0 matrices packed once into 4-bit panels (`Int8PanelMatrix` with format `.q4_0`): the same
/// values as the file's blocks, and products that follow the integer definition on the VNNI and
/// portable paths, alone, stacked and in shared jobs beside Q8_0 panels.
@Suite("Q4_0 weights packed into 4-bit panels")
struct Q4PanelMatrixTests {
    static var paths: [KernelPath?] { [.portable] + (Int8PanelMatrix.isFast ? [nil] : []) }

    /// Q4_0 bytes with every scale 1 and 4-bit q from `rng`: weights q - 8 in -8...7.
    func integerMatrix(rows: Int, columns: Int, rng: inout TestRandom) throws -> (QuantizedMatrix, [Int]) {
        var bytes: [UInt8] = [], values = [Int](repeating: 0, count: rows * columns)
        for r in 0..<rows {
            for b in 0..<(columns / 32) {
                bytes += [0x00, 0x3C]   // float16 1.0, little-endian
                var q = [Int](repeating: 0, count: 32)
                for j in 0..<32 {
                    q[j] = min(15, Int((rng.next() + 1) * 8))
                    values[r * columns + b * 32 + j] = q[j] - 8
                }
                for j in 0..<16 { bytes.append(UInt8(q[j] | q[j + 16] << 4)) }
            }
        }
        return (try QuantizedMatrix(format: .q4_0, rows: rows, columns: columns, bytes: bytes), values)
    }

    /// Integer x with |x| ≤ 127 and one ±127 per block: quantised with scale 1, exactly.
    func integerActivations(rows m: Int, columns k: Int, rng: inout TestRandom) -> [Float] {
        var x = (0..<(m * k)).map { _ in (rng.next() * 126).rounded() }
        for block in 0..<(m * k / 32) { x[block * 32 + Int(rng.next() * 15.5 + 16)] = rng.next() < 0 ? -127 : 127 }
        return x
    }

    @Test(arguments: [(1, 32), (17, 64), (32, 96), (70, 256), (100, 1408)])
    func packingKeepsEveryStoredValue(rows: Int, columns: Int) throws {
        var rng = TestRandom(seed: UInt64(rows * 11 + columns))
        let matrix = try QuantizedMatrix(converting: rng.values(rows * columns, scale: 3), rows: rows, columns: columns, to: .q4_0)
        let panels = try Int8PanelMatrix(packing: matrix, pool: ComputePool(threads: 2))
        #expect(panels.format == .q4_0)
        #expect(panels.expandRows(0..<rows) == matrix.expandRows(0..<rows))
        #expect(panels.expandRows((rows / 2)..<rows) == matrix.expandRows((rows / 2)..<rows))
        // 18 bytes per block of 32 values, as in the file, once the last panel is full.
        #expect(panels.byteCount == (rows + 31) / 32 * 32 * (columns / 32) * 18)
    }

    @Test func stackedMatricesPackAsSegments() throws {
        var rng = TestRandom(seed: 4)
        let experts = 3, rows = 40, columns = 64
        let stacked = try QuantizedMatrix(converting: rng.values(experts * rows * columns), rows: experts * rows,
                                          columns: columns, to: .q4_0)
        let panels = try Int8PanelMatrix(packing: stacked, segments: experts)
        #expect(panels.expandRows(0..<(experts * rows)) == stacked.expandRows(0..<(experts * rows)))
        let x = rng.values(5 * columns)
        let whole = panels.multiplyMany(x, rows: 5)
        for e in 0..<experts {
            let alone = try Int8PanelMatrix(packing: QuantizedMatrix(converting: stacked.expandRows((e * rows)..<((e + 1) * rows)),
                                                                      rows: rows, columns: columns, to: .q4_0))
            #expect(panels.segment(e).format == .q4_0)
            #expect(panels.segment(e).expandRows(0..<rows) == alone.expandRows(0..<rows))
            let y = panels.segment(e).multiplyMany(x, rows: 5)
            #expect(y == alone.multiplyMany(x, rows: 5))
            for i in 0..<5 { #expect(Array(whole[(i * experts * rows + e * rows)..<(i * experts * rows + (e + 1) * rows)]) == Array(y[(i * rows)..<((i + 1) * rows)])) }
        }
    }

    /// Integer x and 4-bit weights with unit scales: every step is exact, so the result is the
    /// integer product (int32 block sums, the 8 · Σ qx correction of the unsigned nibbles).
    @Test(arguments: [1, 2, 3, 4, 5, 6, 7, 8, 13, 16, 17, 50])
    func packedProductsSumExactlyOnEveryPath(m: Int) throws {
        var rng = TestRandom(seed: UInt64(50 + m))
        let n = 45, k = 256
        let (matrix, w) = try integerMatrix(rows: n, columns: k, rng: &rng)
        #expect(matrix.expandRows(0..<n) == w.map(Float.init))
        let panels = try Int8PanelMatrix(packing: matrix)
        let x = integerActivations(rows: m, columns: k, rng: &rng)
        var expected = [Float](repeating: 0, count: m * n)
        for i in 0..<m {
            for r in 0..<n {
                var sum = 0
                for c in 0..<k { sum += Int(x[i * k + c]) * w[r * k + c] }
                expected[i * n + r] = Float(sum)
            }
        }
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

    /// Every tile (1-6 rows, the 7-8-row halves tile, and their mixes up to 17 rows) does each
    /// output's float work in the portable definition's order: identical results.
    @Test(arguments: Array(1...17))
    func vectorTilesGiveThePortableResultsBitForBit(m: Int) throws {
        guard Int8PanelMatrix.isFast else { return }
        var rng = TestRandom(seed: UInt64(700 + m))
        let n = 70, k = 384
        let x = rng.values(m * k)
        let matrix = try QuantizedMatrix(converting: rng.values(n * k, scale: 0.05), rows: n, columns: k, to: .q4_0)
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

    /// Against the float32 product with the original (unquantised) weights: the 4-bit rounding
    /// of the weights dominates. Measured on these inputs: see the bound.
    @Test(arguments: [1, 8, 64])
    func packedProductsStayCloseToTheExpandedProduct(m: Int) throws {
        var rng = TestRandom(seed: 9)
        let n = 96, k = 768
        let x = rng.values(m * k)
        let matrix = try QuantizedMatrix(converting: rng.values(n * k, scale: 0.05), rows: n, columns: k, to: .q4_0)
        let exact = matrix.multiply(x, rows: m)   // float32 arithmetic on the expanded 4-bit weights
        let scale = exact.map { abs($0) }.max() ?? 1
        let panels = try Int8PanelMatrix(packing: matrix)
        for path in Self.paths {
            let error = maxAbsDifference(panels.multiplyMany(x, rows: m, path: path), exact) / scale
            #expect(error < 1e-2, "path \(String(describing: path)): error \(error)")
            #expect(error > 1e-6, "it really is the quantised path")
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
