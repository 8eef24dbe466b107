import Foundation

/// A height and a width in pixels.
public struct PixelSize: Sendable, Equatable, CustomStringConvertible {
    public var height: Int
    public var width: Int
    public init(height: Int, width: Int) {
        self.height = height
        self.width = width
    }
    public var description: String { "\(height)x\(width)" }
}

/// What a Hugging Face image processor (CLIP, SigLIP) does to a picture before the encoder,
/// as read from `preprocessor_config.json` or from the model file.
public struct PreprocessSettings: Sendable, Equatable {
    public enum Resize: Sendable, Equatable {
        /// Shorter side to `n`, longer side `int(n * long / short)` (truncated): CLIP.
        case shortestEdge(Int)
        /// Exactly this size, aspect not kept: SigLIP.
        case exact(PixelSize)
    }

    public struct Normalization: Sendable, Equatable {
        public var mean: [Float]
        public var std: [Float]
        public init(mean: [Float], std: [Float]) {
            self.mean = mean
            self.std = std
        }
    }

    public var resize: Resize?
    public var centerCrop: PixelSize?
    public var resample: ResampleFilter
    /// Multiplies the 8-bit values (in double, as transformers' `rescale` does); nil = no rescale.
    public var rescaleFactor: Double?
    public var normalization: Normalization?

    public init(resize: Resize?, centerCrop: PixelSize?, resample: ResampleFilter,
                rescaleFactor: Double?, normalization: Normalization?) {
        self.resize = resize
        self.centerCrop = centerCrop
        self.resample = resample
        self.rescaleFactor = rescaleFactor
        self.normalization = normalization
    }

    /// openai/clip-vit-base-patch16's processor (gen2): shortest side 224 bicubic, crop 224.
    public static let clip = PreprocessSettings(
        resize: .shortestEdge(224), centerCrop: PixelSize(height: 224, width: 224), resample: .bicubic,
        rescaleFactor: 1.0 / 255.0,
        normalization: Normalization(mean: [0.48145466, 0.4578275, 0.40821073],
                                     std: [0.26862954, 0.26130258, 0.27577711]))

    /// siglip2-base-patch32-256's processor (gen3): 256x256 bilinear, mean = std = 0.5.
    public static let siglip = PreprocessSettings(
        resize: .exact(PixelSize(height: 256, width: 256)), centerCrop: nil, resample: .bilinear,
        rescaleFactor: 1.0 / 255.0,
        normalization: Normalization(mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]))

    /// Checks sizes, filter and normalisation before any image is touched.
    public func validate() throws(ImageError) {
        switch resize {
        case .shortestEdge(let n) where n <= 0: throw .invalidSettings("resize shortest edge \(n) is not positive")
        case .exact(let s) where s.height <= 0 || s.width <= 0: throw .invalidSettings("resize size \(s) is not positive")
        default: break
        }
        if let c = centerCrop, c.height <= 0 || c.width <= 0 { throw .invalidSettings("crop size \(c) is not positive") }
        if let n = normalization {
            guard n.mean.count == 3, n.std.count == 3 else {
                throw .invalidSettings("image mean and std need 3 values each, got \(n.mean.count) and \(n.std.count)")
            }
            guard n.std.allSatisfy({ $0 != 0 && $0.isFinite }), n.mean.allSatisfy(\.isFinite) else {
                throw .invalidSettings("image std must be finite and non-zero: \(n.std)")
            }
        }
    }
}

extension PreprocessSettings {
    /// Reads a Hugging Face vision folder's `preprocessor_config.json` (CLIPImageProcessor,
    /// CLIPFeatureExtractor, SiglipImageProcessor). Keys that are absent take the defaults of
    /// the processor class the file names.
    public init(preprocessorConfig data: Data) throws(ImageError) {
        let object: [String: Any]
        do {
            guard let parsed = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw ImageError.invalidSettings("preprocessor_config.json is not a JSON object")
            }
            object = parsed
        } catch let error as ImageError {
            throw error
        } catch {
            throw .invalidSettings("preprocessor_config.json is not valid JSON: \(error.localizedDescription)")
        }
        let kind = (object["image_processor_type"] as? String) ?? (object["feature_extractor_type"] as? String) ?? ""
        let defaults: PreprocessSettings
        if kind.hasPrefix("Siglip") { defaults = .siglip }
        else if kind.hasPrefix("CLIP") { defaults = .clip }
        else {
            throw .invalidSettings("preprocessor_config.json names processor '\(kind)'; "
                + "only CLIP and SigLIP image processors are supported")
        }
        func flag(_ key: String, _ fallback: Bool) -> Bool { (object[key] as? Bool) ?? fallback }
        func number(_ value: Any?) -> Double? { (value as? NSNumber)?.doubleValue }
        func size(_ value: Any?, key: String, squareWhenInt: Bool) throws(ImageError) -> Resize? {
            guard let value, !(value is NSNull) else { return nil }
            if let n = value as? Int { return squareWhenInt ? .exact(PixelSize(height: n, width: n)) : .shortestEdge(n) }
            if let dict = value as? [String: Any] {
                if let h = dict["height"] as? Int, let w = dict["width"] as? Int { return .exact(PixelSize(height: h, width: w)) }
                if let n = dict["shortest_edge"] as? Int, dict["longest_edge"] == nil { return .shortestEdge(n) }
            }
            throw .invalidSettings("preprocessor_config.json: unsupported \(key) \(value)")
        }

        var settings = defaults
        if flag("do_resize", true) {
            // CLIP reads a bare integer as the shortest edge; SigLIP as a square.
            if let resize = try size(object["size"], key: "size", squareWhenInt: defaults == .siglip) {
                settings.resize = resize
            }
        } else {
            settings.resize = nil
        }
        if flag("do_center_crop", defaults.centerCrop != nil) {
            switch try size(object["crop_size"], key: "crop_size", squareWhenInt: true) {
            case .exact(let s)?: settings.centerCrop = s
            case .shortestEdge?: throw .invalidSettings("preprocessor_config.json: crop_size needs height and width")
            case nil: settings.centerCrop = defaults.centerCrop ?? PixelSize(height: 224, width: 224)
            }
        } else {
            settings.centerCrop = nil
        }
        if let code = object["resample"] as? Int {
            guard let filter = ResampleFilter(rawValue: code) else {
                throw .invalidSettings("resample \(code) is not a supported Pillow filter (1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming)")
            }
            settings.resample = filter
        }
        if flag("do_rescale", true) {
            settings.rescaleFactor = number(object["rescale_factor"]) ?? defaults.rescaleFactor
        } else {
            settings.rescaleFactor = nil
        }
        if flag("do_normalize", true) {
            var n = defaults.normalization ?? Normalization(mean: [0, 0, 0], std: [1, 1, 1])
            func triple(_ value: Any?) -> [Float]? {
                if let list = value as? [Any] { return list.compactMap { number($0).map(Float.init) } }
                if let single = number(value) { return [Float](repeating: Float(single), count: 3) }
                return nil
            }
            if let mean = triple(object["image_mean"]) { n.mean = mean }
            if let std = triple(object["image_std"]) { n.std = std }
            settings.normalization = n
        } else {
            settings.normalization = nil
        }
        try settings.validate()
        self = settings
    }
}

/// The encoder's input: float32 values, channel-first `[3, height, width]`.
public struct PixelValues: Sendable, Equatable {
    public let height: Int
    public let width: Int
    public let values: [Float]
}

/// Applies `PreprocessSettings` to decoded images, exactly as transformers' slow image
/// processors do with Pillow: resize (Pillow), centre crop (numpy slicing, zero padding when
/// the crop is larger), rescale (float64 product rounded to float32), normalise (float32).
public struct ImagePreprocessor: Sendable {
    public let settings: PreprocessSettings

    public init(settings: PreprocessSettings) throws(ImageError) {
        try settings.validate()
        self.settings = settings
    }

    /// The size after resizing, before cropping.
    public func resizedSize(width: Int, height: Int) -> PixelSize {
        switch settings.resize {
        case nil:
            return PixelSize(height: height, width: width)
        case .exact(let size):
            return size
        case .shortestEdge(let n):
            // transformers' get_resize_output_image_size(default_to_square=False):
            // int(n * long / short), Python true division then truncation.
            let (short, long) = width <= height ? (width, height) : (height, width)
            let newLong = Int(Double(n * long) / Double(short))
            return width <= height ? PixelSize(height: newLong, width: n) : PixelSize(height: n, width: newLong)
        }
    }

    /// The 8-bit image after resizing and centre cropping (upstream's `resized_u8`).
    public func resizedImage(_ image: RGBImage) -> RGBImage {
        let size = resizedSize(width: image.width, height: image.height)
        guard let crop = settings.centerCrop else {
            return Resampler.resize(image, width: size.width, height: size.height, filter: settings.resample)
        }
        // transformers' center_crop: top = (H - h) // 2 (floor, negative when padding is needed).
        let top = floorDiv(size.height - crop.height, 2), left = floorDiv(size.width - crop.width, 2)
        let rows = max(0, top)..<min(size.height, top + crop.height)
        let columns = max(0, left)..<min(size.width, left + crop.width)
        let inside = Resampler.resize(image, width: size.width, height: size.height, filter: settings.resample,
                                      columns: columns, rows: rows)
        if inside.width == crop.width, inside.height == crop.height { return inside }
        // The crop is larger than the image: zero padding around it.
        var out = [UInt8](repeating: 0, count: crop.width * crop.height * 3)
        let dy = rows.lowerBound - top, dx = columns.lowerBound - left
        for y in 0..<inside.height {
            let source = y * inside.width * 3, target = ((y + dy) * crop.width + dx) * 3
            out.replaceSubrange(target..<(target + inside.width * 3),
                                with: inside.pixels[source..<(source + inside.width * 3)])
        }
        return RGBImage(unchecked: crop.width, crop.height, out)
    }

    /// Rescaled and normalised float32 values, channel-first.
    public func pixelValues(ofResized image: RGBImage) -> PixelValues {
        let plane = image.width * image.height
        var values = [Float](repeating: 0, count: plane * 3)
        let scale = settings.rescaleFactor
        let mean = settings.normalization?.mean ?? [0, 0, 0]
        let std = settings.normalization?.std ?? [1, 1, 1]
        let normalizes = settings.normalization != nil
        // The 256 possible values per channel, computed once with transformers' arithmetic.
        var table = [Float](repeating: 0, count: 256 * 3)
        for c in 0..<3 {
            for v in 0..<256 {
                var x = scale.map { Float(Double(v) * $0) } ?? Float(v)
                if normalizes { x = (x - mean[c]) / std[c] }
                table[c * 256 + v] = x
            }
        }
        image.pixels.withUnsafeBufferPointer { src in
            values.withUnsafeMutableBufferPointer { dst in
                for i in 0..<plane {
                    dst[i] = table[Int(src[3 * i])]
                    dst[plane + i] = table[256 + Int(src[3 * i + 1])]
                    dst[2 * plane + i] = table[512 + Int(src[3 * i + 2])]
                }
            }
        }
        return PixelValues(height: image.height, width: image.width, values: values)
    }

    /// Resize, crop, rescale and normalise: what the vision encoder is fed.
    public func pixelValues(_ image: RGBImage) -> PixelValues {
        pixelValues(ofResized: resizedImage(image))
    }
}

@inline(__always)
private func floorDiv(_ a: Int, _ b: Int) -> Int {
    let q = a / b
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
}
