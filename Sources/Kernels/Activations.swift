#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension Kernels {
    /// Softmax over each of `rows` rows of `count` values, in float32, in place.
    public static func softmax(_ x: UnsafeMutablePointer<Float>, rows: Int = 1, count: Int) {
        for r in 0..<rows {
            let row = x + r * count
            var maxValue = -Float.infinity
            for i in 0..<count where row[i] > maxValue { maxValue = row[i] }
            if maxValue == -.infinity {
                // Every position masked: leave zeros rather than NaN.
                row.update(repeating: 0, count: count)
                continue
            }
            var total: Float = 0
            for i in 0..<count {
                let e = expf(row[i] - maxValue)
                row[i] = e
                total += e
            }
            let inverse = 1 / total
            for i in 0..<count { row[i] *= inverse }
        }
    }

    /// `gate[i] = silu(gate[i]) · up[i]`: the SwiGLU inner product of the LLM feed-forward.
    public static func siluMultiply(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count: Int) {
        for i in 0..<count {
            let g = gate[i]
            gate[i] = g / (1 + expf(-g)) * up[i]
        }
    }

    /// SiLU in place: `x · sigmoid(x)`.
    public static func silu(_ x: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count {
            let v = x[i]
            x[i] = v / (1 + expf(-v))
        }
    }

    /// Exact GELU in place: `0.5 x (1 + erf(x / √2))` (PyTorch `gelu`, `approximate='none'`).
    public static func geluErf(_ x: UnsafeMutablePointer<Float>, count: Int) {
        let invSqrt2: Float = 0.70710678118654752
        for i in 0..<count {
            let v = x[i]
            x[i] = 0.5 * v * (1 + erff(v * invSqrt2))
        }
    }

    /// Tanh-approximated GELU in place (PyTorch `gelu(approximate='tanh')`, `gelu_pytorch_tanh`).
    public static func geluTanh(_ x: UnsafeMutablePointer<Float>, count: Int) {
        let c: Float = 0.79788456080286536   // sqrt(2 / pi)
        for i in 0..<count {
            let v = x[i]
            x[i] = 0.5 * v * (1 + tanhf(c * (v + 0.044715 * v * v * v)))
        }
    }

    /// CLIP's quick GELU in place: `x · sigmoid(1.702 x)`.
    public static func quickGELU(_ x: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count {
            let v = x[i]
            x[i] = v / (1 + expf(-1.702 * v))
        }
    }
}
