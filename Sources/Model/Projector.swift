import Formats
import Kernels

/// Maps vision features into the decoder's embedding space.
/// gen2: `Linear(vh → hidden)`; gen3: `LayerNorm, Linear(vh → hidden), GELU (erf), Linear(hidden → hidden)`.
public struct Projector: Sendable {
    enum Layers: Sendable {
        case linear(Linear)
        case mlp(LayerNorm, Linear, Linear)
    }

    let layers: Layers
    public let inputSize: Int
    public let outputSize: Int

    init(_ loader: WeightLoader, config c: VisionConfig, hidden: Int) throws(ModelError) {
        inputSize = c.hiddenSize
        outputSize = hidden
        switch c.projector {
        case .linear:
            layers = .linear(try Linear(loader, TensorName.projector(0), out: hidden, in: c.hiddenSize, bias: TensorName.projector(0, "bias")))
        case .mlp:
            layers = .mlp(
                try LayerNorm(loader, "mm.0", dim: c.hiddenSize, epsilon: c.projectorLayerNormEpsilon),
                try Linear(loader, TensorName.projector(1), out: hidden, in: c.hiddenSize, bias: TensorName.projector(1, "bias")),
                try Linear(loader, TensorName.projector(3), out: hidden, in: hidden, bias: TensorName.projector(3, "bias")))
        }
    }

    /// `[rows, vh]` features to `[rows, hidden]`.
    public func callAsFunction(_ features: [Float]) -> [Float] {
        let rows = features.count / inputSize
        let out = FloatBuffer(count: rows * outputSize)    // [rows, hidden]
        features.withUnsafeBufferPointer { f in
            let x = f.baseAddress!
            switch layers {
            case .linear(let linear):
                linear(x, rows: rows, into: out.pointer)
            case .mlp(let norm, let first, let second):
                let normed = FloatBuffer(count: rows * inputSize)     // [rows, vh]
                norm(x, rows: rows, into: normed.pointer)
                let middle = FloatBuffer(count: rows * outputSize)    // [rows, hidden]
                first(normed.pointer, rows: rows, into: middle.pointer)
                Kernels.geluErf(middle.pointer, count: middle.count)
                second(middle.pointer, rows: rows, into: out.pointer)
            }
        }
        return out.array
    }
}
