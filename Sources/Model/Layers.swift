import Formats
import Kernels

/// `y = x Wᵀ (+ b)` with W `[out, in]` as PyTorch stores it.
struct Linear: Sendable {
    let weight: Parameter          // [out, in]
    let bias: Parameter?           // [out]
    let inFeatures: Int
    let outFeatures: Int

    init(_ loader: WeightLoader, _ name: String, out: Int, in inFeatures: Int, bias biasName: String? = nil) throws(ModelError) {
        weight = try loader.load(name, [out, inFeatures])
        bias = try biasName.map { (n: String) throws(ModelError) in try loader.load(n, [out]) }
        self.inFeatures = inFeatures
        outFeatures = out
    }

    init(weight: Parameter, bias: Parameter?, out: Int, in inFeatures: Int) {
        self.weight = weight
        self.bias = bias
        self.inFeatures = inFeatures
        outFeatures = out
    }

    /// `out[rows, out] = x[rows, in] Wᵀ + b`; with `accumulate`, added to `out` (a residual).
    func callAsFunction(_ x: UnsafePointer<Float>, rows: Int, into out: UnsafeMutablePointer<Float>, accumulate: Bool = false) {
        Kernels.linear(x, rows: rows, inFeatures: inFeatures, weight: weight.pointer, outFeatures: outFeatures,
                       bias: bias?.pointer, into: out, accumulate: accumulate)
    }
}

/// RMSNorm with a learned scale (no bias).
struct RMSNorm: Sendable {
    let weight: Parameter          // [dim]
    let epsilon: Float

    init(_ loader: WeightLoader, _ name: String, dim: Int, epsilon: Float) throws(ModelError) {
        weight = try loader.load(name, [dim])
        self.epsilon = epsilon
    }

    func callAsFunction(_ x: UnsafePointer<Float>, rows: Int, into out: UnsafeMutablePointer<Float>) {
        Kernels.rmsNorm(x, rows: rows, dim: weight.count, weight: weight.pointer, epsilon: epsilon, into: out)
    }
}

/// LayerNorm with weight and bias.
struct LayerNorm: Sendable {
    let weight: Parameter          // [dim]
    let bias: Parameter            // [dim]
    let epsilon: Float

    /// `prefix.weight` and `prefix.bias`.
    init(_ loader: WeightLoader, _ prefix: String, dim: Int, epsilon: Float) throws(ModelError) {
        weight = try loader.load(prefix + ".weight", [dim])
        bias = try loader.load(prefix + ".bias", [dim])
        self.epsilon = epsilon
    }

    func callAsFunction(_ x: UnsafePointer<Float>, rows: Int, into out: UnsafeMutablePointer<Float>) {
        Kernels.layerNorm(x, rows: rows, dim: weight.count, weight: weight.pointer, bias: bias.pointer,
                          epsilon: epsilon, into: out)
    }
}
