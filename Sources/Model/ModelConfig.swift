import Formats

/// The decoder's hyperparameters, read from the model file's `minimind.*` metadata.
public struct DecoderConfig: Sendable, Equatable {
    public var generation: Int
    public var vocabularySize: Int
    public var contextLength: Int
    public var hiddenSize: Int
    public var layerCount: Int
    public var feedForwardSize: Int
    public var headCount: Int
    public var kvHeadCount: Int
    public var headDim: Int
    public var rmsNormEpsilon: Float
    public var hasQKNorm: Bool
    public var ropeTheta: Float
    /// 0 for a dense model.
    public var expertCount: Int
    public var expertsPerToken: Int
    public var sharedExpertCount: Int
    public var normalizesExpertWeights: Bool
    public var tiedOutput: Bool
    public var imageTokenID: Int
    public var imageTokenCount: Int
    public var endOfTurnID: Int

    public var isMoE: Bool { expertCount > 0 }
    public var queryWidth: Int { headCount * headDim }
    public var kvWidth: Int { kvHeadCount * headDim }

    init(_ file: any ModelFile) throws(ModelError) {
        generation = try file.integer(ModelKey.generation)
        vocabularySize = try file.integer(ModelKey.vocabSize)
        contextLength = file.optionalInteger(ModelKey.contextLength) ?? 32768
        hiddenSize = try file.integer(ModelKey.embeddingLength)
        layerCount = try file.integer(ModelKey.blockCount)
        feedForwardSize = try file.integer(ModelKey.feedForwardLength)
        headCount = try file.integer(ModelKey.headCount)
        kvHeadCount = file.optionalInteger(ModelKey.headCountKV) ?? headCount
        headDim = file.optionalInteger(ModelKey.keyLength) ?? (headCount > 0 ? hiddenSize / headCount : 0)
        rmsNormEpsilon = try file.float(ModelKey.rmsNormEpsilon)
        hasQKNorm = file.bool(ModelKey.hasQKNorm, default: generation >= 3)
        ropeTheta = file.optionalFloat(ModelKey.ropeFreqBase) ?? 1e6
        expertCount = file.optionalInteger(ModelKey.expertCount) ?? 0
        expertsPerToken = file.optionalInteger(ModelKey.expertUsedCount) ?? 0
        sharedExpertCount = file.optionalInteger(ModelKey.expertSharedCount) ?? 0
        normalizesExpertWeights = file.bool(ModelKey.expertWeightsNorm, default: true)
        tiedOutput = file.bool(ModelKey.tiedOutput, default: true)
        imageTokenID = file.optionalInteger(ModelKey.imageTokenID) ?? (generation >= 3 ? 12 : 34)
        imageTokenCount = file.optionalInteger(ModelKey.imageTokenCount) ?? (generation >= 3 ? 64 : 196)
        endOfTurnID = file.optionalInteger(ModelKey.eosTokenID) ?? 2
        guard headCount > 0, kvHeadCount > 0, headCount % kvHeadCount == 0, headDim > 0, headDim % 2 == 0 else {
            throw ModelError(.invalidModel, "\(file.sourceDescription): \(headCount) heads, \(kvHeadCount) kv heads of \(headDim): "
                + "heads must be a multiple of kv heads and the head size even")
        }
        if isMoE, expertsPerToken < 1 || expertsPerToken > expertCount {
            throw ModelError(.invalidModel, "\(file.sourceDescription): \(expertsPerToken) experts per token of \(expertCount)")
        }
    }
}

/// The vision encoder's and projector's hyperparameters (`clip.*`).
public struct VisionConfig: Sendable, Equatable {
    public var encoder: VisionEncoderKind
    public var projector: ProjectorType
    public var imageSize: Int
    public var patchSize: Int
    public var hiddenSize: Int
    public var feedForwardSize: Int
    public var layerCount: Int
    public var headCount: Int
    public var layerNormEpsilon: Float
    public var activation: VisionActivation
    public var projectionSize: Int
    public var projectorLayerNormEpsilon: Float
    public var imageMean: [Float]
    public var imageStd: [Float]

    public var patchesPerSide: Int { imageSize / patchSize }
    public var patchCount: Int { patchesPerSide * patchesPerSide }
    /// Rows per image through the encoder: the patches, plus the class token for CLIP.
    public var sequenceLength: Int { patchCount + (encoder == .clip ? 1 : 0) }
    public var headDim: Int { hiddenSize / headCount }
    /// Values of one patch: 3 channels of `patchSize²` pixels, the conv kernel flattened.
    public var patchValues: Int { 3 * patchSize * patchSize }

    init?(_ file: any ModelFile) throws(ModelError) {
        guard file.bool(ModelKey.hasVisionEncoder, default: file.metadataValue(ModelKey.visionEncoder) != nil) else { return nil }
        guard let encoderName = file.optionalString(ModelKey.visionEncoder), let encoder = VisionEncoderKind(rawValue: encoderName) else {
            throw ModelError(.unsupported, "\(file.sourceDescription): vision encoder \(file.optionalString(ModelKey.visionEncoder) ?? "(none)") "
                + "is not one this engine runs (clip, siglip)")
        }
        guard let projectorName = file.optionalString(ModelKey.projectorType), let projector = ProjectorType(rawValue: projectorName) else {
            throw ModelError(.unsupported, "\(file.sourceDescription): projector \(file.optionalString(ModelKey.projectorType) ?? "(none)") is unknown")
        }
        self.encoder = encoder
        self.projector = projector
        imageSize = try file.integer(ModelKey.visionImageSize)
        patchSize = try file.integer(ModelKey.visionPatchSize)
        hiddenSize = try file.integer(ModelKey.visionEmbeddingLength)
        feedForwardSize = try file.integer(ModelKey.visionFeedForwardLength)
        layerCount = try file.integer(ModelKey.visionBlockCount)
        headCount = try file.integer(ModelKey.visionHeadCount)
        layerNormEpsilon = try file.float(ModelKey.visionLayerNormEpsilon)
        let activationName = file.optionalString(ModelKey.visionActivation) ?? (encoder == .clip ? "quick_gelu" : "gelu_tanh")
        guard let activation = VisionActivation(rawValue: activationName) else {
            throw ModelError(.unsupported, "\(file.sourceDescription): vision activation \(activationName) is unknown")
        }
        self.activation = activation
        projectionSize = try file.integer(ModelKey.visionProjectionDim)
        projectorLayerNormEpsilon = file.optionalFloat(ModelKey.projectorLayerNormEpsilon) ?? 1e-5
        imageMean = file.floats(ModelKey.imageMean) ?? []
        imageStd = file.floats(ModelKey.imageStd) ?? []
        guard patchSize > 0, imageSize % patchSize == 0, headCount > 0, hiddenSize % headCount == 0 else {
            throw ModelError(.invalidModel, "\(file.sourceDescription): vision image \(imageSize) / patch \(patchSize), "
                + "hidden \(hiddenSize) / heads \(headCount) do not divide")
        }
    }
}
