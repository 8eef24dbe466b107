import Foundation
import Kernels
import Model

/// Runs a model: image encoding, prefill and batched decode steps over many sequences.
///
/// Not thread-safe: one caller drives it (the CLI, or the daemon's loop); the kernels use the
/// OpenBLAS threads.
public final class Engine: @unchecked Sendable {
    public let model: VisionLanguageModel

    /// How new sequences store their keys and values.
    public let cachePrecision: KVCache.Precision

    /// Prompts whose beginnings new prompts may reuse (nil: every prompt is prefilled in full).
    private let prefixes: PromptPrefixes?

    /// - Parameters:
    ///   - threads: sets the OpenBLAS threads (process-wide; < 1 = every core); nil leaves them
    ///     as they are (OpenBLAS starts with one per core).
    ///   - cachePrecision: nil takes the model file's (`Decoder.defaultCachePrecision`); a precision
    ///     that cannot hold the model's heads (int8 beyond 128 values a head) is refused.
    ///   - prefixBytes: memory for the keys and values of recent prompts, so that a prompt
    ///     beginning like one of them (same image, same system prompt) prefills only the rest; 0 keeps none.
    public init(model: VisionLanguageModel, threads: Int? = nil, cachePrecision: KVCache.Precision? = nil,
                prefixBytes: Int = 0) throws(ModelError) {
        let precision = cachePrecision ?? model.decoder.defaultCachePrecision
        let headDim = model.config.headDim
        guard precision.holds(headDim: headDim) else {
            throw ModelError(.unsupported, "the \(precision) KV cache needs heads of a multiple of 4 values, at most 128; "
                             + "this model's have \(headDim): use --kv-cache f16")
        }
        self.model = model
        self.cachePrecision = precision
        prefixes = prefixBytes > 0
            ? PromptPrefixes(byteLimit: prefixBytes, placeholder: model.config.imageTokenID, runLength: model.config.imageTokenCount)
            : nil
        if let threads { Kernels.setThreadCount(threads) }
        Kernels.keepFreedActivationMemory()
    }

    /// Prompts held for reuse, and their bytes.
    public var rememberedPrompts: (count: Int, bytes: Int) { (prefixes?.count ?? 0, prefixes?.byteCount ?? 0) }

    public var endOfTurnID: Int { model.config.endOfTurnID }

    /// Encodes a batch of preprocessed images (`[images, 3, size, size]`) in one pass into the
    /// projected features that replace each image's placeholder run.
    public func encodeImages(pixels: [Float], count: Int) throws(ModelError) -> [[Float]] {
        guard count > 0 else { return [] }
        return try model.imageEmbeddings(pixels: pixels, images: count)
    }

    /// What a new sequence starts from: its prompt, the features of its images (in placeholder
    /// order), how it samples and when it stops.
    public struct SequenceRequest: Sendable {
        public var prompt: [Int]
        public var images: [[Float]]
        /// What identifies each image (e.g. the SHA-256 of its file), for reusing the keys and values
        /// of an earlier prompt with the same image; empty: a prompt with images is not reused.
        public var imageKeys: [String]
        public var sampling: SamplingSettings
        public var stop: StopConditions

        public init(prompt: [Int], images: [[Float]] = [], imageKeys: [String] = [], sampling: SamplingSettings,
                    stop: StopConditions) {
            self.prompt = prompt
            self.images = images
            self.imageKeys = imageKeys
            self.sampling = sampling
            self.stop = stop
        }

        /// Whether its keys and values may be reused by, or reuse, another prompt's.
        var isReusable: Bool { imageKeys.count == images.count }
    }

    /// Starts a sequence: embeds the prompt (images into their placeholder runs, in order) and
    /// runs it through the decoder, leaving the logits for the first new token.
    public func start(prompt: [Int], images: [[Float]] = [], sampling: SamplingSettings,
                      stop: StopConditions) throws(ModelError) -> GenerationSequence {
        try start([SequenceRequest(prompt: prompt, images: images, sampling: sampling, stop: stop)])[0]
    }

    /// Starts several sequences with one prefill pass: their prompts go through the decoder as
    /// one batch of rows (each into its own KV cache), so every weight is read once for all of
    /// them. The result is the same as starting each alone. All requests are checked before any
    /// work: one bad request throws and starts none.
    public func start(_ requests: [SequenceRequest]) throws(ModelError) -> [GenerationSequence] {
        var inputs: [(cache: KVCache, embeddings: [Float])] = []
        let hidden = model.config.hiddenSize
        for request in requests {
            guard !request.prompt.isEmpty else { throw ModelError(.invalidInput, "empty prompt") }
            if let problem = request.sampling.problem { throw ModelError(.invalidInput, problem) }
            let embeddings = try model.promptEmbeddings(tokens: request.prompt, images: request.images)
            let capacity = request.prompt.count + max(request.stop.maxNewTokens, 0) + 1
            // At least the last position runs, for the logits of the first new token.
            if request.isReusable,
               let (source, length) = prefixes?.longestPrefix(of: request.prompt, imageKeys: request.imageKeys,
                                                               limit: request.prompt.count - 1),
               length > 0 {
                inputs.append((source.copy(prefix: length, capacity: capacity), Array(embeddings[(length * hidden)...])))
            } else {
                inputs.append((model.decoder.makeCache(capacity: capacity, precision: cachePrecision), embeddings))
            }
        }
        guard !inputs.isEmpty else { return [] }
        let reused = inputs.map(\.cache.count)   // positions copied from earlier prompts
        let logits = try model.decoder.forward(inputs)
        if let prefixes {
            for (request, input) in zip(requests, inputs) where request.isReusable {
                prefixes.remember(request.prompt, imageKeys: request.imageKeys, cache: input.cache)
            }
        }
        return zip(requests, zip(inputs, zip(logits, reused))).map { request, pair in
            GenerationSequence(promptTokens: request.prompt, cache: pair.0.cache, sampler: Sampler(request.sampling),
                               stop: request.stop, logits: pair.1.0, reusedPositions: pair.1.1)
        }
    }

    /// One decode step for every unfinished sequence: draw each one's next token, then run all
    /// the new tokens through the decoder in one batch. Sequences may be at different positions
    /// and may join or leave between steps.
    /// - Returns: per sequence, the token added to its answer this step (nil if none).
    @discardableResult
    public func step(_ sequences: [GenerationSequence]) throws(ModelError) -> [Int?] {
        let emitted = sequences.map { $0.chooseNext() }
        var batch: [(GenerationSequence, Int)] = []
        for (sequence, token) in zip(sequences, emitted) {
            if let token, !sequence.isFinished { batch.append((sequence, token)) }
        }
        if !batch.isEmpty {
            var inputs: [(cache: KVCache, embeddings: [Float])] = []
            for (sequence, token) in batch { inputs.append((sequence.cache, try model.decoder.embed([token]))) }
            let logits = try model.decoder.forward(inputs)
            for ((sequence, _), row) in zip(batch, logits) { sequence.nextLogits = row }
        }
        return emitted
    }

    /// Answers one prompt, calling `onToken` with each answer token as it is produced.
    public func generate(
        prompt: [Int], images: [[Float]] = [], sampling: SamplingSettings, stop: StopConditions,
        onToken: (Int) -> Void = { _ in }
    ) throws(ModelError) -> Generation {
        let prefillStart = DispatchTime.now()
        let sequence = try start(prompt: prompt, images: images, sampling: sampling, stop: stop)
        let firstLogits = sequence.nextLogits
        let prefillSeconds = seconds(since: prefillStart)
        let decodeStart = DispatchTime.now()
        while !sequence.isFinished {
            if let token = try step([sequence])[0] { onToken(token) }
        }
        return Generation(promptTokens: prompt, outputTokens: sequence.outputTokens,
                          finishReason: sequence.finishReason ?? .maxTokens, firstLogits: firstLogits,
                          prefillSeconds: prefillSeconds, decodeSeconds: seconds(since: decodeStart))
    }
}

/// A finished answer and its timings.
public struct Generation: Sendable {
    public var promptTokens: [Int]
    public var outputTokens: [Int]
    public var finishReason: FinishReason
    /// Logits at the last prompt position.
    public var firstLogits: [Float]
    public var prefillSeconds: Double
    public var decodeSeconds: Double

    /// Answer tokens per second of decoding (the prefill not counted).
    public var tokensPerSecond: Double {
        decodeSeconds > 0 ? Double(outputTokens.count) / decodeSeconds : 0
    }
}

func seconds(since start: DispatchTime) -> Double {
    Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
}
