import Crypto
import Dispatch
import Engine
import Foundation
import Imaging
import Logging
import Model
import Spool
import Store

/// The daemon's `JobExecutor` over the inference engine: continuous batching of real answers.
///
/// `admit` builds each new job's prompt, takes its image embeddings from the cache where it can,
/// runs every other image of the whole admission through the vision encoder in one batched pass
/// (an image appearing twice is encoded once), stores those embeddings, and prefills each job.
/// `step` runs one batched decode step over every running sequence; finished ones leave.
/// A job that cannot run fails alone, with a reason the submitter can act on.
public final class EngineJobExecutor: JobExecutor {
    public let modelName: String
    public let model: ChatModel
    /// Keys the embedding cache with the image's SHA-256: see `visionFingerprint`.
    public let fingerprint: String
    private let engine: Engine
    private let cache: (any VisionEmbeddingCache)?
    private let decodeOptions: DecodeOptions
    private let defaultMaxTokens: Int
    private let logger: Logger

    private final class RunningJob {
        let id: String
        let sequence: GenerationSequence
        let visionMs: Double
        let prefillMs: Double
        let cacheHits: Int
        var decodeMs = 0.0

        init(id: String, sequence: GenerationSequence, visionMs: Double, prefillMs: Double, cacheHits: Int) {
            self.id = id
            self.sequence = sequence
            self.visionMs = visionMs
            self.prefillMs = prefillMs
            self.cacheHits = cacheHits
        }
    }

    /// In admission order, so that a batch is decoded in a reproducible order.
    private var running: [RunningJob] = []

    /// - Parameters:
    ///   - cache: where embeddings are looked up and stored; open it with `fingerprint` (nil: encode every image).
    ///   - defaultMaxTokens: the answer length limit of a job that sets no `max_tokens` (ask's default).
    public init(model: ChatModel, modelName: String, engine: Engine, fingerprint: String,
                cache: (any VisionEmbeddingCache)?, defaultMaxTokens: Int = 512,
                decodeOptions: DecodeOptions = DecodeOptions(), logger: Logger = Logger(label: "minimindv.engine")) {
        self.model = model
        self.modelName = modelName
        self.engine = engine
        self.fingerprint = fingerprint
        self.cache = cache
        self.defaultMaxTokens = max(1, defaultMaxTokens)
        self.decodeOptions = decodeOptions
        self.logger = logger
    }

    /// Jobs in the batch now.
    public var runningCount: Int { running.count }

    /// SHA-256 over everything that decides an image's embedding: the vision encoder's and the
    /// projector's tensors (names, types, shapes, bytes), their configuration, the preprocessing
    /// settings and whether EXIF orientation is applied. Two model files with the same vision tower
    /// share cache entries; any change to it starts afresh.
    public static func visionFingerprint(of model: ChatModel, decodeOptions: DecodeOptions = DecodeOptions()) -> String {
        var hash = SHA256()
        func add(_ text: String) { hash.update(data: Data((text + "\n").utf8)) }
        add("minimindv vision embedding 1")
        add("encoder: \(model.network.visionConfig.map { String(describing: $0) } ?? "none")")
        add("tokens: \(model.network.config.imageTokenCount) x \(model.network.config.hiddenSize)")
        add("preprocess: \(model.preprocessor.map { String(describing: $0.settings) } ?? "none")")
        add("exif: \(decodeOptions.appliesExifOrientation)")
        let tensors = model.file.tensors.filter { $0.name.hasPrefix("v.") || $0.name.hasPrefix("mm.") }
        for tensor in tensors.sorted(by: { $0.name < $1.name }) {
            add("\(tensor.name) \(tensor.dtype.rawValue) \(tensor.shape)")
            tensor.bytes.withUnsafeBytes { hash.update(bufferPointer: $0) }
        }
        return hash.finalize().map { String(format: "%02x", $0) }.joined()
    }

    // MARK: - JobExecutor

    public func admit(_ jobs: [JobRequest]) -> [JobOutcome] {
        var outcomes: [JobOutcome] = []
        var admissions: [Admission] = []
        var batch = EncoderBatch()
        for job in jobs {
            switch prepare(job, batch: &batch) {
            case .success(let admission): admissions.append(admission)
            case .failure(let failure): outcomes.append(.failed(id: job.id, reason: failure.reason))
            }
        }

        // Every uncached image of this admission in one encoder pass.
        var encoded: [[Float]] = []
        var encoderFailure: String?
        var encoderMs = 0.0
        if !batch.pixels.isEmpty {
            let start = DispatchTime.now()
            do {
                encoded = try engine.encodeImages(pixels: batch.pixels, count: batch.count)
                encoderMs = milliseconds(since: start)
                for (sha256, values) in zip(batch.order, encoded) {
                    cache?.store(VisionEmbedding(shape: [model.network.config.imageTokenCount, model.network.config.hiddenSize],
                                                 values: values), forImage: sha256)
                }
                logger.debug("encoded images", metadata: ["images": "\(batch.count)", "ms": "\(Int(encoderMs))"])
            } catch {
                encoderFailure = "the vision encoder failed on this batch of images: \(error)"
                logger.error("vision encoder failed", metadata: ["images": "\(batch.count)", "error": "\(error)"])
            }
        }

        var ready: [(admission: Admission, images: [[Float]], visionMs: Double)] = []
        for admission in admissions {
            let job = admission.job
            var images: [[Float]] = []
            var ownEncoded = 0
            for source in admission.images {
                switch source {
                case .cached(let values):
                    images.append(values)
                case .encoded(let index, let own):
                    guard encoderFailure == nil else { break }
                    images.append(encoded[index])
                    if own { ownEncoded += 1 }
                }
            }
            if let encoderFailure, images.count < admission.images.count {
                outcomes.append(.failed(id: job.id, reason: encoderFailure))
                continue
            }
            // This job's share of the batched pass, by the images encoded for it.
            let visionMs = admission.preprocessMs + (batch.count > 0 ? encoderMs * Double(ownEncoded) / Double(batch.count) : 0)
            ready.append((admission, images, visionMs))
        }

        for (job, result) in zip(ready, prefill(ready.map { ($0.admission, $0.images) })) {
            switch result {
            case .failure(let failure):
                outcomes.append(.failed(id: job.admission.job.id, reason: failure.reason))
            case .success(let (sequence, prefillMs)):
                let running = RunningJob(id: job.admission.job.id, sequence: sequence, visionMs: job.visionMs,
                                         prefillMs: prefillMs, cacheHits: job.admission.cacheHits)
                if sequence.isFinished {
                    outcomes.append(answer(running))
                } else {
                    self.running.append(running)
                }
            }
        }
        return outcomes
    }

    /// Prefills the admitted jobs in one decoder pass (each weight read once for all of them), each
    /// job charged a share of its time by prompt length. If the pass fails, each job is tried
    /// alone, so that one job's bad prompt fails that job only.
    private func prefill(_ jobs: [(admission: Admission, images: [[Float]])]) -> [Result<(GenerationSequence, Double), JobFailure>] {
        func request(_ job: (admission: Admission, images: [[Float]])) -> Engine.SequenceRequest {
            Engine.SequenceRequest(prompt: job.admission.prompt, images: job.images,
                                   imageKeys: job.admission.job.images.map(\.sha256),
                                   sampling: job.admission.sampling, stop: job.admission.stop)
        }
        guard !jobs.isEmpty else { return [] }
        let start = DispatchTime.now()
        // Together only while the pass's feed-forward activations stay within a core's L2 (~1.25 MiB):
        // measured, 8 prompts in one pass were 20 % faster per prompt on the demo model (93-token
        // prompts, FFN 448) but 50 % slower on MiniMind2-V (228 tokens, FFN 2048), where the larger
        // buffers fall out of cache and the packed weights no longer need amortising.
        let rows = jobs.reduce(0) { $0 + $1.admission.prompt.count }
        let fitsInCache = rows * model.network.config.feedForwardSize * MemoryLayout<Float>.size <= 1_310_720
        if jobs.count > 1, fitsInCache, let sequences = try? engine.start(jobs.map(request)) {
            let elapsed = milliseconds(since: start)
            let tokens = Double(jobs.reduce(0) { $0 + $1.admission.prompt.count })
            return sequences.map { sequence in
                .success((sequence, elapsed * Double(sequence.promptTokens.count) / tokens))
            }
        }
        return jobs.map { job in
            let start = DispatchTime.now()
            do {
                let sequence = try engine.start([request(job)])[0]
                return .success((sequence, milliseconds(since: start)))
            } catch {
                return .failure(JobFailure(reason: "cannot run the prompt: \(error)"))
            }
        }
    }

    public func step() -> [JobOutcome] {
        guard !running.isEmpty else { return [] }
        let start = DispatchTime.now()
        do {
            try engine.step(running.map(\.sequence))
        } catch {
            // Not the fault of one job that we can tell: the batch fails, each with the reason.
            let reason = "decoding failed: \(error)"
            logger.error("decode step failed", metadata: ["jobs": "\(running.count)", "error": "\(error)"])
            let failed = running.map { JobOutcome.failed(id: $0.id, reason: reason) }
            running.removeAll()
            return failed
        }
        let elapsed = milliseconds(since: start)
        var outcomes: [JobOutcome] = []
        for job in running {
            job.decodeMs += elapsed
            if job.sequence.isFinished { outcomes.append(answer(job)) }
        }
        running.removeAll { $0.sequence.isFinished }
        return outcomes
    }

    public func abandon(_ id: String) {
        running.removeAll { $0.id == id }
    }

    // MARK: - Admission

    private enum ImageSource {
        case cached([Float])
        /// Row `index` of the encoder pass; `own` when this job caused it (not a repeat of an earlier job's image).
        case encoded(index: Int, own: Bool)
    }

    private struct Admission {
        let job: JobRequest
        let prompt: [Int]
        let sampling: SamplingSettings
        let stop: StopConditions
        let images: [ImageSource]
        let cacheHits: Int
        let preprocessMs: Double
    }

    /// The images of one admission that go through the encoder, each once.
    private struct EncoderBatch {
        var pixels: [Float] = []
        var order: [String] = []
        var index: [String: Int] = [:]
        var count: Int { order.count }
    }

    private struct JobFailure: Error {
        let reason: String
    }

    /// Checks a job and finds its images (cache, this admission's encoder batch, or decoded now).
    private func prepare(_ job: JobRequest, batch: inout EncoderBatch) -> Result<Admission, JobFailure> {
        if !job.images.isEmpty && model.preprocessor == nil {
            return .failure(JobFailure(reason: "the model \(modelName) has no vision encoder: submit the question without images"))
        }
        let prompt: [Int]
        do {
            prompt = try model.prompt(question: job.question, system: job.system, imageCount: job.images.count).ids
        } catch {
            return .failure(JobFailure(reason: "cannot build the prompt: \(error)"))
        }
        let context = model.contextLength
        guard prompt.count < context else {
            return .failure(JobFailure(reason: "the prompt is \(prompt.count) tokens but the model's context holds \(context): "
                + "shorten the question or system prompt, or send fewer images"))
        }
        let sampling = samplingSettings(for: job)
        if let problem = sampling.problem { return .failure(JobFailure(reason: problem)) }
        let maxTokens = min(job.parameters.maxTokens ?? defaultMaxTokens, context - prompt.count)
        let stop = StopConditions(maxNewTokens: maxTokens, stopTokenIDs: [model.endOfTurnID])

        let width = model.network.config.imageTokenCount * model.network.config.hiddenSize
        var sources: [ImageSource] = []
        var hits = 0
        var newPixels: [(sha256: String, values: [Float])] = []
        let start = DispatchTime.now()
        for image in job.images {
            if let index = batch.index[image.sha256] {
                sources.append(.encoded(index: index, own: false))
                hits += 1
            } else if let pending = newPixels.firstIndex(where: { $0.sha256 == image.sha256 }) {
                sources.append(.encoded(index: batch.count + pending, own: false))
                hits += 1
            } else if let cached = cache?.embedding(forImage: image.sha256), cached.values.count == width {
                sources.append(.cached(cached.values))
                hits += 1
            } else {
                let pixels: [Float]
                do {
                    pixels = try model.pixelValues(of: try ImageDecoder.decode(image.bytes, options: decodeOptions))
                } catch {
                    return .failure(JobFailure(reason: "image \"\(image.name)\": \(error)"))
                }
                sources.append(.encoded(index: batch.count + newPixels.count, own: true))
                newPixels.append((image.sha256, pixels))
            }
        }
        // Only a job whose images all decoded adds them to the pass.
        for (sha256, pixels) in newPixels {
            batch.index[sha256] = batch.count
            batch.order.append(sha256)
            batch.pixels += pixels
        }
        return .success(Admission(job: job, prompt: prompt, sampling: sampling, stop: stop, images: sources,
                                  cacheHits: hits, preprocessMs: milliseconds(since: start)))
    }

    /// The job's settings over upstream's defaults for the model's generation. A temperature of 0 means greedy.
    /// Without a seed, one is derived from the job id, so that a job run again after a crash gives the same answer.
    private func samplingSettings(for job: JobRequest) -> SamplingSettings {
        let parameters = job.parameters
        var settings = model.defaultSampling(seed: parameters.seed ?? Self.seed(forJob: job.id))
        if let temperature = parameters.temperature {
            if temperature == 0 { settings.greedy = true } else { settings.temperature = Float(temperature) }
        }
        if let topP = parameters.topP { settings.topP = Float(topP) }
        if let topK = parameters.topK { settings.topK = topK }
        if let penalty = parameters.repetitionPenalty { settings.repetitionPenalty = Float(penalty) }
        return settings
    }

    /// FNV-1a of the id: stable across runs and machines.
    static func seed(forJob id: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in id.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return hash
    }

    private func answer(_ job: RunningJob) -> JobOutcome {
        let tokens = job.sequence.outputTokens
        return .answered(id: job.id, JobAnswer(
            text: model.text(of: tokens), promptTokens: job.sequence.promptTokens.count, outputTokens: tokens.count,
            visionMs: job.visionMs, prefillMs: job.prefillMs, decodeMs: job.decodeMs, cacheHits: job.cacheHits,
            reusedPromptTokens: job.sequence.reusedPositions))
    }
}

private func milliseconds(since start: DispatchTime) -> Double {
    Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e6
}
