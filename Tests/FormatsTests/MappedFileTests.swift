import Foundation
import Formats
import Testing

/// Releasing the resident pages of bytes that were copied elsewhere (Q8_0 weights packed at load)
/// must never change what the map reads.
@Suite struct MappedFileReleaseTests {
    func pattern(_ count: Int) -> [UInt8] { (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 2654435761 >> 7) } }

    @Test func releasedPagesOfAFileReadTheSameBytesAgain() throws {
        let bytes = pattern(5 * 4096 + 123)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("release-\(UUID().uuidString).bin")
        try Data(bytes).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        let file = try MappedFile(path: url.path)
        #expect(file.bytes(0..<file.count) == bytes)
        // A range that starts and ends inside pages: the neighbouring bytes are re-read too.
        file.releaseResidentPages(1000..<(3 * 4096 + 17))
        #expect(file.bytes(0..<file.count) == bytes)
        TensorBytes(file: file, range: 4096..<(5 * 4096 + 123)).releaseResidentPages()
        #expect(file.bytes(0..<file.count) == bytes)
    }

    @Test func inMemoryFilesKeepTheirBytes() throws {
        // Anonymous memory has no file to read again: releasing it would zero it.
        let bytes = pattern(3 * 4096)
        let file = try MappedFile(bytes: bytes, path: "in-memory.gguf")
        file.releaseResidentPages(0..<file.count)
        #expect(file.bytes(0..<file.count) == bytes)
    }
}
