import Formats
import Kernels

/// Multi-head self-attention of a ViT block (biases on q, k, v and out, no mask).
struct VisionAttention: Sendable {
    let query: Linear     // [vh, vh]
    let key: Linear       // [vh, vh]
    let value: Linear     // [vh, vh]
    let output: Linear    // [vh, vh]
    let headCount: Int

    init(_ loader: WeightLoader, layer n: Int, config c: VisionConfig) throws(ModelError) {
        let vh = c.hiddenSize
        func linear(_ part: String) throws(ModelError) -> Linear {
            try Linear(loader, TensorName.vision(n, part), out: vh, in: vh, bias: TensorName.vision(n, part, "bias"))
        }
        query = try linear("attn_q")
        key = try linear("attn_k")
        value = try linear("attn_v")
        output = try linear("attn_out")
        headCount = c.headCount
    }

    /// `h += out_proj(attention(x))` for `images` images of `length` rows each.
    func callAsFunction(_ x: UnsafePointer<Float>, images: Int, length: Int, residual h: UnsafeMutablePointer<Float>) {
        let vh = query.outFeatures, hd = vh / headCount, rows = images * length
        let q = FloatBuffer(uninitializedCount: rows * vh)         // [rows, heads, hd]
        let k = FloatBuffer(uninitializedCount: rows * vh)
        let v = FloatBuffer(uninitializedCount: rows * vh)
        Linear.many([(query, q.pointer), (key, k.pointer), (value, v.pointer)], x: x, rows: rows)
        let attended = FloatBuffer(uninitializedCount: rows * vh)  // [rows, heads, hd]
        let heads = headCount
        Kernels.attention(heads: images * heads, headDim: hd, scale: 1 / Float(hd).squareRoot(), pool: DecodePool.shared) { i in
            let offset = (i / heads) * length * vh + (i % heads) * hd
            return AttentionHead(query: q.pointer + offset, queryStride: vh, keys: k.pointer + offset, keyStride: vh,
                                 values: v.pointer + offset, valueStride: vh, output: attended.pointer + offset,
                                 outputStride: vh, rows: length, length: length)
        }
        output(attended.pointer, rows: rows, into: h, accumulate: true)
    }
}

/// The ViT block's MLP: `fc2(act(fc1(x)))`.
struct VisionMLP: Sendable {
    let up: Linear        // [vff, vh]
    let down: Linear      // [vh, vff]
    let activation: VisionActivation

    init(_ loader: WeightLoader, layer n: Int, config c: VisionConfig) throws(ModelError) {
        up = try Linear(loader, TensorName.vision(n, "ffn_up"), out: c.feedForwardSize, in: c.hiddenSize,
                        bias: TensorName.vision(n, "ffn_up", "bias"))
        down = try Linear(loader, TensorName.vision(n, "ffn_down"), out: c.hiddenSize, in: c.feedForwardSize,
                          bias: TensorName.vision(n, "ffn_down", "bias"))
        activation = c.activation
    }

    /// `h += mlp(x)`.
    func callAsFunction(_ x: UnsafePointer<Float>, rows: Int, residual h: UnsafeMutablePointer<Float>) {
        let u = FloatBuffer(uninitializedCount: rows * up.outFeatures)    // [rows, vff]
        up(x, rows: rows, into: u.pointer)
        let width = up.outFeatures
        forEachRowBlock(rows) { block in
            applyActivation(activation, u.pointer + block.lowerBound * width, count: block.count * width)
        }
        down(u.pointer, rows: rows, into: h, accumulate: true)
    }
}

func applyActivation(_ activation: VisionActivation, _ x: UnsafeMutablePointer<Float>, count: Int) {
    switch activation {
    case .quickGELU: Kernels.quickGELU(x, count: count)
    case .geluTanh: Kernels.geluTanh(x, count: count)
    case .geluErf: Kernels.geluErf(x, count: count)
    }
}

/// One pre-norm ViT block: `x += attn(ln1(x)); x += mlp(ln2(x))`.
struct VisionEncoderLayer: Sendable {
    let norm1: LayerNorm
    let attention: VisionAttention
    let norm2: LayerNorm
    let mlp: VisionMLP

    init(_ loader: WeightLoader, layer n: Int, config c: VisionConfig) throws(ModelError) {
        norm1 = try LayerNorm(loader, "v.blk.\(n).ln1", dim: c.hiddenSize, epsilon: c.layerNormEpsilon)
        attention = try VisionAttention(loader, layer: n, config: c)
        norm2 = try LayerNorm(loader, "v.blk.\(n).ln2", dim: c.hiddenSize, epsilon: c.layerNormEpsilon)
        mlp = try VisionMLP(loader, layer: n, config: c)
    }

    func callAsFunction(_ h: UnsafeMutablePointer<Float>, images: Int, length: Int) {
        let rows = images * length
        let x = FloatBuffer(uninitializedCount: rows * norm1.weight.count)    // [rows, vh]
        norm1.parallel(h, rows: rows, into: x.pointer)
        attention(x.pointer, images: images, length: length, residual: h)
        norm2.parallel(h, rows: rows, into: x.pointer)
        mlp(x.pointer, rows: rows, residual: h)
    }
}

/// The image encoder: CLIP ViT (class token, pre-LayerNorm, output without post-LayerNorm and
/// without the class row) or SigLIP (patch bias, no class token, post-LayerNorm).
public struct VisionEncoder: Sendable {
    public let config: VisionConfig
    let patchEmbedding: Parameter        // [vh, 3, p, p], used as [vh, 3·p·p]
    let patchBias: Parameter?            // [vh] (SigLIP)
    let classEmbedding: Parameter?       // [vh] (CLIP)
    let positionEmbedding: Parameter     // [sequence, vh]
    let preNorm: LayerNorm?              // CLIP
    let layers: [VisionEncoderLayer]
    let postNorm: LayerNorm?             // SigLIP

    init(_ loader: WeightLoader, config c: VisionConfig) throws(ModelError) {
        config = c
        let vh = c.hiddenSize, p = c.patchSize
        patchEmbedding = try loader.load(TensorName.patchEmbedding, [vh, 3, p, p])
        let isCLIP = c.encoder == .clip
        patchBias = isCLIP ? nil : try loader.load(TensorName.patchEmbeddingBias, [vh])
        classEmbedding = isCLIP ? try loader.load(TensorName.classEmbedding, [vh]) : nil
        positionEmbedding = try loader.load(TensorName.positionEmbedding, [c.sequenceLength, vh])
        preNorm = isCLIP ? try LayerNorm(loader, TensorName.preLayerNorm, dim: vh, epsilon: c.layerNormEpsilon) : nil
        var layers: [VisionEncoderLayer] = []
        for n in 0..<c.layerCount { layers.append(try VisionEncoderLayer(loader, layer: n, config: c)) }
        self.layers = layers
        postNorm = isCLIP ? nil : try LayerNorm(loader, TensorName.postLayerNorm, dim: vh, epsilon: c.layerNormEpsilon)
    }

    /// Encodes a batch of preprocessed images in one pass.
    /// - Parameter pixels: `[images, 3, size, size]` normalised values, channel-first.
    /// - Returns: `[images, patches, vh]` features.
    public func callAsFunction(pixels: [Float], images: Int) throws(ModelError) -> [Float] {
        let c = config, size = c.imageSize, p = c.patchSize, side = c.patchesPerSide
        let vh = c.hiddenSize, patches = c.patchCount, length = c.sequenceLength
        guard images > 0, pixels.count == images * 3 * size * size else {
            throw ModelError(.invalidInput, "vision encoder expects \(images) × 3 × \(size) × \(size) pixel values, got \(pixels.count)")
        }
        // im2col: each patch's values in the conv kernel's order (channel, row, column).
        let columns = FloatBuffer(count: images * patches * c.patchValues)    // [images·patches, 3·p·p]
        pixels.withUnsafeBufferPointer { px in
            for image in 0..<images {
                for py in 0..<side {
                    for pxIndex in 0..<side {
                        var dst = columns.pointer + ((image * patches) + py * side + pxIndex) * c.patchValues
                        for channel in 0..<3 {
                            let plane = px.baseAddress! + (image * 3 + channel) * size * size
                            for ky in 0..<p {
                                dst.update(from: plane + (py * p + ky) * size + pxIndex * p, count: p)
                                dst += p
                            }
                        }
                    }
                }
            }
        }
        let patchRows = FloatBuffer(count: images * patches * vh)    // [images·patches, vh]
        Kernels.linear(columns.pointer, rows: images * patches, inFeatures: c.patchValues, weight: patchEmbedding.pointer,
                       outFeatures: vh, bias: patchBias?.pointer, into: patchRows.pointer, pool: DecodePool.shared)

        let h = FloatBuffer(count: images * length * vh)             // [images, length, vh]
        let firstPatchRow = classEmbedding == nil ? 0 : 1
        for image in 0..<images {
            let sequence = h.pointer + image * length * vh
            if let classEmbedding { sequence.update(from: classEmbedding.pointer, count: vh) }
            (sequence + firstPatchRow * vh).update(from: patchRows.pointer + image * patches * vh, count: patches * vh)
            Kernels.add(sequence, positionEmbedding.pointer, into: sequence, count: length * vh)
        }
        preNorm?.parallel(h.pointer, rows: images * length, into: h.pointer)
        for layer in layers { layer(h.pointer, images: images, length: length) }
        postNorm?.parallel(h.pointer, rows: images * length, into: h.pointer)

        var out = [Float](repeating: 0, count: images * patches * vh)
        out.withUnsafeMutableBufferPointer { o in
            for image in 0..<images {
                (o.baseAddress! + image * patches * vh)
                    .update(from: h.pointer + (image * length + firstPatchRow) * vh, count: patches * vh)
            }
        }
        return out
    }
}

/// Runs `body` over blocks of `rows` rows on the compute pool (the elementwise work between the
/// big products: one thread alone would leave the other core idle for it).
func forEachRowBlock(_ rows: Int, _ body: (Range<Int>) -> Void) {
    let blockRows = 16
    let blocks = (rows + blockRows - 1) / blockRows
    guard blocks > 1, let pool = DecodePool.shared else {
        body(0..<rows)
        return
    }
    pool.parallelFor(blocks) { b in body((b * blockRows)..<min(rows, (b + 1) * blockRows)) }
}

extension LayerNorm {
    /// The norm of `rows` rows, blocks of rows in parallel.
    func parallel(_ x: UnsafePointer<Float>, rows: Int, into out: UnsafeMutablePointer<Float>) {
        let dim = weight.count
        forEachRowBlock(rows) { block in
            self(x + block.lowerBound * dim, rows: block.count, into: out + block.lowerBound * dim)
        }
    }
}
