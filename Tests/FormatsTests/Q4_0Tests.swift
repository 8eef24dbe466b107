import Foundation
import Testing
import TestSupport
@testable import Formats

/// Vectors made by Tools/kernels-bench/make_lowprecision_vectors.py with gguf-py's Q4_0.
private func vector(_ name: String) throws -> NPYArray {
    try NPYArray(contentsOf: Fixtures.packageRoot.appendingPathComponent("Tests/Data/kernels/\(name).npy"))
}

/// Equal bit patterns, or both NaN (a block whose scale overflows float16 dequantises q = 8 to inf · 0).
private func sameValues(_ a: [Float], _ b: [Float]) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { $0.bitPattern == $1.bitPattern || ($0.isNaN && $1.isNaN) }
}

@Suite struct Q4_0Quantization {
    @Test func blocksMatchGGUFPyBitForBit() throws {
        let input = try vector("q4_0_input").floats
        var blocks = [UInt8](repeating: 0, count: input.count / 32 * 18)
        input.withUnsafeBufferPointer { src in
            blocks.withUnsafeMutableBytes { Quantization.quantizeQ4_0(src.baseAddress!, count: input.count, into: $0.baseAddress!) }
        }
        #expect(blocks == (try vector("q4_0_blocks").bytes))
        let back = try #require(blocks.withUnsafeBytes { Quantization.floats($0, dtype: .q4_0) })
        #expect(sameValues(back, try vector("q4_0_dequant").floats))
    }

    @Test func layoutIsScaleThenLowNibblesForTheFirstHalf() throws {
        // The largest magnitude is -8 (first), so d = 1 and q = x + 8: value j in the low nibble
        // of byte j, value j + 16 in its high nibble.
        let values: [Float] = [-8] + (1..<32).map { Float($0 % 16) - 8 }
        var out = [UInt8](repeating: 0, count: 18)
        values.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBytes { Quantization.quantizeQ4_0(src.baseAddress!, count: 32, into: $0.baseAddress!) }
        }
        #expect(Float16(bitPattern: UInt16(out[0]) | UInt16(out[1]) << 8) == 1)
        for j in 0..<16 {
            #expect(Int(out[2 + j] & 0x0F) == Int(values[j]) + 8)
            #expect(Int(out[2 + j] >> 4) == Int(values[j + 16]) + 8)
        }
        #expect(try #require(out.withUnsafeBytes { Quantization.floats($0, dtype: .q4_0) }) == values)
    }

    @Test func aPositiveExtremeGivesANegativeScaleAndItsOppositeIsClamped() throws {
        // max = 4 -> d = -0.5: 4 maps to q = 0 exactly, -4 to 16.5 -> 16 -> clamped to 15 (3.5).
        var values = [Float](repeating: 0, count: 32)
        values[0] = 4
        values[1] = -4
        var out = [UInt8](repeating: 0, count: 18)
        values.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBytes { Quantization.quantizeQ4_0(src.baseAddress!, count: 32, into: $0.baseAddress!) }
        }
        let back = try #require(out.withUnsafeBytes { Quantization.floats($0, dtype: .q4_0) })
        #expect(back[0] == 4 && back[1] == -3.5 && back[2] == 0)
    }

    @Test func tensorValuesAndTheGGUFReaderSeeQ4_0() throws {
        let values = (0..<96).map { Float(($0 * 37) % 23) / 7 - 1.5 }
        var blocks = [UInt8](repeating: 0, count: 3 * 18)
        values.withUnsafeBufferPointer { src in
            blocks.withUnsafeMutableBytes { Quantization.quantizeQ4_0(src.baseAddress!, count: 96, into: $0.baseAddress!) }
        }
        let expected = try #require(blocks.withUnsafeBytes { Quantization.floats($0, dtype: .q4_0) })
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("q4-\(UUID().uuidString).gguf").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try GGUFWriter().write(to: path, tensors: [GGUFTensorInfo(name: "w", dtype: .q4_0, shape: [3, 32])]) { _, buffer in
            buffer.copyBytes(from: blocks)
        }
        let file = try GGUFFile(path: path)
        #expect(file.tensors[0].dtype == .q4_0 && file.tensors[0].shape == [3, 32])
        #expect(try file.tensors[0].floatValues() == expected)
        #expect(DType(ggmlType: 2) == .q4_0 && DType.q4_0.byteCount(elements: 64) == 36 && DType.q4_0.byteCount(elements: 48) == nil)
    }

    @Test func safetensorsRefusesQ4_0() throws {
        let header = #"{"w":{"dtype":"Q4_0","shape":[32],"data_offsets":[0,18]}}"#
        #expect(throws: FormatError.self) {
            _ = try SafeTensorsFile(path: Files.temporary(safetensorsBytes(header: header, data: [UInt8](repeating: 0, count: 18))))
        }
    }
}
