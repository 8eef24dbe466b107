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
            map16(row, count: count) { exp16($0 - maxValue) }
            let inverse = 1 / sum(row, count)
            map16(row, count: count) { $0 * inverse }
        }
    }

    /// `gate[i] = silu(gate[i]) · up[i]`: the SwiGLU inner product of the LLM feed-forward.
    public static func siluMultiply(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count: Int) {
        var i = 0
        while i + 16 <= count {
            let g = load16(gate, i)
            store16(g / (1 + exp16(-g)) * load16(up, i), gate, i)
            i += 16
        }
        while i < count {
            let g = gate[i]
            gate[i] = g / (1 + expf(-g)) * up[i]
            i += 1
        }
    }

    /// SiLU in place: `x · sigmoid(x)`.
    public static func silu(_ x: UnsafeMutablePointer<Float>, count: Int) {
        map16(x, count: count) { $0 / (1 + exp16(-$0)) }
    }

    /// Exact GELU in place: `0.5 x (1 + erf(x / √2))` (PyTorch `gelu`, `approximate='none'`).
    public static func geluErf(_ x: UnsafeMutablePointer<Float>, count: Int) {
        let invSqrt2: Float = 0.70710678118654752
        for i in 0..<count {
            let v = x[i]
            x[i] = 0.5 * v * (1 + erff(v * invSqrt2))
        }
    }

    /// Tanh-approximated GELU in place (PyTorch `gelu(approximate='tanh')`, `gelu_pytorch_tanh`):
    /// with tanh(y) = 1 - 2 / (e^{2y} + 1).
    public static func geluTanh(_ x: UnsafeMutablePointer<Float>, count: Int) {
        let c: Float = 0.79788456080286536   // sqrt(2 / pi)
        map16(x, count: count) { v in
            let y = c * (v + 0.044715 * v * v * v)
            let tanh = 1 - 2 / (exp16(2 * y) + 1)
            return 0.5 * v * (1 + tanh)
        }
    }

    /// CLIP's quick GELU in place: `x · sigmoid(1.702 x)`.
    public static func quickGELU(_ x: UnsafeMutablePointer<Float>, count: Int) {
        map16(x, count: count) { $0 / (1 + exp16(-1.702 * $0)) }
    }
}
