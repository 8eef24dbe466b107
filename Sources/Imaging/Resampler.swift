#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Pillow's convolution filters, by Pillow's resample codes (`Image.Resampling`).
public enum ResampleFilter: Int, Sendable, CaseIterable, CustomStringConvertible {
    case lanczos = 1
    case bilinear = 2
    case bicubic = 3
    case box = 4
    case hamming = 5

    public var description: String {
        switch self {
        case .lanczos: "lanczos"
        case .bilinear: "bilinear"
        case .bicubic: "bicubic"
        case .box: "box"
        case .hamming: "hamming"
        }
    }

    /// Half-width of the filter at scale 1 (Resample.c's `struct filter` support).
    var support: Double {
        switch self {
        case .box: 0.5
        case .bilinear, .hamming: 1.0
        case .bicubic: 2.0
        case .lanczos: 3.0
        }
    }

    /// The filter kernel, with Resample.c's exact operation order (results must match to the bit).
    func weight(_ t: Double) -> Double {
        switch self {
        case .box:
            return t > -0.5 && t <= 0.5 ? 1.0 : 0.0
        case .bilinear:
            let x = t < 0 ? -t : t
            return x < 1.0 ? 1.0 - x : 0.0
        case .hamming:
            var x = t < 0 ? -t : t
            if x == 0.0 { return 1.0 }
            if x >= 1.0 { return 0.0 }
            x = x * Double.pi
            return sin(x) / x * (0.54 + 0.46 * cos(x))
        case .bicubic:
            let a = -0.5
            let x = t < 0 ? -t : t
            if x < 1.0 { return ((a + 2.0) * x - (a + 3.0)) * x * x + 1 }
            if x < 2.0 { return (((x - 5) * x + 8) * x - 4) * a }
            return 0.0
        case .lanczos:
            if -3.0 <= t && t < 3.0 { return Self.sinc(t) * Self.sinc(t / 3) }
            return 0.0
        }
    }

    private static func sinc(_ t: Double) -> Double {
        if t == 0.0 { return 1.0 }
        let x = t * Double.pi
        return sin(x) / x
    }
}

/// Pillow's `Image.resize` for 8-bit images (libImaging/Resample.c), reproduced to the bit:
/// coefficients in double, normalised per output pixel, turned into 22-bit fixed point; the
/// horizontal pass runs first over only the rows the vertical pass reads, and its result is
/// rounded and clamped to 0...255 before the vertical pass. When shrinking, the filter support
/// is widened by the scale (antialiasing).
public enum Resampler {
    /// Pillow's PRECISION_BITS: 32 - 8 bits of result - 2 bits of headroom for negative lobes.
    static let precisionBits: Int32 = 22

    /// One axis' filter taps: for output index i, `count[i]` input samples from `first[i]`,
    /// weighted by `weights[i * size ..< i * size + count[i]]`.
    struct Taps {
        let size: Int
        let first: [Int]
        let count: [Int]
        let weights: [Int32]

        init(inputSize: Int, outputSize: Int, filter: ResampleFilter) {
            // Pillow passes the box as floats: (in1 - in0) is a float subtraction.
            let in0: Float = 0, in1 = Float(inputSize)
            let scale = Double(in1 - in0) / Double(outputSize)
            let filterScale = max(scale, 1.0)
            let support = filter.support * filterScale
            let size = Int(support.rounded(.up)) * 2 + 1
            var first = [Int](repeating: 0, count: outputSize)
            var count = [Int](repeating: 0, count: outputSize)
            var weights = [Int32](repeating: 0, count: outputSize * size)
            var k = [Double](repeating: 0, count: size)
            let one = Double(Int32(1) << Resampler.precisionBits)
            for xx in 0..<outputSize {
                let center = Double(in0) + (Double(xx) + 0.5) * scale
                let ss = 1.0 / filterScale
                var xmin = Int(center - support + 0.5)
                if xmin < 0 { xmin = 0 }
                var xmax = Int(center + support + 0.5)
                if xmax > inputSize { xmax = inputSize }
                xmax -= xmin
                var ww = 0.0
                for x in 0..<xmax {
                    let w = filter.weight((Double(x + xmin) - center + 0.5) * ss)
                    k[x] = w
                    ww += w
                }
                for x in 0..<xmax where ww != 0.0 { k[x] /= ww }
                for x in 0..<xmax {
                    let v = k[x]
                    weights[xx * size + x] = v < 0 ? Int32(-0.5 + v * one) : Int32(0.5 + v * one)
                }
                first[xx] = xmin
                count[xx] = max(0, xmax)
            }
            self.size = size
            self.first = first
            self.count = count
            self.weights = weights
        }
    }

    /// Resizes to `width` x `height` as Pillow's `image.resize((width, height), resample=filter)`.
    public static func resize(_ image: RGBImage, width: Int, height: Int, filter: ResampleFilter) -> RGBImage {
        resize(image, width: width, height: height, filter: filter, columns: 0..<width, rows: 0..<height)
    }

    /// Computes only the window `columns` x `rows` of the resized image. Every output pixel
    /// depends only on its own taps, so this equals resizing and then cropping, without
    /// computing (or allocating) the parts a crop throws away.
    public static func resize(_ image: RGBImage, width: Int, height: Int, filter: ResampleFilter,
                              columns: Range<Int>, rows: Range<Int>) -> RGBImage {
        let columns = columns.clamped(to: 0..<max(0, width)), rows = rows.clamped(to: 0..<max(0, height))
        guard !columns.isEmpty, !rows.isEmpty else { return RGBImage(unchecked: 0, 0, []) }
        let needsHorizontal = width != image.width
        let needsVertical = height != image.height
        if !needsHorizontal && !needsVertical {
            return crop(image, columns: columns, rows: rows)
        }
        // Source rows the vertical pass reads (all rows of the window when it does not run).
        let vertical = needsVertical ? Taps(inputSize: image.height, outputSize: height, filter: filter) : nil
        let sourceRows: Range<Int>
        if let v = vertical {
            sourceRows = v.first[rows.lowerBound]..<(v.first[rows.upperBound - 1] + v.count[rows.upperBound - 1])
        } else {
            sourceRows = rows
        }
        let stage: RGBImage
        if needsHorizontal {
            let taps = Taps(inputSize: image.width, outputSize: width, filter: filter)
            stage = horizontalPass(image, taps: taps, columns: columns, rows: sourceRows)
        } else {
            stage = crop(image, columns: columns, rows: sourceRows)
        }
        guard let v = vertical else { return stage }
        return verticalPass(stage, firstRow: sourceRows.lowerBound, taps: v, rows: rows)
    }

    @inline(__always)
    static func clip8(_ value: Int32) -> UInt8 {
        let v = value >> precisionBits
        return v < 0 ? 0 : v > 255 ? 255 : UInt8(truncatingIfNeeded: v)
    }

    /// Output columns `columns` for input rows `rows`.
    static func horizontalPass(_ image: RGBImage, taps: Taps, columns: Range<Int>, rows: Range<Int>) -> RGBImage {
        let outWidth = columns.count
        var out = [UInt8](repeating: 0, count: outWidth * rows.count * 3)
        let half = Int32(1) << (precisionBits - 1)
        image.pixels.withUnsafeBufferPointer { src in
            taps.weights.withUnsafeBufferPointer { weights in
                out.withUnsafeMutableBufferPointer { dst in
                    var o = 0
                    for y in rows {
                        let row = y * image.width * 3
                        for xx in columns {
                            let first = taps.first[xx], count = taps.count[xx]
                            let k = xx * taps.size
                            var r = half, g = half, b = half
                            var p = row + first * 3
                            for x in 0..<count {
                                let w = weights[k + x]
                                r &+= Int32(src[p]) &* w
                                g &+= Int32(src[p + 1]) &* w
                                b &+= Int32(src[p + 2]) &* w
                                p += 3
                            }
                            dst[o] = clip8(r)
                            dst[o + 1] = clip8(g)
                            dst[o + 2] = clip8(b)
                            o += 3
                        }
                    }
                }
            }
        }
        return RGBImage(unchecked: outWidth, rows.count, out)
    }

    /// Output rows `rows` from `image`, whose row 0 is input row `firstRow`.
    static func verticalPass(_ image: RGBImage, firstRow: Int, taps: Taps, rows: Range<Int>) -> RGBImage {
        let stride = image.width * 3
        var out = [UInt8](repeating: 0, count: stride * rows.count)
        var accumulator = [Int32](repeating: 0, count: stride)
        let half = Int32(1) << (precisionBits - 1)
        image.pixels.withUnsafeBufferPointer { src in
            taps.weights.withUnsafeBufferPointer { weights in
                accumulator.withUnsafeMutableBufferPointer { acc in
                    out.withUnsafeMutableBufferPointer { dst in
                        for (n, yy) in rows.enumerated() {
                            for i in 0..<stride { acc[i] = half }
                            let first = taps.first[yy] - firstRow, k = yy * taps.size
                            for y in 0..<taps.count[yy] {
                                let w = weights[k + y]
                                let row = (first + y) * stride
                                for i in 0..<stride { acc[i] &+= Int32(src[row + i]) &* w }
                            }
                            let o = n * stride
                            for i in 0..<stride { dst[o + i] = clip8(acc[i]) }
                        }
                    }
                }
            }
        }
        return RGBImage(unchecked: image.width, rows.count, out)
    }

    static func crop(_ image: RGBImage, columns: Range<Int>, rows: Range<Int>) -> RGBImage {
        if columns == 0..<image.width, rows == 0..<image.height { return image }
        var out: [UInt8] = []
        out.reserveCapacity(columns.count * rows.count * 3)
        for y in rows {
            let start = (y * image.width + columns.lowerBound) * 3
            out += image.pixels[start..<(start + columns.count * 3)]
        }
        return RGBImage(unchecked: columns.count, rows.count, out)
    }
}
