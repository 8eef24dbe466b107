import Foundation
import Kernels
import Testing

/// Deterministic pseudo-random values in [-1, 1) so failures reproduce.
struct TestRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }
    mutating func next() -> Float {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Float(Int64(bitPattern: state >> 11) % (1 << 24)) / Float(1 << 23) - 1
    }
    mutating func values(_ n: Int, scale: Float = 1) -> [Float] { (0..<n).map { _ in next() * scale } }
}

/// A heap copy of `values` that kernels can read and write through; the caller deallocates it.
func heapCopy(_ values: [Float]) -> UnsafeMutablePointer<Float> {
    let p = UnsafeMutablePointer<Float>.allocate(capacity: max(values.count, 1))
    p.initialize(from: values, count: values.count)
    return p
}

/// A 64-byte aligned heap copy of `bytes`; the caller deallocates it.
func heapCopy(_ bytes: [UInt8]) -> UnsafeMutableRawPointer {
    let p = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 64)
    p.copyMemory(from: bytes, byteCount: bytes.count)
    return p
}

func maxAbsDifference(_ a: [Float], _ b: [Float]) -> Float {
    zip(a, b).map { abs($0 - $1) }.max() ?? 0
}

@Suite("Matrix products against naive loops")
struct MatrixProductTests {
    func naiveLinear(_ x: [Float], m: Int, k: Int, _ w: [Float], n: Int, bias: [Float]?) -> [Float] {
        var out = [Float](repeating: 0, count: m * n)
        for r in 0..<m {
            for j in 0..<n {
                var s: Double = 0
                for i in 0..<k { s += Double(x[r * k + i]) * Double(w[j * k + i]) }
                out[r * n + j] = Float(s) + (bias?[j] ?? 0)
            }
        }
        return out
    }

    @Test(arguments: [1, 2, 7, 33])
    func linearMatchesNaiveLoop(rows: Int) {
        var rng = TestRandom(seed: UInt64(rows))
        let k = 45, n = 67
        let x = rng.values(rows * k), w = rng.values(n * k), bias = rng.values(n)
        for useBias in [false, true] {
            var out = [Float](repeating: 0, count: rows * n)
            x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in bias.withUnsafeBufferPointer { bp in
                out.withUnsafeMutableBufferPointer { op in
                    Kernels.linear(xp.baseAddress!, rows: rows, inFeatures: k, weight: wp.baseAddress!, outFeatures: n,
                                   bias: useBias ? bp.baseAddress! : nil, into: op.baseAddress!)
                }
            } } }
            let expected = naiveLinear(x, m: rows, k: k, w, n: n, bias: useBias ? bias : nil)
            #expect(maxAbsDifference(out, expected) < 1e-5)
        }
    }

    @Test(arguments: [1, 5])
    func linearAccumulatesIntoOutput(rows: Int) {
        var rng = TestRandom(seed: 99)
        let k = 16, n = 24
        let x = rng.values(rows * k), w = rng.values(n * k), bias = rng.values(n), start = rng.values(rows * n)
        var out = start
        x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in bias.withUnsafeBufferPointer { bp in
            out.withUnsafeMutableBufferPointer { op in
                Kernels.linear(xp.baseAddress!, rows: rows, inFeatures: k, weight: wp.baseAddress!, outFeatures: n,
                               bias: bp.baseAddress!, into: op.baseAddress!, accumulate: true)
            }
        } } }
        let product = naiveLinear(x, m: rows, k: k, w, n: n, bias: bias)
        #expect(maxAbsDifference(out, zip(start, product).map { $0 + $1 }) < 1e-5)
    }

    /// Split by output columns over a pool (shares on multiples of 16, the last taking the rest),
    /// with bias and accumulation: the naive product, whatever the column count.
    @Test(arguments: [(40, 1000), (3, 1000), (64, 70), (100, 33)])
    func linearSplitOverAPoolMatchesNaiveLoop(rows: Int, n: Int) {
        var rng = TestRandom(seed: UInt64(rows * n))
        let k = 200
        let x = rng.values(rows * k), w = rng.values(n * k), bias = rng.values(n), start = rng.values(rows * n)
        let pool = ComputePool(threads: 3)
        for accumulate in [false, true] {
            var out = accumulate ? start : [Float](repeating: .nan, count: rows * n)
            x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in bias.withUnsafeBufferPointer { bp in
                out.withUnsafeMutableBufferPointer { op in
                    Kernels.linear(xp.baseAddress!, rows: rows, inFeatures: k, weight: wp.baseAddress!, outFeatures: n,
                                   bias: bp.baseAddress!, into: op.baseAddress!, accumulate: accumulate, pool: pool)
                }
            } } }
            let product = naiveLinear(x, m: rows, k: k, w, n: n, bias: bias)
            let expected = accumulate ? zip(start, product).map { $0 + $1 } : product
            #expect(maxAbsDifference(out, expected) < 1e-4, "accumulate \(accumulate)")
        }
    }

    @Test(arguments: [1, 9])
    func stridedProductsMatchNaiveLoops(rows m: Int) {
        // One "head" of width 8 inside rows of 24 (a), 16 (b): the attention access pattern.
        var rng = TestRandom(seed: UInt64(m) + 7)
        let n = 11, k = 8, lda = 24, ldb = 16
        let a = rng.values(m * lda), b = rng.values(n * ldb)
        var scores = [Float](repeating: 0, count: m * n)
        a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in scores.withUnsafeMutableBufferPointer { cp in
            Kernels.matmulTransposedB(m: m, n: n, k: k, alpha: 0.5, ap.baseAddress! + 8, lda: lda, bp.baseAddress! + 4, ldb: ldb,
                                      into: cp.baseAddress!, ldc: n)
        } } }
        var expected = [Float](repeating: 0, count: m * n)
        for r in 0..<m { for j in 0..<n {
            var s: Float = 0
            for i in 0..<k { s += a[r * lda + 8 + i] * b[j * ldb + 4 + i] }
            expected[r * n + j] = 0.5 * s
        } }
        #expect(maxAbsDifference(scores, expected) < 1e-5)

        // c[m, 8] (ldc 24, offset 8) = p[m, n] · v[n, 8] (ldb 16, offset 4)
        let p = rng.values(m * n)
        var c = [Float](repeating: 0, count: m * lda)
        p.withUnsafeBufferPointer { pp in b.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
            Kernels.matmul(m: m, n: k, k: n, pp.baseAddress!, lda: n, bp.baseAddress! + 4, ldb: ldb, into: cp.baseAddress! + 8, ldc: lda)
        } } }
        for r in 0..<m { for j in 0..<k {
            var s: Float = 0
            for i in 0..<n { s += p[r * n + i] * b[i * ldb + 4 + j] }
            #expect(abs(c[r * lda + 8 + j] - s) < 1e-5)
        } }
        #expect(c[0] == 0 && c[lda - 1] == 0, "product must stay inside its head's columns")
    }
}

@Suite("Norms, RoPE, softmax and activations against naive loops")
struct ElementwiseKernelTests {
    @Test func rmsNormMatchesFormula() {
        var rng = TestRandom(seed: 1)
        let rows = 3, dim = 37
        let x = rng.values(rows * dim, scale: 3), w = rng.values(dim)
        var out = [Float](repeating: 0, count: rows * dim)
        x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in out.withUnsafeMutableBufferPointer { op in
            Kernels.rmsNorm(xp.baseAddress!, rows: rows, dim: dim, weight: wp.baseAddress!, epsilon: 1e-5, into: op.baseAddress!)
        } } }
        for r in 0..<rows {
            let row = x[(r * dim)..<((r + 1) * dim)]
            let ms = row.map { Double($0) * Double($0) }.reduce(0, +) / Double(dim)
            for i in 0..<dim {
                let expected = Double(x[r * dim + i]) / (ms + 1e-5).squareRoot() * Double(w[i])
                #expect(abs(Double(out[r * dim + i]) - expected) < 1e-5)
            }
        }
    }

    @Test func layerNormMatchesFormula() {
        var rng = TestRandom(seed: 2)
        let rows = 2, dim = 50
        let x = rng.values(rows * dim, scale: 4).map { $0 + 10 }, w = rng.values(dim), b = rng.values(dim)
        var out = x
        w.withUnsafeBufferPointer { wp in b.withUnsafeBufferPointer { bp in out.withUnsafeMutableBufferPointer { op in
            Kernels.layerNorm(op.baseAddress!, rows: rows, dim: dim, weight: wp.baseAddress!, bias: bp.baseAddress!,
                              epsilon: 1e-6, into: op.baseAddress!)
        } } }
        for r in 0..<rows {
            let row = x[(r * dim)..<((r + 1) * dim)].map(Double.init)
            let mean = row.reduce(0, +) / Double(dim)
            let variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(dim)
            for i in 0..<dim {
                let expected = (row[i] - mean) / (variance + 1e-6).squareRoot() * Double(w[i]) + Double(b[i])
                #expect(abs(Double(out[r * dim + i]) - expected) < 1e-4)
            }
        }
    }

    @Test func ropeRotatesHalvesByPositionAngles() {
        var rng = TestRandom(seed: 3)
        let heads = 3, hd = 8, theta: Float = 1e6
        let x = rng.values(heads * hd)
        var table = RotaryTable(headDim: hd, theta: theta)
        table.reserve(20)
        for position in [0, 1, 17] {
            var out = x
            out.withUnsafeMutableBufferPointer { table.rotate($0.baseAddress!, heads: heads, position: position) }
            for h in 0..<heads {
                for i in 0..<(hd / 2) {
                    let angle = Double(position) * pow(Double(theta), -Double(2 * i) / Double(hd))
                    let a = Double(x[h * hd + i]), b = Double(x[h * hd + hd / 2 + i])
                    #expect(abs(Double(out[h * hd + i]) - (a * cos(angle) - b * sin(angle))) < 1e-5)
                    #expect(abs(Double(out[h * hd + hd / 2 + i]) - (b * cos(angle) + a * sin(angle))) < 1e-5)
                }
            }
        }
    }

    @Test func softmaxRowsSumToOneAndFollowExp() {
        var rng = TestRandom(seed: 4)
        var x = rng.values(2 * 10, scale: 20)
        x[3] = -.infinity
        let original = x
        x.withUnsafeMutableBufferPointer { Kernels.softmax($0.baseAddress!, rows: 2, count: 10) }
        for r in 0..<2 {
            let row = original[(r * 10)..<((r + 1) * 10)].map(Double.init)
            let m = row.max()!
            let total = row.map { exp($0 - m) }.reduce(0, +)
            for i in 0..<10 {
                #expect(abs(Double(x[r * 10 + i]) - exp(row[i] - m) / total) < 1e-6)
            }
        }
        #expect(x[3] == 0)
    }

    @Test func activationsMatchTheirDefinitions() {
        var rng = TestRandom(seed: 5)
        // Ordinary values, then saturating ones (e^x clamps, 1 / (1 + e^x) underflows).
        let x = rng.values(92, scale: 6) + [0, -30, 30, -100, 100, -1e4, 1e4, 3]
        func apply(_ f: (UnsafeMutablePointer<Float>, Int) -> Void) -> [Float] {
            var y = x
            y.withUnsafeMutableBufferPointer { f($0.baseAddress!, $0.count) }
            return y
        }
        let sigmoid = { (v: Double) in 1 / (1 + exp(-v)) }
        let silu = apply { Kernels.silu($0, count: $1) }
        let erfGELU = apply { Kernels.geluErf($0, count: $1) }
        let tanhGELU = apply { Kernels.geluTanh($0, count: $1) }
        let quick = apply { Kernels.quickGELU($0, count: $1) }
        for i in x.indices {
            let v = Double(x[i])
            // Relative to the value for the large ones.
            let tolerance = 1e-5 * max(1, abs(v))
            #expect(abs(Double(silu[i]) - v * sigmoid(v)) < tolerance, "silu(\(v))")
            #expect(abs(Double(erfGELU[i]) - 0.5 * v * (1 + erf(v / 2.0.squareRoot()))) < tolerance, "gelu(\(v))")
            #expect(abs(Double(tanhGELU[i]) - 0.5 * v * (1 + tanh((2 / Double.pi).squareRoot() * (v + 0.044715 * v * v * v)))) < tolerance, "gelu_tanh(\(v))")
            #expect(abs(Double(quick[i]) - v * sigmoid(1.702 * v)) < tolerance, "quick_gelu(\(v))")
        }
        // The tanh form really is an approximation: it must differ from erf somewhere.
        #expect(maxAbsDifference(erfGELU, tanhGELU) > 1e-5)
        var gate = x
        let up = rng.values(100)
        gate.withUnsafeMutableBufferPointer { g in up.withUnsafeBufferPointer { Kernels.siluMultiply(g.baseAddress!, $0.baseAddress!, count: 100) } }
        for i in x.indices {
            #expect(abs(Double(gate[i]) - Double(silu[i]) * Double(up[i])) < 1e-5)
        }
    }
}

@Suite("Low-precision weights widen to float32")
struct PrecisionConversionTests {
    @Test func float16AndBFloat16WidenExactly() {
        let values: [Float] = [0, -0.0, 1, -2.5, 65504, 6.1035156e-05, 5.9604645e-08, 0.333251953125]
        let halves = values.map { Float16($0).bitPattern }
        var out = [Float](repeating: .nan, count: values.count)
        halves.withUnsafeBytes { raw in out.withUnsafeMutableBufferPointer { Kernels.widenFloat16(raw.baseAddress!, count: values.count, into: $0.baseAddress!) } }
        #expect(out == values.map { Float(Float16($0)) })
        #expect(out[6] == 5.9604645e-08, "subnormal halves survive")

        let brains = values.map { UInt16($0.bitPattern >> 16) }
        brains.withUnsafeBytes { raw in out.withUnsafeMutableBufferPointer { Kernels.widenBFloat16(raw.baseAddress!, count: values.count, into: $0.baseAddress!) } }
        #expect(out == values.map { Float(bitPattern: $0.bitPattern & 0xFFFF_0000) })
    }

    @Test func q8_0BlocksScaleTheirBytes() {
        var bytes: [UInt8] = []
        var expected: [Float] = []
        for block in 0..<2 {
            let scale = Float16(block == 0 ? 0.5 : -0.03125)
            bytes += withUnsafeBytes(of: scale.bitPattern.littleEndian) { Array($0) }
            for j in 0..<32 {
                let q = Int8(j * 8 - 128 + block)
                bytes.append(UInt8(bitPattern: q))
                expected.append(Float(scale) * Float(q))
            }
        }
        var out = [Float](repeating: .nan, count: 64)
        bytes.withUnsafeBytes { raw in out.withUnsafeMutableBufferPointer { Kernels.widenQ8_0(raw.baseAddress!, count: 64, into: $0.baseAddress!) } }
        #expect(out == expected)
    }
}

@Suite("OpenBLAS threads", .serialized)
struct ThreadTests {
    @Test func threadCountFollowsSettingAndDefaultsToCores() {
        Kernels.setThreadCount(1)
        #expect(Kernels.threadCount == 1)
        Kernels.setThreadCount(0)
        #expect(Kernels.threadCount == min(Kernels.coreCount, 64))
    }
}

@Suite("Vectorised exponential")
struct ExponentialTests {
    @Test func expIsWithinTwoUlpOfLibmOverItsRange() {
        var x: [Float] = stride(from: -87.0, through: 88.0, by: 0.0137).map { Float($0) }
        x += [0, -0.0, 1e-8, -1e-8, 0.5, -0.5, 88.3, -87.3]
        let original = x
        x.withUnsafeMutableBufferPointer { Kernels.exp($0.baseAddress!, count: $0.count) }
        for (value, input) in zip(x, original) {
            let expected = Float(Foundation.exp(Double(input)))
            #expect(abs(value - expected) <= 2 * expected.ulp, "exp(\(input)) = \(value), expected \(expected)")
        }
    }

    @Test func expOfMinusInfinityAndUnderflowIsZero() {
        var x: [Float] = [-.infinity, -100, -1000, 5]
        x.withUnsafeMutableBufferPointer { Kernels.exp($0.baseAddress!, count: $0.count) }
        #expect(x[0] == 0 && x[1] == 0 && x[2] == 0)
        #expect(abs(x[3] - 148.41316) < 1e-3)
    }
}
