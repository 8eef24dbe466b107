import Conversion
import Foundation
import TestSupport

/// A fixture converted to GGUF once per test process, shared by every test target in it: the file is named by its inputs in a per-process folder and
/// written under an exclusive `flock`, so concurrent tests wait instead of converting twice.
public enum ConvertedFixture {
    public static var folder: URL { FileManager.default.temporaryDirectory.appendingPathComponent("minimindv-fixtures-\(getpid())") }

    /// Removes the folder when the test process exits.
    private static let cleanup: Void = {
        atexit { try? FileManager.default.removeItem(at: ConvertedFixture.folder) }
    }()

    public static func path(name: String, checkpoint: URL, vision: URL, tokenizer: URL, type: OutputType) throws -> String {
        _ = cleanup
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let output = folder.appendingPathComponent("\(name)-\(type.rawValue).gguf").path
        let lock = open(output + ".lock", O_CREAT | O_RDWR | O_CLOEXEC, 0o644)
        guard lock >= 0 else { throw CocoaError(.fileWriteUnknown) }
        defer { close(lock) }
        flock(lock, LOCK_EX)
        defer { flock(lock, LOCK_UN) }
        if !FileManager.default.fileExists(atPath: output) {
            let partial = output + ".partial"
            _ = try Converter.convert(checkpoint: checkpoint.path, vision: vision.path, tokenizer: tokenizer.path,
                                      type: type, output: partial)
            try FileManager.default.moveItem(atPath: partial, toPath: output)
        }
        return output
    }
}
