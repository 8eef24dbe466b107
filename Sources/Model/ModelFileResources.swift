import Foundation
import Formats
import Imaging
import Tokenizer

/// What besides weights a model file carries for running it: the tokenizer, the image
/// placeholder and the image preprocessing, all written by `minimindv convert`.
extension ModelFile {
    /// The Hugging Face tokenizer files stored verbatim in the metadata.
    public func modelTokenizer() throws -> ModelTokenizer {
        guard let json = optionalString(ModelKey.huggingFaceTokenizerJSON),
              let config = optionalString(ModelKey.huggingFaceTokenizerConfig) else {
            throw ModelError(.invalidModel, "\(sourceDescription) has no tokenizer (\(ModelKey.huggingFaceTokenizerJSON)): "
                + "convert the checkpoint again with `minimindv convert`")
        }
        return try ModelTokenizer(tokenizerJSON: Data(json.utf8), tokenizerConfigJSON: Data(config.utf8))
    }

    /// How images appear in prompts ("@" × 196 for gen2, "<|image_pad|>" × 64 for gen3).
    public func imagePlaceholder() throws(ModelError) -> ImagePlaceholder {
        let generation = try integer(ModelKey.generation)
        let fallback: ImagePlaceholder = generation >= 3 ? .minimind3 : .minimind2
        return ImagePlaceholder(
            placeholder: optionalString(ModelKey.imagePlaceholder) ?? fallback.placeholder,
            tokenCount: optionalInteger(ModelKey.imageTokenCount) ?? fallback.tokenCount,
            promptMarker: optionalString(ModelKey.imagePromptMarker) ?? fallback.promptMarker)
    }

    /// The image processor's settings (`minimind.preprocess.*`, `clip.vision.image_mean/std`).
    public func preprocessSettings() throws(ModelError) -> PreprocessSettings {
        func integers(_ key: String) -> [Int]? { floats(key)?.map { Int($0) } }
        guard let mode = optionalString(ModelKey.resizeMode).flatMap(ResizeMode.init(rawValue:)),
              let size = integers(ModelKey.resizeSize), !size.isEmpty else {
            throw ModelError(.invalidModel, "\(sourceDescription): no image preprocessing settings (\(ModelKey.resizeMode), "
                + "\(ModelKey.resizeSize)); convert the checkpoint again with `minimindv convert`")
        }
        let resize: PreprocessSettings.Resize
        switch mode {
        case .shortestEdge: resize = .shortestEdge(size[0])
        case .exact: resize = .exact(PixelSize(height: size[0], width: size.count > 1 ? size[1] : size[0]))
        }
        let crop = integers(ModelKey.cropSize).map { PixelSize(height: $0[0], width: $0.count > 1 ? $0[1] : $0[0]) }
        let code = optionalInteger(ModelKey.resample) ?? (mode == .exact ? 2 : 3)
        guard let filter = ResampleFilter(rawValue: code) else {
            throw ModelError(.unsupported, "\(sourceDescription): resample filter \(code) is not one Pillow defines")
        }
        let mean = floats(ModelKey.imageMean), std = floats(ModelKey.imageStd)
        // The file holds float32; transformers multiplies by the Python double 1/255, and the
        // rounding of that product decides some pixel values, so restore the double.
        var rescale = optionalFloat(ModelKey.rescaleFactor).map(Double.init) ?? 1.0 / 255.0
        if abs(rescale - 1.0 / 255.0) < 1e-9 { rescale = 1.0 / 255.0 }
        let settings = PreprocessSettings(
            resize: resize, centerCrop: crop, resample: filter,
            rescaleFactor: rescale,
            normalization: mean.flatMap { m in std.map { PreprocessSettings.Normalization(mean: m, std: $0) } })
        do { try settings.validate() } catch {
            throw ModelError(.invalidModel, "\(sourceDescription): image preprocessing settings: \(error)")
        }
        return settings
    }
}
