import Engine
import Foundation
import Testing

/// top-k and top-p choose their tokens by selection and one integer sort (they run once per
/// sequence per step); the sets must be exactly those of sorting the whole vocabulary.
@Suite("Sampling filters over a full vocabulary")
struct SamplingFilterTests {
    /// The filters as written first: sort everything, ties by index.
    static func sortedReference(_ logits: [Float], temperature: Float, topK: Int, topP: Float) -> [Float] {
        var values = logits.map { $0 / temperature }
        if topK > 0, topK < values.count {
            let threshold = values.sorted(by: >)[topK - 1]
            for i in values.indices where values[i] < threshold { values[i] = -.infinity }
        }
        let maxValue = values.max() ?? 0
        var p = values.map { $0 == -.infinity ? 0 : expf($0 - maxValue) }
        let sum = p.reduce(0, +)
        p = p.map { $0 / sum }
        if topP < 1 {
            let order = p.indices.sorted { p[$0] > p[$1] || (p[$0] == p[$1] && $0 < $1) }
            var cumulative: Float = 0
            var removing = false
            for index in order {
                if removing { p[index] = 0; continue }
                cumulative += p[index]
                if cumulative > topP { removing = true }
            }
            let total = p.reduce(0, +)
            p = p.map { $0 / total }
        }
        return p
    }

    @Test(arguments: [(0, Float(0.85)), (50, Float(0.85)), (50, Float(1)), (1, Float(1)), (6399, Float(0.5)), (0, Float(0.02))])
    func filtersKeepTheSameTokensAsSortingEverything(topK: Int, topP: Float) {
        var generator = SeededGenerator(seed: 11)
        for round in 0..<2 {
            // Logits on a coarse grid: many exact ties, including at the top-k and top-p cut-offs.
            let logits = (0..<6400).map { _ in Float(Int(generator.next() % 41) - 20) / Float(4 + round) }
            let settings = SamplingSettings(temperature: 0.7, topK: topK, topP: topP)
            let fast = Sampler(settings).distribution(logits: logits, seen: [])
            let reference = Self.sortedReference(logits, temperature: 0.7, topK: topK, topP: topP)
            #expect(fast == reference)
            #expect(fast.filter { $0 > 0 }.count < 6400 || (topK == 0 && topP == 1))
        }
    }
}
