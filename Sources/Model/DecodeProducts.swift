import Formats
import Kernels

/// A `Linear` as the decode step multiplies it: a Q8_0 weight packed into int8 panels (on CPUs
/// with int8 dot products), any other weight read in place by our small-row float kernels in the
/// file's format (F32 from the map, or F16/BF16/Q8_0 without widening).
struct DecodeProduct: @unchecked Sendable {
    /// How the decode step reads the weight.
    enum Weights {
        /// The stored rows, widened to float32 in registers (`ck_matmul_many`).
        case stored(QuantizedMatrix)
        /// Q8_0 packed at load: x quantised per row and block, int8 dot products (`ck_q8_packed_many`).
        case panels(Int8PanelMatrix)
    }

    let weights: Weights
    let bias: UnsafePointer<Float>?
    /// Keep the memory `weights` and `bias` point into alive.
    private let owners: (weight: Parameter, bias: Parameter?)

    /// Products with at most this many rows go through the decode kernels; larger ones (prefill,
    /// vision) through `Parameter.product`, built for many rows.
    static let rowLimit = 16

    /// nil when the weight is not a plain `[out, in]` matrix our kernels can read.
    init?(weight: Parameter, bias: Parameter?, out: Int, in inFeatures: Int) {
        if let panels = weight.panels {
            guard panels.rows == out, panels.columns == inFeatures else { return nil }
            weights = .panels(panels)
        } else {
            guard let matrix = weight.smallProductMatrix(rows: out, columns: inFeatures) else { return nil }
            weights = .stored(matrix)
        }
        self.bias = bias?.pointer
        owners = (weight, bias)
    }

    var outFeatures: Int {
        switch weights {
        case .stored(let matrix): matrix.rows
        case .panels(let panels): panels.rows
        }
    }

    /// The format of the values the product reads: a packed matrix holds the file's Q8_0 values.
    var format: WeightFormat {
        switch weights {
        case .stored(let matrix): matrix.format
        case .panels(let panels): panels.format
        }
    }

    /// Whether the weight is held as int8 panels.
    var isPacked: Bool {
        if case .panels = weights { return true }
        return false
    }

    /// `out_j[rows, out_j] (+)= x W_jᵀ + b_j` for every product, as one job per kind of weight:
    /// products sharing an input (Q/K/V, gate/up) cost one wake-up of the threads instead of one each.
    static func run(_ products: [(DecodeProduct, UnsafeMutablePointer<Float>)], x: UnsafePointer<Float>, rows: Int,
                    columns: Int, accumulate: Bool = false) {
        var packed: [DecodeKernels.PanelProduct] = []
        var stored: [(DecodeProduct, UnsafeMutablePointer<Float>)] = []
        for (product, out) in products {
            switch product.weights {
            case .panels(let panels):
                packed.append(DecodeKernels.PanelProduct(matrix: panels, bias: product.bias, output: out, accumulate: accumulate))
            case .stored: stored.append((product, out))
            }
        }
        if !packed.isEmpty {
            DecodeKernels.multiply(x, rows: rows, columns: columns, by: packed, pool: DecodePool.shared)
        }
        guard !stored.isEmpty else { return }
        if accumulate {
            for (product, out) in stored {
                let sum = FloatBuffer(count: rows * product.outFeatures)
                runStored([(product, sum.pointer)], x: x, rows: rows, columns: columns)
                Kernels.add(out, sum.pointer, into: out, count: rows * product.outFeatures)
            }
        } else {
            runStored(stored, x: x, rows: rows, columns: columns)
        }
    }

    private static func runStored(_ products: [(DecodeProduct, UnsafeMutablePointer<Float>)], x: UnsafePointer<Float>,
                                  rows: Int, columns: Int) {
        let matrices = products.compactMap { product, out -> (QuantizedMatrix, UnsafeMutablePointer<Float>)? in
            guard case .stored(let matrix) = product.weights else { return nil }
            return (matrix, out)
        }
        DecodeKernels.multiply(x, rows: rows, columns: columns, by: matrices, pool: DecodePool.shared)
        for (product, out) in products {
            guard let bias = product.bias else { continue }
            let n = product.outFeatures
            for r in 0..<rows { Kernels.add(out + r * n, bias, into: out + r * n, count: n) }
        }
    }

    /// `out (+)= x Wᵀ + b` for `rows` rows.
    func callAsFunction(_ x: UnsafePointer<Float>, rows: Int, into out: UnsafeMutablePointer<Float>, accumulate: Bool) {
        let columns: Int
        switch weights {
        case .stored(let matrix): columns = matrix.columns
        case .panels(let panels): columns = panels.columns
        }
        Self.run([(self, out)], x: x, rows: rows, columns: columns, accumulate: accumulate)
    }
}

extension Parameter {
    /// This weight as a `[rows, columns]` matrix for the small-row kernels: the stored
    /// F16/BF16/Q8_0 bytes when the file has them, else the float32 values in place.
    func smallProductMatrix(rows: Int, columns: Int) -> QuantizedMatrix? {
        if let lowPrecision {
            return lowPrecision.rows == rows && lowPrecision.columns == columns ? lowPrecision : nil
        }
        guard count == rows * columns else { return nil }
        return try? QuantizedMatrix(format: .float32, rows: rows, columns: columns,
                                    borrowing: UnsafeRawBufferPointer(start: pointer, count: count * MemoryLayout<Float>.size),
                                    owner: self)
    }
}

extension Decoder {
    /// How many weight matrices the decode step (products of at most 16 rows) reads in each
    /// storage format: all F32 for an f32 file, the file's F16/BF16/Q8_0 otherwise. A matrix
    /// counted here is multiplied in that format, never through a widened float32 copy (a Q8_0
    /// matrix packed into int8 panels holds the file's int8 values and scales, reordered).
    public var decodeWeightFormats: [WeightFormat: Int] {
        var products: [DecodeProduct?] = [head.decode]
        for layer in layers {
            let attention = layer.attention
            products += [attention.query.decode, attention.key.decode, attention.value.decode, attention.output.decode]
            switch layer.ffn {
            case .dense(let ffn): products += [ffn.gate.decode, ffn.up.decode, ffn.down.decode]
            case .mixture(let moe):
                for expert in moe.experts + (moe.shared.map { [$0] } ?? []) {
                    products += [expert.gate.decode, expert.up.decode, expert.down.decode]
                }
            }
        }
        var counts: [WeightFormat: Int] = [:]
        for product in products {
            // nil: a product the decode step sends through sgemm on float32 values.
            counts[product?.format ?? .float32, default: 0] += product == nil ? 0 : 1
        }
        return counts.filter { $0.value > 0 }
    }

    /// How many matrices of the decode step are held as int8 panels (every Q8_0 one on a CPU with
    /// int8 dot products, else none).
    public var decodePackedMatrices: Int {
        var products: [DecodeProduct?] = [head.decode]
        for layer in layers {
            let attention = layer.attention
            products += [attention.query.decode, attention.key.decode, attention.value.decode, attention.output.decode]
            switch layer.ffn {
            case .dense(let ffn): products += [ffn.gate.decode, ffn.up.decode, ffn.down.decode]
            case .mixture(let moe):
                for expert in moe.experts + (moe.shared.map { [$0] } ?? []) {
                    products += [expert.gate.decode, expert.up.decode, expert.down.decode]
                }
            }
        }
        return products.filter { $0?.isPacked == true }.count
    }

    /// Matrices of the decode step that are not read by the small-row kernels (0 for every file
    /// `minimindv convert` writes).
    public var decodeProductsWithoutKernel: Int {
        var linears = [head]
        for layer in layers {
            let attention = layer.attention
            linears += [attention.query, attention.key, attention.value, attention.output]
            if case .dense(let ffn) = layer.ffn { linears += [ffn.gate, ffn.up, ffn.down] }
        }
        return linears.filter { $0.decode == nil }.count
    }
}
