import Foundation

/// How the next token is chosen from the logits.
public struct SamplingSettings: Sendable, Equatable, Codable {
    /// Argmax (after the repetition penalty); the other settings then do not matter.
    public var greedy: Bool
    /// Logits are divided by this before the softmax; must be > 0 unless greedy.
    public var temperature: Float
    /// Keep only the k most likely tokens; 0 disables.
    public var topK: Int
    /// Keep the smallest set of most likely tokens whose probability reaches p; 1 disables.
    public var topP: Float
    /// Over tokens already seen (prompt and output): positive logits are divided by it,
    /// negative ones multiplied; 1 disables.
    public var repetitionPenalty: Float
    /// Seeds the random generator, so a run with the same seed reproduces.
    public var seed: UInt64

    public init(greedy: Bool = false, temperature: Float = 1, topK: Int = 0, topP: Float = 1,
                repetitionPenalty: Float = 1, seed: UInt64 = 0) {
        self.greedy = greedy
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.repetitionPenalty = repetitionPenalty
        self.seed = seed
    }

    public static let argmax = SamplingSettings(greedy: true)

    /// Upstream's eval defaults: temperature 0.65 (gen2) / 0.7 (gen3), top-p 0.85; gen3 also top-k 50.
    public static func upstreamDefaults(generation: Int, seed: UInt64 = 0) -> SamplingSettings {
        generation >= 3
            ? SamplingSettings(temperature: 0.7, topK: 50, topP: 0.85, seed: seed)
            : SamplingSettings(temperature: 0.65, topP: 0.85, seed: seed)
    }

    /// A message for the user when a setting is out of range, else nil.
    public var problem: String? {
        if !greedy, !(temperature > 0) { return "temperature must be greater than 0 (use --greedy for argmax)" }
        if topK < 0 { return "top-k must be 0 (off) or more" }
        if !(topP > 0 && topP <= 1) { return "top-p must be in (0, 1]" }
        if !(repetitionPenalty > 0) { return "repetition penalty must be greater than 0" }
        return nil
    }
}

/// xoshiro256** seeded through SplitMix64: small, fast and the same on every platform.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var x = seed
        func splitMix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s = (splitMix(), splitMix(), splitMix(), splitMix())
    }

    public mutating func next() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0
        s.3 ^= s.1
        s.1 ^= s.2
        s.0 ^= s.3
        s.2 ^= t
        s.3 = s.3 << 45 | s.3 >> 19
        return result
    }

    /// A uniform value in [0, 1).
    mutating func unit() -> Double { Double(next() >> 11) * 0x1p-53 }
}

/// Chooses tokens: repetition penalty, temperature, top-k, top-p, then a draw (or argmax).
public struct Sampler: Sendable {
    public let settings: SamplingSettings
    private var generator: SeededGenerator

    public init(_ settings: SamplingSettings) {
        self.settings = settings
        generator = SeededGenerator(seed: settings.seed)
    }

    /// The next token given the logits at the last position and the tokens seen so far.
    public mutating func next(logits: [Float], seen: [Int]) -> Int {
        if settings.greedy {
            return Self.argmax(penalized(logits, seen: seen))
        }
        let probabilities = distribution(logits: logits, seen: seen)
        let u = generator.unit()
        var cumulative: Double = 0
        var last = 0
        for (token, p) in probabilities.enumerated() where p > 0 {
            cumulative += Double(p)
            last = token
            if u < cumulative { return token }
        }
        return last   // rounding left the total just under 1
    }

    /// The probabilities the draw uses: `softmax(filter(penalize(logits) / T))`; zero outside
    /// the top-k / top-p sets. (Greedy settings are treated as temperature 1 here.)
    public func distribution(logits: [Float], seen: [Int]) -> [Float] {
        var values = penalized(logits, seen: seen)
        let temperature = settings.greedy ? 1 : settings.temperature
        if temperature != 1 { for i in values.indices { values[i] /= temperature } }
        if settings.topK > 0, settings.topK < values.count {
            // Keep everything at least as large as the k-th largest, as `logits < topk[-1]` masks.
            let threshold = Self.largest(settings.topK, of: values)
            for i in values.indices where values[i] < threshold { values[i] = -.infinity }
        }
        var probabilities = Self.softmax(values)
        if settings.topP < 1 {
            // Descending probability, ties by index, as one integer sort: for p > 0 the bits order
            // like the values, so ~bits ascending is p descending. Zeros stay zero either way.
            var keys: [UInt64] = []
            keys.reserveCapacity(probabilities.count)
            for (index, p) in probabilities.enumerated() where p > 0 {
                keys.append(UInt64(~p.bitPattern) << 32 | UInt64(index))
            }
            keys.sort()
            var cumulative: Float = 0
            var removing = false
            for key in keys {
                let index = Int(key & 0xFFFF_FFFF)
                // A token goes once the ones before it already exceed p (the first always stays).
                if removing { probabilities[index] = 0; continue }
                cumulative += probabilities[index]
                if cumulative > settings.topP { removing = true }
            }
            let total = probabilities.reduce(0, +)
            for i in probabilities.indices { probabilities[i] /= total }
        }
        return probabilities
    }

    func penalized(_ logits: [Float], seen: [Int]) -> [Float] {
        guard settings.repetitionPenalty != 1 else { return logits }
        var values = logits
        for token in Set(seen) where token >= 0 && token < values.count {
            values[token] = values[token] > 0 ? values[token] / settings.repetitionPenalty : values[token] * settings.repetitionPenalty
        }
        return values
    }

    /// The k-th largest of `values` (1-based), by selection in linear time rather than a sort.
    static func largest(_ k: Int, of values: [Float]) -> Float {
        var a = values
        let target = k - 1          // index in descending order
        var low = 0, high = a.count - 1
        while low < high {
            // Three-way partition around the middle value: [> pivot][== pivot][< pivot].
            let pivot = a[low + (high - low) / 2]
            var lt = low, i = low, gt = high
            while i <= gt {
                if a[i] > pivot { a.swapAt(lt, i); lt += 1; i += 1 }
                else if a[i] < pivot { a.swapAt(i, gt); gt -= 1 }
                else { i += 1 }
            }
            if target < lt { high = lt - 1 }
            else if target > gt { low = gt + 1 }
            else { return pivot }
        }
        return a[target]
    }

    static func softmax(_ values: [Float]) -> [Float] {
        let maxValue = values.max() ?? 0
        var out = values.map { $0 == -.infinity ? 0 : expf($0 - maxValue) }
        let total = out.reduce(0, +)
        for i in out.indices { out[i] /= total }
        return out
    }

    static func argmax(_ values: [Float]) -> Int {
        var best = 0
        for i in values.indices where values[i] > values[best] { best = i }
        return best
    }
}
