import Formats
import Model
import Testing
import ModelFixtureSupport
import TestSupport

/// A model file with one tensor taken out or one metadata value replaced.
struct AlteredModelFile: ModelFile {
    let base: GGUFFile
    var removedTensor: String?
    var metadata: [String: MetadataValue] = [:]

    var sourceDescription: String { base.sourceDescription }
    func metadataValue(_ key: String) -> MetadataValue? { metadata[key] ?? base.metadataValue(key) }
    func tensor(named name: String) -> Tensor? { name == removedTensor ? nil : base.tensor(named: name) }
}

@Suite("Loading model files")
struct LoadingTests {
    func gguf() throws -> GGUFFile {
        _ = try ModelFixtures.model(.gen3)
        return try GGUFFile(path: try ConvertedFixture.path(
            name: "gen3", checkpoint: ModelFixtures.Variant.gen3.checkpoint, vision: ModelFixtures.Variant.gen3.visionFolder,
            tokenizer: Fixtures.generation("gen3").appendingPathComponent("tiny"), type: .f32))
    }

    @Test func aMissingTensorIsNamed() throws {
        let file = AlteredModelFile(base: try gguf(), removedTensor: TensorName.attentionKNorm(1))
        let error = #expect(throws: ModelError.self) { try VisionLanguageModel(file: file) }
        #expect(error?.message.contains("blk.1.attn_k_norm.weight") == true)
    }

    @Test func aShapeThatContradictsTheMetadataIsNamed() throws {
        let file = AlteredModelFile(base: try gguf(), metadata: [ModelKey.feedForwardLength: .integer(128)])
        let error = #expect(throws: ModelError.self) { try VisionLanguageModel(file: file) }
        #expect(error?.message.contains("blk.0.ffn_gate.weight") == true)
    }

    @Test func preprocessingAndPlaceholderComeFromTheFile() throws {
        let file = try gguf()
        let settings = try file.preprocessSettings()
        #expect(settings.resize == .exact(.init(height: 256, width: 256)))
        #expect(settings.resample == .bilinear && settings.centerCrop == nil && settings.rescaleFactor == 1.0 / 255.0)
        #expect(try file.imagePlaceholder() == .minimind3)
    }
}
