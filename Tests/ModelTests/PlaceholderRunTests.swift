import Model
import Testing

@Suite("Placeholder runs")
struct PlaceholderRunTests {
    @Test func imagesGoToWindowsOfExactlyTheImageTokenCountInOrder() {
        let p = 34
        // text, image, newline, image, text with a lone "@", then two images back to back.
        let tokens = [5, 6] + Array(repeating: p, count: 4) + [10] + Array(repeating: p, count: 4)
            + [7, p, 8] + Array(repeating: p, count: 8) + [9]
        let runs = PlaceholderRuns(tokens: tokens, placeholder: p, length: 4)
        #expect(runs.starts == [2, 7, 14, 18])
    }

    @Test func shortRunsAreText() {
        #expect(PlaceholderRuns(tokens: [34, 34, 34, 1, 34], placeholder: 34, length: 4).starts.isEmpty)
    }
}
