import ArgumentParser
import Foundation
import Formats
import Imaging

struct Preprocess: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the pixels the vision encoder is fed, for comparison with a Python pipeline.",
        discussion: """
            --stage decoded: raw RGB bytes (height x width x 3) after decoding and EXIF rotation. \
            --stage resized: raw RGB bytes after resizing and centre cropping (Pillow-exact). \
            --stage normalized: little-endian float32, channel-first (3 x height x width), after \
            rescaling and normalising. The shape and timings are printed on stderr.
            The settings come from the model file (taken from the vision folder's \
            preprocessor_config.json at conversion), or from --preprocessor-config.
            """)

    enum Stage: String, ExpressibleByArgument, CaseIterable {
        case decoded, resized, normalized
    }

    @Option(help: "A converted .gguf model; its preprocessing settings are used.")
    var model: String?

    @Option(help: "A Hugging Face vision folder's preprocessor_config.json, instead of --model.")
    var preprocessorConfig: String?

    @Option(help: "The image: JPEG or PNG.")
    var image: String

    @Option(help: "decoded, resized or normalized.")
    var stage: Stage

    @Option(help: "The file to write.")
    var output: String

    @Flag(help: "Keep the pixels as stored, ignoring the EXIF orientation (upstream's exact Pillow pixels).")
    var noExifRotate = false

    @Option(help: "Refuse images with more pixels than this (checked before decoding).")
    var maxPixels = DecodeOptions.defaultMaxPixels

    func validate() throws {
        if model != nil && preprocessorConfig != nil {
            throw ValidationError("give --model or --preprocessor-config, not both")
        }
        if stage != .decoded && model == nil && preprocessorConfig == nil {
            throw ValidationError("--stage \(stage.rawValue) needs --model M.gguf or --preprocessor-config FILE")
        }
    }

    func run() async throws {
        do {
            try preprocess()
        } catch let error as ImageError {
            report("\(image): \(error)")
            throw ExitCode.failure
        } catch let error as FormatError {
            report(error.message)
            throw ExitCode.failure
        } catch let error as PreprocessFailure {
            report(error.message)
            throw ExitCode.failure
        }
    }

    struct PreprocessFailure: Error {
        let message: String
    }

    private func preprocess() throws {
        let settings = try loadSettings()
        let clock = ContinuousClock()
        let start = clock.now
        let decoded = try ImageDecoder.decode(
            contentsOf: URL(fileURLWithPath: image),
            options: DecodeOptions(maxPixels: maxPixels, appliesExifOrientation: !noExifRotate))
        var timings = ["decode \(milliseconds(clock.now - start))"]
        let bytes: Data
        let shape: String
        switch stage {
        case .decoded:
            bytes = Data(decoded.pixels)
            shape = "[\(decoded.height), \(decoded.width), 3] uint8 (height, width, RGB)"
        case .resized, .normalized:
            guard let settings else {
                throw PreprocessFailure(message: "--stage \(stage.rawValue) needs --model or --preprocessor-config")
            }
            let preprocessor = try ImagePreprocessor(settings: settings)
            let resizeStart = clock.now
            let resized = try preprocessor.resizedImage(decoded)
            timings.append("resize \(milliseconds(clock.now - resizeStart))")
            if stage == .resized {
                bytes = Data(resized.pixels)
                shape = "[\(resized.height), \(resized.width), 3] uint8 (height, width, RGB)"
            } else {
                let normalizeStart = clock.now
                let values = preprocessor.pixelValues(ofResized: resized)
                timings.append("normalize \(milliseconds(clock.now - normalizeStart))")
                bytes = values.values.withUnsafeBufferPointer { buffer in
                    var data = Data(capacity: buffer.count * 4)
                    for v in buffer { withUnsafeBytes(of: v.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
                    return data
                }
                shape = "[3, \(values.height), \(values.width)] float32 little-endian (channel, height, width)"
            }
        }
        do {
            try bytes.write(to: URL(fileURLWithPath: output))
        } catch {
            throw PreprocessFailure(message: "cannot write \(output): \(error.localizedDescription)")
        }
        FileHandle.standardError.write(Data("\(stage.rawValue): \(shape); \(timings.joined(separator: ", "))\n".utf8))
    }

    private func loadSettings() throws -> PreprocessSettings? {
        if let path = preprocessorConfig {
            let data: Data
            do {
                data = try Data(contentsOf: URL(fileURLWithPath: path))
            } catch {
                throw ImageError.invalidSettings("cannot read \(path): \(error.localizedDescription)")
            }
            return try PreprocessSettings(preprocessorConfig: data)
        }
        guard let model else { return nil }
        let file = try GGUFFile(path: model)
        let m = file.metadata
        func require<T>(_ value: T?, _ key: String) throws -> T {
            guard let value else {
                throw FormatError(.invalidModel, "\(model) has no \(key): was it converted with a vision encoder?")
            }
            return value
        }
        return try PreprocessSettings(
            resizeMode: require(m.string(ModelKey.resizeMode), ModelKey.resizeMode),
            size: require(m.integers(ModelKey.resizeSize), ModelKey.resizeSize),
            cropSize: m.integers(ModelKey.cropSize),
            resample: require(m.integer(ModelKey.resample), ModelKey.resample),
            rescaleFactor: require(m.float(ModelKey.rescaleFactor), ModelKey.rescaleFactor),
            mean: require(m.floats(ModelKey.imageMean), ModelKey.imageMean),
            std: require(m.floats(ModelKey.imageStd), ModelKey.imageStd))
    }

    private func milliseconds(_ d: Duration) -> String {
        let ms = Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
        return String(format: "%.1f ms", ms)
    }

    private func report(_ message: String) {
        FileHandle.standardError.write(Data("error: \(message)\n".utf8))
    }
}
