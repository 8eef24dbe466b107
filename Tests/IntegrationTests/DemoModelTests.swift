import Foundation
import Store
import Testing
import TestSupport

/// Issue 6, point 3: the shipped demo model (`models/minimind-demo.gguf`) behind the real daemon gives
/// answers that mean something. The three sample pictures are held-out scenes (never seen in training)
/// whose true contents come from the scene generator (`models/README.md`), not from the model.
@Suite struct DemoModelThroughTheDaemon {
    static let model = Fixtures.packageRoot.appendingPathComponent("models/minimind-demo.gguf")
    static let samples = Fixtures.packageRoot.appendingPathComponent("models/samples")

    /// Picture, then the colours and shapes it holds in reading order (left before right, top before bottom).
    static let scenes: [(file: String, colours: [String], shapes: [String])] = [
        ("scene-1.jpg", ["orange"], ["triangle"]),
        ("scene-2.jpg", ["yellow", "blue"], ["triangle", "circle"]),
        ("scene-3.jpg", ["black"], ["star"]),
    ]
    static let colourWords = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white"]
    static let shapeWords = ["circle", "square", "triangle", "star"]

    /// The words of `vocabulary` in `text`, in the order they occur.
    static func mentioned(_ vocabulary: [String], in text: String) -> [String] {
        let words = text.lowercased().split(whereSeparator: { !$0.isLetter }).map(String.init)
        return words.filter { vocabulary.contains($0) }
    }

    @Test func describesEachSamplePictureWithItsColoursAndShapes() async throws {
        let root = try spoolFolder()
        for (index, scene) in Self.scenes.enumerated() {
            try submitDirectoryJob("sample-\(index + 1)", in: root, question: "Describe the image.",
                                   images: [Self.samples.appendingPathComponent(scene.file)], maxTokens: 48)
        }
        let daemon = try await ServeProcess.start(root: root, model: Self.model.path)
        let store = try ResultStore(path: root.appendingPathComponent("results.sqlite").path)
        try await pollUntil("three answers from the demo model", timeout: .seconds(60)) {
            try store.records(JobQuery(status: .done)).count + store.records(JobQuery(status: .failed)).count == 3
                || !daemon.isRunning
        }
        #expect(try await daemon.terminate() == 0, "\(daemon.log)")

        for (index, scene) in Self.scenes.enumerated() {
            let row = try #require(try store.record(id: "sample-\(index + 1)"), "no row for \(scene.file)")
            #expect(row.status == .done, "\(scene.file): \(row.error ?? "")")
            #expect(row.model == "minimind-demo.gguf")
            let answer = row.answer ?? ""
            #expect(Self.mentioned(Self.colourWords, in: answer) == scene.colours, "\(scene.file): \(answer)")
            #expect(Self.mentioned(Self.shapeWords, in: answer) == scene.shapes, "\(scene.file): \(answer)")
        }
    }
}
