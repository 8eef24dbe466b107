import Formats
import Kernels

/// Rows of one sequence inside a batch: where they sit in the batch's activations and the cache
/// they read and extend.
struct BatchSegment {
    let cache: KVCache
    /// First row of this sequence in the batch buffers.
    let firstRow: Int
    /// New positions this step (the prompt at prefill, 1 when decoding).
    let rows: Int
    /// Position of the first new row (= cache.count before the step).
    let startPosition: Int
}

/// Grouped-query self-attention of the decoder with RoPE (and q/k RMSNorm for gen3).
struct Attention: Sendable {
    let config: DecoderConfig
    let layer: Int
    let query: Linear             // [heads·hd, hidden]
    let key: Linear               // [kv·hd, hidden]
    let value: Linear             // [kv·hd, hidden]
    let output: Linear            // [hidden, heads·hd]
    let queryNorm: RMSNorm?       // [hd] (gen3)
    let keyNorm: RMSNorm?         // [hd] (gen3)

    init(_ loader: WeightLoader, layer n: Int, config c: DecoderConfig) throws(ModelError) {
        config = c
        layer = n
        query = try Linear(loader, TensorName.attentionQ(n), out: c.queryWidth, in: c.hiddenSize)
        key = try Linear(loader, TensorName.attentionK(n), out: c.kvWidth, in: c.hiddenSize)
        value = try Linear(loader, TensorName.attentionV(n), out: c.kvWidth, in: c.hiddenSize)
        output = try Linear(loader, TensorName.attentionOutput(n), out: c.hiddenSize, in: c.queryWidth)
        if c.hasQKNorm {
            queryNorm = try RMSNorm(loader, TensorName.attentionQNorm(n), dim: c.headDim, epsilon: c.rmsNormEpsilon)
            keyNorm = try RMSNorm(loader, TensorName.attentionKNorm(n), dim: c.headDim, epsilon: c.rmsNormEpsilon)
        } else {
            queryNorm = nil
            keyNorm = nil
        }
    }

    /// `h += attention(x) Woᵀ` for every segment of the batch; writes this layer's new keys and
    /// values into each segment's cache (the caller advances the caches after the last layer).
    func callAsFunction(
        _ x: UnsafePointer<Float>, rows: Int, segments: [BatchSegment], rotary: RotaryTable,
        residual h: UnsafeMutablePointer<Float>
    ) {
        let hd = config.headDim, heads = config.headCount, kvHeads = config.kvHeadCount
        let qWidth = config.queryWidth, kvWidth = config.kvWidth
        let q = FloatBuffer(uninitializedCount: rows * qWidth)       // [rows, heads, hd]
        let k = FloatBuffer(uninitializedCount: rows * kvWidth)      // [rows, kv, hd]
        let v = FloatBuffer(uninitializedCount: rows * kvWidth)      // [rows, kv, hd]
        Linear.many([(query, q.pointer), (key, k.pointer), (value, v.pointer)], x: x, rows: rows)
        if let queryNorm, let keyNorm {
            queryNorm(q.pointer, rows: rows * heads, into: q.pointer)
            keyNorm(k.pointer, rows: rows * kvHeads, into: k.pointer)
        }
        for segment in segments {
            for t in 0..<segment.rows {
                let row = segment.firstRow + t
                rotary.rotate(q.pointer + row * qWidth, heads: heads, position: segment.startPosition + t)
                rotary.rotate(k.pointer + row * kvWidth, heads: kvHeads, position: segment.startPosition + t)
            }
            segment.cache.store(layer: layer, at: segment.startPosition, rows: segment.rows,
                                keys: k.pointer + segment.firstRow * kvWidth, values: v.pointer + segment.firstRow * kvWidth)
        }

        let attended = FloatBuffer(uninitializedCount: rows * qWidth)    // [rows, heads, hd]
        let group = heads / kvHeads
        let scale = 1 / Float(hd).squareRoot()
        // Rows that are one new token (decode): one job over all of them and their KV heads, reading
        // the caches in their own precision.
        let singles = segments.filter { $0.rows == 1 }
        for precision in Set(singles.map(\.cache.precision)) {
            let queries = singles.filter { $0.cache.precision == precision }.map { segment in
                DecodeKernels.AttentionQuery(
                    query: q.pointer + segment.firstRow * qWidth,
                    keys: segment.cache.keys(layer), values: segment.cache.values(layer),
                    rowStride: kvWidth, headStride: hd,
                    length: segment.startPosition + 1, output: attended.pointer + segment.firstRow * qWidth,
                    keyScales: segment.cache.keyScales(layer), valueScales: segment.cache.valueScales(layer))
            }
            DecodeKernels.attention(queries, heads: heads, kvHeads: kvHeads, headDim: hd, scale: scale,
                                    precision: precision, pool: DecodePool.shared)
        }
        // Prompts (many rows): one fused kernel per head, heads in parallel, over float32 rows (a
        // float16 cache's rows widened once per layer: a prompt does far more work per row).
        let prompts = segments.filter { $0.rows > 1 }
        let promptRows = prompts.map { $0.cache.float32Rows(layer: layer, length: $0.startPosition + $0.rows) }
        Kernels.attention(heads: prompts.count * heads, headDim: hd, scale: scale, pool: DecodePool.shared) { i in
            let segment = prompts[i / heads], head = i % heads, kvHead = head / group
            let query = q.pointer + segment.firstRow * qWidth + head * hd
            return AttentionHead(query: query, queryStride: qWidth,
                                 keys: promptRows[i / heads].keys + kvHead * hd, keyStride: kvWidth,
                                 values: promptRows[i / heads].values + kvHead * hd, valueStride: kvWidth,
                                 output: attended.pointer + segment.firstRow * qWidth + head * hd, outputStride: qWidth,
                                 rows: segment.rows, length: segment.startPosition + segment.rows,
                                 firstPosition: segment.startPosition)
        }
        withExtendedLifetime(promptRows) {}
        output(attended.pointer, rows: rows, into: h, accumulate: true)
    }
}
