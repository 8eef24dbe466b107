import Engine
import Foundation
import Testing

/// Logits with a clear order and both signs: token i has logit `values[i]`.
let sampleLogits: [Float] = [2.0, -1.0, 0.5, 3.0, -2.5, 1.0, 0.0, 2.5]

func entropy(_ p: [Float]) -> Double {
    p.reduce(0.0) { $1 > 0 ? $0 - Double($1) * log(Double($1)) : $0 }
}

func softmax(_ values: [Float]) -> [Double] {
    let m = Double(values.max()!)
    let e = values.map { exp(Double($0) - m) }
    let total = e.reduce(0, +)
    return e.map { $0 / total }
}

@Suite("Sampling")
struct SamplingTests {
    @Test func sameSeedSameTokensOtherSeedOtherTokens() {
        let settings = SamplingSettings(temperature: 1.5, seed: 42)
        func draw(_ settings: SamplingSettings) -> [Int] {
            var sampler = Sampler(settings)
            return (0..<64).map { _ in sampler.next(logits: sampleLogits, seen: []) }
        }
        #expect(draw(settings) == draw(settings))
        var other = settings
        other.seed = 43
        #expect(draw(settings) != draw(other))
    }

    @Test func greedyIsArgmaxWhateverTheOtherSettings() {
        var sampler = Sampler(SamplingSettings(greedy: true, temperature: 5, topK: 3, topP: 0.2, seed: 1))
        for _ in 0..<10 { #expect(sampler.next(logits: sampleLogits, seen: []) == 3) }
    }

    @Test func topKOfOneIsGreedy() {
        var sampler = Sampler(SamplingSettings(temperature: 2, topK: 1, seed: 7))
        for _ in 0..<50 { #expect(sampler.next(logits: sampleLogits, seen: []) == 3) }
    }

    @Test func temperatureScalesLogitsBeforeSoftmax() {
        let cold = Sampler(SamplingSettings(temperature: 0.5)).distribution(logits: sampleLogits, seen: [])
        let plain = Sampler(SamplingSettings(temperature: 1)).distribution(logits: sampleLogits, seen: [])
        let hot = Sampler(SamplingSettings(temperature: 2)).distribution(logits: sampleLogits, seen: [])
        #expect(entropy(cold) < entropy(plain) && entropy(plain) < entropy(hot))
        let expected = softmax(sampleLogits.map { $0 / 2 })
        for i in hot.indices { #expect(abs(Double(hot[i]) - expected[i]) < 1e-6) }
    }

    @Test func topKKeepsOnlyTheKMostLikely() {
        let p = Sampler(SamplingSettings(topK: 3)).distribution(logits: sampleLogits, seen: [])
        #expect(Set(p.indices.filter { p[$0] > 0 }) == [0, 3, 7])
        let expected = softmax([2.0, 3.0, 2.5])
        #expect(abs(Double(p[0]) - expected[0]) < 1e-6 && abs(Double(p[3]) - expected[1]) < 1e-6)
    }

    @Test func topPKeepsTheSmallestSetReachingP() {
        let full = softmax(sampleLogits)
        // Descending: 3 (0.442), 7 (0.268), 0 (0.162), 5 (0.060)...; 0.442 + 0.268 = 0.710 < 0.75, so token 0
        // joins, and with it the total passes 0.75.
        let p = Sampler(SamplingSettings(topP: 0.75)).distribution(logits: sampleLogits, seen: [])
        #expect(Set(p.indices.filter { p[$0] > 0 }) == [3, 7, 0])
        let kept = full[3] + full[7] + full[0]
        #expect(abs(Double(p[7]) - full[7] / kept) < 1e-6)
        let tight = Sampler(SamplingSettings(topP: 0.1)).distribution(logits: sampleLogits, seen: [])
        #expect(tight[3] == 1, "the most likely token always stays")
        let justBelow = Sampler(SamplingSettings(topP: 0.7)).distribution(logits: sampleLogits, seen: [])
        #expect(Set(justBelow.indices.filter { justBelow[$0] > 0 }) == [3, 7])
    }

    @Test func repetitionPenaltyDividesPositiveAndMultipliesNegativeSeenLogits() {
        let seen = [3, 4, 3]
        let p = Sampler(SamplingSettings(repetitionPenalty: 2)).distribution(logits: sampleLogits, seen: seen)
        var adjusted = sampleLogits
        adjusted[3] = 3.0 / 2      // positive: divided
        adjusted[4] = -2.5 * 2     // negative: multiplied
        let expected = softmax(adjusted)
        for i in p.indices { #expect(abs(Double(p[i]) - expected[i]) < 1e-6) }
        let unpenalized = Sampler(SamplingSettings()).distribution(logits: sampleLogits, seen: seen)
        #expect(p[3] < unpenalized[3] && p[4] < unpenalized[4])
        var greedy = Sampler(SamplingSettings(greedy: true, repetitionPenalty: 2))
        #expect(greedy.next(logits: sampleLogits, seen: seen) == 7, "greedy sees the penalty too")
    }

    @Test func drawsFollowTheDistribution() {
        let settings = SamplingSettings(temperature: 1, topK: 4, seed: 2024)
        let p = Sampler(settings).distribution(logits: sampleLogits, seen: [])
        var sampler = Sampler(settings)
        var counts = [Int](repeating: 0, count: sampleLogits.count)
        let n = 20000
        for _ in 0..<n { counts[sampler.next(logits: sampleLogits, seen: [])] += 1 }
        for i in counts.indices {
            let expected = Double(p[i]) * Double(n)
            #expect(abs(Double(counts[i]) - expected) <= 5 * (expected + 1).squareRoot(), "token \(i): \(counts[i]) vs \(expected)")
        }
    }

    @Test func outOfRangeSettingsAreNamed() {
        #expect(SamplingSettings(temperature: 0).problem != nil)
        #expect(SamplingSettings(greedy: true, temperature: 0).problem == nil)
        #expect(SamplingSettings(topP: 0).problem != nil)
        #expect(SamplingSettings(topK: -1).problem != nil)
        #expect(SamplingSettings(repetitionPenalty: 0).problem != nil)
        #expect(SamplingSettings.upstreamDefaults(generation: 2).temperature == 0.65)
        #expect(SamplingSettings.upstreamDefaults(generation: 3).topK == 50)
    }
}
