@testable import Kernels
import Testing
import TestSupport

/// x as the panel products read it: per row and block of 32, d = max|x| / 127, q = x / d rounded
/// half to even, and the offset 128 · Σ q. The vector path reduces sixteen blocks at a time and the
/// rest one by one; both must give the definition's bytes.
@Suite("Rows of x quantised for the panel products")
struct QuantizedRowsTests {
    @Test(arguments: [32, 96, 512, 544, 768, 1408, 2048, 2080])
    func quantisedRowsFollowTheDefinition(columns: Int) {
        var rng = TestRandom(seed: UInt64(columns))
        let rows = 3
        var x = rng.values(rows * columns, scale: 3)
        // An all-zero block (d = 0) and values that land exactly halfway between two integers.
        for j in 0..<32 { x[j] = 0 }
        if columns >= 64 {
            x[32] = 127
            x[33] = 2.5
            x[34] = -3.5
            x[35] = 0.5
        }
        let quantised = x.withUnsafeBufferPointer { QuantizedRows($0.baseAddress!, rows: rows, columns: columns, pool: nil) }
        let blocks = columns / 32
        for r in 0..<rows {
            for b in 0..<blocks {
                let block = x[(r * columns + b * 32)..<(r * columns + b * 32 + 32)]
                let amax = block.map { abs($0) }.max()!
                let d = amax / 127, id = d > 0 ? 1 / d : 0
                let q = block.map { Int8(max(-127, min(127, ($0 * id).rounded(.toNearestOrEven)))) }
                #expect(quantised.scales[r * blocks + b] == d)
                #expect(quantised.offsets[r * blocks + b] == 128 * q.reduce(0) { $0 + Int32($1) })
                for j in 0..<32 {
                    #expect(quantised.values[r * columns + b * 32 + j] == q[j], "row \(r) block \(b) value \(j)")
                }
            }
        }
    }
}
