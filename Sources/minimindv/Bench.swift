import ArgumentParser
import Engine
import Foundation
import Formats
import Kernels
import Imaging
import Model
import Tokenizer

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure a model file's speed on this machine.",
        discussion: """
            Vision encoder ms/image at batch 1 and 8, prefill tokens/s of an image prompt (LLM only; alone \
            and 8 prompts in one pass, as the daemon prefills an admission), \
            decode tokens/s at batch 1 and 8 (all sequences), peak RSS and threads. Each figure is the \
            median of --repeats runs after one warm-up; images are synthetic pixels. In brackets: the \
            process CPU time of the same runs (all threads), which stays meaningful on a busy machine.
            """)

    @Option(help: "The .gguf model file (from `minimindv convert`).")
    var model: String = ShippedModel.path

    @Option(help: "Compute threads (default: all cores).")
    var threads: Int?

    @Option(help: "Runs per figure (median reported).")
    var repeats: Int = 3

    @Option(help: "Tokens decoded per sequence for the decode figures.")
    var decodeTokens: Int = 32

    @Option(help: "Figures to measure, comma-separated: vision, prefill, decode (default: all). Without vision the prompt's image features are synthetic.")
    var parts: String = "vision,prefill,decode"

    @Option(help: "Decode batch sizes, comma-separated.")
    var batches: String = "1,8"

    @Option(help: CacheOption.help)
    var kvCache: CacheOption = .auto

    @Option(help: "A JPEG or PNG: adds the row 'one job', this file decoded and preprocessed, encoded, the eval prompt prefilled and --decode-tokens new tokens decoded (never stopping early), as upstream's eval script runs a job.")
    var image: String?

    func validate() throws {
        if repeats < 1 { throw ValidationError("--repeats must be at least 1") }
        if decodeTokens < 2 { throw ValidationError("--decode-tokens must be at least 2") }
        let known: Set<Substring> = ["vision", "prefill", "decode"]
        for part in parts.split(separator: ",") where !known.contains(part) {
            throw ValidationError("unknown part '\(part)' in --parts: use vision, prefill or decode")
        }
    }

    func run() async throws {
        // One load: the network, tokenizer and preprocessing the figures and the one-job row share.
        let chat = try ChatModel(path: model)
        let network = chat.network, tokenizer = chat.tokenizer
        let engine = try Engine(model: network, threads: threads, cachePrecision: kvCache.precision)
        let config = network.config
        var rows: [(String, String)] = []

        let selected = Set(parts.split(separator: ",").map(String.init))
        var features: [[Float]] = []
        if network.visionConfig != nil, !selected.contains("vision") {
            // Stand-in projected features of the right size, so the prompt keeps its length.
            var generator = SeededGenerator(seed: 2)
            features = [(0..<(config.imageTokenCount * config.hiddenSize)).map { _ in Float(Double(generator.next() >> 40) / Double(1 << 24)) - 0.5 }]
        } else if let vision = network.visionConfig {
            let perImage = 3 * vision.imageSize * vision.imageSize
            var generator = SeededGenerator(seed: 1)
            let pixels = (0..<(8 * perImage)).map { _ in Float(Double(generator.next() >> 40) / Double(1 << 24)) * 2 - 1 }
            let one = Array(pixels[0..<perImage])
            let (seconds, cpu) = try median(repeats) { _ = try engine.encodeImages(pixels: one, count: 1) }
            rows.append(("vision encoder, batch 1", String(format: "%.1f ms/image (cpu %.1f)", seconds * 1000, cpu * 1000)))
            // Batch 8 and the sgemm bound run in turns, so that both see the same machine (a shared
            // machine's speed drifts by 10-30 % within a minute) and their ratio is meaningful.
            let bound = SgemmBound(vision, batch: 8)
            var encoder: [(wall: Double, cpu: Double)] = [], sgemm: [Double] = []
            _ = try engine.encodeImages(pixels: pixels, count: 8)
            bound.run()
            for _ in 0..<max(repeats, 3) {
                let start = Date(), startCPU = cpuSeconds()
                _ = try engine.encodeImages(pixels: pixels, count: 8)
                encoder.append((Date().timeIntervalSince(start) / 8, (cpuSeconds() - startCPU) / 8))
                sgemm.append(bound.run())
            }
            let wall = encoder.map(\.wall).sorted()[encoder.count / 2], cpuTime = encoder.map(\.cpu).sorted()[encoder.count / 2]
            let boundTime = sgemm.sorted()[sgemm.count / 2]
            let ratios = zip(encoder, sgemm).map { $0.wall / $1 }.sorted()
            rows.append(("vision encoder, batch 8", String(format: "%.1f ms/image (cpu %.1f)", wall * 1000, cpuTime * 1000)))
            rows.append(("sgemm bound, batch 8", String(
                format: "%.1f ms/image (%.1f GFLOP/image at %.0f GFLOP/s, sgemm on the encoder's shapes); encoder / bound %.2f (runs in turns, %.2f-%.2f)",
                boundTime * 1000, bound.flopsPerImage / 1e9, bound.flopsPerImage / boundTime / 1e9,
                ratios[ratios.count / 2], ratios.first!, ratios.last!)))
            features = try engine.encodeImages(pixels: one, count: 1)
        }

        // The eval prompt: one image (when the model has an encoder) and upstream's question.
        let question = config.generation >= 3 ? "请描述这张图中的主要物体和场景。" : "描述一下这个图像的内容。"
        let prompt = try tokenizer.chatPrompt([ChatMessage(role: "user", content: question, imageCount: features.count)],
                                              image: chat.imagePlaceholder)
        let noStop = StopConditions(maxNewTokens: decodeTokens, stopTokenIDs: [])
        if selected.contains("prefill") {
            let (prefill, prefillCPU) = try median(repeats) {
                _ = try engine.start(prompt: prompt.ids, images: features, sampling: .argmax, stop: noStop)
            }
            rows.append(("prefill, \(prompt.ids.count)-token prompt", String(format: "%.0f tokens/s, %.1f ms (cpu %.1f)", Double(prompt.ids.count) / prefill, prefill * 1000, prefillCPU * 1000)))
            // What the daemon does with an admission of 8 jobs: one prefill pass over all their prompts.
            let together = [Engine.SequenceRequest](repeating: Engine.SequenceRequest(prompt: prompt.ids, images: features, sampling: .argmax, stop: noStop), count: 8)
            let (batched, batchedCPU) = try median(repeats) { _ = try engine.start(together) }
            rows.append(("prefill, 8 prompts together", String(format: "%.0f tokens/s, %.1f ms/prompt (cpu %.1f)", Double(8 * prompt.ids.count) / batched, batched * 1000 / 8, batchedCPU * 1000 / 8)))
        }

        let batchSizes = batches.split(separator: ",").compactMap { Int($0) }.filter { $0 > 0 }
        for batch in batchSizes where selected.contains("decode") {
            var seconds: [Double] = []
            var cpu: [Double] = []
            for run in 0...repeats {
                let sequences = try (0..<batch).map { _ in
                    try engine.start(prompt: prompt.ids, images: features, sampling: .argmax, stop: noStop)
                }
                let start = Date(), startCPU = cpuSeconds()
                while sequences.contains(where: { !$0.isFinished }) { try engine.step(sequences.filter { !$0.isFinished }) }
                if run > 0 {
                    seconds.append(Date().timeIntervalSince(start))
                    cpu.append(cpuSeconds() - startCPU)
                }
            }
            // decodeTokens draws per sequence, decodeTokens - 1 forward passes.
            let tokens = Double(batch * (decodeTokens - 1))
            rows.append(("decode, batch \(batch)", String(format: "%.1f tokens/s (per cpu s %.1f)", tokens / seconds.sorted()[seconds.count / 2], tokens / cpu.sorted()[cpu.count / 2])))
        }

        if let image {
            let job = try median(repeats) {
                let picture = try ImageDecoder.decode(contentsOf: URL(fileURLWithPath: image))
                let features = try engine.encodeImages(pixels: try chat.pixelValues(of: picture), count: 1)
                let jobPrompt = try chat.prompt(question: question, imageCount: 1)
                let sequence = try engine.start(prompt: jobPrompt.ids, images: features, sampling: .argmax, stop: noStop)
                while !sequence.isFinished { try engine.step([sequence]) }
            }
            rows.append(("one job, \(decodeTokens) new tokens", String(format: "%.3f s (cpu %.3f)", job.wall, job.cpu)))
        }

        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        rows.append(("peak RSS", String(format: "%.0f MB", Double(usage.ru_maxrss) / 1024)))
        rows.append(("threads", "\(Kernels.threadCount) (OpenBLAS \(Kernels.blasCoreName))"))
        rows.append(("KV cache", engine.cachePrecision.description))

        let kind = config.isMoE ? "MoE \(config.expertCount) experts" : "dense"
        print("\((model as NSString).lastPathComponent): gen\(config.generation) \(config.hiddenSize)x\(config.layerCount) \(kind)")
        let width = rows.map(\.0.count).max() ?? 0
        for (name, value) in rows {
            print(name.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + value)
        }
    }

    /// The encoder's float32 arithmetic at the speed OpenBLAS sgemm reaches on the encoder's own
    /// product shapes (batch rows x [vh->3vh... as 4 vh x vh, vh x ff, ff x vh] per layer), measured
    /// now, under the same load as the figures above: the bound a float32 encoder can approach.
    /// Median wall and CPU time of `count` runs of `body` after one warm-up run.
    private func median(_ count: Int, _ body: () throws -> Void) throws -> (wall: Double, cpu: Double) {
        try body()
        var times: [Double] = [], cpu: [Double] = []
        for _ in 0..<count {
            let start = Date(), startCPU = cpuSeconds()
            try body()
            times.append(Date().timeIntervalSince(start))
            cpu.append(cpuSeconds() - startCPU)
        }
        return (times.sorted()[times.count / 2], cpu.sorted()[cpu.count / 2])
    }

    /// User + system CPU time of this process so far.
    private func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }
}

/// The time OpenBLAS alone needs for a vision batch's arithmetic: sgemm on the encoder's product
/// shapes (with its own threads, as it runs alone: the reference our split products chase), and
/// the patch embedding and attention FLOPs counted at the rate those products reach.
struct SgemmBound {
    let flopsPerImage: Double
    private let layers: Int, rows: Int
    private let shapes: [(n: Int, k: Int)]     // (out, in)
    private let x: [Float], w: [Float]
    private let productFlops: Double

    init(_ v: Model.VisionConfig, batch: Int) {
        let m = batch * v.sequenceLength, vh = v.hiddenSize, ff = v.feedForwardSize
        var generator = SeededGenerator(seed: 3)
        func random(_ n: Int) -> [Float] { (0..<n).map { _ in Float(Double(generator.next() >> 40) / Double(1 << 24)) - 0.5 } }
        x = random(m * max(vh, ff))
        w = random(ff * vh)
        shapes = [(vh, vh), (vh, vh), (vh, vh), (vh, vh), (ff, vh), (vh, ff)]
        productFlops = Double(shapes.reduce(0) { $0 + 2 * m * $1.n * $1.k })
        layers = v.layerCount
        rows = m
        let s = Double(v.sequenceLength), patches = Double(v.patchCount)
        let attention: Double = 4 * s * s * Double(vh)
        let patchEmbedding: Double = 2 * patches * Double(vh * v.patchValues)
        flopsPerImage = patchEmbedding + Double(v.layerCount) * (productFlops / Double(batch) + attention)
    }

    /// One pass of the products; returns the bound in seconds per image.
    @discardableResult
    func run() -> Double {
        var y = [Float](repeating: 0, count: x.count)
        let start = Date()
        Kernels.withBLASThreads(Kernels.threadCount) {
            for _ in 0..<layers {
                for (n, k) in shapes {
                    x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in y.withUnsafeMutableBufferPointer { yp in
                        Kernels.linear(xp.baseAddress!, rows: rows, inFeatures: k, weight: wp.baseAddress!, outFeatures: n, into: yp.baseAddress!)
                    } } }
                }
            }
        }
        let seconds = Date().timeIntervalSince(start)
        return flopsPerImage / (productFlops * Double(layers) / seconds)
    }
}
