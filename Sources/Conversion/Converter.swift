import Foundation
import Formats

/// What a finished conversion wrote.
public struct ConversionReport: Sendable {
    public var output: String
    public var generation: Int
    public var expertCount: Int
    public var type: OutputType
    public var tensorCount: Int
    public var bytes: Int
    public var seconds: Double
    /// Inferences and oddities worth telling the user ("no config.json: assuming ...").
    public var notes: [String]

    public var megabytesPerSecond: Double { seconds > 0 ? Double(bytes) / 1e6 / seconds : 0 }
}

/// Checkpoint + vision folder + tokenizer -> one GGUF model file.
public enum Converter {
    /// Converts MiniMind-V weights to the model file at `output`.
    ///
    /// - Parameters:
    ///   - checkpoint: a trainer `.pth`, a `pytorch_model.bin`/`.safetensors` file, or a
    ///     transformers-format folder (config.json + weights).
    ///   - vision: the CLIP (gen2) or SigLIP2 (gen3) folder.
    ///   - tokenizer: the folder with tokenizer.json and tokenizer_config.json; defaults to the
    ///     checkpoint's folder.
    ///   - config: an LLM config.json; defaults to the one in the checkpoint's folder, if any.
    ///   - progress: called with (bytes written, total bytes); throwing from it cancels.
    public static func convert(
        checkpoint: String,
        vision: String?,
        tokenizer: String? = nil,
        config: String? = nil,
        type: OutputType = .f16,
        output: String,
        progress: ((Int, Int) throws -> Void)? = nil
    ) throws -> ConversionReport {
        let start = Date()
        let plan = try ConversionPlan(checkpoint: checkpoint, vision: vision, tokenizer: tokenizer, config: config, type: type)
        let writer = GGUFWriter(metadata: plan.metadata)
        let tensors = plan.tensors
        try writer.write(to: output, tensors: tensors.map(\.info), progress: progress) { index, buffer in
            try fill(tensors[index], into: buffer)
        }
        let size = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
        return ConversionReport(
            output: output, generation: plan.decoder.generation, expertCount: plan.decoder.experts, type: type,
            tensorCount: tensors.count, bytes: size, seconds: Date().timeIntervalSince(start), notes: plan.decoder.notes)
    }

    /// Writes the elements of `planned`'s sources, converted to its type, into `buffer`.
    /// Type conversions run in chunks on every core; same-type tensors are copied.
    static func fill(_ planned: PlannedTensor, into buffer: UnsafeMutableRawBufferPointer) throws(FormatError) {
        let target = planned.info.dtype
        guard let base = buffer.baseAddress else { return }
        var offset = 0
        for source in planned.sources {
            let count = source.elementCount
            guard let inBytes = source.dtype.byteCount(elements: count), inBytes == source.bytes.count,
                  let outBytes = target.byteCount(elements: count), offset + outBytes <= buffer.count else {
                throw FormatError(.malformed, "tensor \(source.name): \(source.bytes.count) bytes do not hold \(source.dtype.rawValue) \(source.shape)")
            }
            let destination = UnsafeMutableSendableRawPointer(base + offset)
            let sourceType = source.dtype
            source.bytes.withUnsafeBytes { raw in
                guard let input = raw.baseAddress else { return }
                if sourceType == target {
                    destination.pointer.copyMemory(from: input, byteCount: inBytes)
                    return
                }
                let chunk = 1 << 16  // elements; a multiple of the Q8_0 block
                let chunks = (count + chunk - 1) / chunk
                let sendableInput = UnsafeSendableRawPointer(input)
                DispatchQueue.concurrentPerform(iterations: chunks) { index in
                    let start = index * chunk
                    let n = min(chunk, count - start)
                    let scratch = UnsafeMutablePointer<Float>.allocate(capacity: n)
                    defer { scratch.deallocate() }
                    Quantization.decode(sendableInput.pointer + start * sourceType.byteSize, dtype: sourceType, count: n, into: scratch)
                    Quantization.encode(scratch, count: n, as: target, into: destination.pointer + start / target.blockSize * target.byteSize)
                }
            }
            source.bytes.releaseMappedPages()
            offset += outBytes
        }
    }
}

/// Raw pointers handed to `concurrentPerform`; each iteration touches its own disjoint range.
struct UnsafeSendableRawPointer: @unchecked Sendable {
    let pointer: UnsafeRawPointer
    init(_ pointer: UnsafeRawPointer) { self.pointer = pointer }
}

struct UnsafeMutableSendableRawPointer: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
    init(_ pointer: UnsafeMutableRawPointer) { self.pointer = pointer }
}

/// Everything decided before a byte is written: metadata and the list of output tensors.
struct ConversionPlan {
    var decoder: DecoderPlan
    var vision: VisionPlan
    var metadata = GGUFMetadata()
    var tensors: [PlannedTensor] = []

    init(checkpoint: String, vision visionFolder: String?, tokenizer: String?, config: String?, type: OutputType) throws {
        let fm = FileManager.default
        var isFolder: ObjCBool = false
        guard fm.fileExists(atPath: checkpoint, isDirectory: &isFolder) else {
            throw FormatError(.io, "checkpoint \(checkpoint) not found")
        }
        let checkpointFolder = isFolder.boolValue ? checkpoint : (checkpoint as NSString).deletingLastPathComponent.nonEmpty ?? "."
        // The LLM config: given, or the transformers folder's own.
        var llmConfig: LLMConfig?
        if let config {
            llmConfig = try LLMConfig(path: config)
        } else if fm.fileExists(atPath: checkpointFolder + "/config.json") {
            let candidate = try LLMConfig(path: checkpointFolder + "/config.json")
            if candidate.modelType.map({ $0.lowercased().contains("minimind") }) ?? true { llmConfig = candidate }
        }
        let weights = try openTensorFile(path: checkpoint)
        let name = (weights.sourceDescription as NSString).lastPathComponent
        var table = TensorTable(weights.tensors, source: name, stripping: ["module."], dropping: DecoderPlan.isDropped)
        decoder = try DecoderPlan(table: &table, config: llmConfig, type: type)

        guard let visionFolder else {
            throw FormatError(.invalidModel, "no vision encoder: pass --vision DIR, the \(decoder.generation == 2 ? "CLIP ViT-B/16 folder (clip-vit-base-patch16)" : "SigLIP2 folder (siglip2-base-p32-256-ve)") this gen\(decoder.generation) checkpoint was trained with")
        }
        vision = try VisionPlan(folder: visionFolder, type: type)
        guard vision.hidden == decoder.projectorInput else {
            throw FormatError(.invalidModel, "the vision encoder in \(visionFolder) outputs \(vision.hidden) features but the projector in \(name) takes \(decoder.projectorInput) (\(decoder.projector == .linear ? "vision_proj.vision_proj.0.weight" : "vision_proj.mlp.1.weight")): wrong vision folder?")
        }
        let expectedKind: VisionEncoderKind = decoder.generation == 2 ? .clip : .siglip
        if vision.kind != expectedKind {
            decoder.notes.append("a gen\(decoder.generation) checkpoint with a \(vision.kind.rawValue) encoder: upstream pairs gen2 with CLIP and gen3 with SigLIP2")
        }

        let tokenizerFolder = tokenizer ?? checkpointFolder
        var tokenizerFiles = try HFTokenizerFiles(folder: tokenizerFolder)
        guard tokenizerFiles.tokens.count <= decoder.vocabSize else {
            throw FormatError(.invalidModel, "the tokenizer in \(tokenizerFolder) has \(tokenizerFiles.tokens.count) tokens but the embedding model.embed_tokens.weight has only \(decoder.vocabSize) rows: wrong tokenizer?")
        }
        tokenizerFiles.pad(to: decoder.vocabSize)

        // Image placeholder: upstream's conventions per generation, checked against config and tokenizer.
        let placeholder = decoder.generation == 2 ? "@" : (llmConfig?.imageSpecialToken ?? "<|image_pad|>")
        let marker = decoder.generation == 2 ? "" : "<image>"
        guard let imageTokenID = tokenizerFiles.id(of: placeholder) else {
            throw FormatError(.invalidModel, "the tokenizer in \(tokenizerFolder) has no token \(placeholder), the image placeholder of gen\(decoder.generation) models")
        }
        if let ids = llmConfig?.imageIDs, let first = ids.first, first != imageTokenID {
            throw FormatError(.invalidModel, "config.json says image_ids \(first) but the tokenizer gives \(placeholder) the id \(imageTokenID)")
        }
        let configuredCount = llmConfig?.imageTokenLength ?? ((llmConfig?.imageIDs?.count ?? 0) > 1 ? llmConfig?.imageIDs?.count : nil)
        if let configuredCount, configuredCount != vision.tokenCount {
            throw FormatError(.invalidModel, "config.json expects \(configuredCount) image tokens but the encoder in \(visionFolder) makes \(vision.tokenCount) (\(vision.imageSize) px / \(vision.patchSize) px patches)")
        }

        // Metadata, in the order of ModelFileSchema.
        var m = GGUFMetadata()
        let u32 = { (v: Int) in GGUFValue.uint32(UInt32(clamping: v)) }
        try m.set(ModelKey.architecture, .string(ModelKey.architectureName))
        let displayName = ((isFolder.boolValue ? checkpoint : name) as NSString).lastPathComponent
        try m.set(ModelKey.name, .string((displayName as NSString).deletingPathExtension))
        try m.set(ModelKey.fileType, .uint32(type.fileType))
        if type.isQuantized { try m.set(ModelKey.quantizationVersion, .uint32(2)) }
        var sources = [weights.sourceDescription]
        if let llmConfig { sources.append(llmConfig.path) }
        sources += vision.files
        sources += [tokenizerFolder + "/" + HFTokenizerFiles.tokenizerFile, tokenizerFolder + "/" + HFTokenizerFiles.configFile]
        try m.set(ModelKey.sourceFiles, .strings(sources))

        let d = decoder
        try m.set(ModelKey.generation, u32(d.generation))
        try m.set(ModelKey.vocabSize, u32(d.vocabSize))
        try m.set(ModelKey.contextLength, u32(d.contextLength))
        try m.set(ModelKey.embeddingLength, u32(d.hidden))
        try m.set(ModelKey.blockCount, u32(d.layers))
        try m.set(ModelKey.feedForwardLength, u32(d.feedForward))
        try m.set(ModelKey.headCount, u32(d.heads))
        try m.set(ModelKey.headCountKV, u32(d.kvHeads))
        try m.set(ModelKey.keyLength, u32(d.headDim))
        try m.set(ModelKey.rmsNormEpsilon, .float32(d.rmsEps))
        try m.set(ModelKey.hasQKNorm, .bool(d.generation == 3))
        try m.set(ModelKey.ropeFreqBase, .float32(d.ropeTheta))
        try m.set(ModelKey.expertCount, u32(d.experts))
        try m.set(ModelKey.expertUsedCount, u32(d.expertsUsed))
        try m.set(ModelKey.expertSharedCount, u32(d.sharedExperts))
        try m.set(ModelKey.expertWeightsNorm, .bool(d.expertWeightsNorm))
        try m.set(ModelKey.tiedOutput, .bool(d.tied))
        try m.set(ModelKey.imageTokenID, u32(imageTokenID))
        try m.set(ModelKey.imageTokenCount, u32(vision.tokenCount))
        try m.set(ModelKey.imagePlaceholder, .string(placeholder))
        try m.set(ModelKey.imagePromptMarker, .string(marker))

        let v = vision
        try m.set(ModelKey.hasVisionEncoder, .bool(true))
        try m.set(ModelKey.projectorType, .string(d.projector.rawValue))
        try m.set(ModelKey.visionEncoder, .string(v.kind.rawValue))
        try m.set(ModelKey.visionImageSize, u32(v.imageSize))
        try m.set(ModelKey.visionPatchSize, u32(v.patchSize))
        try m.set(ModelKey.visionEmbeddingLength, u32(v.hidden))
        try m.set(ModelKey.visionFeedForwardLength, u32(v.feedForward))
        try m.set(ModelKey.visionBlockCount, u32(v.layers))
        try m.set(ModelKey.visionHeadCount, u32(v.heads))
        try m.set(ModelKey.visionLayerNormEpsilon, .float32(v.layerNormEps))
        try m.set(ModelKey.visionActivation, .string(v.activation.rawValue))
        try m.set(ModelKey.visionProjectionDim, u32(d.hidden))
        if d.projector == .mlp {
            // nn.LayerNorm's default: upstream builds the projector norm without an eps.
            try m.set(ModelKey.projectorLayerNormEpsilon, .float32(1e-5))
        }
        try m.set(ModelKey.imageMean, .float32s(v.preprocess.mean))
        try m.set(ModelKey.imageStd, .float32s(v.preprocess.std))

        try m.set(ModelKey.resizeMode, .string(v.preprocess.resizeMode.rawValue))
        try m.set(ModelKey.resizeSize, .uint32s(v.preprocess.size))
        if let crop = v.preprocess.cropSize { try m.set(ModelKey.cropSize, .uint32s(crop)) }
        try m.set(ModelKey.resample, u32(v.preprocess.resample))
        try m.set(ModelKey.rescaleFactor, .float32(v.preprocess.rescaleFactor))

        let t = tokenizerFiles
        try m.set(ModelKey.tokenizerModel, .string("gpt2"))
        try m.set(ModelKey.tokenizerPre, .string("minimind"))
        try m.set(ModelKey.tokenizerTokens, .strings(t.tokens))
        try m.set(ModelKey.tokenizerTokenTypes, .int32s(t.tokenTypes))
        try m.set(ModelKey.tokenizerMerges, .strings(t.merges))
        for (key, token) in [(ModelKey.bosTokenID, t.bosToken), (ModelKey.eosTokenID, t.eosToken),
                             (ModelKey.paddingTokenID, t.padToken), (ModelKey.unknownTokenID, t.unknownToken)] {
            if let token, let id = t.id(of: token) { try m.set(key, u32(id)) }
        }
        if let template = t.chatTemplate { try m.set(ModelKey.chatTemplate, .string(template)) }
        try m.set(ModelKey.huggingFaceTokenizerJSON, .string(t.tokenizerJSON))
        try m.set(ModelKey.huggingFaceTokenizerConfig, .string(t.configJSON))
        try m.set(ModelKey.alignment, .uint32(UInt32(GGUFFile.defaultAlignment)))
        metadata = m
        tensors = decoder.tensors + vision.tensors
    }
}

extension String {
    var nonEmpty: String? { isEmpty ? nil : self }
}
