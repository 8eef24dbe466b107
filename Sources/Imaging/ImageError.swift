/// The container formats we decode.
public enum ImageFormat: String, Sendable, Equatable {
    case jpeg = "JPEG"
    case png = "PNG"
}

/// Why an image could not be decoded or preprocessed. Each case says what the user can do.
public enum ImageError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file has no bytes.
    case empty
    /// Neither JPEG nor PNG; `detected` names the format when we recognise its signature.
    case unrecognizedFormat(detected: String?)
    /// Width x height above the limit; refused from the header, before the pixels are allocated.
    case tooLarge(width: Int, height: Int, limitPixels: Int)
    /// The data ends before the image does.
    case truncated(ImageFormat, detail: String)
    /// The decoder refused the data.
    case corrupt(ImageFormat, detail: String)
    /// A valid file of a kind we do not convert (e.g. a 12-bit or 2-channel JPEG).
    case unsupported(ImageFormat, detail: String)
    case outOfMemory(ImageFormat, detail: String)
    /// The file could not be read at all.
    case unreadable(path: String, reason: String)
    /// Preprocessing settings that cannot be applied (from a model file or preprocessor_config.json).
    case invalidSettings(String)

    public var description: String {
        switch self {
        case .empty:
            return "the image file is empty (0 bytes): check the path and that the upload finished"
        case .unrecognizedFormat(let detected?):
            return "the image is \(detected), which is not supported: convert it to JPEG or PNG"
        case .unrecognizedFormat(nil):
            return "the file is not a JPEG or PNG image (unknown signature): convert it to JPEG or PNG"
        case .tooLarge(let width, let height, let limit):
            return "the image is \(width) x \(height) pixels, above the limit of \(limit) pixels: "
                + "scale it down first (or raise the limit if you trust the file)"
        case .truncated(let format, let detail):
            return "the \(format.rawValue) file is truncated (\(detail)): re-download or re-export it"
        case .corrupt(let format, let detail):
            return "the \(format.rawValue) file is corrupt (\(detail)): re-export it with another program"
        case .unsupported(let format, let detail):
            return "unsupported \(format.rawValue) image (\(detail)): convert it to 8-bit RGB"
        case .outOfMemory(let format, let detail):
            return "not enough memory to decode the \(format.rawValue) image (\(detail))"
        case .unreadable(let path, let reason):
            return "cannot read the image \(path): \(reason)"
        case .invalidSettings(let detail):
            return "invalid image preprocessing settings: \(detail)"
        }
    }
}
