import Model

/// Why a sequence stopped.
public enum FinishReason: String, Sendable, Codable {
    /// The model produced the end-of-turn token.
    case endOfTurn = "end_of_turn"
    /// The output reached its token limit.
    case maxTokens = "max_tokens"
}

/// When a sequence stops.
public struct StopConditions: Sendable, Equatable {
    public var maxNewTokens: Int
    /// Tokens that end the answer (not included in the output); empty to run to the limit.
    public var stopTokenIDs: Set<Int>

    public init(maxNewTokens: Int, stopTokenIDs: Set<Int>) {
        self.maxNewTokens = maxNewTokens
        self.stopTokenIDs = stopTokenIDs
    }
}

/// One prompt being answered: its tokens, its KV cache, its sampler and the logits for its
/// next token. Sequences of different lengths advance together in `Engine.step`.
public final class GenerationSequence: @unchecked Sendable {
    public let promptTokens: [Int]
    public private(set) var outputTokens: [Int] = []
    public private(set) var finishReason: FinishReason?
    public let stop: StopConditions
    let cache: KVCache
    var sampler: Sampler
    /// Logits at the last position fed so far: what the next token is drawn from.
    public internal(set) var nextLogits: [Float]
    /// Prompt positions whose keys and values came from an earlier prompt instead of prefill.
    public let reusedPositions: Int

    init(promptTokens: [Int], cache: KVCache, sampler: Sampler, stop: StopConditions, logits: [Float],
         reusedPositions: Int = 0) {
        self.promptTokens = promptTokens
        self.reusedPositions = reusedPositions
        self.cache = cache
        self.sampler = sampler
        self.stop = stop
        nextLogits = logits
        if stop.maxNewTokens <= 0 { finishReason = .maxTokens }
    }

    public var isFinished: Bool { finishReason != nil }
    /// Positions held in the KV cache.
    public var position: Int { cache.count }
    public var cacheBytes: Int { cache.byteCount }

    /// Draws the next token; returns it if it belongs to the answer (nil when it stops it).
    func chooseNext() -> Int? {
        guard finishReason == nil else { return nil }
        let token = sampler.next(logits: nextLogits, seen: promptTokens + outputTokens)
        if stop.stopTokenIDs.contains(token) {
            finishReason = .endOfTurn
            return nil
        }
        outputTokens.append(token)
        if outputTokens.count >= stop.maxNewTokens { finishReason = .maxTokens }
        return token
    }
}
