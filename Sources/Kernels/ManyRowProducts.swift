import CKernels
import COpenBLAS

extension QuantizedMatrix {
    /// Whether Q8_0 products over many rows run as int8 dot products on this CPU (AVX512-VNNI).
    public static var hasInt8Products: Bool { ck_q8_gemm_fast() != 0 }

    /// `out[m, rows] = x[m, columns] · Wᵀ (+ bias)`, or added to `out` with `accumulate`, for many
    /// rows of x (prefill, vision encoder, projector), reading the stored weights in place:
    /// - Q8_0 or Q4_0 with `int8` on a CPU with AVX512-VNNI (`hasInt8Products`): packed into int8 panels
    ///   for this call and multiplied as `Int8PanelMatrix.multiplyMany` does (x quantised like the
    ///   weights; this adds the activations' rounding error). Keep an `Int8PanelMatrix` to pack once.
    /// - otherwise: a block of weight rows at a time is widened to float32 (exact) and multiplied
    ///   by OpenBLAS, so no float32 copy of the whole matrix is ever kept.
    /// Rows of x are `columns` floats apart, rows of `out` `rows` floats apart.
    public func multiplyMany(_ x: UnsafePointer<Float>, rows m: Int, bias: UnsafePointer<Float>? = nil,
                             into out: UnsafeMutablePointer<Float>, accumulate: Bool = false,
                             pool: ComputePool? = nil, int8: Bool = true, path: KernelPath? = nil) {
        guard m > 0, rows > 0 else { return }
        if format.isBlockQuantized, int8, columns > 0, Self.hasInt8Products || path == .portable {
            multiplyInt8(x, rows: m, bias: bias, into: out, accumulate: accumulate, pool: pool, path: path)
        } else {
            multiplyWidened(x, rows: m, bias: bias, into: out, accumulate: accumulate, pool: pool)
        }
    }

    private func multiplyInt8(_ x: UnsafePointer<Float>, rows m: Int, bias: UnsafePointer<Float>?,
                              into out: UnsafeMutablePointer<Float>, accumulate: Bool, pool: ComputePool?,
                              path: KernelPath?) {
        // Packed for this call only: callers that multiply a matrix more than once keep an
        // `Int8PanelMatrix` instead.
        guard let panels = try? Int8PanelMatrix(packing: self, pool: pool) else { return }
        panels.multiplyMany(x, rows: m, bias: bias, into: out, accumulate: accumulate, pool: pool, path: path)
    }

    private func multiplyWidened(_ x: UnsafePointer<Float>, rows m: Int, bias: UnsafePointer<Float>?,
                                 into out: UnsafeMutablePointer<Float>, accumulate: Bool, pool: ComputePool?) {
        let k = columns, n = rows
        // Up to 8 MiB of float32 weights per OpenBLAS call: few hand-overs between our threads
        // (widening) and OpenBLAS's (the product), the scratch still transient.
        let chunk = max(16, min(n, (1 << 21) / max(k, 1)))
        let widened = UnsafeMutablePointer<Float>.allocate(capacity: chunk * k)
        defer { widened.deallocate() }
        var first = 0
        while first < n {
            let count = min(chunk, n - first)
            let parts = pool.map { min($0.threads, count) } ?? 1
            let expand = { (part: Int) in
                let lo = first + part * count / parts, hi = first + (part + 1) * count / parts
                self.expandRows(lo..<hi, into: widened + (lo - first) * k)
            }
            if let pool, parts > 1 { pool.parallelFor(parts, expand) } else { expand(0) }
            let target = out + first
            var beta: Float = accumulate ? 1 : 0
            if let bias {
                for r in 0..<m {
                    let row = target + r * n
                    for j in 0..<count { row[j] = (accumulate ? row[j] : 0) + bias[first + j] }
                }
                beta = 1
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(count), Int32(k),
                        1, x, Int32(k), widened, Int32(k), beta, target, Int32(n))
            first += count
        }
    }
}
