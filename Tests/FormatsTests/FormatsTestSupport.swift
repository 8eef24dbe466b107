import Foundation
import Formats
import TestSupport

/// Small helpers shared by the Formats tests.
enum Files {
    static let dataFolder = Fixtures.packageRoot.appendingPathComponent("Tests/Data/formats")

    static func data(_ name: String) -> String { dataFolder.appendingPathComponent(name).path }

    static func fixture(_ generation: String, _ relative: String) -> String {
        Fixtures.generation(generation).appendingPathComponent(relative).path
    }

    /// Writes `bytes` to a fresh temporary file and returns its path.
    static func temporary(_ bytes: [UInt8], name: String = "file.bin") throws -> String {
        let folder = try Fixtures.temporaryDirectory("formats")
        let url = folder.appendingPathComponent(name)
        try Data(bytes).write(to: url)
        return url.path
    }

    static func bytes(_ path: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    static func json(_ path: String) throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path)))
        guard let dictionary = object as? [String: Any] else { throw CocoaError(.fileReadCorruptFile) }
        return dictionary
    }
}

/// A safetensors file assembled in memory, for tests that need a particular header.
func safetensorsBytes(header: String, data: [UInt8]) -> [UInt8] {
    let json = Array(header.utf8)
    var bytes = withUnsafeBytes(of: UInt64(json.count).littleEndian) { Array($0) }
    bytes += json
    bytes += data
    return bytes
}

/// Runs `body` and returns the FormatError it throws, or nil when it succeeds.
func formatError(_ body: () throws(FormatError) -> Void) -> FormatError? {
    do throws(FormatError) {
        try body()
        return nil
    } catch {
        return error
    }
}

extension Tensor {
    /// Shape and PyTorch dtype in the manifests' notation.
    var manifestEntry: String { "\(shape) \(dtype.rawValue)" }
}

/// Indices where |a - b| > |a| * relative + absolute, found with a plain loop (debug builds
/// spend a microsecond per closure call; the fixtures hold millions of values).
func indicesOutside(_ a: [Float], _ b: [Float], relative: Float, absolute: Float) -> [Int] {
    guard a.count == b.count else { return [-1] }
    var result: [Int] = []
    a.withUnsafeBufferPointer { x in
        b.withUnsafeBufferPointer { y in
            var i = 0
            while i < x.count {
                if !(abs(x[i] - y[i]) <= abs(x[i]) * relative + absolute) { result.append(i) }
                i += 1
            }
        }
    }
    return result
}
