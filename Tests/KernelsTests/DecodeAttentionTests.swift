import Foundation
import Kernels
import Testing

/// The decode step's attention (one query row per sequence over its cache) against the formula
/// in double precision, for float32, float16 and int8 caches, both cache layouts and every
/// head-size and group shape the kernel specialises.
@Suite("Decode attention")
struct DecodeAttentionTests {
    /// softmax(scale · q Kᵀ) V per query head in double; head h reads KV head h / (heads / kvHeads).
    static func reference(query: [Float], keys: [Float], values: [Float], heads: Int, kvHeads: Int, headDim hd: Int,
                          length: Int, rowStride: Int, headStride: Int, scale: Float) -> [Float] {
        var out = [Float](repeating: 0, count: heads * hd)
        for h in 0..<heads {
            let kvHead = h / (heads / kvHeads)
            var scores = (0..<length).map { t -> Double in
                var dot = 0.0
                for d in 0..<hd { dot += Double(query[h * hd + d]) * Double(keys[t * rowStride + kvHead * headStride + d]) }
                return dot * Double(scale)
            }
            let top = scores.max()!
            scores = scores.map { Foundation.exp($0 - top) }
            let sum = scores.reduce(0, +)
            for d in 0..<hd {
                var acc = 0.0
                for t in 0..<length { acc += scores[t] / sum * Double(values[t * rowStride + kvHead * headStride + d]) }
                out[h * hd + d] = Float(acc)
            }
        }
        return out
    }

    /// Float16 storage of `values`, and the float32 values it holds.
    static func halves(_ values: [Float]) -> (bits: [UInt16], widened: [Float]) {
        let bits = values.map { Float16($0).bitPattern }
        return (bits, bits.map { Float(Float16(bitPattern: $0)) })
    }

    /// Int8 storage of `values` laid out with `rowStride`/`headStride` (`rows` positions, `kvHeads`
    /// heads of `hd`), the scales at `t · kvHeads + h`, and the float32
    /// values it holds. Each head's row is quantised on its own, as the cache does.
    static func int8Rows(_ values: [Float], rows: Int, kvHeads: Int, headDim hd: Int, rowStride: Int,
                         headStride: Int) -> (bytes: [Int8], scales: [Float], widened: [Float]) {
        var bytes = [Int8](repeating: 0, count: values.count), widened = values
        var scales = [Float](repeating: 0, count: values.count / hd)
        for t in 0..<rows {
            for h in 0..<kvHeads {
                let at = t * rowStride + h * headStride
                let row = Array(values[at..<(at + hd)])
                var q = [Int8](repeating: 0, count: hd), scale: Float = 0
                row.withUnsafeBufferPointer { src in
                    q.withUnsafeMutableBufferPointer { dst in
                        Kernels.narrowToScaledInt8(src.baseAddress!, rows: 1, heads: 1, headDim: hd,
                                                   into: UnsafeMutableRawPointer(dst.baseAddress!), scales: &scale)
                    }
                }
                // The rounding the cache promises: q = round(x · 127 / max|x|), scale = max|x| / 127.
                let amax = row.map { abs($0) }.max()!
                #expect(scale == amax / 127)
                for d in 0..<hd {
                    #expect(q[d] == Int8((row[d] * (127 / amax)).rounded(.toNearestOrEven)))
                    bytes[at + d] = q[d]
                    widened[at + d] = scale * Float(q[d])
                }
                scales[t * kvHeads + h] = scale
            }
        }
        return (bytes, scales, widened)
    }

    /// Int8 key blocks of `keys` (laid out with `rowStride`/`headStride`), scales `[position, kv head]`,
    /// and the float32 keys they hold, in the same layout as `keys`.
    static func int8KeyBlocks(_ keys: [Float], rows: Int, kvHeads: Int, headDim hd: Int, rowStride: Int,
                              headStride: Int) -> (bytes: [UInt8], scales: [Float], widened: [Float]) {
        let width = kvHeads * hd
        var rowMajor = [Float](repeating: 0, count: rows * width)
        for t in 0..<rows { for h in 0..<kvHeads { for d in 0..<hd { rowMajor[t * width + h * hd + d] = keys[t * rowStride + h * headStride + d] } } }
        var bytes = [UInt8](repeating: 0, count: rows * width), scales = [Float](repeating: 0, count: rows * kvHeads)
        var back = [Float](repeating: 0, count: rows * width)
        rowMajor.withUnsafeBufferPointer { src in
            bytes.withUnsafeMutableBytes { blocks in
                scales.withUnsafeMutableBufferPointer { sc in
                    Kernels.narrowToInt8KeyBlocks(src.baseAddress!, rows: rows, first: 0, heads: kvHeads, headDim: hd,
                                                  into: blocks.baseAddress!, scales: sc.baseAddress!)
                }
            }
        }
        bytes.withUnsafeBytes { blocks in
            back.withUnsafeMutableBufferPointer {
                Kernels.widenInt8KeyBlocks(blocks.baseAddress!, scales: scales, rows: rows, heads: kvHeads, headDim: hd, into: $0.baseAddress!)
            }
        }
        var widened = keys
        for t in 0..<rows {
            for h in 0..<kvHeads {
                let row = rowMajor[(t * width + h * hd)..<(t * width + h * hd + hd)]
                let amax = row.map { abs($0) }.max()!
                #expect(scales[t * kvHeads + h] == amax / 127)
                for d in 0..<hd {
                    // The row's own rounding, read back through the block layout.
                    let q = (row[row.startIndex + d] * (127 / amax)).rounded(.toNearestOrEven)
                    #expect(back[t * width + h * hd + d] == scales[t * kvHeads + h] * q)
                    widened[t * rowStride + h * headStride + d] = back[t * width + h * hd + d]
                }
            }
        }
        return (bytes, scales, widened)
    }

    /// A query row as an int8 cache's integer key scores see it: each head rounded to int8 with
    /// scale max|q| / 127.
    static func int8Query(_ query: [Float], heads: Int, headDim hd: Int) -> [Float] {
        var out = query
        for h in 0..<heads {
            let row = query[(h * hd)..<(h * hd + hd)]
            let amax = row.map { abs($0) }.max()!
            for d in 0..<hd { out[h * hd + d] = amax / 127 * (row[row.startIndex + d] * (127 / amax)).rounded(.toNearestOrEven) }
        }
        return out
    }

    // (heads, kvHeads, headDim): groups of 1, 2, 3, 4, 5 query heads; 1 to 8 vectors per head; a head
    // size that is not a multiple of 16 (20) runs the portable C path.
    static let shapes: [(Int, Int, Int)] = [(8, 2, 64), (8, 2, 96), (8, 4, 96), (6, 2, 32), (5, 1, 128), (4, 4, 16), (3, 3, 48), (4, 2, 20)]

    @Test(arguments: [DecodeKernels.CachePrecision.float32, .float16, .int8], [false, true])
    func matchesTheFormula(precision: DecodeKernels.CachePrecision, headMajor: Bool) {
        var rng = TestRandom(seed: headMajor ? 11 : 12)
        for (heads, kvHeads, hd) in Self.shapes {
            // Three sequences at once, of lengths around the kernel's 16-position tiles.
            let lengths = [1, 17, 40]
            let capacity = 48, kvWidth = kvHeads * hd
            let rowStride = headMajor ? hd : kvWidth, headStride = headMajor ? capacity * hd : hd
            var stored: [(keys: [Float], values: [Float], raw: ([UInt8], [UInt8]))] = []
            var scales: [([Float], [Float])] = []
            for _ in lengths {
                var keys = rng.values(capacity * kvWidth, scale: 2), values = rng.values(capacity * kvWidth)
                var raw: ([UInt8], [UInt8])
                switch precision {
                case .float32:
                    raw = (keys.withUnsafeBytes { Array($0) }, values.withUnsafeBytes { Array($0) })
                case .float16:
                    let k = Self.halves(keys), v = Self.halves(values)
                    keys = k.widened
                    values = v.widened
                    raw = (k.bits.withUnsafeBytes { Array($0) }, v.bits.withUnsafeBytes { Array($0) })
                case .int8:
                    let k = Self.int8KeyBlocks(keys, rows: capacity, kvHeads: kvHeads, headDim: hd, rowStride: rowStride, headStride: headStride)
                    let v = Self.int8Rows(values, rows: capacity, kvHeads: kvHeads, headDim: hd, rowStride: rowStride, headStride: headStride)
                    keys = k.widened
                    values = v.widened
                    raw = (k.bytes.withUnsafeBytes { Array($0) }, v.bytes.withUnsafeBytes { Array($0) })
                    scales.append((k.scales, v.scales))
                }
                stored.append((keys, values, raw))
            }
            let queries = lengths.map { _ in rng.values(heads * hd) }
            var outputs = lengths.map { _ in [Float](repeating: .nan, count: heads * hd) }
            let scale = 1 / Float(hd).squareRoot()
            let scaleBytes = scales.map { ($0.0.withUnsafeBytes { Array($0) }, $0.1.withUnsafeBytes { Array($0) }) }
            withPointers(stored.map(\.raw.0) + scaleBytes.map(\.0), stored.map(\.raw.1) + scaleBytes.map(\.1), queries, &outputs) { keys, values, q, out in
                let n = lengths.count
                let list = lengths.indices.map { i in
                    DecodeKernels.AttentionQuery(query: q[i], keys: keys[i], values: values[i], rowStride: rowStride,
                                                 headStride: headStride, length: lengths[i], output: out[i],
                                                 keyScales: precision == .int8 ? keys[n + i].assumingMemoryBound(to: Float.self) : nil,
                                                 valueScales: precision == .int8 ? values[n + i].assumingMemoryBound(to: Float.self) : nil)
                }
                DecodeKernels.attention(list, heads: heads, kvHeads: kvHeads, headDim: hd, scale: scale,
                                        precision: precision, pool: ComputePool(threads: 2))
            }
            for (i, length) in lengths.enumerated() {
                // int8: the scores' query is the rounded one (the keys and values are the widened ones already).
                let query = precision == .int8 ? Self.int8Query(queries[i], heads: heads, headDim: hd) : queries[i]
                let expected = Self.reference(query: query, keys: stored[i].keys, values: stored[i].values, heads: heads,
                                              kvHeads: kvHeads, headDim: hd, length: length, rowStride: rowStride,
                                              headStride: headStride, scale: scale)
                let worst = zip(outputs[i], expected).map { abs($0 - $1) }.max()!
                #expect(worst < 1e-5, "heads \(heads)/\(kvHeads) hd \(hd) length \(length) \(precision): off by \(worst)")
            }
        }
    }

    /// An int8 cache multiplies heads in groups of 4 values and keeps one on the stack: the engine
    /// asks `holds(headDim:)` before making one (and a Q4_0 file's default falls back to float16).
    @Test func int8CachesHoldHeadsOfMultiplesOf4UpTo128() {
        for hd in [4, 16, 20, 64, 96, 128] { #expect(DecodeKernels.CachePrecision.int8.holds(headDim: hd)) }
        for hd in [0, 6, 30, 132, 256] { #expect(!DecodeKernels.CachePrecision.int8.holds(headDim: hd)) }
        for hd in [6, 30, 256] {
            #expect(DecodeKernels.CachePrecision.float16.holds(headDim: hd))
            #expect(DecodeKernels.CachePrecision.float32.holds(headDim: hd))
        }
    }

    /// Runs `body` with stable pointers to each array's storage.
    private func withPointers(_ keys: [[UInt8]], _ values: [[UInt8]], _ queries: [[Float]], _ outputs: inout [[Float]],
                              _ body: ([UnsafeRawPointer], [UnsafeRawPointer], [UnsafePointer<Float>], [UnsafeMutablePointer<Float>]) -> Void) {
        let k = keys.map(heapCopy), v = values.map(heapCopy), q = queries.map(heapCopy)
        let o = outputs.map { UnsafeMutablePointer<Float>.allocate(capacity: $0.count) }
        defer {
            (k + v).forEach { $0.deallocate() }
            (q + o).forEach { $0.deallocate() }
        }
        body(k.map { UnsafeRawPointer($0) }, v.map { UnsafeRawPointer($0) }, q.map { UnsafePointer($0) }, o)
        for i in outputs.indices { outputs[i] = Array(UnsafeBufferPointer(start: o[i], count: outputs[i].count)) }
    }
}
