extension Kernels {
    /// RMSNorm over each of `rows` rows of `dim` values: `x / sqrt(mean(x²) + eps) * weight`,
    /// in float32 as upstream computes it. `out` may be `x`.
    public static func rmsNorm(
        _ x: UnsafePointer<Float>, rows: Int, dim: Int, weight: UnsafePointer<Float>, epsilon: Float,
        into out: UnsafeMutablePointer<Float>
    ) {
        for r in 0..<rows {
            let src = x + r * dim
            let dst = out + r * dim
            let scale = 1 / (sumOfSquares(src, dim) / Float(dim) + epsilon).squareRoot()
            var i = 0
            while i + 16 <= dim {
                store16(load16(src, i) * scale * load16(weight, i), dst, i)
                i += 16
            }
            while i < dim {
                dst[i] = src[i] * scale * weight[i]
                i += 1
            }
        }
    }

    /// LayerNorm over each row: `(x - mean) / sqrt(var + eps) * weight + bias`, biased variance.
    /// `out` may be `x`.
    public static func layerNorm(
        _ x: UnsafePointer<Float>, rows: Int, dim: Int,
        weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, epsilon: Float,
        into out: UnsafeMutablePointer<Float>
    ) {
        for r in 0..<rows {
            let src = x + r * dim
            let dst = out + r * dim
            let mean = sum(src, dim) / Float(dim)
            // Two passes: the one-pass E[x²] - mean² loses digits when |mean| is large.
            var acc = SIMD16<Float>()
            var i = 0
            while i + 16 <= dim {
                let d = load16(src, i) - mean
                acc += d * d
                i += 16
            }
            var squares = acc.sum()
            while i < dim {
                let d = src[i] - mean
                squares += d * d
                i += 1
            }
            let scale = 1 / (squares / Float(dim) + epsilon).squareRoot()
            i = 0
            while i + 16 <= dim {
                store16((load16(src, i) - mean) * scale * load16(weight, i) + load16(bias, i), dst, i)
                i += 16
            }
            while i < dim {
                dst[i] = (src[i] - mean) * scale * weight[i] + bias[i]
                i += 1
            }
        }
    }
}
