import Foundation
import Formats
import Kernels

/// The language model: token embedding, decoder layers, final RMSNorm and the (tied) head.
public final class Decoder: @unchecked Sendable {
    public let config: DecoderConfig
    let embedding: Parameter        // [vocab, hidden]
    let layers: [DecoderLayer]
    let finalNorm: RMSNorm          // [hidden]
    let head: Linear                // [vocab, hidden]; the embedding when tied
    private var rotary: RotaryTable
    private let rotaryLock = NSLock()

    init(_ loader: WeightLoader, config c: DecoderConfig) throws(ModelError) {
        config = c
        embedding = try loader.load(TensorName.tokenEmbedding, [c.vocabularySize, c.hiddenSize])
        var layers: [DecoderLayer] = []
        for n in 0..<c.layerCount { layers.append(try DecoderLayer(loader, layer: n, config: c)) }
        self.layers = layers
        finalNorm = try RMSNorm(loader, TensorName.outputNorm, dim: c.hiddenSize, epsilon: c.rmsNormEpsilon)
        let headWeight = !c.tiedOutput || loader.has(TensorName.output)
            ? try loader.load(TensorName.output, [c.vocabularySize, c.hiddenSize]) : embedding
        head = Linear(weight: headWeight, bias: nil, out: c.vocabularySize, in: c.hiddenSize)
        rotary = RotaryTable(headDim: c.headDim, theta: c.ropeTheta)
        rotary.reserve(min(c.contextLength, 4096))
    }

    /// The KV cache precision that fits the file: float16 for Q8_0 and BF16 weights, whose own
    /// rounding moves the logits a hundred times more than float16 keys and values do, and whose
    /// users chose speed (a batched decode step reads every cache in full); int8 for Q4_0, whose
    /// weights move the logits ten times more than int8 keys and values do (float16 when the heads do
    /// not fit the int8 kernels); float32 for F32 and F16 files, which reproduce upstream's float32
    /// outputs (see README, "KV cache").
    public var defaultCachePrecision: KVCache.Precision {
        switch layers.first?.attention.query.decode?.format {
        case .q4_0: KVCache.Precision.int8.holds(headDim: config.headDim) ? .int8 : .float16
        case .q8_0, .bfloat16: .float16
        default: .float32
        }
    }

    /// A new, empty cache for one sequence (in `defaultCachePrecision` unless told otherwise).
    public func makeCache(capacity: Int = 256, precision: KVCache.Precision? = nil) -> KVCache {
        KVCache(layerCount: config.layerCount, width: config.kvWidth, heads: config.kvHeadCount, capacity: capacity,
                precision: precision ?? defaultCachePrecision)
    }

    /// Embedding rows of `tokens`: `[tokens.count, hidden]`.
    public func embed(_ tokens: [Int]) throws(ModelError) -> [Float] {
        let hidden = config.hiddenSize
        var out = [Float](repeating: 0, count: tokens.count * hidden)
        for (i, token) in tokens.enumerated() {
            guard token >= 0, token < config.vocabularySize else {
                throw ModelError(.invalidInput, "token id \(token) is outside the vocabulary (0..<\(config.vocabularySize))")
            }
            out.withUnsafeMutableBufferPointer { embedding.copyRow(token, width: hidden, into: $0.baseAddress! + i * hidden) }
        }
        return out
    }

    /// Runs new rows of several sequences through the decoder in one pass and returns the logits
    /// at each sequence's last new row, `[sequences][vocab]`. Each input is `rows × hidden`
    /// embeddings continuing its cache; the caches grow by those rows.
    public func forward(_ inputs: [(cache: KVCache, embeddings: [Float])]) throws(ModelError) -> [[Float]] {
        let last = try lastHiddenRows(inputs)                  // [sequences, hidden], final-normed
        let count = inputs.count, vocab = config.vocabularySize
        let logits = FloatBuffer(uninitializedCount: count * vocab)          // [sequences, vocab]
        head(last.pointer, rows: count, into: logits.pointer)
        return (0..<count).map { logits.rows($0..<($0 + 1), width: vocab) }
    }

    /// The final-norm hidden state of each sequence's last new row, `[sequences, hidden]`.
    func lastHiddenRows(_ inputs: [(cache: KVCache, embeddings: [Float])]) throws(ModelError) -> FloatBuffer {
        let hidden = config.hiddenSize
        var segments: [BatchSegment] = []
        var totalRows = 0
        for input in inputs {
            guard input.embeddings.count % hidden == 0, !input.embeddings.isEmpty else {
                throw ModelError(.invalidInput, "decoder input of \(input.embeddings.count) values is not whole rows of \(hidden)")
            }
            guard input.cache.width == config.kvWidth, input.cache.layerCount == config.layerCount else {
                throw ModelError(.invalidInput, "KV cache was made for another model")
            }
            guard !segments.contains(where: { $0.cache === input.cache }) else {
                throw ModelError(.invalidInput, "the same sequence appears twice in one batch")
            }
            let rows = input.embeddings.count / hidden
            segments.append(BatchSegment(cache: input.cache, firstRow: totalRows, rows: rows, startPosition: input.cache.count))
            totalRows += rows
        }
        let longest = segments.map { $0.startPosition + $0.rows }.max() ?? 0
        guard longest <= config.contextLength else {
            throw ModelError(.invalidInput, "sequence of \(longest) tokens exceeds the model's context of \(config.contextLength)")
        }
        let table = rotaryLock.withLock {
            rotary.reserve(longest)
            return rotary
        }
        for segment in segments { segment.cache.reserve(segment.rows) }

        let h = FloatBuffer(count: totalRows * hidden)     // [rows, hidden]
        for (input, segment) in zip(inputs, segments) {
            input.embeddings.withUnsafeBufferPointer {
                (h.pointer + segment.firstRow * hidden).update(from: $0.baseAddress!, count: $0.count)
            }
        }
        for layer in layers {
            layer(h.pointer, rows: totalRows, hidden: hidden, segments: segments, rotary: table)
        }
        for segment in segments { segment.cache.advance(segment.rows) }

        let last = FloatBuffer(count: segments.count * hidden)    // [sequences, hidden]
        for (i, segment) in segments.enumerated() {
            (last.pointer + i * hidden).update(from: h.pointer + (segment.firstRow + segment.rows - 1) * hidden, count: hidden)
        }
        finalNorm(last.pointer, rows: segments.count, into: last.pointer)
        return last
    }
}
