import CKernels

/// The per-token kernels of decoding: products with few rows that share one input, run as one
/// job on a `ComputePool`, and grouped-query attention of single query rows over their caches.
public enum DecodeKernels {
    /// `y_j[i, r] = Σ_k x[i, k] · W_j[r, k]` for every pair `(W_j, y_j)`, `i < m`, as one pool job
    /// with the rows of all matrices split over the threads. Every matrix has `columns` columns;
    /// `x` is `m` rows of them (densely packed), each `y_j` gets `m` rows of `W_j.rows` floats.
    public static func multiply(_ x: UnsafePointer<Float>, rows m: Int, columns: Int,
                                by products: [(matrix: QuantizedMatrix, output: UnsafeMutablePointer<Float>)],
                                pool: ComputePool?, path: KernelPath? = nil) {
        let descriptors = products.map { product in
            precondition(product.matrix.columns == columns, "multiply: a \(product.matrix.columns)-column matrix among \(columns)-column ones")
            return ck_product(format: product.matrix.format.tag, w: product.matrix.baseAddress,
                              rows: product.matrix.rows, y: product.output, ldy: product.matrix.rows)
        }
        let rc = descriptors.withUnsafeBufferPointer { buffer in
            ck_matmul_many(pool?.raw, path?.rawValue ?? -1, buffer.baseAddress, buffer.count, columns, x, columns, m)
        }
        precondition(rc == 0, "multiply: matrices with \(columns) columns rejected")
    }

    /// How a KV cache stores its keys and values.
    public enum CachePrecision: Sendable, Equatable, CustomStringConvertible {
        /// Exactly what the model computed.
        case float32
        /// Half the bytes: a batch's attention reads every cache in full each step, and at eight
        /// sequences of a few hundred positions that outweighs the weights' share of memory traffic.
        case float16
        /// A quarter of the bytes (plus a float32 scale per position and KV head): int8 values,
        /// each head's row scaled by its largest magnitude / 127.
        case int8

        public var bytesPerValue: Int {
            switch self {
            case .float32: 4
            case .float16: 2
            case .int8: 1
            }
        }

        public var description: String {
            switch self {
            case .float32: "f32"
            case .float16: "f16"
            case .int8: "int8"
            }
        }

        /// Whether the decode attention can read heads of `headDim` values in this precision: int8
        /// keys and values are multiplied in groups of 4 and a head is kept on the stack (at most 128).
        public func holds(headDim: Int) -> Bool {
            self != .int8 || (headDim % 4 == 0 && headDim > 0 && headDim <= 128)
        }

        var tag: Int32 {
            switch self {
            case .float32: WeightFormat.float32.tag
            case .float16: WeightFormat.float16.tag
            case .int8: Int32(CK_FORMAT_I8)
            }
        }
    }

    /// One query row and the cache it attends to (all `length` positions are visible).
    public struct AttentionQuery {
        /// `[heads, headDim]`, after RoPE.
        public var query: UnsafePointer<Float>
        /// Key `d` of position `t` and KV head `h` at element `t · rowStride + h · headStride + d`, in
        /// the cache's precision, after RoPE; values laid out the same. An int8 cache's keys are
        /// key blocks instead (`Kernels.narrowToInt8KeyBlocks`).
        public var keys: UnsafeRawPointer
        public var values: UnsafeRawPointer
        public var rowStride: Int
        public var headStride: Int
        public var length: Int
        /// `[heads, headDim]`.
        public var output: UnsafeMutablePointer<Float>
        /// An int8 cache's scales: key and value row `t` of KV head `h` are scaled by element
        /// `t · kvHeads + h`, whatever the strides (int8 keys are key blocks,
        /// `Kernels.narrowToInt8KeyBlocks`). nil for other caches.
        public var keyScales: UnsafePointer<Float>?
        public var valueScales: UnsafePointer<Float>?

        public init(query: UnsafePointer<Float>, keys: UnsafeRawPointer, values: UnsafeRawPointer,
                    rowStride: Int, headStride: Int, length: Int, output: UnsafeMutablePointer<Float>,
                    keyScales: UnsafePointer<Float>? = nil, valueScales: UnsafePointer<Float>? = nil) {
            self.query = query
            self.keys = keys
            self.values = values
            self.rowStride = rowStride
            self.headStride = headStride
            self.length = length
            self.output = output
            self.keyScales = keyScales
            self.valueScales = valueScales
        }
    }

    /// `output = softmax(scale · q Kᵀ) V` per query head for every query; query head `h` reads KV
    /// head `h / (heads / kvHeads)`, whose keys and values are read once for its whole group.
    /// Scores and sums are float32 whatever the caches' precision.
    public static func attention(_ queries: [AttentionQuery], heads: Int, kvHeads: Int, headDim: Int,
                                 scale: Float, precision: CachePrecision = .float32, pool: ComputePool?) {
        precondition(kvHeads > 0 && heads % kvHeads == 0, "attention: \(heads) heads do not group over \(kvHeads) KV heads")
        let descriptors = queries.map {
            ck_attention_query(q: $0.query, keys: $0.keys, values: $0.values, row_stride: $0.rowStride, head_stride: $0.headStride,
                               length: $0.length, out: $0.output, key_scales: $0.keyScales, value_scales: $0.valueScales)
        }
        let rc = descriptors.withUnsafeBufferPointer { buffer in
            ck_decode_attention(pool?.raw, buffer.baseAddress, buffer.count, heads, kvHeads, headDim, scale, precision.tag)
        }
        precondition(rc == 0, "attention: cache precision \(precision) rejected (an int8 cache needs its scales)")
    }
}
