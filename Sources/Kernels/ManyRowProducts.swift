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
        // Up to 8 MiB of float32 weights at a time: the scratch stays transient.
        let chunk = max(16, min(n, (1 << 21) / max(k, 1)))
        let widened = UnsafeMutablePointer<Float>.allocate(capacity: chunk * k)
        defer { widened.deallocate() }
        if pool != nil { Kernels.useSingleThreadedBLAS() }
        var first = 0
        while first < n {
            let count = min(chunk, n - first)
            // Each thread widens its own share of the rows and multiplies it: no hand-over between
            // widening and product, OpenBLAS single-threaded inside.
            let parts = pool.map { min($0.threads, max(1, count / 16)) } ?? 1
            let share = { (part: Int) in
                let lo = part == 0 ? 0 : (count * part / parts) / 16 * 16
                let hi = part == parts - 1 ? count : (count * (part + 1) / parts) / 16 * 16
                guard hi > lo else { return }
                self.expandRows((first + lo)..<(first + hi), into: widened + lo * k)
                let target = out + first + lo
                var beta: Float = accumulate ? 1 : 0
                if let bias {
                    for r in 0..<m {
                        let row = target + r * n
                        for j in 0..<(hi - lo) { row[j] = (accumulate ? row[j] : 0) + bias[first + lo + j] }
                    }
                    beta = 1
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(hi - lo), Int32(k),
                            1, x, Int32(k), widened + lo * k, Int32(k), beta, target, Int32(n))
            }
            if let pool, parts > 1 { pool.parallelFor(parts, share) } else { share(0) }
            first += count
        }
    }
}
