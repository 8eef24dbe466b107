import Foundation
import Formats
import Testing
import TestSupport

/// Pickles written opcode by opcode, for shapes torch.save never produces but a hostile file might.
struct PickleWriter {
    var bytes: [UInt8] = [0x80, 0x02]

    mutating func op(_ code: UInt8) { bytes.append(code) }
    mutating func string(_ text: String) {
        let utf8 = Array(text.utf8)
        bytes += [0x58] + withUnsafeBytes(of: UInt32(utf8.count).littleEndian, Array.init) + utf8
    }
    mutating func int(_ value: Int) { bytes += [0x4A] + withUnsafeBytes(of: Int32(value).littleEndian, Array.init) }
    mutating func global(_ module: String, _ name: String) { bytes += [0x63] + Array("\(module)\n\(name)\n".utf8) }
    mutating func put(_ index: Int) { bytes += [0x72] + withUnsafeBytes(of: UInt32(index).littleEndian, Array.init) }
    mutating func get(_ index: Int) { bytes += [0x6A] + withUnsafeBytes(of: UInt32(index).littleEndian, Array.init) }

    /// `_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())` over FloatStorage `key`.
    mutating func tensor(key: String, elements: Int, offset: Int, shape: [Int], strides: [Int]) {
        global("torch._utils", "_rebuild_tensor_v2")
        op(0x28)
        op(0x28); string("storage"); global("torch", "FloatStorage"); string(key); string("cpu"); int(elements); op(0x74)
        op(0x51) // BINPERSID
        int(offset)
        op(0x28); shape.forEach { int($0) }; op(0x74)
        op(0x28); strides.forEach { int($0) }; op(0x74)
        op(0x89)
        global("collections", "OrderedDict"); op(0x29); op(0x52)
        op(0x74)
        op(0x52)
    }

    mutating func stop() { op(0x2E) }
}

func floatBytes(_ values: [Float]) -> [UInt8] {
    values.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) }
}

/// Opens a ZIP checkpoint made of `pickle` and `storages` (key -> bytes), all in memory.
func openCheckpoint(_ pickle: [UInt8], storages: [(String, [UInt8])] = []) throws(FormatError) -> PyTorchCheckpoint {
    let entries = [("archive/data.pkl", pickle)] + storages.map { ("archive/data/\($0.0)", $0.1) }
    return try PyTorchCheckpoint(file: MappedFile(bytes: storedZip(entries), path: "hand-made.pth"))
}

@Suite struct PickleMachineLimits {
    @Test func stridedViewsAreMaterialisedInRowMajorOrder() throws {
        var p = PickleWriter()
        p.op(0x7D); p.op(0x28)
        p.string("t"); p.tensor(key: "0", elements: 6, offset: 1, shape: [2, 2], strides: [1, 2])
        p.string("s"); p.tensor(key: "0", elements: 6, offset: 5, shape: [], strides: [])
        p.op(0x75); p.stop()
        let checkpoint = try openCheckpoint(p.bytes, storages: [("0", floatBytes([0, 1, 2, 3, 4, 5]))])
        #expect(try checkpoint.tensor(named: "t")?.floatValues() == [1, 3, 2, 4])
        #expect(try checkpoint.tensor(named: "s")?.floatValues() == [5])
        #expect(checkpoint.tensor(named: "s")?.shape == [])
    }

    @Test func zip64ArchivesAreRead() throws {
        var p = PickleWriter()
        p.op(0x7D); p.string("w"); p.tensor(key: "0", elements: 3, offset: 0, shape: [3], strides: [1]); p.op(0x73); p.stop()
        let archive = storedZip([("big/data.pkl", p.bytes), ("big/data/0", floatBytes([1, 2, 3]))], zip64: true)
        let checkpoint = try PyTorchCheckpoint(file: MappedFile(bytes: archive, path: "zip64.pth"))
        #expect(try checkpoint.tensor(named: "w")?.floatValues() == [1, 2, 3])
        #expect(checkpoint.tensor(named: "w")?.bytes.isMapped == true)
    }

    @Test func viewReachingPastItsStorageIsAnErrorNamingTheTensor() throws {
        var p = PickleWriter()
        p.op(0x7D); p.string("w"); p.tensor(key: "0", elements: 4, offset: 0, shape: [2, 2], strides: [1, 3]); p.op(0x73); p.stop()
        let error = formatError { () throws(FormatError) in _ = try openCheckpoint(p.bytes, storages: [("0", floatBytes([1, 2, 3, 4]))]) }
        #expect(error?.message.contains("tensor w: shape [2, 2], strides [1, 3] and offset 0 reach element 4 of a storage of 4") == true)
    }

    @Test func storageSizeDisagreeingWithThePickleIsAnError() throws {
        var p = PickleWriter()
        p.op(0x7D); p.string("w"); p.tensor(key: "0", elements: 4, offset: 0, shape: [4], strides: [1]); p.op(0x73); p.stop()
        let error = formatError { () throws(FormatError) in _ = try openCheckpoint(p.bytes, storages: [("0", floatBytes([1, 2, 3]))]) }
        #expect(error?.message.contains("holds 12 bytes but the pickle says 4 elements of FloatStorage") == true)
    }

    @Test func hugeBroadcastViewIsRefusedInsteadOfAllocated() throws {
        var p = PickleWriter()
        p.op(0x7D); p.string("w"); p.tensor(key: "0", elements: 1, offset: 0, shape: [1 << 30, 1 << 20], strides: [0, 0]); p.op(0x73); p.stop()
        let error = formatError { () throws(FormatError) in _ = try openCheckpoint(p.bytes, storages: [("0", floatBytes([1]))]) }
        #expect(error?.message.contains("corrupt or hostile") == true)
    }

    @Test func deeplyNestedContainersAreReleasedWithoutRecursion() throws {
        // 50 000 lists, each inside the next: a recursive release would overflow a task's stack.
        var p = PickleWriter()
        for _ in 0..<50_000 { p.op(0x5D) }
        for _ in 0..<49_999 { p.op(0x61) }
        p.stop()
        let error = formatError { () throws(FormatError) in _ = try openCheckpoint(p.bytes) }
        #expect(error?.message.contains("holds a single list, not a state dict") == true)

        var d = PickleWriter()
        d.op(0x7D)
        for i in 0..<20_000 { d.string("k\(i % 10)"); d.op(0x7D) }
        for _ in 0..<20_000 { d.op(0x73) }
        d.stop()
        let nested = formatError { () throws(FormatError) in _ = try openCheckpoint(d.bytes) }
        #expect(nested?.message.contains("nests dicts more than 32 levels deep") == true)
    }

    @Test func sharedAndCyclicDictsAreVisitedOnce() throws {
        // d[i+1] = {"a": d[i], "b": d[i]} for 64 levels: 2^64 paths if each were walked.
        var p = PickleWriter()
        p.op(0x7D); p.put(0)
        for level in 1...64 {
            p.op(0x7D); p.op(0x28); p.string("a"); p.get(level - 1); p.string("b"); p.get(level - 1); p.op(0x75)
            p.put(level)
        }
        // A dict that contains itself.
        p.string("self"); p.get(64); p.op(0x73)
        p.stop()
        let start = Date()
        let error = formatError { () throws(FormatError) in _ = try openCheckpoint(p.bytes) }
        #expect(error != nil)
        #expect(Date().timeIntervalSince(start) < 2)
    }

    @Test func unbalancedStacksAreMalformed() throws {
        let cases: [[UInt8]] = [
            [0x80, 0x02, 0x2E],                 // STOP on an empty stack
            [0x80, 0x02, 0x7D, 0x7D, 0x2E],     // two values left
            [0x80, 0x02, 0x28, 0x7D, 0x2E],     // unclosed MARK
            [0x80, 0x02, 0x73, 0x2E],           // SETITEM with nothing
            [0x80, 0x02, 0x68, 0x05, 0x2E],     // memo read before write
            [0x80, 0x02, 0x7D, 0x28, 0x4B, 1, 0x75, 0x2E], // odd SETITEMS
            [0x80, 0x02, 0x58, 0xFF, 0xFF, 0xFF, 0x7F], // string longer than the file
            [0x80, 0x02, 0x8A, 0x09, 1, 2],      // truncated LONG1
            [0x80, 0x02, 0x4E, 0x52, 0x2E],      // REDUCE on None
            [0x80, 0x07, 0x7D, 0x2E],            // protocol 7
            [0x80, 0x02, 0x49, 0x31, 0x0A, 0x2E], // text INT: protocol 0
        ]
        for bytes in cases {
            let error = formatError { () throws(FormatError) in _ = try openCheckpoint(bytes) }
            #expect(error != nil && error?.kind != .refused, "\(bytes)")
        }
    }
}
