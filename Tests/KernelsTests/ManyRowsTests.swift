import Foundation
import Kernels
import Testing

/// Attention of one head in double precision, straight from the formula.
func naiveAttention(q: [Float], k: [Float], v: [Float], rows: Int, length: Int, hd: Int,
                    scale: Float, firstPosition: Int?) -> [Float] {
    var out = [Float](repeating: 0, count: rows * hd)
    for t in 0..<rows {
        let visible = firstPosition.map { min(length, $0 + t + 1) } ?? length
        var scores = (0..<visible).map { j in
            (0..<hd).reduce(0.0) { $0 + Double(q[t * hd + $1]) * Double(k[j * hd + $1]) } * Double(scale)
        }
        let top = scores.max() ?? 0
        scores = scores.map { Foundation.exp($0 - top) }
        let total = scores.reduce(0, +)
        for c in 0..<hd {
            out[t * hd + c] = Float((0..<visible).reduce(0.0) { $0 + scores[$1] * Double(v[$1 * hd + c]) } / total)
        }
    }
    return out
}

@Suite("Attention over whole sequences against the formula")
struct SequenceAttentionTests {
    /// Runs `heads` independent heads of the given geometry, stored interleaved as
    /// `[rows, heads, hd]` like the models' activations, and compares each to the formula.
    func check(rows: Int, length: Int, hd: Int, heads: Int, firstPosition: Int?, path: KernelPath, pool: ComputePool?) {
        var rng = TestRandom(seed: UInt64(rows * 1000 + length * 10 + hd))
        let width = heads * hd
        let q = rng.values(rows * width, scale: 2), k = rng.values(length * width, scale: 2), v = rng.values(length * width)
        var out = [Float](repeating: .nan, count: rows * width)
        let scale = 1 / Float(hd).squareRoot()
        q.withUnsafeBufferPointer { qp in k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in
            out.withUnsafeMutableBufferPointer { op in
                let (qb, kb, vb, ob) = (qp.baseAddress!, kp.baseAddress!, vp.baseAddress!, op.baseAddress!)
                Kernels.attention(heads: heads, headDim: hd, scale: scale, pool: pool, path: path) { h in
                    AttentionHead(query: qb + h * hd, queryStride: width, keys: kb + h * hd, keyStride: width,
                                  values: vb + h * hd, valueStride: width, output: ob + h * hd, outputStride: width,
                                  rows: rows, length: length, firstPosition: firstPosition)
                }
            }
        } } }
        for h in 0..<heads {
            func head(_ x: [Float], _ n: Int) -> [Float] {
                var part: [Float] = []
                for row in 0..<n {
                    let start = row * width + h * hd
                    part += x[start..<(start + hd)]
                }
                return part
            }
            let expected = naiveAttention(q: head(q, rows), k: head(k, length), v: head(v, length), rows: rows,
                                          length: length, hd: hd, scale: scale, firstPosition: firstPosition)
            let error = maxAbsDifference(head(out, rows), expected)
            #expect(error < 2e-5, "path \(path), rows \(rows), length \(length), hd \(hd), head \(h): error \(error)")
        }
    }

    @Test(arguments: KernelPath.available)
    func everyRowSeesEveryKeyLikeTheFormula(path: KernelPath) {
        // Odd sizes: partial score tiles (8 rows x 32 keys), partial value tiles, head dims that
        // are not multiples of 16 (masked vectors) and more rows than one block of 64.
        for (rows, hd) in [(1, 64), (5, 7), (13, 20), (70, 96), (33, 130)] {
            check(rows: rows, length: rows, hd: hd, heads: 2, firstPosition: nil, path: path, pool: nil)
        }
    }

    @Test(arguments: KernelPath.available)
    func causalRowsSeeOnlyEarlierPositions(path: KernelPath) {
        // A fresh prompt, then a continuation after cached positions.
        for (rows, first, hd) in [(9, 0, 64), (67, 0, 96), (5, 40, 48), (70, 3, 17)] {
            check(rows: rows, length: first + rows, hd: hd, heads: 3, firstPosition: first, path: path, pool: nil)
        }
    }

    @Test func headsSplitOverAPoolGiveTheSameResult() {
        let pool = ComputePool(threads: 2)
        check(rows: 90, length: 90, hd: 64, heads: 6, firstPosition: nil, path: .best, pool: pool)
        check(rows: 50, length: 70, hd: 96, heads: 4, firstPosition: 20, path: .best, pool: pool)
    }
}

@Suite("Products of low-precision weights with many rows")
struct ManyRowProductTests {
    /// The int8 scheme from its definition: x quantised per row and block of 32 (scale
    /// max|x| / 127, round half to even), Q8_0 weights, integer dot products per block, in double.
    func int8Reference(_ x: [Float], m: Int, k: Int, weights: QuantizedMatrix, bias: [Float]?) -> [Float] {
        let n = weights.rows
        let bytes = weights.withUnsafeBytes { Array($0) }
        let blocks = k / 32, rowBytes = blocks * 34
        var out = [Float](repeating: 0, count: m * n)
        for i in 0..<m {
            var q = [Float](repeating: 0, count: k), scales = [Float](repeating: 0, count: blocks)
            for b in 0..<blocks {
                let block = x[(i * k + b * 32)..<(i * k + b * 32 + 32)]
                let scale = (block.map { abs($0) }.max() ?? 0) / 127
                let inverse: Float = scale > 0 ? 1 / scale : 0
                scales[b] = scale
                for (t, v) in block.enumerated() { q[b * 32 + t] = max(-127, min(127, (v * inverse).rounded(.toNearestOrEven))) }
            }
            for r in 0..<n {
                var total = 0.0
                for b in 0..<blocks {
                    let base = r * rowBytes + b * 34
                    let d = Float(Float16(bitPattern: UInt16(bytes[base]) | UInt16(bytes[base + 1]) << 8))
                    var dot = 0
                    for t in 0..<32 { dot += Int(q[b * 32 + t]) * Int(Int8(bitPattern: bytes[base + 2 + t])) }
                    total += Double(d) * Double(scales[b]) * Double(dot)
                }
                out[i * n + r] = Float(total) + (bias?[r] ?? 0)
            }
        }
        return out
    }

    func product(_ matrix: QuantizedMatrix, _ x: [Float], m: Int, bias: [Float]?, start: [Float]?,
                 int8: Bool, path: KernelPath?, pool: ComputePool?) -> [Float] {
        var out = start ?? [Float](repeating: .nan, count: m * matrix.rows)
        x.withUnsafeBufferPointer { xp in
            out.withUnsafeMutableBufferPointer { op in
                let b = bias.map { UnsafeMutablePointer<Float>.allocate(capacity: $0.count) }
                defer { b?.deallocate() }
                if let bias, let b { b.initialize(from: bias, count: bias.count) }
                matrix.multiplyMany(xp.baseAddress!, rows: m, bias: b, into: op.baseAddress!, accumulate: start != nil,
                                    pool: pool, int8: int8, path: path)
            }
        }
        return out
    }

    @Test(arguments: [(17, 40, 64), (50, 33, 96), (6, 100, 32), (23, 7, 160)])
    func int8ProductsFollowTheirDefinitionOnEveryPath(m: Int, n: Int, k: Int) throws {
        var rng = TestRandom(seed: UInt64(m * n + k))
        let x = rng.values(m * k, scale: 3), bias = rng.values(n)
        let matrix = try QuantizedMatrix(converting: rng.values(n * k, scale: 0.2), rows: n, columns: k, to: .q8_0)
        let expected = int8Reference(x, m: m, k: k, weights: matrix, bias: bias)
        let scale = expected.map { abs($0) }.max() ?? 1
        var paths: [KernelPath?] = [.portable]
        if QuantizedMatrix.hasInt8Products { paths.append(nil) }
        for path in paths {
            let y = product(matrix, x, m: m, bias: bias, start: nil, int8: true, path: path, pool: nil)
            #expect(maxAbsDifference(y, expected) <= 1e-5 * scale, "path \(String(describing: path))")
        }
    }

    @Test func int8ErrorAgainstFloat32WeightsIsTheActivationRounding() throws {
        // 128 rows like a prompt, 768 inputs like the encoders: the int8 product differs from the
        // float32 product of the same (expanded) weights by the rounding of x alone.
        var rng = TestRandom(seed: 7)
        let m = 128, n = 96, k = 768
        let x = rng.values(m * k), matrix = try QuantizedMatrix(converting: rng.values(n * k, scale: 0.05), rows: n, columns: k, to: .q8_0)
        let exact = product(matrix, x, m: m, bias: nil, start: nil, int8: false, path: nil, pool: nil)
        let int8 = product(matrix, x, m: m, bias: nil, start: nil, int8: true, path: .portable, pool: nil)
        let scale = exact.map { abs($0) }.max() ?? 1
        let error = maxAbsDifference(int8, exact) / scale
        #expect(error < 1e-2)
        #expect(error > 1e-5)   // it really is the quantised path
    }

    @Test(arguments: WeightFormat.allCases)
    func widenedBlocksGiveTheExpandedProductWithBiasAndAccumulation(format: WeightFormat) throws {
        var rng = TestRandom(seed: 11)
        let m = 37, n = 300, k = 1024   // two widening chunks of 256 and 44 rows
        let matrix = try QuantizedMatrix(converting: rng.values(n * k), rows: n, columns: k, to: format)
        let x = rng.values(m * k), bias = rng.values(n), start = rng.values(m * n)
        let w = matrix.expandRows(0..<n)
        var expected = start
        for i in 0..<m {
            for r in 0..<n {
                var s = 0.0
                for c in 0..<k { s += Double(x[i * k + c]) * Double(w[r * k + c]) }
                expected[i * n + r] += Float(s) + bias[r]
            }
        }
        let y = product(matrix, x, m: m, bias: bias, start: start, int8: false, path: nil, pool: ComputePool(threads: 2))
        #expect(maxAbsDifference(y, expected) < 1e-4)
    }

    @Test func int8PanelsSplitOverAPoolMatchTheCaller() throws {
        var rng = TestRandom(seed: 5)
        let m = 70, n = 200, k = 128
        let matrix = try QuantizedMatrix(converting: rng.values(n * k), rows: n, columns: k, to: .q8_0)
        let x = rng.values(m * k), start = rng.values(m * n)
        let alone = product(matrix, x, m: m, bias: nil, start: start, int8: true, path: nil, pool: nil)
        let pooled = product(matrix, x, m: m, bias: nil, start: start, int8: true, path: nil, pool: ComputePool(threads: 2))
        #expect(alone == pooled)
    }
}
