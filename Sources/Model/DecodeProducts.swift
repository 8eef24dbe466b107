import Formats
import Kernels

/// A `Linear` as the decode step multiplies it: its weight read in place by our small-row
/// kernels, in the file's format (F32 from the map, or F16/BF16/Q8_0 without widening).
struct DecodeProduct: @unchecked Sendable {
    let matrix: QuantizedMatrix
    let bias: UnsafePointer<Float>?
    /// Keep the memory `matrix` and `bias` point into alive.
    private let owners: (weight: Parameter, bias: Parameter?)

    /// Products with at most this many rows go through the decode kernels; larger ones (prefill,
    /// vision) through sgemm, where arithmetic, not reading the weights, dominates.
    static let rowLimit = 16
    /// Q8_0 products of at least this many rows use the int8 kernel (`multiplyMany`).
    static let int8RowThreshold = 12

    /// nil when the weight is not a plain `[out, in]` matrix our kernels can read.
    init?(weight: Parameter, bias: Parameter?, out: Int, in inFeatures: Int) {
        guard let matrix = weight.smallProductMatrix(rows: out, columns: inFeatures) else { return nil }
        self.matrix = matrix
        self.bias = bias?.pointer
        owners = (weight, bias)
    }

    var outFeatures: Int { matrix.rows }
    var format: WeightFormat { matrix.format }

    /// `out_j[rows, out_j] = x W_jᵀ + b_j` for every product, as one job: products sharing an
    /// input (Q/K/V, gate/up) cost one wake-up of the threads instead of one each.
    static func run(_ products: [(DecodeProduct, UnsafeMutablePointer<Float>)], x: UnsafePointer<Float>, rows: Int, columns: Int) {
        if rows >= int8RowThreshold, QuantizedMatrix.hasInt8Products, products.allSatisfy({ $0.0.format == .q8_0 }) {
            // Int8 products (x quantised per row, VNNI; W repacked per call) have a fixed cost
            // that pays off from ~12 rows: in decode at batch 16 ~1.15x per CPU second, at batch
            // 8 ~0.85x (Small-V, same run), so only larger batches use them.
            for (product, out) in products {
                product.matrix.multiplyMany(x, rows: rows, into: out, pool: DecodePool.shared)
            }
        } else {
            DecodeKernels.multiply(x, rows: rows, columns: columns, by: products.map { ($0.0.matrix, $0.1) }, pool: DecodePool.shared)
        }
        for (product, out) in products {
            guard let bias = product.bias else { continue }
            let n = product.outFeatures
            for r in 0..<rows { Kernels.add(out + r * n, bias, into: out + r * n, count: n) }
        }
    }

    /// `out (+)= x Wᵀ + b` for `rows` rows.
    func callAsFunction(_ x: UnsafePointer<Float>, rows: Int, into out: UnsafeMutablePointer<Float>, accumulate: Bool) {
        guard accumulate else {
            Self.run([(self, out)], x: x, rows: rows, columns: matrix.columns)
            return
        }
        let product = FloatBuffer(count: rows * outFeatures)
        Self.run([(self, product.pointer)], x: x, rows: rows, columns: matrix.columns)
        Kernels.add(out, product.pointer, into: out, count: rows * outFeatures)
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
    /// counted here is multiplied in that format, never through a widened float32 copy.
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
