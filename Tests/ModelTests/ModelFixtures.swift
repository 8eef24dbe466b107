import Conversion
import Foundation
import Model
import ModelFixtureSupport
import TestSupport

/// The upstream fixtures (`shared/minimind/fixtures/<gen>/tiny`) and our MoE fixtures
/// (`Tests/Data/model/<gen>-moe`), converted once per test process into temporary GGUF files.
enum ModelFixtures {
    enum Variant: String, CaseIterable, CustomStringConvertible, Sendable {
        case gen2, gen3, gen2MoE = "gen2-moe", gen3MoE = "gen3-moe"
        var description: String { rawValue }
        var generation: String { rawValue.hasPrefix("gen2") ? "gen2" : "gen3" }
        var isMoE: Bool { rawValue.hasSuffix("moe") }

        var checkpoint: URL {
            isMoE ? Fixtures.packageRoot.appendingPathComponent("Tests/Data/model/\(rawValue)/sft_vlm_32_moe.pth")
                : Fixtures.generation(generation).appendingPathComponent("tiny/sft_vlm_64.pth")
        }
        var visionFolder: URL {
            Fixtures.generation(generation).appendingPathComponent(generation == "gen2" ? "clip-vit-base-patch16" : "siglip2-base-p32-256-ve")
        }
        /// Where the expected outputs live (`cases/<case>/`, `images/<image>/vision_proj.npy`).
        var referenceFolder: URL {
            isMoE ? Fixtures.packageRoot.appendingPathComponent("Tests/Data/model/\(rawValue)")
                : Fixtures.generation(generation).appendingPathComponent("tiny/ref")
        }
    }

    static let cases = ["img1", "img2", "text", "multi"]

    private static let lock = NSLock()
    nonisolated(unsafe) private static var models: [String: VisionLanguageModel] = [:]

    /// The fixture converted with `--type type` and loaded.
    static func model(_ variant: Variant, type: OutputType = .f32) throws -> VisionLanguageModel {
        try lock.withLock {
            let key = "\(variant.rawValue)-\(type.rawValue)"
            if let model = models[key] { return model }
            let output = try ConvertedFixture.path(
                name: variant.rawValue, checkpoint: variant.checkpoint, vision: variant.visionFolder,
                tokenizer: Fixtures.generation(variant.generation).appendingPathComponent("tiny"), type: type)
            let model = try VisionLanguageModel(path: output)
            models[key] = model
            return model
        }
    }

    /// Images of a case, in prompt order, from the upstream manifest.
    static func images(of caseName: String, _ variant: Variant) throws -> [String] {
        let url = Fixtures.generation(variant.generation).appendingPathComponent("tiny/manifest.json")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any]
        let cases = json?["cases"] as? [String: Any]
        let entry = cases?[caseName] as? [String: Any]
        return entry?["images"] as? [String] ?? []
    }

    static func imageNames(_ variant: Variant) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: Fixtures.generation(variant.generation).appendingPathComponent("ref-images").path).sorted()
    }

    /// The processor's `pixel_values.npy` of one image, `[3, size, size]`.
    static func pixels(_ image: String, _ variant: Variant) throws -> [Float] {
        try NPYArray(contentsOf: Fixtures.generation(variant.generation).appendingPathComponent("ref-images/\(image)/pixel_values.npy")).floats
    }

    static func reference(_ variant: Variant, _ path: String) throws -> NPYArray {
        try NPYArray(contentsOf: variant.referenceFolder.appendingPathComponent(path))
    }

    static func upstreamVisionFeatures(_ image: String, _ variant: Variant) throws -> [Float] {
        try NPYArray(contentsOf: Fixtures.generation(variant.generation).appendingPathComponent("ref-images/\(image)/vision_raw.npy")).floats
    }

    static func promptIDs(_ caseName: String, _ variant: Variant) throws -> [Int] {
        try NPYArray(contentsOf: Fixtures.generation(variant.generation).appendingPathComponent("tiny/ref/cases/\(caseName)/input_ids.npy")).ints
    }

    /// Prompt embeddings of a case with its images encoded in one batch.
    static func promptEmbeddings(_ caseName: String, _ variant: Variant, model: VisionLanguageModel) throws -> (ids: [Int], embeddings: [Float]) {
        let ids = try promptIDs(caseName, variant)
        let names = try images(of: caseName, variant)
        var features: [[Float]] = []
        if !names.isEmpty {
            let pixels = try names.flatMap { try Self.pixels($0, variant) }
            features = try model.imageEmbeddings(pixels: pixels, images: names.count)
        }
        return (ids, try model.promptEmbeddings(tokens: ids, images: features))
    }
}

func argmax(_ values: [Float]) -> Int {
    var best = 0
    for i in values.indices where values[i] > values[best] { best = i }
    return best
}
