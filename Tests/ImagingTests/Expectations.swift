import Crypto
import Foundation
import Imaging
import TestSupport
import Testing

/// Tests/Data/imaging/expected.json, written by Tools/imaging/generate.py with Pillow 13.0.0.
struct Expectations: Decodable {
    struct Pixels: Decodable, Equatable, CustomStringConvertible {
        let width: Int
        let height: Int
        let sha256: String
        var description: String { "\(width)x\(height) \(sha256.prefix(12))" }
    }

    struct File: Decodable {
        let bytes: Int?
        let upright: Pixels?
        let as_stored: Pixels?
        let pillow_error: String?
    }

    struct ResizeCase: Decodable, CustomTestStringConvertible {
        let image: String
        let kind: String          // "resize", "shortest_edge", "exact"
        let width: Int?
        let height: Int?
        let size: [Int]?
        let crop: [Int]?
        let resample: Int
        let out_width: Int
        let out_height: Int
        let sha256: String
        var testDescription: String {
            kind == "resize"
                ? "\(image) -> \(width ?? 0)x\(height ?? 0) filter \(resample)"
                : "\(image) \(kind) \(size ?? []) crop \(crop ?? []) filter \(resample)"
        }
    }

    let files: [String: File]
    let shared: [String: File]
    let resize: [ResizeCase]

    static let data = Fixtures.packageRoot.appendingPathComponent("Tests/Data/imaging")
    static let loaded: Expectations = (try? load()) ?? Expectations(files: [:], shared: [:], resize: [])

    static func load() throws -> Expectations {
        let json = try Data(contentsOf: data.appendingPathComponent("expected.json"))
        return try JSONDecoder().decode(Expectations.self, from: json)
    }

    /// A test image by name, or a shared file for "minimind/..." names.
    static func url(_ name: String) -> URL {
        name.hasPrefix("minimind/")
            ? Fixtures.shared.appendingPathComponent(name)
            : data.appendingPathComponent("images").appendingPathComponent(name)
    }

    static func bytes(_ name: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: url(name))) }
}

extension RGBImage {
    var pixelsDigest: Expectations.Pixels { .init(width: width, height: height, sha256: SHA256.hex(pixels)) }
}

/// Hex SHA-256 through swift-crypto (BoringSSL's assembly: fast even in debug test builds).
enum SHA256 {
    static func hex(_ bytes: [UInt8]) -> String {
        Crypto.SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
    }
}
