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
        for (rows, hd) in [(1, 64), (5, 7), (13, 20), (70, 96), (197, 64), (33, 130)] {
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
        check(rows: 197, length: 197, hd: 64, heads: 12, firstPosition: nil, path: .best, pool: pool)
        check(rows: 100, length: 120, hd: 96, heads: 8, firstPosition: 20, path: .best, pool: pool)
    }
}
