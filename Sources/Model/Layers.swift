import Formats
import Kernels
import Synchronization

/// `y = x Wᵀ (+ b)` with W `[out, in]` as PyTorch stores it.
struct Linear: Sendable {
    let weight: Parameter          // [out, in]
    let bias: Parameter?           // [out]
    let inFeatures: Int
    let outFeatures: Int
    /// The weight as the small-row (decode) kernels read it; nil sends every product to `Parameter.product`.
    let decode: DecodeProduct?

    init(_ loader: WeightLoader, _ name: String, out: Int, in inFeatures: Int, bias biasName: String? = nil) throws(ModelError) {
        let weight = try loader.load(name, [out, inFeatures])
        let bias = try biasName.map { (n: String) throws(ModelError) in try loader.load(n, [out]) }
        self.init(weight: weight, bias: bias, out: out, in: inFeatures)
    }

    init(weight: Parameter, bias: Parameter?, out: Int, in inFeatures: Int) {
        self.weight = weight
        self.bias = bias
        self.inFeatures = inFeatures
        outFeatures = out
        decode = DecodeProduct(weight: weight, bias: bias, out: out, in: inFeatures)
    }

    /// `out[rows, out] = x[rows, in] Wᵀ + b`; with `accumulate`, added to `out` (a residual).
    /// Up to `DecodeProduct.rowLimit` rows the small-row kernels read the stored weights; more rows
    /// go to the many-row products.
    func callAsFunction(_ x: UnsafePointer<Float>, rows: Int, into out: UnsafeMutablePointer<Float>, accumulate: Bool = false) {
        if rows <= DecodeProduct.rowLimit, let decode {
            decode(x, rows: rows, into: out, accumulate: accumulate)
        } else {
            weight.product(x, rows: rows, inFeatures: inFeatures, outFeatures: outFeatures,
                           bias: bias?.pointer, into: out, accumulate: accumulate)
        }
    }
}

extension Linear {
    /// `out_j = x W_jᵀ + b_j` for linears that read the same input (Q/K/V, gate/up), as few jobs as
    /// the weights allow: up to `DecodeProduct.rowLimit` rows one decode job over all of them; more
    /// rows with every weight held as int8 panels, x quantised once and all panels one job (saving a
    /// quantisation pass and two thread wake-ups per extra product); otherwise one product each.
    static func many(_ products: [(Linear, UnsafeMutablePointer<Float>)], x: UnsafePointer<Float>, rows: Int) {
        guard let first = products.first?.0 else { return }
        if rows <= DecodeProduct.rowLimit {
            let decodes = products.compactMap { linear, out in linear.decode.map { ($0, out) } }
            if decodes.count == products.count {
                DecodeProduct.run(decodes, x: x, rows: rows, columns: first.inFeatures)
                return
            }
        } else {
            let panels = products.compactMap { linear, out -> DecodeKernels.PanelProduct? in
                guard let matrix = linear.weight.panels, matrix.rows == linear.outFeatures,
                      matrix.columns == linear.inFeatures, matrix.segmentCount == 1 else { return nil }
                return DecodeKernels.PanelProduct(matrix: matrix, bias: linear.bias?.pointer, output: out)
            }
            if panels.count == products.count {
                withExtendedLifetime(products) {
                    Int8PanelMatrix.multiplyMany(x, rows: rows, columns: first.inFeatures, by: panels, pool: DecodePool.shared)
                }
                return
            }
        }
        for (linear, out) in products { linear(x, rows: rows, into: out) }
    }
}

extension Parameter {
    /// `out[rows, outFeatures] = x Wᵀ (+ bias)` with this parameter as W `[out, in]`, for the many
    /// rows of prefill and the vision encoder (few rows go through `Linear.decode`); with
    /// `accumulate`, added to `out`. Float32 weights go to sgemm; Q8_0 weights packed at load are
    /// multiplied as int8 panels; other F16/BF16/Q8_0 weights are read in place by `multiplyMany`.
    func product(_ x: UnsafePointer<Float>, rows: Int, inFeatures: Int, outFeatures: Int,
                 bias: UnsafePointer<Float>? = nil, into out: UnsafeMutablePointer<Float>, accumulate: Bool = false) {
        if let panels, panels.rows == outFeatures, panels.columns == inFeatures {
            panels.multiplyMany(x, rows: rows, bias: bias, into: out, accumulate: accumulate, pool: DecodePool.shared)
        } else if let matrix = lowPrecision, matrix.rows == outFeatures, matrix.columns == inFeatures {
            matrix.multiplyMany(x, rows: rows, bias: bias, into: out, accumulate: accumulate, pool: DecodePool.shared)
        } else {
            Kernels.linear(x, rows: rows, inFeatures: inFeatures, weight: pointer, outFeatures: outFeatures,
                           bias: bias, into: out, accumulate: accumulate, pool: DecodePool.shared)
        }
    }
}

/// The compute threads (`Kernels.threadCount`) for every product of several rows and the work
/// between them: low-precision kernels, and float32 sgemm split by output columns with OpenBLAS
/// single-threaded inside each share, so that only these threads ever run.
enum DecodePool {
    private static let pools = Mutex<[Int: ComputePool]>([:])

    static var shared: ComputePool? {
        let threads = Kernels.threadCount
        guard threads > 1 else { return nil }
        return pools.withLock { pools in
            if let pool = pools[threads] { return pool }
            let pool = ComputePool(threads: threads)
            pools[threads] = pool
            return pool
        }
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
