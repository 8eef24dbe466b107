import CKernels
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
        ck_activate(Int32(CK_ACT_SILU), gate, up, count)
    }

    /// SiLU in place: `x · sigmoid(x)`.
    public static func silu(_ x: UnsafeMutablePointer<Float>, count: Int) {
        ck_activate(Int32(CK_ACT_SILU), x, nil, count)
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
    /// `0.5 x (1 + tanh y)` computed as `x - x / (e^{2y} + 1)`.
    public static func geluTanh(_ x: UnsafeMutablePointer<Float>, count: Int) {
        ck_activate(Int32(CK_ACT_GELU_TANH), x, nil, count)
    }

    /// CLIP's quick GELU in place: `x · sigmoid(1.702 x)`.
    public static func quickGELU(_ x: UnsafeMutablePointer<Float>, count: Int) {
        ck_activate(Int32(CK_ACT_QUICK_GELU), x, nil, count)
    }
}
