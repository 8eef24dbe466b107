import Foundation
import Imaging
import Testing
import TestSupport

@Suite struct PreprocessingTests {
    /// Pillow's resize (all five filters, up and down, 1x1, 1xN, Nx1, extreme aspect) and the
    /// processors' resize + centre crop in both modes with both encoders' filters: identical bytes.
    @Test(arguments: Expectations.loaded.resize)
    func resizeIsIdenticalToPillow(_ c: Expectations.ResizeCase) throws {
        let source = try ImageDecoder.decode(Expectations.bytes(c.image), options: DecodeOptions(appliesExifOrientation: false))
        let filter = try #require(ResampleFilter(rawValue: c.resample))
        let out: RGBImage
        switch c.kind {
        case "resize":
            out = Resampler.resize(source, width: try #require(c.width), height: try #require(c.height), filter: filter)
        default:
            let size = try #require(c.size)
            let resize: PreprocessSettings.Resize = c.kind == "exact"
                ? .exact(PixelSize(height: size[0], width: size[1])) : .shortestEdge(size[0])
            let crop = c.crop.map { PixelSize(height: $0[0], width: $0[1]) }
            let settings = PreprocessSettings(resize: resize, centerCrop: crop, resample: filter,
                                              rescaleFactor: nil, normalization: nil)
            out = try ImagePreprocessor(settings: settings).resizedImage(source)
        }
        #expect(out.pixelsDigest == .init(width: c.out_width, height: c.out_height, sha256: c.sha256))
    }

    static let references: [(String, String)] = ["gen2", "gen3"].flatMap { generation in
        let folder = Fixtures.generation(generation).appendingPathComponent("ref-images")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        return names.sorted().map { (generation, $0) }
    }

    static func settings(_ generation: String) throws -> PreprocessSettings {
        let folder = generation == "gen2" ? "clip-vit-base-patch16" : "siglip2-base-p32-256-ve"
        let url = Fixtures.generation(generation).appendingPathComponent(folder).appendingPathComponent("preprocessor_config.json")
        return try PreprocessSettings(preprocessorConfig: Data(contentsOf: url))
    }

    @Test func upstreamReferencesArePresent() {
        #expect(Self.references.filter { $0.0 == "gen2" }.count == 4)
        #expect(Self.references.filter { $0.0 == "gen3" }.count == 2)
    }

    /// Upstream's processor outputs: resized_u8 identical, pixel_values within 1e-5.
    @Test(arguments: references)
    func processorOutputMatchesUpstream(_ generation: String, _ name: String) throws {
        let folder = Fixtures.generation(generation)
        let image = try ImageDecoder.decode(contentsOf: folder.appendingPathComponent("images/\(name).jpg"),
                                            options: DecodeOptions(appliesExifOrientation: false))
        let preprocessor = try ImagePreprocessor(settings: Self.settings(generation))
        let resized = try preprocessor.resizedImage(image)
        let expected = try NPYArray(contentsOf: folder.appendingPathComponent("ref-images/\(name)/resized_u8.npy"))
        #expect(expected.shape == [3, resized.height, resized.width])
        // (3, H, W) planes against our interleaved pixels.
        let plane = resized.width * resized.height
        var chw = [UInt8](repeating: 0, count: plane * 3)
        for i in 0..<plane { for c in 0..<3 { chw[c * plane + i] = resized.pixels[3 * i + c] } }
        #expect(chw == expected.bytes)

        let values = preprocessor.pixelValues(ofResized: resized)
        let reference = try NPYArray(contentsOf: folder.appendingPathComponent("ref-images/\(name)/pixel_values.npy"))
        #expect(reference.shape == [1, 3, values.height, values.width])
        let maxDifference = zip(values.values, reference.floats).map { abs($0 - $1) }.max() ?? .infinity
        #expect(maxDifference <= 1e-5)
    }

    @Test func preprocessorConfigsGiveTheReleasedSettings() throws {
        #expect(try Self.settings("gen2") == .clip)
        #expect(try Self.settings("gen3") == .siglip)
    }

    @Test(arguments: [
        #"{"image_processor_type": "ViTImageProcessor"}"#,
        #"{"image_processor_type": "SiglipImageProcessor", "resample": 0}"#,
        #"{"feature_extractor_type": "CLIPFeatureExtractor", "image_std": [0.5, 0, 0.5]}"#,
        #"{"feature_extractor_type": "CLIPFeatureExtractor", "image_mean": [0.5]}"#,
        #"{"feature_extractor_type": "CLIPFeatureExtractor", "size": {"longest_edge": 224}}"#,
        #"[1, 2]"#,
        #"not json"#,
    ])
    func unusableConfigIsRefused(_ json: String) {
        #expect(throws: ImageError.self) { try PreprocessSettings(preprocessorConfig: Data(json.utf8)) }
    }

    /// Upstream's processor crashes on these; both encoders' settings and both filters work here.
    @Test(arguments: ["noise-1x1.png", "noise-61x1.png", "noise-1x45.png", "tiny-1x1.jpg", "strip-61x1.jpg"],
          [ResampleFilter.bilinear, .bicubic])
    func degenerateImagesPreprocess(_ name: String, _ filter: ResampleFilter) throws {
        let image = try ImageDecoder.decode(Expectations.bytes(name))
        for var settings in [PreprocessSettings.clip, .siglip] {
            settings.resample = filter
            let values = try ImagePreprocessor(settings: settings).pixelValues(image)
            let side = settings == .siglip || settings.resize == .exact(PixelSize(height: 256, width: 256)) ? 256 : 224
            #expect(values.height == side && values.width == side)
            #expect(values.values.count == 3 * side * side)
            #expect(values.values.allSatisfy { $0.isFinite && abs($0) < 3 })
        }
    }

    /// A strip whose shortest-edge resize would be 224 x 8960000 without a crop is refused;
    /// with the crop only the 224 x 224 window is computed.
    @Test func hugeResizeWithoutCropIsRefused() throws {
        let strip = try RGBImage(width: 40000, height: 1, pixels: [UInt8](repeating: 77, count: 120_000))
        var settings = PreprocessSettings.clip
        settings.centerCrop = nil
        #expect(throws: ImageError.tooLarge(width: 8_960_000, height: 224, limitPixels: 40_000_000)) {
            try ImagePreprocessor(settings: settings).resizedImage(strip)
        }
        let cropped = try ImagePreprocessor(settings: .clip).resizedImage(strip)
        #expect(cropped.width == 224 && cropped.height == 224 && cropped.pixels.allSatisfy { $0 == 77 })
    }

    /// A 1x1 image scaled up is one flat colour: every output value is the input's.
    @Test(arguments: [ResampleFilter.bilinear, .bicubic, .lanczos])
    func singlePixelScalesToAFlatImage(_ filter: ResampleFilter) throws {
        let pixel = try RGBImage(width: 1, height: 1, pixels: [200, 30, 90])
        let out = Resampler.resize(pixel, width: 9, height: 4, filter: filter)
        #expect(out.width == 9 && out.height == 4)
        for i in 0..<36 { #expect(out[x: i % 9, y: i / 9] == (200, 30, 90)) }
    }

    /// A crop larger than the resized image is zero-padded as transformers' center_crop does.
    @Test func cropLargerThanImageIsZeroPadded() throws {
        let image = try RGBImage(width: 2, height: 1, pixels: [10, 20, 30, 40, 50, 60])
        let settings = PreprocessSettings(resize: nil, centerCrop: PixelSize(height: 3, width: 4), resample: .bicubic,
                                          rescaleFactor: nil, normalization: nil)
        let out = try ImagePreprocessor(settings: settings).resizedImage(image)
        // top = (1 - 3) // 2 = -1 -> one padded row above; left = (2 - 4) // 2 = -1 -> one column.
        #expect(out.width == 4 && out.height == 3)
        #expect(out.pixels == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                               0, 0, 0, 10, 20, 30, 40, 50, 60, 0, 0, 0,
                               0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    }

    @Test func normalisationIsChannelFirst() throws {
        let image = try RGBImage(width: 2, height: 1, pixels: [0, 128, 255, 255, 0, 51])
        let values = try ImagePreprocessor(settings: .siglip).pixelValues(ofResized: image)
        // (v / 255 - 0.5) / 0.5, channel planes R, G, B.
        let expected: [Float] = [-1, 1, Float(128.0 / 255.0) * 2 - 1, -1, 1, Float(51.0 / 255.0) * 2 - 1]
        for (a, b) in zip(values.values, expected) { #expect(abs(a - b) < 1e-6) }
    }
}

@Suite struct ModelFileSettingsTests {
    /// The values the converter stores in the model file give the same settings as the JSON,
    /// including the float32 rescale factor read back as exactly 1/255.
    @Test func modelFileValuesGiveTheProcessorSettings() throws {
        let clip = try PreprocessSettings(resizeMode: "shortest_edge", size: [224], cropSize: [224, 224], resample: 3,
                                          rescaleFactor: Float(1.0 / 255.0),
                                          mean: [0.48145466, 0.4578275, 0.40821073],
                                          std: [0.26862954, 0.26130258, 0.27577711])
        #expect(clip == .clip)
        let siglip = try PreprocessSettings(resizeMode: "exact", size: [256, 256], cropSize: nil, resample: 2,
                                            rescaleFactor: Float(1.0 / 255.0), mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5])
        #expect(siglip == .siglip)
    }

    @Test func inconsistentModelFileValuesAreRefused() {
        #expect(throws: ImageError.self) {
            try PreprocessSettings(resizeMode: "exact", size: [224], cropSize: nil, resample: 2,
                                   rescaleFactor: 1, mean: [0, 0, 0], std: [1, 1, 1])
        }
        #expect(throws: ImageError.self) {
            try PreprocessSettings(resizeMode: "shortest_edge", size: [224], cropSize: [224], resample: 3,
                                   rescaleFactor: 1, mean: [0, 0, 0], std: [1, 1, 1])
        }
        #expect(throws: ImageError.self) {
            try PreprocessSettings(resizeMode: "shortest_edge", size: [224], cropSize: nil, resample: 7,
                                   rescaleFactor: 1, mean: [0, 0, 0], std: [1, 1, 1])
        }
    }
}
