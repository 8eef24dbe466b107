import Formats
import Kernels

/// A MiniMind-V model: vision encoder, projector and decoder, loaded from a model file.
public final class VisionLanguageModel: @unchecked Sendable {
    public let decoder: Decoder
    /// nil for a text-only model file.
    public let visionEncoder: VisionEncoder?
    public let projector: Projector?
    public var config: DecoderConfig { decoder.config }
    public var visionConfig: VisionConfig? { visionEncoder?.config }

    public init(file: any ModelFile) throws(ModelError) {
        let loader = WeightLoader(file: file)
        let decoderConfig = try DecoderConfig(file)
        decoder = try Decoder(loader, config: decoderConfig)
        if let visionConfig = try VisionConfig(file) {
            guard visionConfig.patchCount == decoderConfig.imageTokenCount else {
                throw ModelError(.invalidModel, "\(file.sourceDescription): the encoder yields \(visionConfig.patchCount) patches "
                    + "but prompts carry \(decoderConfig.imageTokenCount) image tokens")
            }
            visionEncoder = try VisionEncoder(loader, config: visionConfig)
            projector = try Projector(loader, config: visionConfig, hidden: decoderConfig.hiddenSize)
        } else {
            visionEncoder = nil
            projector = nil
        }
        loader.releaseFilePages()
    }

    /// Encodes and projects a batch of images: `[images, 3, size, size]` pixels to one
    /// `[image tokens × hidden]` array per image, ready for placeholder substitution.
    public func imageEmbeddings(pixels: [Float], images: Int) throws(ModelError) -> [[Float]] {
        guard let visionEncoder, let projector else {
            throw ModelError(.invalidInput, "this model file has no vision encoder; ask without images")
        }
        let features = try visionEncoder(pixels: pixels, images: images)
        let perImage = features.count / images
        return (0..<images).map { projector(Array(features[($0 * perImage)..<(($0 + 1) * perImage)])) }
    }

    /// Embeds a prompt and overwrites the k-th run of placeholder ids with the k-th image's
    /// projected features: `[tokens, hidden]`.
    public func promptEmbeddings(tokens: [Int], images: [[Float]]) throws(ModelError) -> [Float] {
        var embeddings = try decoder.embed(tokens)
        let runs = PlaceholderRuns(tokens: tokens, placeholder: config.imageTokenID, length: config.imageTokenCount)
        guard runs.starts.count == images.count else {
            throw ModelError(.invalidInput, "the prompt has \(runs.starts.count) image placeholder runs "
                + "(\(config.imageTokenCount) × token \(config.imageTokenID)) but \(images.count) images were given")
        }
        let hidden = config.hiddenSize, width = config.imageTokenCount * hidden
        for (start, features) in zip(runs.starts, images) {
            guard features.count == width else {
                throw ModelError(.invalidInput, "image features have \(features.count) values; \(width) expected")
            }
            embeddings.replaceSubrange((start * hidden)..<(start * hidden + width), with: features)
        }
        return embeddings
    }
}

/// Where images go in a prompt: each window of exactly `length` consecutive placeholder ids, left
/// to right, as upstream finds them (the tokenizer's `ChatPrompt.imageRuns` uses the same rule).
/// A run twice as long holds two images; a shorter run is text (a user may type "@").
public struct PlaceholderRuns: Sendable, Equatable {
    public let starts: [Int]

    public init(tokens: [Int], placeholder: Int, length: Int) {
        var starts: [Int] = []
        var i = 0
        while length > 0, i + length <= tokens.count {
            if tokens[i] == placeholder, tokens[i..<(i + length)].allSatisfy({ $0 == placeholder }) {
                starts.append(i)
                i += length
            } else {
                i += 1
            }
        }
        self.starts = starts
    }
}
