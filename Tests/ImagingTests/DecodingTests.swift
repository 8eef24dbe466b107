import Foundation
import Imaging
import Testing
import TestSupport

@Suite struct DecodingTests {
    @Test func sha256MatchesTheStandardVectors() {
        #expect(SHA256.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex(Array(repeating: UInt8(ascii: "a"), count: 1000)) ==
            "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3")
    }

    /// Guards the parameterised tests below against running on an empty list.
    @Test func expectationsAreComplete() throws {
        let e = try Expectations.load()
        #expect(e.shared.count == 22)  // 16 in shared/minimind/images + 6 fixture copies
        #expect(e.files.count >= 60)
        #expect(e.resize.count >= 280)
        let jpegs = try FileManager.default.contentsOfDirectory(atPath: Fixtures.minimind.appendingPathComponent("images").path)
        for name in jpegs { #expect(e.shared["images/\(name)"] != nil, "no Pillow hash for \(name)") }
    }

    /// Every JPEG in shared/minimind/images and the fixtures decodes to Pillow's pixels,
    /// as stored (upstream's pipeline) and turned upright.
    @Test(arguments: Expectations.loaded.shared.keys.sorted())
    func sharedJPEGDecodesToPillowPixels(_ name: String) throws {
        let expected = try #require(Expectations.loaded.shared[name])
        let bytes = try [UInt8](Data(contentsOf: Fixtures.minimind.appendingPathComponent(name)))
        let stored = try ImageDecoder.decode(bytes, options: DecodeOptions(appliesExifOrientation: false))
        #expect(stored.pixelsDigest == expected.as_stored)
        if let orientation = ImageDecoder.orientation(of: bytes), orientation != .up {
            #expect(try ImageDecoder.decode(bytes).pixelsDigest == expected.upright)
        } else {
            // No rotation to apply: the default decode is the same bytes, and so is Pillow's.
            #expect(expected.upright == expected.as_stored)
        }
    }

    /// The hashes upstream's fixture generator recorded for its own images.
    @Test(arguments: ["gen2", "gen3"])
    func fixtureImagesMatchTheManifestHashes(_ generation: String) throws {
        let folder = Fixtures.generation(generation)
        let manifest = try JSONSerialization.jsonObject(
            with: Data(contentsOf: folder.appendingPathComponent("manifest.json"))) as? [String: Any]
        let images = try #require(manifest?["images"] as? [String: [String: Any]])
        #expect(!images.isEmpty)
        for (name, entry) in images {
            let file = try #require(entry["file"] as? String)
            let size = try #require(entry["decoded_size_wh"] as? [Int])
            let image = try ImageDecoder.decode(contentsOf: folder.appendingPathComponent(file),
                                                options: DecodeOptions(appliesExifOrientation: false))
            #expect([image.width, image.height] == size, "\(name)")
            #expect(SHA256.hex(image.pixels) == entry["decoded_rgb_sha256"] as? String, "\(name)")
        }
    }

    /// Progressive, 4:2:0/4:2:2/4:4:4, grey, CMYK, YCCK, 1x1, 1-pixel-tall; PNG of every
    /// colour type and depth, palette with tRNS, Adam7; EXIF orientations 1-8 (JPEG APP1,
    /// PNG eXIf, ImageMagick's hex profile, XMP): Pillow's pixels, upright and as stored.
    @Test(arguments: Expectations.loaded.files.filter { $0.value.pillow_error == nil && $0.key != "gif-renamed.jpg" }.keys.sorted())
    func testImageDecodesToPillowPixels(_ name: String) throws {
        let expected = try #require(Expectations.loaded.files[name])
        let bytes = try Expectations.bytes(name)
        let stored = try ImageDecoder.decode(bytes, options: DecodeOptions(appliesExifOrientation: false))
        #expect(stored.pixelsDigest == expected.as_stored)
        let upright = try ImageDecoder.decode(bytes)
        #expect(upright.pixelsDigest == expected.upright)
    }

    @Test func everyExifOrientationIsRead() throws {
        for value in 1...8 {
            let bytes = try Expectations.bytes("exif-orientation-\(value).jpg")
            #expect(ImageDecoder.orientation(of: bytes)?.rawValue == value)
        }
        #expect(ImageDecoder.orientation(of: try Expectations.bytes("exif-orientation-6.png")) == .rotatedLeft)
        #expect(ImageDecoder.orientation(of: try Expectations.bytes("rawprofile-orientation-3.png")) == .upsideDown)
        #expect(ImageDecoder.orientation(of: try Expectations.bytes("xmp-orientation-6.jpg")) == .rotatedLeft)
        #expect(ImageDecoder.orientation(of: try Expectations.bytes("baseline-420.jpg")) == nil)
    }

    /// Broken files give a typed error that names the problem; the process survives.
    @Test(arguments: [
        ("empty.jpg", ImageError.empty),
        ("not-an-image.jpg", .unrecognizedFormat(detected: nil)),
        ("gif-renamed.jpg", .unrecognizedFormat(detected: "a GIF")),
        ("oversized-60000x60000.jpg", .tooLarge(width: 60000, height: 60000, limitPixels: 40_000_000)),
        ("oversized-100000x100000.png", .tooLarge(width: 100000, height: 100000, limitPixels: 40_000_000)),
    ])
    func brokenFileIsRefusedWithItsReason(_ name: String, _ error: ImageError) throws {
        let bytes = try Expectations.bytes(name)
        #expect(throws: error) { try ImageDecoder.decode(bytes) }
    }

    @Test(arguments: ["truncated-half.jpg", "truncated-header.jpg", "truncated-progressive.jpg", "truncated.png",
                      "missing-eoi.jpg", "missing-eoi-progressive.jpg"])
    func truncatedFileIsAnError(_ name: String) throws {
        // Pillow refuses these too ("image file is truncated"); we do not grey-fill.
        #expect(Expectations.loaded.files[name]?.pillow_error != nil)
        let bytes = try Expectations.bytes(name)
        let error = try #require(throws: ImageError.self) { try ImageDecoder.decode(bytes) }
        guard case .truncated = error else {
            Issue.record("\(name): expected .truncated, got \(error)")
            return
        }
        #expect(error.description.contains("truncated"))
    }

    @Test(arguments: ["corrupt-header.jpg", "corrupt-idat.png"])
    func corruptFileIsAnError(_ name: String) throws {
        #expect(Expectations.loaded.files[name]?.pillow_error != nil)
        let bytes = try Expectations.bytes(name)
        let error = try #require(throws: ImageError.self) { try ImageDecoder.decode(bytes) }
        guard case .corrupt = error else {
            Issue.record("\(name): expected .corrupt, got \(error)")
            return
        }
    }

    /// Prefixes and one-byte corruptions of a JPEG and a PNG: an image or an error, never a crash.
    @Test(arguments: ["progressive-420.jpg", "rgb8-interlaced.png", "exif-orientation-6.jpg"])
    func damagedVariantsNeverCrash(_ name: String) throws {
        let bytes = try Expectations.bytes(name)
        var decoded = 0, refused = 0
        for length in stride(from: 0, to: bytes.count, by: 7) {
            do { _ = try ImageDecoder.decode(Array(bytes[..<length])); decoded += 1 } catch { refused += 1 }
        }
        for i in stride(from: 2, to: bytes.count, by: 3) {
            var copy = bytes
            copy[i] ^= UInt8(truncatingIfNeeded: 0x5A &+ i)
            do { _ = try ImageDecoder.decode(copy); decoded += 1 } catch { refused += 1 }
        }
        #expect(refused > 0)
    }

    @Test func pixelLimitIsConfigurable() throws {
        let bytes = try Expectations.bytes("baseline-420.jpg")  // 48 x 32 = 1536 pixels
        #expect(throws: ImageError.tooLarge(width: 48, height: 32, limitPixels: 1535)) {
            try ImageDecoder.decode(bytes, options: DecodeOptions(maxPixels: 1535))
        }
        #expect(try ImageDecoder.decode(bytes, options: DecodeOptions(maxPixels: 1536)).width == 48)
        let png = try Expectations.bytes("rgb8.png")  // 37 x 23
        #expect(throws: ImageError.tooLarge(width: 37, height: 23, limitPixels: 100)) {
            try ImageDecoder.decode(png, options: DecodeOptions(maxPixels: 100))
        }
    }

    @Test func missingFileIsReportedWithItsPath() {
        let url = URL(fileURLWithPath: "/nonexistent/picture.jpg")
        let error = #expect(throws: ImageError.self) { try ImageDecoder.decode(contentsOf: url) }
        #expect(error?.description.contains("/nonexistent/picture.jpg") == true)
    }
}
