import COpenBLAS

extension Kernels {
    /// `out[m, n] = x[m, k] · w[n, k]ᵀ (+ bias[n])`: a PyTorch `Linear` over `m` rows.
    ///
    /// Weights are `[out, in]` row-major as PyTorch stores them, so this is an NT product; one row
    /// goes through `sgemv`, which is several times faster than an `sgemm` with m = 1.
    /// With `accumulate` the product is added to `out` (a residual connection for free).
    public static func linear(
        _ x: UnsafePointer<Float>, rows m: Int, inFeatures k: Int,
        weight w: UnsafePointer<Float>, outFeatures n: Int, bias: UnsafePointer<Float>? = nil,
        into out: UnsafeMutablePointer<Float>, accumulate: Bool = false
    ) {
        guard m > 0, n > 0 else { return }
        var beta: Float = accumulate ? 1 : 0
        if let bias {
            for r in 0..<m {
                let row = out + r * n
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
                        1, x, Int32(k), w, Int32(k), beta, out, Int32(n))
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
