import Formats
import Kernels

/// The SwiGLU feed-forward: `Wdown (silu(Wgate x) * Wup x)`.
struct FeedForward: Sendable {
    let gate: Linear     // [ff, hidden]
    let up: Linear       // [ff, hidden]
    let down: Linear     // [hidden, ff]

    init(_ loader: WeightLoader, gate gateName: String, up upName: String, down downName: String,
         hidden: Int, ff: Int) throws(ModelError) {
        gate = try Linear(loader, gateName, out: ff, in: hidden)
        up = try Linear(loader, upName, out: ff, in: hidden)
        down = try Linear(loader, downName, out: hidden, in: ff)
    }

    init(gate: Linear, up: Linear, down: Linear) {
        self.gate = gate
        self.up = up
        self.down = down
    }

    /// `out (+)= ffn(x)` over `rows` rows.
    func callAsFunction(_ x: UnsafePointer<Float>, rows: Int, into out: UnsafeMutablePointer<Float>, accumulate: Bool) {
        let ff = gate.outFeatures
        let g = FloatBuffer(uninitializedCount: rows * ff)     // [rows, ff]
        let u = FloatBuffer(uninitializedCount: rows * ff)     // [rows, ff]
        Linear.many([(gate, g.pointer), (up, u.pointer)], x: x, rows: rows)
        Kernels.siluMultiply(g.pointer, u.pointer, count: rows * ff)
        down(g.pointer, rows: rows, into: out, accumulate: accumulate)
    }
}

/// Mixture of experts: a router picks the top-k experts per token; their outputs are summed,
/// weighted by the (optionally renormalised) router probabilities, plus any shared experts.
struct MoEFeedForward: Sendable {
    let config: DecoderConfig
    let router: Linear              // [experts, hidden]
    let experts: [FeedForward]      // views into the stacked [experts, ff, hidden] tensors
    let shared: FeedForward?

    init(_ loader: WeightLoader, layer n: Int, config c: DecoderConfig) throws(ModelError) {
        config = c
        let hidden = c.hiddenSize, ff = c.feedForwardSize, e = c.expertCount
        router = try Linear(loader, TensorName.ffnRouter(n), out: e, in: hidden)
        let gates = try loader.load(TensorName.ffnGateExperts(n), [e, ff, hidden])
        let ups = try loader.load(TensorName.ffnUpExperts(n), [e, ff, hidden])
        let downs = try loader.load(TensorName.ffnDownExperts(n), [e, hidden, ff])
        experts = (0..<e).map { i in
            FeedForward(
                gate: Linear(weight: gates.slice(i), bias: nil, out: ff, in: hidden),
                up: Linear(weight: ups.slice(i), bias: nil, out: ff, in: hidden),
                down: Linear(weight: downs.slice(i), bias: nil, out: hidden, in: ff))
        }
        if c.sharedExpertCount > 0 {
            shared = try FeedForward(loader, gate: TensorName.ffnGateShared(n), up: TensorName.ffnUpShared(n),
                                     down: TensorName.ffnDownShared(n), hidden: hidden, ff: ff)
        } else {
            shared = nil
        }
    }

    /// gen2 renormalises only when several experts are picked; gen3 always (1.0 for top-1).
    var renormalizes: Bool {
        config.normalizesExpertWeights && (config.generation >= 3 || config.expertsPerToken > 1)
    }

    /// `out += moe(x)`.
    func callAsFunction(_ x: UnsafePointer<Float>, rows: Int, into out: UnsafeMutablePointer<Float>) {
        let hidden = config.hiddenSize, e = config.expertCount, k = config.expertsPerToken
        let probabilities = FloatBuffer(count: rows * e)     // [rows, experts]
        router(x, rows: rows, into: probabilities.pointer)
        Kernels.softmax(probabilities.pointer, rows: rows, count: e)

        // Per expert: the rows routed to it and their weights.
        var routedRows = [[Int]](repeating: [], count: e)
        var routedWeights = [[Float]](repeating: [], count: e)
        for r in 0..<rows {
            let p = probabilities.pointer + r * e
            // Stable descending order: ties go to the lower expert index.
            let chosen = (0..<e).sorted { p[$0] > p[$1] || (p[$0] == p[$1] && $0 < $1) }.prefix(k)
            var total: Float = 0
            for i in chosen { total += p[i] }
            for i in chosen {
                routedRows[i].append(r)
                routedWeights[i].append(renormalizes ? p[i] / total : p[i])
            }
        }
        for i in 0..<e where !routedRows[i].isEmpty {
            let n = routedRows[i].count
            let gathered = FloatBuffer(count: n * hidden)    // [n, hidden]
            for (j, r) in routedRows[i].enumerated() {
                (gathered.pointer + j * hidden).update(from: x + r * hidden, count: hidden)
            }
            let result = FloatBuffer(count: n * hidden)      // [n, hidden]
            experts[i](gathered.pointer, rows: n, into: result.pointer, accumulate: false)
            for (j, r) in routedRows[i].enumerated() {
                Kernels.addScaled(result.pointer + j * hidden, scale: routedWeights[i][j], into: out + r * hidden, count: hidden)
            }
        }
        shared?(x, rows: rows, into: out, accumulate: true)
    }
}

extension Parameter {
    /// The `index`-th slice along the outermost axis (one expert of a stacked tensor).
    func slice(_ index: Int) -> Parameter { Parameter(sliceOf: self, index: index) }
}
