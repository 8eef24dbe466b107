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
        let engine = Engine(model: network, threads: threads, cachePrecision: kvCache.precision)
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
            for batch in [1, 8] {
                let slice = Array(pixels[0..<(batch * perImage)])
                let (seconds, cpu) = try median(repeats) { _ = try engine.encodeImages(pixels: slice, count: batch) }
                rows.append(("vision encoder, batch \(batch)", String(format: "%.1f ms/image (cpu %.1f)", seconds * 1000 / Double(batch), cpu * 1000 / Double(batch))))
            }
            features = try engine.encodeImages(pixels: Array(pixels[0..<perImage]), count: 1)
            rows.append(sgemmBound(vision, batch: 8))
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
    private func sgemmBound(_ v: Model.VisionConfig, batch: Int) -> (String, String) {
        let m = batch * v.sequenceLength, vh = v.hiddenSize, ff = v.feedForwardSize
        var generator = SeededGenerator(seed: 3)
        func random(_ n: Int) -> [Float] { (0..<n).map { _ in Float(Double(generator.next() >> 40) / Double(1 << 24)) - 0.5 } }
        let x = random(m * max(vh, ff)), w = random(ff * vh)
        var y = [Float](repeating: 0, count: m * max(vh, ff))
        let shapes: [(n: Int, k: Int)] = [(vh, vh), (vh, vh), (vh, vh), (vh, vh), (ff, vh), (vh, ff)]   // (out, in)
        var flopCount = 0
        for shape in shapes { flopCount += 2 * m * shape.n * shape.k }
        let productFlops = Double(flopCount)
        var times: [Double] = []
        // OpenBLAS with its own threads, as it runs alone: the reference our split products chase.
        Kernels.withBLASThreads(Kernels.threadCount) {
            for run in 0...repeats {
                let start = Date()
                for _ in 0..<v.layerCount {
                    for (n, k) in shapes {
                        x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in y.withUnsafeMutableBufferPointer { yp in
                            Kernels.linear(xp.baseAddress!, rows: m, inFeatures: k, weight: wp.baseAddress!, outFeatures: n, into: yp.baseAddress!)
                        } } }
                    }
                }
                if run > 0 { times.append(Date().timeIntervalSince(start)) }
            }
        }
        let gflops = productFlops * Double(v.layerCount) / times.sorted()[times.count / 2] / 1e9
        // All of the encoder's arithmetic per image: patch embedding, the layers' products and attention.
        let s = Double(v.sequenceLength), patches = Double(v.patchCount)
        let attention: Double = 4 * s * s * Double(vh)
        let patchEmbedding: Double = 2 * patches * Double(vh * v.patchValues)
        let layers: Double = Double(v.layerCount) * (productFlops / Double(batch) + attention)
        let perImage = patchEmbedding + layers
        return ("sgemm bound, batch \(batch)", String(format: "%.1f ms/image (%.1f GFLOP/image at %.0f GFLOP/s, sgemm on the encoder's shapes)",
                                                   perImage / gflops / 1e6, perImage / 1e9, gflops))
    }

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
