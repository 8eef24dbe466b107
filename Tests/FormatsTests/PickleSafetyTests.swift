import Foundation
import Formats
import Testing
import TestSupport

/// Hand-built hostile checkpoints (Tools/formats/make_test_data.py). The generator proved that
/// each payload runs under Python's unpickler by letting it create its marker file.
@Suite(.serialized) struct PickleSafety {
    static let cases: [(file: String, global: String, marker: String?)] = {
        guard let json = try? Files.json(Files.data("expected.json")),
              let malicious = json["malicious"] as? [String: [String: Any]] else { return [] }
        return malicious.keys.sorted().compactMap { file in
            guard let global = malicious[file]?["global"] as? String else { return nil }
            return (file, global, malicious[file]?["marker"] as? String)
        }
    }()

    @Test func everyHostileFileIsListed() {
        #expect(Self.cases.count == 6)
        #expect(Self.cases.contains { $0.global == "os.system" })
        #expect(Self.cases.contains { $0.global == "builtins.eval" })
        #expect(Self.cases.contains { $0.global == "collections.Counter" })
    }

    @Test(arguments: cases.map(\.file))
    func foreignGlobalIsRefusedByNameAndNothingRuns(file: String) throws {
        let entry = try #require(Self.cases.first { $0.file == file })
        if let marker = entry.marker { try? FileManager.default.removeItem(atPath: marker) }
        let error = formatError { () throws(FormatError) in _ = try openTensorFile(path: Files.data(file)) }
        #expect(error?.kind == .refused)
        #expect(error?.message.contains("refusing to load global \(entry.global) from") == true, "\(error?.message ?? "no error")")
        #expect(error?.message.contains("may be malicious") == true)
        if let marker = entry.marker {
            #expect(!FileManager.default.fileExists(atPath: marker), "the payload of \(file) ran")
        }
    }

    /// Builds a ZIP checkpoint around a pickle, as torch lays it out.
    func checkpoint(pickle: [UInt8]) throws -> String {
        try Files.temporary(storedZip([("archive/data.pkl", pickle), ("archive/byteorder", Array("little".utf8))]), name: "c.pth")
    }

    @Test func callingAStorageClassIsRefused() throws {
        let pickle: [UInt8] = [0x80, 0x02] + Array("ctorch\nFloatStorage\n".utf8) + [0x29, 0x52, 0x2E]
        let error = formatError { () throws(FormatError) in _ = try PyTorchCheckpoint(path: try! checkpoint(pickle: pickle)) }
        #expect(error?.kind == .refused)
        #expect(error?.message.contains("torch.FloatStorage") == true)
    }

    @Test func extensionRegistryAndInstOpcodesAreRefused() throws {
        let ext: [UInt8] = [0x80, 0x02, 0x82, 0x01, 0x2E]
        #expect(formatError { () throws(FormatError) in _ = try PyTorchCheckpoint(path: try! checkpoint(pickle: ext)) }?.kind == .refused)
        let inst: [UInt8] = [0x80, 0x02, 0x28] + Array("isubprocess\nPopen\n".utf8) + [0x2E]
        let error = formatError { () throws(FormatError) in _ = try PyTorchCheckpoint(path: try! checkpoint(pickle: inst)) }
        #expect(error?.message.contains("subprocess.Popen") == true)
    }

    @Test func pickleOfPlainValuesWithoutTensorsIsNotAModel() throws {
        // {"a": 1}: well-formed, allowed, but holds nothing to convert.
        let pickle: [UInt8] = [0x80, 0x02, 0x7D, 0x58, 1, 0, 0, 0, 0x61, 0x4B, 1, 0x73, 0x2E]
        let error = formatError { () throws(FormatError) in _ = try PyTorchCheckpoint(path: try! checkpoint(pickle: pickle)) }
        #expect(error?.kind == .invalidModel)
        #expect(error?.message.contains("holds no tensors") == true)
    }
}

/// A ZIP archive of stored entries (what torch.save writes), built in memory; `zip64` writes
/// the 64-bit records torch uses for archives over 4 GB, with every 32-bit field saturated.
func storedZip(_ entries: [(String, [UInt8])], zip64: Bool = false) -> [UInt8] {
    func u16(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF)] }
    func u32(_ v: Int) -> [UInt8] { u16(v & 0xFFFF) + u16(v >> 16 & 0xFFFF) }
    func u64(_ v: Int) -> [UInt8] { u32(v & 0xFFFF_FFFF) + u32(v >> 32) }
    var body: [UInt8] = []
    var directory: [UInt8] = []
    for (name, data) in entries {
        let offset = body.count
        let nameBytes = Array(name.utf8)
        let size = zip64 ? 0xFFFF_FFFF : data.count
        let localExtra = zip64 ? u16(1) + u16(16) + u64(data.count) + u64(data.count) : []
        let centralExtra = zip64 ? u16(1) + u16(24) + u64(data.count) + u64(data.count) + u64(offset) : []
        let common = u16(0) + u16(0) + u16(0) + u16(0) + u32(0) + u32(size) + u32(size) + u16(nameBytes.count)
        body += u32(0x0403_4B50) + u16(45) + common + u16(localExtra.count) + nameBytes + localExtra + data
        directory += u32(0x0201_4B50) + u16(45) + u16(45) + common + u16(centralExtra.count) + u16(0) + u16(0) + u16(0) + u32(0)
            + u32(zip64 ? 0xFFFF_FFFF : offset) + nameBytes + centralExtra
    }
    var tail: [UInt8] = []
    if zip64 {
        let record = body.count + directory.count
        tail += u32(0x0606_4B50) + u64(44) + u16(45) + u16(45) + u32(0) + u32(0)
            + u64(entries.count) + u64(entries.count) + u64(directory.count) + u64(body.count)
        tail += u32(0x0706_4B50) + u32(0) + u64(record) + u32(1)
        tail += u32(0x0605_4B50) + u16(0) + u16(0) + u16(0xFFFF) + u16(0xFFFF) + u32(0xFFFF_FFFF) + u32(0xFFFF_FFFF) + u16(0)
    } else {
        tail += u32(0x0605_4B50) + u16(0) + u16(0) + u16(entries.count) + u16(entries.count) + u32(directory.count) + u32(body.count) + u16(0)
    }
    return body + directory + tail
}
