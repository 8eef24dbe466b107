import Foundation
import Formats
import Testing
import TestSupport

/// A small seeded generator so that a failing fuzz case can be replayed.

/// Opens `bytes` as a weight file the way users' files are opened, and reads a few tensors'
/// values when that succeeds. Returns the error, or nil on success. The bytes stay in memory
/// (`MappedFile(bytes:path:)`): thousands of rounds cost no disk writes.
func openAndRead(_ bytes: [UInt8], name: String) throws -> FormatError? {
    formatError { () throws(FormatError) in
        let source = try openTensorFile(file: try MappedFile(bytes: bytes, path: name))
        for tensor in source.tensors.prefix(4) {
            _ = tensor.bytes.array
            if tensor.dtype.isFloatingPoint { _ = try tensor.floatValues() }
        }
    }
}

@Suite struct CorruptInput {
    /// Small files whose every prefix is tried.
    static let smallFiles = ["protocol4.pth", "views-legacy.pth", "nested-state-dict-legacy.pth",
                             "sharded-00001-of-00002.safetensors", "parameters.pth"]

    @Test(arguments: smallFiles)
    func everyTruncationIsAnError(file: String) throws {
        let bytes = try Files.bytes(Files.data(file))
        #expect(try openAndRead(bytes, name: file) == nil)
        var failures: [Int] = []
        for length in 0..<bytes.count where try openAndRead(Array(bytes[0..<length]), name: file) == nil {
            failures.append(length)
        }
        #expect(failures.isEmpty, "prefixes of \(file) that opened: \(failures.prefix(5))")
    }

    @Test func truncatedFixturesAreErrors() throws {
        // Sampled lengths of the real checkpoints, dense near the ends where the structure is.
        for path in [Files.fixture("gen2", "tiny/sft_vlm_64.pth"), Files.fixture("gen3", "siglip2-base-p32-256-ve/model.safetensors")] {
            let bytes = try Files.bytes(path)
            let lengths = Array(0..<64) + stride(from: 64, to: 12_000, by: 397) + [bytes.count / 2] + ((bytes.count - 300)..<bytes.count).filter { $0 % 7 == 0 }
            for length in lengths {
                let error = try openAndRead(Array(bytes[0..<length]), name: path)
                #expect(error?.kind == .malformed, "\(path) cut at \(length): \(error?.message ?? "opened")")
            }
        }
    }

    @Test func garbageBytesAreErrors() throws {
        var random = SplitMix64(seed: 7)
        let prefixes: [[UInt8]] = [[], [0x50, 0x4B, 0x03, 0x04], [0x80, 0x02], [0x80, 0x04, 0x95], [0x40, 0, 0, 0, 0, 0, 0, 0, 0x7B], Array("GGUF".utf8)]
        for round in 0..<240 {
            let length = Int.random(in: 0..<2048, using: &random)
            let bytes = prefixes[round % prefixes.count] + (0..<length).map { _ in UInt8.random(in: 0...255, using: &random) }
            let error = try openAndRead(bytes, name: "garbage.bin")
            #expect(error != nil, "round \(round) opened")
        }
    }

    /// Mutates the real fixtures at random (seeded): each round must end in success or a
    /// FormatError; a crash or a hang fails the whole run.
    @Test func randomlyMutatedFixturesNeverCrash() throws {
        let sources = [
            Files.fixture("gen2", "tiny/sft_vlm_64.pth"), Files.fixture("gen3", "tiny/hf-bin/pytorch_model.bin"),
            Files.fixture("gen2", "tiny/hf-safetensors/model.safetensors"), Files.fixture("gen3", "siglip2-base-p32-256-ve/model.safetensors"),
            Files.data("views.pth"), Files.data("views-legacy.pth"), Files.data("nested-model.pth"),
            Files.data("protocol5-legacy.pth"), Files.data("big-endian.pth"), Files.data("sharded-00002-of-00002.safetensors"),
        ]
        let originals = try sources.map { try Files.bytes($0) }
        var random = SplitMix64(seed: 20_251_130)
        var errors = 0, successes = 0
        let start = Date()
        for _ in 0..<300 {
            var bytes = originals[Int.random(in: 0..<originals.count, using: &random)]
            // Most rounds hit the structure: headers and pickles at the front, ZIP directories at the back.
            func position() -> Int {
                let window = min(bytes.count, 4096)
                switch Int.random(in: 0..<10, using: &random) {
                case 0..<5: return Int.random(in: 0..<max(window, 1), using: &random)
                case 5..<9: return bytes.count - 1 - Int.random(in: 0..<max(window, 1), using: &random)
                default: return Int.random(in: 0..<max(bytes.count, 1), using: &random)
                }
            }
            for _ in 0..<Int.random(in: 1...3, using: &random) where !bytes.isEmpty {
                switch Int.random(in: 0..<6, using: &random) {
                case 0, 1: // flip bytes
                    for _ in 0..<Int.random(in: 1...8, using: &random) { bytes[max(0, position())] ^= UInt8.random(in: 1...255, using: &random) }
                case 2: // truncate
                    bytes.removeSubrange(Int.random(in: 0..<bytes.count, using: &random)...)
                case 3: // insert
                    let at = max(0, position())
                    bytes.insert(contentsOf: (0..<Int.random(in: 1...16, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }, at: at)
                case 4: // an extreme 8-byte value (length fields, offsets)
                    let extremes: [[UInt8]] = [[UInt8](repeating: 0xFF, count: 8), [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F], [0, 0, 0, 0, 0, 0, 0, 0x80], [0, 0, 0, 0, 0, 0, 0, 0]]
                    let at = max(0, min(position(), bytes.count - 8))
                    let value = extremes[Int.random(in: 0..<extremes.count, using: &random)]
                    for i in 0..<min(8, bytes.count - at) { bytes[at + i] = value[i] }
                default: // delete a range
                    let at = max(0, position())
                    bytes.removeSubrange(at..<min(bytes.count, at + Int.random(in: 1...64, using: &random)))
                }
            }
            if try openAndRead(bytes, name: "mutated") == nil { successes += 1 } else { errors += 1 }
        }
        // Both outcomes occur, so the mutations reach the parsers rather than only the weights.
        #expect(errors > 50)
        #expect(successes > 10)
        #expect(Date().timeIntervalSince(start) < 30)
    }

    @Test func openingAFolderOrAMissingFileIsAnIOError() throws {
        let missing = formatError { () throws(FormatError) in _ = try openTensorFile(path: "/nonexistent/model.safetensors") }
        #expect(missing?.kind == .io)
        let empty = try Fixtures.temporaryDirectory("empty-folder")
        let folder = formatError { () throws(FormatError) in _ = try openTensorFile(path: empty.path) }
        #expect(folder?.kind == .invalidModel)
    }
}
