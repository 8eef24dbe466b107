/// An 8-bit RGB image: rows top to bottom, pixels left to right, 3 interleaved bytes per pixel
/// (numpy's `(height, width, 3)` uint8 layout of a Pillow RGB image).
public struct RGBImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public let pixels: [UInt8]

    /// Wraps pixels; fails when `pixels.count != width * height * 3` or a side is not positive.
    public init(width: Int, height: Int, pixels: [UInt8]) throws(ImageError) {
        guard width > 0, height > 0, width.multipliedReportingOverflow(by: height).partialValue * 3 == pixels.count
        else {
            throw .invalidSettings("\(pixels.count) bytes do not make a \(width) x \(height) RGB image")
        }
        self.init(unchecked: width, height, pixels)
    }

    init(unchecked width: Int, _ height: Int, _ pixels: [UInt8]) {
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// The pixel at column x, row y.
    public subscript(x: Int, y: Int) -> (r: UInt8, g: UInt8, b: UInt8) {
        let i = (y * width + x) * 3
        return (pixels[i], pixels[i + 1], pixels[i + 2])
    }
}

/// The EXIF orientation tag (0x0112) values, named by what Pillow's `exif_transpose` does to
/// make the picture upright.
public enum ExifOrientation: Int, Sendable, CaseIterable {
    case up = 1
    case mirrored = 2        // FLIP_LEFT_RIGHT
    case upsideDown = 3      // ROTATE_180
    case flipped = 4         // FLIP_TOP_BOTTOM
    case transposed = 5      // TRANSPOSE
    case rotatedLeft = 6     // ROTATE_270 (turns the picture clockwise)
    case transversed = 7     // TRANSVERSE
    case rotatedRight = 8    // ROTATE_90 (turns the picture counter-clockwise)
}

extension RGBImage {
    /// The image turned upright as Pillow's `ImageOps.exif_transpose` does for this orientation.
    public func uprighted(from orientation: ExifOrientation) -> RGBImage {
        let w = width, h = height
        // For each output pixel (x, y) of an output of size (ow, oh), the input pixel it copies.
        let swaps = orientation.rawValue >= 5
        let ow = swaps ? h : w, oh = swaps ? w : h
        let source: (Int, Int) -> (Int, Int)
        switch orientation {
        case .up: return self
        case .mirrored: source = { x, y in (w - 1 - x, y) }
        case .upsideDown: source = { x, y in (w - 1 - x, h - 1 - y) }
        case .flipped: source = { x, y in (x, h - 1 - y) }
        case .transposed: source = { x, y in (y, x) }
        case .rotatedLeft: source = { x, y in (y, h - 1 - x) }
        case .transversed: source = { x, y in (w - 1 - y, h - 1 - x) }
        case .rotatedRight: source = { x, y in (w - 1 - y, x) }
        }
        var out = [UInt8](repeating: 0, count: pixels.count)
        pixels.withUnsafeBufferPointer { input in
            out.withUnsafeMutableBufferPointer { output in
                var o = 0
                for y in 0..<oh {
                    for x in 0..<ow {
                        let (sx, sy) = source(x, y)
                        let i = (sy * w + sx) * 3
                        output[o] = input[i]
                        output[o + 1] = input[i + 1]
                        output[o + 2] = input[i + 2]
                        o += 3
                    }
                }
            }
        }
        return RGBImage(unchecked: ow, oh, out)
    }
}
