import CImageCodecs
import Foundation

/// How to decode: the pixel limit and whether the EXIF orientation is applied.
public struct DecodeOptions: Sendable, Equatable {
    /// Largest accepted width x height, checked from the header before any pixel buffer exists.
    public var maxPixels: Int
    /// Turn the picture upright from its EXIF orientation as Pillow's `exif_transpose` does.
    /// Off reproduces upstream's pipeline (`Image.open(...).convert("RGB")`) exactly.
    public var appliesExifOrientation: Bool

    public static let defaultMaxPixels = 40_000_000

    public init(maxPixels: Int = DecodeOptions.defaultMaxPixels, appliesExifOrientation: Bool = true) {
        self.maxPixels = maxPixels
        self.appliesExifOrientation = appliesExifOrientation
    }
}

/// Decodes JPEG and PNG files to the RGB pixels Pillow's `convert("RGB")` gives.
public enum ImageDecoder {
    /// Decodes an image held in memory.
    public static func decode(_ bytes: [UInt8], options: DecodeOptions = DecodeOptions()) throws(ImageError) -> RGBImage {
        let format = try sniff(bytes)
        var raw = ic_image()
        var message = [CChar](repeating: 0, count: 512)
        let limit = UInt64(max(0, options.maxPixels))
        let status = bytes.withUnsafeBufferPointer { buffer in
            switch format {
            case .jpeg: ic_jpeg_decode(buffer.baseAddress, buffer.count, limit, &raw, &message, message.count)
            case .png: ic_png_decode(buffer.baseAddress, buffer.count, limit, &raw, &message, message.count)
            }
        }
        defer { ic_free(raw.pixels) }
        let detail = message.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        switch status {
        case IC_OK: break
        case IC_ERR_TOO_LARGE:
            throw .tooLarge(width: Int(raw.width), height: Int(raw.height), limitPixels: options.maxPixels)
        case IC_ERR_TRUNCATED: throw .truncated(format, detail: detail)
        case IC_ERR_UNSUPPORTED: throw .unsupported(format, detail: detail)
        case IC_ERR_NO_MEMORY: throw .outOfMemory(format, detail: detail)
        default: throw .corrupt(format, detail: detail)
        }
        let width = Int(raw.width), height = Int(raw.height)
        guard let pixels = raw.pixels else { throw .corrupt(format, detail: "the decoder returned no pixels") }
        let image = RGBImage(unchecked: width, height,
                             Array(UnsafeBufferPointer(start: pixels, count: width * height * 3)))
        guard options.appliesExifOrientation,
              let value = ExifReader.orientation(in: bytes, format: format),
              let orientation = ExifOrientation(rawValue: value) else { return image }
        return image.uprighted(from: orientation)
    }

    /// Decodes an image held in memory.
    public static func decode(_ data: Data, options: DecodeOptions = DecodeOptions()) throws(ImageError) -> RGBImage {
        try decode([UInt8](data), options: options)
    }

    /// Reads and decodes an image file.
    public static func decode(contentsOf url: URL, options: DecodeOptions = DecodeOptions()) throws(ImageError) -> RGBImage {
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw .unreadable(path: url.path, reason: (error as NSError).localizedDescription)
        }
        return try decode(data, options: options)
    }

    /// The EXIF orientation recorded in the file (nil when absent or not 1...8).
    public static func orientation(of bytes: [UInt8]) -> ExifOrientation? {
        guard let format = try? sniff(bytes), let value = ExifReader.orientation(in: bytes, format: format) else {
            return nil
        }
        return ExifOrientation(rawValue: value)
    }

    /// The format from the file's signature, or why it is not one we decode.
    public static func sniff(_ bytes: [UInt8]) throws(ImageError) -> ImageFormat {
        if bytes.isEmpty { throw .empty }
        if bytes.starts(with: [0xFF, 0xD8, 0xFF]) { return .jpeg }
        if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return .png }
        throw .unrecognizedFormat(detected: otherFormat(bytes))
    }

    private static func otherFormat(_ b: [UInt8]) -> String? {
        func has(_ text: String, at offset: Int = 0) -> Bool {
            let t = Array(text.utf8)
            return b.count >= offset + t.count && b[offset..<(offset + t.count)].elementsEqual(t)
        }
        if has("GIF87a") || has("GIF89a") { return "a GIF" }
        if has("RIFF"), has("WEBP", at: 8) { return "a WebP" }
        if has("ftypavif", at: 4) || has("ftypavis", at: 4) { return "an AVIF" }
        if has("ftypheic", at: 4) || has("ftypheix", at: 4) || has("ftypmif1", at: 4) { return "a HEIC/HEIF" }
        if has("BM") { return "a BMP" }
        if has("II*\0") || has("MM\0*") { return "a TIFF" }
        if has("%PDF") { return "a PDF" }
        if b.starts(with: [0xFF, 0xD8]) { return "a damaged JPEG (no marker after SOI)" }
        return nil
    }
}
