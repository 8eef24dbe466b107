import Formats
import Kernels

/// One pre-norm transformer block of the decoder:
/// `h += attn(rmsnorm(h)); h += ffn(rmsnorm(h))`.
struct DecoderLayer: Sendable {
    enum FFN: Sendable {
        case dense(FeedForward)
        case mixture(MoEFeedForward)
    }

    let attentionNorm: RMSNorm     // [hidden]
    let attention: Attention
    let ffnNorm: RMSNorm           // [hidden]
    let ffn: FFN

    init(_ loader: WeightLoader, layer n: Int, config c: DecoderConfig) throws(ModelError) {
        attentionNorm = try RMSNorm(loader, TensorName.attentionNorm(n), dim: c.hiddenSize, epsilon: c.rmsNormEpsilon)
        attention = try Attention(loader, layer: n, config: c)
        ffnNorm = try RMSNorm(loader, TensorName.ffnNorm(n), dim: c.hiddenSize, epsilon: c.rmsNormEpsilon)
        if c.isMoE {
            ffn = .mixture(try MoEFeedForward(loader, layer: n, config: c))
        } else {
            ffn = .dense(try FeedForward(loader, gate: TensorName.ffnGate(n), up: TensorName.ffnUp(n),
                                         down: TensorName.ffnDown(n), hidden: c.hiddenSize, ff: c.feedForwardSize))
        }
    }

    /// Updates `h` `[rows, hidden]` in place.
    func callAsFunction(_ h: UnsafeMutablePointer<Float>, rows: Int, hidden: Int, segments: [BatchSegment], rotary: RotaryTable) {
        let x = FloatBuffer(uninitializedCount: rows * hidden)    // [rows, hidden]
        attentionNorm(h, rows: rows, into: x.pointer)
        attention(x.pointer, rows: rows, segments: segments, rotary: rotary, residual: h)
        ffnNorm(h, rows: rows, into: x.pointer)
        switch ffn {
        case .dense(let feedForward): feedForward(x.pointer, rows: rows, into: h, accumulate: true)
        case .mixture(let moe): moe(x.pointer, rows: rows, into: h)
        }
    }
}
