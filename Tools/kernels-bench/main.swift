// kernels-bench: low-precision small-m products against OpenBLAS sgemv/sgemm, same run.
//
//   swift build -c release --product kernels-bench && .build/release/kernels-bench [--quick] [--hot]
//       [--threads 1,2] [--m 1,4,8] [--shape 768x768] [--cpu-time] [--overhead] [--decode]
//       [--attention [--length 300] [--kv-heads 2]]
//
// Each measurement cycles through enough copies of the matrix to exceed the L3 cache (96 MiB), so
// weights stream from DRAM as in decode of a whole model; `--hot` reuses one copy instead.
// Prints median µs per call, GFLOP/s (2*m*rows*cols) and GB/s of weight bytes.
import CKernels
import COpenBLAS
import Dispatch
import Foundation
import Kernels

let arguments = CommandLine.arguments
let quick = arguments.contains("--quick")
let hot = arguments.contains("--hot")
let shapes: [(name: String, rows: Int, cols: Int)] = [
    ("768x768", 768, 768), ("2048x768", 2048, 768), ("768x2048", 768, 2048), ("6400x768 (LM head)", 6400, 768),
]
let batchSizes = option("--m").map { $0.split(separator: ",").compactMap { Int($0) } } ?? (quick ? [1, 8] : [1, 4, 8])
func option(_ name: String) -> String? {
    guard let i = arguments.firstIndex(of: name), i + 1 < arguments.count else { return nil }
    return arguments[i + 1]
}
let threadCounts = option("--threads").map { $0.split(separator: ",").compactMap { Int($0) } } ?? [1, 2]
let onlyShape = option("--shape")  // e.g. 768x768
let streamBytes = hot ? 0 : 96 << 20

// --cpu-time: time by this thread's CPU time, which leaves out time other processes took from
// us on a busy machine; only meaningful for 1-thread rows (--threads 1).
let cpuTime = arguments.contains("--cpu-time")
func now() -> Double {
    if cpuTime {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }
    return Double(DispatchTime.now().uptimeNanoseconds) * 1e-9
}

/// Seconds per call: (median, best) over 20 slices of ~`budget`/20 each. On a shared machine the
/// best slice is the one least disturbed by other processes.
func measure(budget: Double = quick ? 0.2 : 0.4, _ call: (Int) -> Void) -> (median: Double, best: Double) {
    var i = 0
    for _ in 0..<3 { call(i); i += 1 }  // warm up (and fault in pages)
    var rates: [Double] = []
    for _ in 0..<20 {
        let start = now()
        var calls = 0
        repeat { call(i); i += 1; calls += 1 } while now() - start < budget / 20
        rates.append((now() - start) / Double(calls))
    }
    rates.sort()
    return (rates[10], rates[0])
}

func randomFloats(_ count: Int, seed: UInt64) -> [Float] {
    var s = seed | 1
    return (0..<count).map { _ in
        s ^= s << 13; s ^= s >> 7; s ^= s << 17
        return Float(Int64(s >> 40) - (1 << 23)) / Float(1 << 23) * 0.05
    }
}

struct Row {
    var shape: String, m: Int, kernel: String, threads: Int, timing: (median: Double, best: Double), flops: Double, bytes: Int
    var seconds: Double { timing.best }
    var gflops: Double { flops / seconds / 1e9 }
    var gbs: Double { Double(bytes) / seconds / 1e9 }
}

var rows: [Row] = []
let corename = openblas_get_corename().map { String(cString: $0) } ?? "?"
let cpuModel = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
    .split(separator: "\n").first { $0.hasPrefix("model name") }?.split(separator: ":").last?
    .trimmingCharacters(in: .whitespaces) ?? "?"
let load = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").prefix(3).joined(separator: " ") ?? "?"
print("# load average \(load) (other processes on this machine make every figure lower)")
print("# kernels-bench on \(cpuModel): path \(KernelPath.best) (AVX512_BF16 \(KernelPath.hasAVX512BF16), VNNI \(KernelPath.hasAVX512VNNI)), OpenBLAS core \(corename), weights \(hot ? "hot (one copy, cache-resident when small)" : "streamed from DRAM (96 MiB of copies)")")
print("")

@MainActor func report(_ row: Row) {
    rows.append(row)
    print("| \(row.shape) | \(row.m) | \(row.kernel) | \(row.threads) | \(String(format: "%.1f", row.timing.median * 1e6)) | \(String(format: "%.1f", row.timing.best * 1e6)) | \(String(format: "%.1f", row.gflops)) | \(String(format: "%.1f", row.gbs)) |")
    fflush(nil)
}

// --overhead: cost of one empty 2-task job, our pool against Dispatch.
if arguments.contains("--overhead") {
    let pool = ComputePool(threads: 2)
    let sink = UnsafeMutablePointer<Int>.allocate(capacity: 2)
    defer { sink.deallocate() }
    let poolTime = measure { i in pool.parallelFor(2) { sink[$0] = i } }
    let sinkAddress = Int(bitPattern: sink)
    let dispatchTime = measure { i in
        DispatchQueue.concurrentPerform(iterations: 2) { UnsafeMutablePointer<Int>(bitPattern: sinkAddress)![$0] = i }
    }
    print(String(format: "empty 2-task job: ComputePool %.2f µs (best %.2f), concurrentPerform %.2f µs (best %.2f)",
                 poolTime.median * 1e6, poolTime.best * 1e6, dispatchTime.median * 1e6, dispatchTime.best * 1e6))
    exit(0)
}

// --attention: the decode step's attention of 8 (or --m) single-token queries over caches of
// --length positions, every layer of MiniMind2-V (8 heads, 2 KV heads, head dim 96, 16 layers),
// each sequence and layer its own cache as in a real step (so keys and values stream from DRAM),
// caches in float32 and in float16.
if arguments.contains("--attention") {
    let kvHeads = option("--kv-heads").flatMap { Int($0) } ?? 2, heads = 4 * kvHeads, hd = 96, layers = 16
    let length = option("--length").flatMap { Int($0) } ?? 300
    let threads = threadCounts.max() ?? 2
    let pool = ComputePool(threads: threads)
    for m in batchSizes {
        // Whole blocks of 16 positions: what an int8 cache's keys take.
        let kvWidth = kvHeads * hd, perCache = (length + 15) / 16 * 16 * kvWidth
        let queries = randomFloats(m * heads * hd, seed: 7)
        var out = [Float](repeating: 0, count: m * heads * hd)
        for precision in [DecodeKernels.CachePrecision.float32, .float16, .int8] { for headMajor in [false, true] {
            // keys then values of every (sequence, layer), one allocation.
            let bytes = 2 * m * layers * perCache * precision.bytesPerValue
            let storage = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
            // int8: a scale per position and KV head (random values: only the speed counts here).
            let scales = UnsafeMutablePointer<Float>.allocate(capacity: 2 * m * layers * length * kvHeads)
            defer { storage.deallocate(); scales.deallocate() }
            for i in 0..<(2 * m * layers) {
                let values = randomFloats(perCache, seed: UInt64(i + 1))
                let at = storage + i * perCache * precision.bytesPerValue
                switch precision {
                case .float32: at.copyMemory(from: values, byteCount: perCache * 4)
                case .float16:
                    values.withUnsafeBufferPointer { ck_f32_to_f16($0.baseAddress!, at.assumingMemoryBound(to: UInt16.self), perCache) }
                case .int8 where i % 2 == 0:    // keys: key blocks, scales [position, kv head]
                    values.withUnsafeBufferPointer {
                        Kernels.narrowToInt8KeyBlocks($0.baseAddress!, rows: length, first: 0, heads: kvHeads, headDim: hd, into: at,
                                                      scales: scales + i * length * kvHeads)
                    }
                case .int8:
                    values.withUnsafeBufferPointer {
                        Kernels.narrowToScaledInt8($0.baseAddress!, rows: length, heads: kvHeads, headDim: hd, into: at,
                                                   scales: scales + i * length * kvHeads)
                    }
                }
            }
            func cache(_ i: Int) -> UnsafeRawPointer { UnsafeRawPointer(storage + i * perCache * precision.bytesPerValue) }
            func scale(_ i: Int) -> UnsafePointer<Float>? { precision == .int8 ? UnsafePointer(scales + i * length * kvHeads) : nil }
            let t = queries.withUnsafeBufferPointer { qp in
                out.withUnsafeMutableBufferPointer { op in
                    measure(budget: 1.0) { _ in
                        for layer in 0..<layers {
                            let list = (0..<m).map { s in
                                DecodeKernels.AttentionQuery(
                                    query: qp.baseAddress! + s * heads * hd, keys: cache(2 * (s * layers + layer)),
                                    values: cache(2 * (s * layers + layer) + 1),
                                    rowStride: headMajor ? hd : kvWidth, headStride: headMajor ? length * hd : hd, length: length,
                                    output: op.baseAddress! + s * heads * hd,
                                    keyScales: scale(2 * (s * layers + layer)), valueScales: scale(2 * (s * layers + layer) + 1))
                            }
                            DecodeKernels.attention(list, heads: heads, kvHeads: kvHeads, headDim: hd, scale: 0.1,
                                                    precision: precision, pool: pool)
                        }
                    }
                }
            }
            let gbs: Double = Double(bytes) / t.best / 1e9
            print(String(format: "attention m %d length %d %@ %@ threads %d: %.3f ms/step (best %.3f), %.1f GB/s of keys and values",
                         m, length, precision.description, headMajor ? "[kv head][position]" : "[position][kv head]",
                         threads, t.median * 1e3, t.best * 1e3, gbs))
        } }
    }
    exit(0)
}

// --decode: the matrix products of one decode step of each released LLM size (all layers + LM
// head, dense FFN), per weight format, against OpenBLAS f32; tokens/s = m / step time is the
// ceiling the products alone allow (attention, norms and sampling come on top).
if arguments.contains("--decode") {
    struct LLM { let name: String; let hidden: Int, layers: Int, qDim: Int, kvDim: Int, ffn: Int; let pytorch: [Int: Double] }
    let models = [
        LLM(name: "MiniMind2-Small-V", hidden: 512, layers: 8, qDim: 512, kvDim: 128, ffn: 1408, pytorch: [1: 64.7, 8: 197]),
        LLM(name: "MiniMind2-V", hidden: 768, layers: 16, qDim: 768, kvDim: 192, ffn: 2048, pytorch: [1: 22.1, 8: 78.5]),
        LLM(name: "minimind-3v", hidden: 768, layers: 8, qDim: 768, kvDim: 384, ffn: 2432, pytorch: [1: 35.1, 8: 185]),
    ]
    print("| model | m | weights | threads | ms/step (median) | ms/step (best) | tokens/s (best) | x PyTorch (tokens/s) | GB/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for model in models where onlyShape.map({ model.name.hasPrefix($0) }) ?? true {
        // (rows, cols) of every product in one step, in order.
        var shapes: [(Int, Int)] = []
        for _ in 0..<model.layers {
            shapes += [(model.qDim, model.hidden), (model.kvDim, model.hidden), (model.kvDim, model.hidden),
                       (model.hidden, model.qDim), (model.ffn, model.hidden), (model.ffn, model.hidden),
                       (model.hidden, model.ffn)]
        }
        shapes.append((6400, model.hidden))
        let f32 = shapes.enumerated().map { randomFloats($1.0 * $1.1, seed: UInt64($0 + 1)) }
        let maxRows = shapes.map { max($0.0, $0.1) }.max()!
        for m in batchSizes {
            let x = randomFloats(m * maxRows, seed: 5)
            var y = [Float](repeating: 0, count: m * maxRows)
            let tokens = Double(m)
            for threads in threadCounts {
                openblas_set_num_threads(Int32(threads))
                let t = x.withUnsafeBufferPointer { xp in
                    y.withUnsafeMutableBufferPointer { yp in
                        measure(budget: 1.0) { _ in
                            for (i, (r, c)) in shapes.enumerated() {
                                f32[i].withUnsafeBufferPointer { w in
                                    if m == 1 {
                                        cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(r), Int32(c), 1, w.baseAddress!, Int32(c),
                                                    xp.baseAddress!, 1, 0, yp.baseAddress!, 1)
                                    } else {
                                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(r), Int32(c), 1,
                                                    xp.baseAddress!, Int32(c), w.baseAddress!, Int32(c), 0, yp.baseAddress!, Int32(r))
                                    }
                                }
                            }
                        }
                    }
                }
                let bytes = Double(f32.reduce(0) { $0 + $1.count * 4 })
                print(String(format: "| %@ | %d | openblas f32 | %d | %.2f | %.2f | %.0f | %.1fx (%.1f) | %.1f |", model.name, m, threads,
                             t.median * 1e3, t.best * 1e3, tokens / t.best, tokens / t.best / model.pytorch[m, default: .nan],
                             model.pytorch[m, default: .nan], bytes / t.best / 1e9))
                fflush(nil)
            }
            openblas_set_num_threads(1)
            for format in WeightFormat.allCases {
                let matrices = try shapes.enumerated().map { i, shape in
                    try QuantizedMatrix(converting: f32[i], rows: shape.0, columns: shape.1, to: format)
                }
                let bytes = Double(matrices.reduce(0) { $0 + $1.byteCount })
                for threads in threadCounts {
                    let pool = ComputePool(threads: threads)
                    let t = x.withUnsafeBufferPointer { xp in
                        y.withUnsafeMutableBufferPointer { yp in
                            measure(budget: 1.0) { _ in
                                for matrix in matrices { matrix.multiply(xp.baseAddress!, rows: m, into: yp.baseAddress!, pool: pool) }
                            }
                        }
                    }
                    print(String(format: "| %@ | %d | %@ | %d | %.2f | %.2f | %.0f | %.1fx (%.1f) | %.1f |", model.name, m, format.description,
                                 threads, t.median * 1e3, t.best * 1e3, tokens / t.best,
                                 tokens / t.best / model.pytorch[m, default: .nan], model.pytorch[m, default: .nan], bytes / t.best / 1e9))
                    fflush(nil)
                }
            }
            // Q8_0 (and Q4_0) packed into panels, grouped as the decode step runs them: Q/K/V one
            // job, O, gate/up one job, down, then the head. The q4_0 row is a `--type q4_0` file:
            // the layers' matrices in Q4_0, the head in Q8_0.
            var groups: [[Int]] = []
            for l in 0..<model.layers { let b = l * 7; groups += [[b, b + 1, b + 2], [b + 3], [b + 4, b + 5], [b + 6]] }
            groups.append([shapes.count - 1])
            let outputs = shapes.map { [Float](repeating: 0, count: m * $0.0) }
            for layerFormat in [WeightFormat.q8_0, .q4_0] {
                let panels = try shapes.enumerated().map { i, shape in
                    try Int8PanelMatrix(packing: QuantizedMatrix(converting: f32[i], rows: shape.0, columns: shape.1,
                                                                 to: i == shapes.count - 1 ? .q8_0 : layerFormat))
                }
                let bytes = Double(panels.reduce(0) { $0 + $1.byteCount })
                for threads in threadCounts {
                    let pool = ComputePool(threads: threads)
                    let t = x.withUnsafeBufferPointer { xp in
                        measure(budget: 1.0) { _ in
                            for group in groups {
                                let products = group.map { i in
                                    DecodeKernels.PanelProduct(matrix: panels[i], output: UnsafeMutablePointer(mutating: outputs[i].withUnsafeBufferPointer { $0.baseAddress! }))
                                }
                                DecodeKernels.multiply(xp.baseAddress!, rows: m, columns: shapes[group[0]].1, by: products, pool: pool)
                            }
                        }
                    }
                    print(String(format: "| %@ | %d | %@ panels | %d | %.2f | %.2f | %.0f | %.1fx (%.1f) | %.1f |", model.name, m,
                                 layerFormat.description, threads, t.median * 1e3, t.best * 1e3, tokens / t.best,
                                 tokens / t.best / model.pytorch[m, default: .nan], model.pytorch[m, default: .nan], bytes / t.best / 1e9))
                    fflush(nil)
                }
            }
        }
    }
    exit(0)
}

print("| shape | m | kernel | threads | µs/call median | µs/call best | GFLOP/s (best) | GB/s weights (best) |")
print("|---|---|---|---|---|---|---|---|")
let pools = Dictionary(uniqueKeysWithValues: threadCounts.map { ($0, ComputePool(threads: $0)) })

for shape in shapes where onlyShape.map({ shape.name.hasPrefix($0) }) ?? true {
    let weights = randomFloats(shape.rows * shape.cols, seed: UInt64(shape.rows))
    let matrixF32 = try QuantizedMatrix(converting: weights, rows: shape.rows, columns: shape.cols, to: .float32)
    let copiesF32 = max(1, streamBytes / matrixF32.byteCount + 1)
    // F32 copies for BLAS: one contiguous buffer of `copies` matrices.
    var blasWeights = [Float](repeating: 0, count: copiesF32 * weights.count)
    for c in 0..<copiesF32 { blasWeights.replaceSubrange((c * weights.count)..<((c + 1) * weights.count), with: weights) }
    var matrices: [WeightFormat: [QuantizedMatrix]] = [:]
    for format in WeightFormat.allCases {
        let one = try QuantizedMatrix(converting: weights, rows: shape.rows, columns: shape.cols, to: format)
        let copies = max(1, streamBytes / one.byteCount + 1)
        matrices[format] = [one] + (1..<copies).map { _ in
            try! one.withUnsafeBytes { try QuantizedMatrix(format: format, rows: shape.rows, columns: shape.cols, bytes: Array($0)) }
        }
    }
    for m in batchSizes {
        let x = randomFloats(m * shape.cols, seed: 99)
        var y = [Float](repeating: 0, count: m * shape.rows)
        let flops = 2.0 * Double(m * shape.rows * shape.cols)
        for threads in threadCounts {
            openblas_set_num_threads(Int32(threads))
            let seconds = x.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in
                    blasWeights.withUnsafeBufferPointer { wp in
                        measure { i in
                            let w = wp.baseAddress! + (i % copiesF32) * weights.count
                            if m == 1 {
                                cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(shape.rows), Int32(shape.cols), 1, w,
                                            Int32(shape.cols), xp.baseAddress!, 1, 0, yp.baseAddress!, 1)
                            } else {
                                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(shape.rows),
                                            Int32(shape.cols), 1, xp.baseAddress!, Int32(shape.cols), w,
                                            Int32(shape.cols), 0, yp.baseAddress!, Int32(shape.rows))
                            }
                        }
                    }
                }
            }
            report(Row(shape: shape.name, m: m, kernel: m == 1 ? "openblas sgemv f32" : "openblas sgemm f32",
                       threads: threads, timing: seconds, flops: flops, bytes: weights.count * 4))
        }
        openblas_set_num_threads(1)
        for format in WeightFormat.allCases {
            let list = matrices[format]!
            for threads in threadCounts {
                let pool = pools[threads]!
                let seconds = x.withUnsafeBufferPointer { xp in
                    y.withUnsafeMutableBufferPointer { yp in
                        measure { i in list[i % list.count].multiply(xp.baseAddress!, rows: m, into: yp.baseAddress!, pool: pool) }
                    }
                }
                report(Row(shape: shape.name, m: m, kernel: "ours \(format)", threads: threads, timing: seconds,
                           flops: flops, bytes: list[0].byteCount))
            }
        }
        // The same kernel split over Dispatch instead of the spinning pool (2 threads).
        if (m == 1 || m == 8) && threadCounts.contains(2) {
            for format in [WeightFormat.float16, .q8_0] {
                let list = matrices[format]!
                let half = (shape.rows / 2 + 3) / 4 * 4
                let seconds = x.withUnsafeBufferPointer { xp in
                    y.withUnsafeMutableBufferPointer { yp in
                        let xb = xp.baseAddress!, yb = yp.baseAddress!
                        return measure { i in
                            list[i % list.count].withUnsafeBytes { w in
                                // Addresses cross into the Sendable closure as integers.
                                let wa = Int(bitPattern: w.baseAddress), xa = Int(bitPattern: xb), ya = Int(bitPattern: yb)
                                DispatchQueue.concurrentPerform(iterations: 2) { t in
                                    _ = ck_matmul_rows(-1, Int32(format.ggmlType), UnsafeRawPointer(bitPattern: wa), shape.cols,
                                                       UnsafePointer<Float>(bitPattern: xa), shape.cols, m,
                                                       UnsafeMutablePointer<Float>(bitPattern: ya), shape.rows,
                                                       t == 0 ? 0 : half, t == 0 ? half : shape.rows)
                                }
                            }
                        }
                    }
                }
                report(Row(shape: shape.name, m: m, kernel: "ours \(format) via concurrentPerform", threads: 2,
                           timing: seconds, flops: flops, bytes: list[0].byteCount))
            }
        }
    }
}

// Ratios to OpenBLAS at the same thread count.
print("")
print("Speed-up over OpenBLAS f32 at the same threads (ratio of best times):")
print("")
print("| shape | m | threads | f32 | f16 | bf16 | q8_0 |")
print("|---|---|---|---|---|---|---|")
for shape in shapes {
    for m in batchSizes {
        for threads in threadCounts {
            let sel = rows.filter { $0.shape == shape.name && $0.m == m && $0.threads == threads }
            guard let blas = sel.first(where: { $0.kernel.hasPrefix("openblas") }) else { continue }
            let cells = WeightFormat.allCases.map { f -> String in
                guard let r = sel.first(where: { $0.kernel == "ours \(f)" }) else { return "-" }
                return String(format: "%.2fx", blas.seconds / r.seconds)
            }
            print("| \(shape.name) | \(m) | \(threads) | " + cells.joined(separator: " | ") + " |")
        }
    }
}
