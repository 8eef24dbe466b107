import COpenBLAS

extension Kernels {
    /// `out[m, n] = x[m, k] · w[n, k]ᵀ (+ bias[n])`: a PyTorch `Linear` over `m` rows.
    ///
    /// Weights are `[out, in]` row-major as PyTorch stores them, so this is an NT product; one row
    /// goes through `sgemv`, which is several times faster than an `sgemm` with m = 1.
    /// With `accumulate` the product is added to `out` (a residual connection for free).
    /// With a `pool`, a product of several rows is split by output columns over its threads, each
    /// calling single-threaded OpenBLAS on its share (x packed once per thread, each weight row read
    /// by one thread only).
    public static func linear(
        _ x: UnsafePointer<Float>, rows m: Int, inFeatures k: Int,
        weight w: UnsafePointer<Float>, outFeatures n: Int, bias: UnsafePointer<Float>? = nil,
        into out: UnsafeMutablePointer<Float>, accumulate: Bool = false, pool: ComputePool? = nil
    ) {
        guard m > 0, n > 0 else { return }
        // Below ~1 MFLOP a second thread costs more than it brings.
        if let pool, pool.threads > 1, m > 1, m * n * k >= 1 << 19 {
            useSingleThreadedBLAS()
            let parts = min(pool.threads, max(1, n / 16))
            pool.parallelFor(parts) { part in
                // Column ranges on multiples of 16: whole vectors in OpenBLAS's kernel.
                let lo = part == 0 ? 0 : (n * part / parts) / 16 * 16
                let hi = part == parts - 1 ? n : (n * (part + 1) / parts) / 16 * 16
                guard hi > lo else { return }
                linear(x, rows: m, inFeatures: k, weight: w + lo * k, outFeatures: hi - lo, bias: bias.map { $0 + lo },
                       into: out + lo, ldOut: n, accumulate: accumulate)
            }
            return
        }
        linear(x, rows: m, inFeatures: k, weight: w, outFeatures: n, bias: bias, into: out, ldOut: n, accumulate: accumulate)
    }

    /// `linear` on the calling thread, rows of `out` `ldOut` floats apart.
    private static func linear(
        _ x: UnsafePointer<Float>, rows m: Int, inFeatures k: Int,
        weight w: UnsafePointer<Float>, outFeatures n: Int, bias: UnsafePointer<Float>?,
        into out: UnsafeMutablePointer<Float>, ldOut: Int, accumulate: Bool
    ) {
        var beta: Float = accumulate ? 1 : 0
        if let bias {
            for r in 0..<m {
                let row = out + r * ldOut
                if accumulate {
                    for j in 0..<n { row[j] += bias[j] }
                } else {
                    row.update(from: bias, count: n)
                }
            }
            beta = 1
        }
        if m == 1 {
            cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(n), Int32(k), 1, w, Int32(k), x, 1, beta, out, 1)
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k),
                        1, x, Int32(k), w, Int32(k), beta, out, Int32(ldOut))
        }
    }

    /// `c[m, n] = alpha · a[m, k] · b[n, k]ᵀ` with leading dimensions (row strides) of each
    /// operand, for products over views such as one attention head of a `[T, heads·hd]` buffer.
    public static func matmulTransposedB(
        m: Int, n: Int, k: Int, alpha: Float = 1,
        _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
        into c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        guard m > 0, n > 0 else { return }
        if m == 1 {
            cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(n), Int32(k), alpha, b, Int32(ldb), a, 1, 0, c, 1)
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k),
                        alpha, a, Int32(lda), b, Int32(ldb), 0, c, Int32(ldc))
        }
    }

    /// `c[m, n] = a[m, k] · b[k, n]` with leading dimensions, e.g. attention weights times values.
    public static func matmul(
        m: Int, n: Int, k: Int,
        _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
        into c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        guard m > 0, n > 0 else { return }
        if m == 1 {
            cblas_sgemv(CblasRowMajor, CblasTrans, Int32(k), Int32(n), 1, b, Int32(ldb), a, 1, 0, c, 1)
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k),
                        1, a, Int32(lda), b, Int32(ldb), 0, c, Int32(ldc))
        }
    }
}
