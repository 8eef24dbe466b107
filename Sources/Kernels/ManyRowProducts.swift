import CKernels
import COpenBLAS

extension QuantizedMatrix {
    /// Whether Q8_0 products over many rows run as int8 dot products on this CPU (AVX512-VNNI).
    public static var hasInt8Products: Bool { ck_q8_gemm_fast() != 0 }

    /// `out[m, rows] = x[m, columns] · Wᵀ (+ bias)`, or added to `out` with `accumulate`, for many
    /// rows of x (prefill, vision encoder, projector), reading the stored weights in place:
    /// - Q8_0 with `int8` on a CPU with AVX512-VNNI (`hasInt8Products`): x is quantised like the
    ///   weights (per row and block of 32: scale max|x| / 127, round half to even) and the int8
    ///   blocks are multiplied as integers, four times the float32 arithmetic rate; this adds the
    ///   activations' rounding error.
    /// - otherwise: a block of weight rows at a time is widened to float32 (exact) and multiplied
    ///   by OpenBLAS, so no float32 copy of the whole matrix is ever kept.
    /// Rows of x are `columns` floats apart, rows of `out` `rows` floats apart.
    public func multiplyMany(_ x: UnsafePointer<Float>, rows m: Int, bias: UnsafePointer<Float>? = nil,
                             into out: UnsafeMutablePointer<Float>, accumulate: Bool = false,
                             pool: ComputePool? = nil, int8: Bool = true, path: KernelPath? = nil) {
        guard m > 0, rows > 0 else { return }
        if format == .q8_0, int8, Self.hasInt8Products || path == .portable {
            multiplyInt8(x, rows: m, bias: bias, into: out, accumulate: accumulate, pool: pool, path: path)
        } else {
            multiplyWidened(x, rows: m, bias: bias, into: out, accumulate: accumulate, pool: pool)
        }
    }

    private func multiplyInt8(_ x: UnsafePointer<Float>, rows m: Int, bias: UnsafePointer<Float>?,
                              into out: UnsafeMutablePointer<Float>, accumulate: Bool, pool: ComputePool?,
                              path: KernelPath?) {
        let k = columns, n = rows
        let quantized = UnsafeMutablePointer<UInt8>.allocate(capacity: m * k)
        let blocks = k / 32
        let scales = UnsafeMutablePointer<Float>.allocate(capacity: m * blocks)
        defer { quantized.deallocate(); scales.deallocate() }
        let rowBlocks = (m + 63) / 64
        let quantize = { (block: Int) in
            let first = block * 64, count = min(64, m - first)
            ck_q8_quantize_rows(x + first * k, k, count, k, quantized + first * k, scales + first * blocks)
        }
        if let pool, rowBlocks > 1 { pool.parallelFor(rowBlocks, quantize) } else { for b in 0..<rowBlocks { quantize(b) } }

        let panels = (n + Int(CK_Q8_PANEL) - 1) / Int(CK_Q8_PANEL)
        let scratchBytes = ck_q8_panel_scratch_bytes(k)
        let isa = path?.rawValue ?? -1
        withUnsafeBytes { weights in
            let run = { (panel: Int) in
                let scratch = UnsafeMutableRawPointer.allocate(byteCount: scratchBytes, alignment: 64)
                defer { scratch.deallocate() }
                _ = ck_q8_gemm_panels(isa, weights.baseAddress, n, k, quantized, scales, m, bias, out, n,
                                      accumulate ? 1 : 0, panel, panel + 1, scratch)
            }
            if let pool { pool.parallelFor(panels, run) } else { for p in 0..<panels { run(p) } }
        }
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
