import Foundation
import Testing
import TestSupport
@testable import Formats

/// A small GGUF written by our writer: every metadata value type and one tensor per dtype.
private func writeSample(to path: String) throws -> (GGUFMetadata, [GGUFTensorInfo], [[UInt8]]) {
    var metadata = GGUFMetadata()
    try metadata.set("t.u8", .uint8(200))
    try metadata.set("t.i8", .int8(-5))
    try metadata.set("t.u16", .uint16(60000))
    try metadata.set("t.i16", .int16(-30000))
    try metadata.set("t.u32", .uint32(4_000_000_000))
    try metadata.set("t.i32", .int32(-2_000_000_000))
    try metadata.set("t.f32", .float32(1.5e-6))
    try metadata.set("t.bool", .bool(true))
    try metadata.set("t.string", .string("héllo\nworld"))
    try metadata.set("t.u64", .uint64(1 << 40))
    try metadata.set("t.i64", .int64(-(1 << 40)))
    try metadata.set("t.f64", .float64(0.1))
    try metadata.set("t.strings", .strings(["a b", "", "<|im_end|>"]))
    try metadata.set("t.empty", .array(.float32, []))
    try metadata.set("t.nested", .array(.array, [.uint32s([1, 2]), .uint32s([])]))
    let infos = [
        GGUFTensorInfo(name: "a.f32", dtype: .float32, shape: [3, 5]),
        GGUFTensorInfo(name: "b.f16", dtype: .float16, shape: [7]),
        GGUFTensorInfo(name: "c.bf16", dtype: .bfloat16, shape: [2, 3, 4]),
        GGUFTensorInfo(name: "d.q8", dtype: .q8_0, shape: [2, 64]),
        GGUFTensorInfo(name: "e.q4", dtype: .q4_0, shape: [3, 32]),
    ]
    var payloads: [[UInt8]] = []
    for (i, info) in infos.enumerated() {
        payloads.append((0..<(info.byteCount ?? 0)).map { UInt8(truncatingIfNeeded: $0 * 7 + i) })
    }
    try GGUFWriter(metadata: metadata).write(to: path, tensors: infos) { index, buffer in
        buffer.copyBytes(from: payloads[index])
    }
    return (metadata, infos, payloads)
}

private func temporaryFile(_ name: String = "model.gguf") throws -> String {
    try Fixtures.temporaryDirectory("gguf-test").appendingPathComponent(name).path
}

private func expectRefused(_ bytes: [UInt8], _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let path = try temporaryFile("bad.gguf")
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    do {
        _ = try GGUFFile(path: path)
        Issue.record("accepted a bad file; expected an error containing \"\(fragment)\"", sourceLocation: sourceLocation)
    } catch {
        #expect(error.message.contains(fragment), "\(error.message)", sourceLocation: sourceLocation)
    }
}

/// Little-endian header builder for hand-made bad files.
private struct HeaderBytes {
    var bytes: [UInt8] = Array("GGUF".utf8)
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    mutating func string(_ s: String) { u64(UInt64(s.utf8.count)); bytes += Array(s.utf8) }
    mutating func tensor(_ name: String, dims: [UInt64], type: UInt32, offset: UInt64) {
        string(name); u32(UInt32(dims.count)); for d in dims { u64(d) }; u32(type); u64(offset)
    }
    mutating func pad(to alignment: Int = 32) { while bytes.count % alignment != 0 { bytes.append(0) } }
}

@Suite struct GGUFRoundTrip {
    @Test func everyMetadataTypeAndTensorTypeReadsBackAsWritten() throws {
        let path = try temporaryFile()
        let (metadata, infos, payloads) = try writeSample(to: path)
        let file = try GGUFFile(path: path)
        for (key, value) in metadata.entries {
            #expect(file.metadata[key] == value, "\(key)")
        }
        #expect(file.metadata.integer(ModelKey.alignment) == 32)
        #expect(file.tensors.map(\.name) == infos.map(\.name))
        for (tensor, (info, payload)) in zip(file.tensors, zip(infos, payloads)) {
            #expect(tensor.dtype == info.dtype)
            #expect(tensor.shape == info.shape)
            #expect(tensor.bytes.array == payload)
            #expect(tensor.bytes.isMapped)
        }
    }

    @Test func tensorDataStartsOn32ByteBoundariesAndDimsAreStoredReversed() throws {
        let path = try temporaryFile()
        _ = try writeSample(to: path)
        let file = try GGUFFile(path: path)
        #expect(file.dataOffset % 32 == 0)
        for tensor in file.tensors {
            guard case .mapped(_, let range) = tensor.bytes.storage else { Issue.record("not mapped"); continue }
            #expect(range.lowerBound % 32 == 0)
        }
        // The first tensor info follows the metadata: find "a.f32" and read its dims raw.
        let raw = try Data(contentsOf: URL(fileURLWithPath: path))
        let name = Data("a.f32".utf8)
        let at = try #require(raw.range(of: name)).upperBound
        let dimCount = raw.subdata(in: at..<(at + 4)).withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
        let d0 = raw.subdata(in: (at + 4)..<(at + 12)).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        let d1 = raw.subdata(in: (at + 12)..<(at + 20)).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        #expect(dimCount == 2 && d0 == 5 && d1 == 3)  // PyTorch [3, 5] is GGUF ne [5, 3]
    }

    @Test func aFailureMidWriteLeavesNoFileAndKeepsAnExistingOne() throws {
        let folder = try Fixtures.temporaryDirectory("gguf-partial")
        let path = folder.appendingPathComponent("model.gguf").path
        struct Boom: Error {}
        let infos = (0..<4).map { GGUFTensorInfo(name: "t\($0)", dtype: .float32, shape: [1000]) }
        #expect(throws: Boom.self) {
            try GGUFWriter().write(to: path, tensors: infos) { index, buffer in
                if index == 2 { throw Boom() }
                buffer.initializeMemory(as: UInt8.self, repeating: 1)
            }
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path).isEmpty)
        // An existing model survives a failed overwrite, and a cancelling progress callback aborts too.
        try Data("old".utf8).write(to: URL(fileURLWithPath: path))
        #expect(throws: Boom.self) {
            try GGUFWriter().write(to: path, tensors: infos, progress: { written, _ in if written > 3000 { throw Boom() } }) { _, buffer in
                buffer.initializeMemory(as: UInt8.self, repeating: 1)
            }
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["model.gguf"])
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == Data("old".utf8))
    }

    @Test func writerRefusesDuplicateNamesLongNamesAndQ8RowsNotMultipleOf32() throws {
        let path = try temporaryFile()
        let cases: [([GGUFTensorInfo], String)] = [
            ([.init(name: "x", dtype: .float32, shape: [1]), .init(name: "x", dtype: .float32, shape: [1])], "twice"),
            ([.init(name: String(repeating: "n", count: 64), dtype: .float32, shape: [1])], "longer than"),
            ([.init(name: "q", dtype: .q8_0, shape: [32, 48])], "cannot be stored as q8_0"),
            ([.init(name: "q", dtype: .q4_0, shape: [2, 40])], "cannot be stored as q4_0"),
            ([.init(name: "five", dtype: .float32, shape: [1, 1, 1, 1, 1])], "dimensions"),
        ]
        for (infos, fragment) in cases {
            do {
                try GGUFWriter().write(to: path, tensors: infos) { _, _ in }
                Issue.record("accepted \(infos)")
            } catch let error as FormatError {
                #expect(error.message.contains(fragment), "\(error.message)")
            }
        }
        var metadata = GGUFMetadata()
        try metadata.set("k", .bool(true))
        #expect(throws: FormatError.self) { try metadata.set("k", .bool(false)) }
    }
}

@Suite struct GGUFValidation {
    @Test func badMagicAndVersionAreRefused() throws {
        try expectRefused(Array("GGML".utf8) + [UInt8](repeating: 0, count: 40), "not a GGUF file")
        var h = HeaderBytes(); h.u32(2); h.u64(0); h.u64(0)
        try expectRefused(h.bytes, "version 2")
    }

    @Test func everyTruncationOfARealFileIsAnErrorNotACrash() throws {
        let path = try temporaryFile()
        _ = try writeSample(to: path)
        let whole = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        // Every prefix of the header and a sample of prefixes of the data, up to the last
        // tensor's last byte (the padding after it is optional).
        let parsed = try GGUFFile(path: path)
        let header = parsed.dataOffset
        let end = header + parsed.tensors.map { t -> Int in
            guard case .mapped(_, let range) = t.bytes.storage else { return 0 }
            return range.upperBound - header
        }.max()!
        let cuts = Array(0..<header) + Array(stride(from: header, to: end, by: 17)) + [end - 1]
        let cutPath = try temporaryFile("cut.gguf")
        for cut in cuts {
            try Data(whole[0..<cut]).write(to: URL(fileURLWithPath: cutPath))
            #expect(throws: FormatError.self, "prefix of \(cut) bytes") { try GGUFFile(path: cutPath) }
        }
    }

    @Test func hugeCountsAndLengthsAreRefusedBeforeAllocating() throws {
        var h = HeaderBytes(); h.u32(3); h.u64(UInt64.max); h.u64(0)
        try expectRefused(h.bytes, "more than the file")
        h = HeaderBytes(); h.u32(3); h.u64(0); h.u64(1); h.u64(1 << 60)
        try expectRefused(h.bytes + [UInt8](repeating: 0, count: 16), "claims")
        h = HeaderBytes(); h.u32(3); h.u64(0); h.u64(1); h.string("k"); h.u32(9); h.u32(4); h.u64(1 << 50)
        try expectRefused(h.bytes + [UInt8](repeating: 0, count: 16), "claims")
        h = HeaderBytes(); h.u32(3); h.u64(0); h.u64(1); h.string("k"); h.u32(99)
        try expectRefused(h.bytes + [UInt8](repeating: 0, count: 16), "unknown value type")
    }

    @Test func duplicateKeysAndTensorsAreRefused() throws {
        var h = HeaderBytes(); h.u32(3); h.u64(0); h.u64(2)
        h.string("k"); h.u32(4); h.u32(1); h.string("k"); h.u32(4); h.u32(2)
        try expectRefused(h.bytes, "appears twice")
        h = HeaderBytes(); h.u32(3); h.u64(2); h.u64(0)
        h.tensor("w", dims: [8], type: 0, offset: 0); h.tensor("w", dims: [8], type: 0, offset: 32)
        h.pad(); h.bytes += [UInt8](repeating: 0, count: 64)
        try expectRefused(h.bytes, "appears twice")
    }

    @Test func badOffsetsAlignmentAndOverlapsAreRefused() throws {
        func file(alignment: UInt32? = nil, _ tensors: [(String, [UInt64], UInt32, UInt64)], data: Int) -> [UInt8] {
            var h = HeaderBytes(); h.u32(3); h.u64(UInt64(tensors.count)); h.u64(alignment == nil ? 0 : 1)
            if let alignment { h.string("general.alignment"); h.u32(4); h.u32(alignment) }
            for t in tensors { h.tensor(t.0, dims: t.1, type: t.2, offset: t.3) }
            h.pad(to: Int(alignment ?? 32)); h.bytes += [UInt8](repeating: 0, count: data)
            return h.bytes
        }
        try expectRefused(file([("w", [8], 0, 4)], data: 64), "not a multiple of the alignment")
        try expectRefused(file([("w", [8], 0, 64)], data: 64), "past the end")
        try expectRefused(file([("w", [16], 0, 0), ("v", [8], 0, 32)], data: 96), "overlap")
        try expectRefused(file(alignment: 24, [("w", [8], 0, 0)], data: 64), "power of two")
        try expectRefused(file([("w", [40], 8, 0)], data: 64), "blocks")
        try expectRefused(file([("w", [8], 77, 0)], data: 64), "ggml type 77")
        try expectRefused(file([("w", [1, 1, 1, 1, 1], 0, 0)], data: 64), "dimensions")
        // The same layout with a correct alignment of 64 is accepted.
        let good = try temporaryFile("good.gguf")
        try Data(file(alignment: 64, [("w", [8], 0, 0), ("v", [8], 0, 64)], data: 128)).write(to: URL(fileURLWithPath: good))
        let parsed = try GGUFFile(path: good)
        #expect(parsed.alignment == 64 && parsed.tensors.count == 2)
    }

    @Test func randomMutationsOfARealFileNeverCrash() throws {
        let path = try temporaryFile()
        _ = try writeSample(to: path)
        let whole = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        var rng = SplitMix64(seed: 0x6767_7566)
        let mutated = try temporaryFile("mutated.gguf")
        var accepted = 0
        for _ in 0..<400 {
            var bytes = whole
            for _ in 0..<(1 + Int(rng.next() % 4)) {
                let at = Int(rng.next() % UInt64(bytes.count))
                switch rng.next() % 3 {
                case 0: bytes[at] = UInt8(truncatingIfNeeded: rng.next())
                case 1: bytes[at] ^= 0x80
                default: bytes[at] = 0xFF
                }
            }
            try Data(bytes).write(to: URL(fileURLWithPath: mutated))
            if let file = try? GGUFFile(path: mutated) {
                accepted += 1
                for tensor in file.tensors { _ = tensor.bytes.count }
            }
        }
        #expect(accepted < 400)
    }
}

@Suite struct Q8_0Quantization {
    @Test func blocksFollowGGMLReference() throws {
        // Half-way values round away from zero; an all-zero block has d = 0 and q = 0.
        var values = [Float](repeating: 0, count: 64)
        values[0] = 127
        values[1] = 0.5
        values[2] = -0.5
        values[3] = -1.5
        values[4] = 63.5
        var out = [UInt8](repeating: 0, count: 68)
        values.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBytes { Quantization.quantizeQ8_0(src.baseAddress!, count: 64, into: $0.baseAddress!) }
        }
        #expect(Float16(bitPattern: UInt16(out[0]) | UInt16(out[1]) << 8) == 1)
        #expect(Array(out[2..<7].map { Int8(bitPattern: $0) }) == [127, 1, -1, -2, 64])
        #expect(out[34..<68].allSatisfy { $0 == 0 })
    }

    @Test func dequantisedValuesAreWithinHalfAStepPlusScaleRounding() throws {
        var rng = SplitMix64(seed: 42)
        let values = (0..<32 * 200).map { _ in Float(Int64(bitPattern: rng.next() % 2_000_001) - 1_000_000) / 1e6 * Float(1 + rng.next() % 100) }
        var blocks = [UInt8](repeating: 0, count: 200 * 34)
        values.withUnsafeBufferPointer { src in
            blocks.withUnsafeMutableBytes { Quantization.quantizeQ8_0(src.baseAddress!, count: values.count, into: $0.baseAddress!) }
        }
        let back = try #require(blocks.withUnsafeBytes { Quantization.floats($0, dtype: .q8_0) })
        for b in 0..<200 {
            let block = values[(b * 32)..<(b * 32 + 32)]
            let amax = block.map(abs).max() ?? 0
            let bound = amax / 127 / 2 + amax * 0x1p-11 + amax * 1e-6
            for i in block.indices { #expect(abs(values[i] - back[i]) <= bound) }
        }
    }

    @Test func float16DecodingIsExactForEveryBitPattern() {
        for bits in 0...UInt16.max {
            let reference = Float(Float16(bitPattern: bits))
            let ours = Quantization.float(float16Bits: bits)
            #expect(ours.bitPattern == reference.bitPattern || (ours.isNaN && reference.isNaN), "\(bits)")
        }
    }

    @Test func q8RoundingIsRoundfIncludingHalvesAndNonFiniteValues() {
        var rng = SplitMix64(seed: 7)
        var values: [Float] = [0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 3.5, -3.5, 126.5, -126.5, 127.49, 0.49999997, -0.49999997, 0, -0]
        for _ in 0..<20000 { values.append(Float(Int64(bitPattern: rng.next() % 254_000_001) - 127_000_000) / 1e6) }
        for v in values {
            #expect(Int(Quantization.roundToInt8(v)) == Int(v.rounded()), "\(v)")
            #expect(Int(Quantization.roundFinite(v)) == Int(v.rounded()), "\(v)")
        }
        #expect(Quantization.roundToInt8(.nan) == 0)
        #expect(Quantization.roundToInt8(.infinity) == 127 && Quantization.roundToInt8(-.infinity) == -127)
    }

    @Test func bfloat16RoundsToNearestEven() {
        #expect(Quantization.bfloat16Bits(1.0) == 0x3F80)
        #expect(Quantization.bfloat16Bits(Float(bitPattern: 0x3F80_8000)) == 0x3F80)  // tie, even stays
        #expect(Quantization.bfloat16Bits(Float(bitPattern: 0x3F81_8000)) == 0x3F82)  // tie, odd rounds up
        #expect(Quantization.bfloat16Bits(Float(bitPattern: 0x3F80_8001)) == 0x3F81)
        #expect(Quantization.float(bfloat16Bits: Quantization.bfloat16Bits(.nan)).isNaN)
    }
}

