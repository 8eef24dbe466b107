/// Finds the orientation Pillow's `Image.getexif()` would report for a JPEG or PNG: the EXIF
/// orientation tag of IFD0, or, when there is none, `tiff:Orientation` in the XMP packet.
///
/// Pillow reads JPEG APP1 "Exif" segments (several are concatenated) and XMP APP1 segments;
/// for PNG the eXIf chunk, else a tEXt "Raw profile type exif" (hex), and an uncompressed
/// iTXt "XML:com.adobe.xmp". Malformed metadata means "no orientation", never an error.
enum ExifReader {
    /// The orientation value (1...8 are meaningful; others are returned and ignored by callers).
    static func orientation(in bytes: [UInt8], format: ImageFormat) -> Int? {
        let metadata = format == .jpeg ? jpegMetadata(bytes) : pngMetadata(bytes)
        if let exif = metadata.exif, let value = tiffOrientation(exif) { return value }
        if let xmp = metadata.xmp { return xmpOrientation(xmp) }
        return nil
    }

    // MARK: containers

    private static func jpegMetadata(_ b: [UInt8]) -> (exif: [UInt8]?, xmp: [UInt8]?) {
        var exif: [UInt8]?
        var xmp: [UInt8]?
        let exifHeader: [UInt8] = Array("Exif\0\0".utf8)
        let xmpHeader: [UInt8] = Array("http://ns.adobe.com/xap/1.0/\0".utf8)
        var i = 2
        while i + 1 < b.count {
            guard b[i] == 0xFF else { i += 1; continue }  // junk between segments, as Pillow skips it
            let marker = b[i + 1]
            if marker == 0xFF { i += 1; continue }         // fill byte
            if marker == 0xD8 || marker == 0x01 || (0xD0...0xD7).contains(marker) || marker == 0x00 { i += 2; continue }
            if marker == 0xDA || marker == 0xD9 { break }  // image data starts: no metadata after it
            guard i + 3 < b.count else { break }
            let length = Int(b[i + 2]) << 8 | Int(b[i + 3])
            let start = i + 4, end = min(b.count, i + 2 + length)
            guard length >= 2, start <= end else { break }
            let segment = b[start..<end]
            if marker == 0xE1, segment.starts(with: exifHeader) {
                if exif == nil { exif = Array(segment) } else { exif! += segment.dropFirst(6) }
            } else if marker == 0xE1, segment.starts(with: xmpHeader) {
                xmp = Array(segment.dropFirst(xmpHeader.count))
            }
            i = i + 2 + length
        }
        return (exif, xmp)
    }

    private static func pngMetadata(_ b: [UInt8]) -> (exif: [UInt8]?, xmp: [UInt8]?) {
        var exif: [UInt8]?
        var rawProfile: [UInt8]?
        var xmp: [UInt8]?
        var i = 8
        while i + 8 <= b.count {
            let length = Int(b[i]) << 24 | Int(b[i + 1]) << 16 | Int(b[i + 2]) << 8 | Int(b[i + 3])
            let type = String(decoding: b[(i + 4)..<(i + 8)], as: UTF8.self)
            let start = i + 8
            guard length >= 0, start + length <= b.count else { break }
            let data = b[start..<(start + length)]
            switch type {
            case "eXIf": exif = Array("Exif\0\0".utf8) + data
            case "tEXt":
                if let zero = data.firstIndex(of: 0),
                   String(decoding: data[data.startIndex..<zero], as: UTF8.self) == "Raw profile type exif" {
                    rawProfile = hexProfile(Array(data[(zero + 1)...]))
                }
            case "iTXt":
                // keyword \0 compression-flag compression-method language \0 translated \0 text
                if let zero = data.firstIndex(of: 0),
                   String(decoding: data[data.startIndex..<zero], as: UTF8.self) == "XML:com.adobe.xmp",
                   zero + 2 < data.endIndex, data[zero + 1] == 0 {
                    var rest = data[(zero + 3)...]
                    if let languageEnd = rest.firstIndex(of: 0) {
                        rest = rest[(languageEnd + 1)...]
                        if let translatedEnd = rest.firstIndex(of: 0) { xmp = Array(rest[(translatedEnd + 1)...]) }
                    }
                }
            case "IEND": return (exif ?? rawProfile, xmp)
            default: break
            }
            i = start + length + 4
        }
        return (exif ?? rawProfile, xmp)
    }

    /// Pillow: `bytes.fromhex("".join(text.split("\n")[3:]))`.
    private static func hexProfile(_ text: [UInt8]) -> [UInt8]? {
        let lines = text.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        guard lines.count > 3 else { return nil }
        var out: [UInt8] = []
        var high: UInt8?
        for line in lines[3...] {
            for c in line {
                let v: UInt8
                switch c {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): v = c - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): v = c - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): v = c - UInt8(ascii: "A") + 10
                case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\r"): continue
                default: return nil
                }
                if let h = high { out.append(h << 4 | v); high = nil } else { high = v }
            }
        }
        return high == nil ? out : nil
    }

    // MARK: payloads

    /// The orientation entry of IFD0 in a TIFF structure (leading "Exif\0\0" headers skipped).
    static func tiffOrientation(_ exif: [UInt8]) -> Int? {
        var t = exif[...]
        let prefix: [UInt8] = Array("Exif\0\0".utf8)
        while t.starts(with: prefix) { t = t.dropFirst(6) }
        let d = Array(t)
        guard d.count >= 8 else { return nil }
        let little: Bool
        if d[0] == 0x49, d[1] == 0x49, d[2] == 0x2A, d[3] == 0 { little = true }
        else if d[0] == 0x4D, d[1] == 0x4D, d[2] == 0, d[3] == 0x2A { little = false }
        else { return nil }
        func u16(_ o: Int) -> Int? {
            guard o >= 0, o + 2 <= d.count else { return nil }
            return little ? Int(d[o]) | Int(d[o + 1]) << 8 : Int(d[o]) << 8 | Int(d[o + 1])
        }
        func u32(_ o: Int) -> Int? {
            guard let a = u16(o), let b = u16(o + 2) else { return nil }
            return little ? a | b << 16 : a << 16 | b
        }
        guard let ifd = u32(4), let count = u16(ifd) else { return nil }
        for entry in 0..<count {
            let e = ifd + 2 + 12 * entry
            guard let tag = u16(e), let type = u16(e + 2), let n = u32(e + 4) else { return nil }
            guard tag == 0x0112 else { continue }
            // Pillow hands back a tuple for count != 1, which matches no orientation.
            guard n == 1 else { return nil }
            switch type {
            case 1, 6: return e + 8 < d.count ? Int(d[e + 8]) : nil   // BYTE / SBYTE
            case 3, 8: return u16(e + 8)                              // SHORT / SSHORT
            case 4, 9: return u32(e + 8)                              // LONG / SLONG
            default: return nil
            }
        }
        return nil
    }

    /// Pillow's `re.search(rb'tiff:Orientation(="|>)([0-9])', xmp)`.
    static func xmpOrientation(_ xmp: [UInt8]) -> Int? {
        let key: [UInt8] = Array("tiff:Orientation".utf8)
        guard xmp.count > key.count + 1 else { return nil }
        var i = 0
        while i + key.count < xmp.count {
            if xmp[i] == key[0], xmp[i..<(i + key.count)].elementsEqual(key) {
                var j = i + key.count
                if xmp[j] == UInt8(ascii: "="), j + 1 < xmp.count, xmp[j + 1] == UInt8(ascii: "\"") { j += 2 }
                else if xmp[j] == UInt8(ascii: ">") { j += 1 }
                else { i += 1; continue }
                if j < xmp.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(xmp[j]) {
                    return Int(xmp[j] - UInt8(ascii: "0"))
                }
            }
            i += 1
        }
        return nil
    }
}
