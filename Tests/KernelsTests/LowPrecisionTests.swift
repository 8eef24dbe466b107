import Foundation
import Testing
import TestSupport
@testable import Kernels

/// Reference vectors made by Tools/kernels-bench/make_lowprecision_vectors.py with gguf-py/numpy.
private func vector(_ name: String) throws -> NPYArray {
    try NPYArray(contentsOf: Fixtures.packageRoot.appendingPathComponent("Tests/Data/kernels/\(name).npy"))
}

private func halves(_ bytes: [UInt8]) -> [UInt16] {
    stride(from: 0, to: bytes.count, by: 2).map { UInt16(bytes[$0]) | UInt16(bytes[$0 + 1]) << 8 }
}

/// Deterministic pseudo-random floats in [-1, 1) (xorshift), so failures reproduce.
private func randomFloats(_ count: Int, seed: UInt64) -> [Float] {
    var s = seed | 1
    return (0..<count).map { _ in
        s ^= s << 13; s ^= s >> 7; s ^= s << 17
        return Float(Int64(s >> 40) - (1 << 23)) / Float(1 << 23)
    }
}

@Suite struct LowPrecisionConversionTests {
    @Test func float16MatchesNumpyBitForBit() throws {
        let input = try vector("conversion_input").floats
        let expected = halves(try vector("f16_bits").bytes)
        #expect(LowPrecision.float16Bits(input) == expected)
        // One value per call runs the scalar code (the vector loop only takes groups of 8).
        let scalar = input.map { LowPrecision.float16Bits([$0])[0] }
        #expect(scalar == expected)
    }

    @Test func bfloat16MatchesGGUFBitForBit() throws {
        let input = try vector("conversion_input").floats
        let expected = halves(try vector("bf16_bits").bytes)
        #expect(LowPrecision.bfloat16Bits(input) == expected)
    }

    @Test func q8_0QuantisationMatchesGGUFBitForBit() throws {
        let input = try vector("q8_0_input").floats
        let blocks = try LowPrecision.q8_0Blocks(input)
        let expectedBlocks = try vector("q8_0_blocks").bytes
        #expect(blocks == expectedBlocks)
        let dequantised = try LowPrecision.floats(q8_0Blocks: blocks)
        #expect(dequantised == (try vector("q8_0_dequant").floats))
    }

    @Test func everyFiniteHalfSurvivesARoundTripThroughFloat() {
        let all = (0...UInt16.max).filter { ($0 & 0x7c00) != 0x7c00 || ($0 & 0x3ff) == 0 }
        let floats = LowPrecision.floats(float16Bits: all)
        #expect(LowPrecision.float16Bits(floats) == all)
        #expect(floats.map { LowPrecision.float16Bits([$0])[0] } == all)
        #expect(all.map { LowPrecision.floats(float16Bits: [$0])[0] } == floats)
    }

    @Test func nanStaysNaN() {
        let nans: [Float] = [.nan, -.nan, Float(bitPattern: 0x7f80_0001), Float(bitPattern: 0xffc1_2345)]
        let padded = nans + [Float](repeating: 1, count: 8)  // vector path for the first 8
        let vectorPath = LowPrecision.floats(float16Bits: LowPrecision.float16Bits(padded)).prefix(4)
        #expect(vectorPath.allSatisfy { $0.isNaN })
        let scalarPath = nans.map { LowPrecision.floats(float16Bits: LowPrecision.float16Bits([$0]))[0] }
        #expect(scalarPath.allSatisfy { $0.isNaN })
        let bfloat = LowPrecision.floats(bfloat16Bits: LowPrecision.bfloat16Bits(nans))
        #expect(bfloat.allSatisfy { $0.isNaN })
    }

    @Test func q4_0QuantisationMatchesGGUFBitForBit() throws {
        let input = try vector("q4_0_input").floats
        let blocks = try LowPrecision.q4_0Blocks(input)
        #expect(blocks == (try vector("q4_0_blocks").bytes))
        // A block whose scale overflows float16 dequantises q = 8 to inf · 0 = NaN, there and here.
        let dequantised = try LowPrecision.floats(q4_0Blocks: blocks), expected = try vector("q4_0_dequant").floats
        #expect(dequantised.count == expected.count)
        #expect(zip(dequantised, expected).allSatisfy { $0.bitPattern == $1.bitPattern || ($0.isNaN && $1.isNaN) })
        #expect(try LowPrecision.encode(input, as: .q4_0) == blocks)
    }

    @Test func q4_0RejectsPartialBlocks() {
        #expect(throws: LowPrecisionError.self) { try LowPrecision.q4_0Blocks([Float](repeating: 1, count: 40)) }
        #expect(throws: LowPrecisionError.self) { try LowPrecision.floats(q4_0Blocks: [UInt8](repeating: 0, count: 19)) }
        #expect(WeightFormat.q4_0.rowBytes(columns: 64) == 36)
        #expect(WeightFormat.q4_0.rowBytes(columns: 48) == nil)
    }

    @Test func q8_0RejectsPartialBlocks() {
        #expect(throws: LowPrecisionError.self) { try LowPrecision.q8_0Blocks([Float](repeating: 1, count: 33)) }
        #expect(throws: LowPrecisionError.self) { try LowPrecision.floats(q8_0Blocks: [UInt8](repeating: 0, count: 35)) }
    }
}

@Suite struct LowPrecisionMatrixTests {
    /// y = x · E^T in double, E being the matrix's own float32 expansion: what every kernel computes
    /// up to the order of its float32 sums.
    private func reference(_ w: [Float], rows: Int, columns: Int, _ x: [Float], m: Int) -> [Float] {
        var y = [Float](repeating: 0, count: m * rows)
        for i in 0..<m {
            for r in 0..<rows {
                var s = 0.0
                for k in 0..<columns { s += Double(w[r * columns + k]) * Double(x[i * columns + k]) }
                y[i * rows + r] = Float(s)
            }
        }
        return y
    }

    @Test(arguments: WeightFormat.allCases)
    func everyPathMatchesANaiveLoopOnOddShapes(format: WeightFormat) throws {
        let shapes = [(1, 32), (5, 64), (37, 96), (9, 800), (4, 1024)]
            + (format.isBlockQuantized ? [] : [(3, 1), (7, 17), (13, 100)])
        for (rows, columns) in shapes {
            let weights = randomFloats(rows * columns, seed: UInt64(rows * 7919 + columns))
            let matrix = try QuantizedMatrix(converting: weights, rows: rows, columns: columns, to: format)
            let expanded = matrix.expandRows(0..<rows)
            for m in 1...16 {
                let x = randomFloats(m * columns, seed: UInt64(m * 104_729 + columns))
                let expected = reference(expanded, rows: rows, columns: columns, x, m: m)
                // The BF16 dot-product path multiplies x rounded to bfloat16, exactly.
                let roundedX = LowPrecision.floats(bfloat16Bits: LowPrecision.bfloat16Bits(x))
                let expectedRounded = reference(expanded, rows: rows, columns: columns, roundedX, m: m)
                for path in KernelPath.available {
                    let y = matrix.multiply(x, rows: m, path: path)
                    let expected = path == .avx512bf16 && format == .bfloat16 ? expectedRounded : expected
                    // float32 sums of `columns` terms of size <= 1: a few ulps of the sum's scale.
                    let error = relativeError(y, expected)
                    #expect(error < 2e-6, "\(format) \(path) \(rows)x\(columns) m=\(m): \(error)")
                }
            }
        }
    }

    /// Error against the original float32 weights, from the weights' rounding alone (max abs error
    /// over max abs value). Measured on these inputs: f32 7.0e-8, f16 2.0e-5, bf16 1.5e-4,
    /// q8_0 3.4e-4, q4_0 9.7e-3 (4 bits: about 28 times q8_0's); the bounds leave a 2-3x margin.
    @Test(arguments: [(WeightFormat.float32, Float(2e-7)), (.float16, 5e-5), (.bfloat16, 4e-4), (.q8_0, 8e-4), (.q4_0, 2e-2)])
    func reducedPrecisionErrorAgainstFloat32Weights(format: WeightFormat, bound: Float) throws {
        let rows = 64, columns = 768, m = 4
        let weights = randomFloats(rows * columns, seed: 42).map { $0 * 0.05 }
        let x = randomFloats(m * columns, seed: 43)
        let exact = reference(weights, rows: rows, columns: columns, x, m: m)
        let matrix = try QuantizedMatrix(converting: weights, rows: rows, columns: columns, to: format)
        let error = relativeError(matrix.multiply(x, rows: m), exact)
        #expect(error < bound, "\(format): \(error)")
    }

    /// The extra error of rounding x to bfloat16 (AVX512_BF16 path), measured 1.6e-4 on top of
    /// the weights' 1.5e-4 here: bound 6e-4.
    @Test func bfloat16DotProductPathErrorAgainstFloat32Weights() throws {
        guard KernelPath.available.contains(.avx512bf16) else { return }
        let rows = 64, columns = 768, m = 4
        let weights = randomFloats(rows * columns, seed: 42).map { $0 * 0.05 }
        let x = randomFloats(m * columns, seed: 43)
        let exact = reference(weights, rows: rows, columns: columns, x, m: m)
        let matrix = try QuantizedMatrix(converting: weights, rows: rows, columns: columns, to: .bfloat16)
        let error = relativeError(matrix.multiply(x, rows: m, path: .avx512bf16), exact)
        #expect(error < 6e-4, "\(error)")
        let pool = ComputePool(threads: 2)
        #expect(matrix.multiply(x, rows: m, pool: pool, path: .avx512bf16) == matrix.multiply(x, rows: m, path: .avx512bf16))
    }

    @Test(arguments: WeightFormat.allCases)
    func twoThreadsGiveTheSameBitsAsOne(format: WeightFormat) throws {
        let rows = 300, columns = 768
        let matrix = try QuantizedMatrix(converting: randomFloats(rows * columns, seed: 7), rows: rows,
                                          columns: columns, to: format)
        let pool = ComputePool(threads: 2)
        for m in [1, 3, 8, 16] {
            let x = randomFloats(m * columns, seed: UInt64(m))
            #expect(matrix.multiply(x, rows: m, pool: pool) == matrix.multiply(x, rows: m))
        }
    }

    @Test func rowRangesComposeToTheWholeProduct() throws {
        let rows = 45, columns = 96, m = 5
        let matrix = try QuantizedMatrix(converting: randomFloats(rows * columns, seed: 13), rows: rows,
                                         columns: columns, to: .q8_0)
        let x = randomFloats(m * columns, seed: 14)
        var y = [Float](repeating: .nan, count: m * rows)
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in
                for range in [0..<8, 8..<20, 20..<45] {
                    matrix.multiply(xp.baseAddress!, rows: m, into: yp.baseAddress!, outputRows: range)
                }
            }
        }
        #expect(y == matrix.multiply(x, rows: m))
    }

    @Test func stridedRowsReadAndWriteOnlyTheirColumns() throws {
        let rows = 6, columns = 64, m = 3, ldx = 80, ldy = 10
        let matrix = try QuantizedMatrix(converting: randomFloats(rows * columns, seed: 9), rows: rows,
                                         columns: columns, to: .float16)
        let packed = randomFloats(m * columns, seed: 10)
        var x = [Float](repeating: .nan, count: m * ldx)
        for i in 0..<m { for k in 0..<columns { x[i * ldx + k] = packed[i * columns + k] } }
        var y = [Float](repeating: -7, count: m * ldy)
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in
                matrix.multiply(xp.baseAddress!, rows: m, xStride: ldx, into: yp.baseAddress!, yStride: ldy)
            }
        }
        let dense = matrix.multiply(packed, rows: m)
        for i in 0..<m {
            #expect(Array(y[(i * ldy)..<(i * ldy + rows)]) == Array(dense[(i * rows)..<((i + 1) * rows)]))
            #expect(y[(i * ldy + rows)..<((i + 1) * ldy)].allSatisfy { $0 == -7 })
        }
    }

    @Test func borrowedBytesAreReadInPlaceAndKeptAlive() throws {
        final class Region { let bytes: UnsafeMutableRawBufferPointer
            init(_ source: [UInt8]) {
                bytes = .allocate(byteCount: source.count, alignment: 1)
                source.withUnsafeBytes { bytes.copyMemory(from: $0) }
            }
            deinit { bytes.deallocate() } }
        let values = randomFloats(8 * 64, seed: 11)
        let encoded = try LowPrecision.encode(values, as: .q8_0)
        let owned = try QuantizedMatrix(format: .q8_0, rows: 8, columns: 64, bytes: encoded)
        var borrowed: QuantizedMatrix?
        do {
            let region = Region(encoded)
            borrowed = try QuantizedMatrix(format: .q8_0, rows: 8, columns: 64,
                                           borrowing: UnsafeRawBufferPointer(region.bytes), owner: region)
        }
        let x = randomFloats(64, seed: 12)
        #expect(borrowed?.multiply(x, rows: 1) == owned.multiply(x, rows: 1))
        #expect(borrowed?.expandRows(2..<5) == owned.expandRows(2..<5))
    }

    @Test func badShapesAreTypedErrors() {
        #expect(throws: LowPrecisionError.self) {
            try QuantizedMatrix(format: .q8_0, rows: 2, columns: 33, bytes: [])
        }
        #expect(throws: LowPrecisionError.self) {
            try QuantizedMatrix(format: .float16, rows: 2, columns: 4, bytes: [UInt8](repeating: 0, count: 15))
        }
        #expect(throws: LowPrecisionError.self) {
            try QuantizedMatrix(converting: [1, 2, 3], rows: 2, columns: 2, to: .float32)
        }
    }

    @Test func ggmlTagsRoundTrip() {
        for format in WeightFormat.allCases { #expect(WeightFormat(ggmlType: format.ggmlType) == format) }
        #expect(WeightFormat(ggmlType: 3) == nil)   // Q4_1
        #expect(WeightFormat(ggmlType: 2) == .q4_0)
        #expect(WeightFormat.q8_0.rowBytes(columns: 64) == 68)
        #expect(WeightFormat.q8_0.rowBytes(columns: 65) == nil)
    }
}

@Suite struct ComputePoolTests {
    @Test func parallelForRunsEveryIndexOnce() {
        let pool = ComputePool(threads: 2)
        for count in [1, 2, 7, 1000, 70_000] {
            let hits = UnsafeMutablePointer<UInt8>.allocate(capacity: count)
            hits.initialize(repeating: 0, count: count)
            defer { hits.deallocate() }
            pool.parallelFor(count) { hits[$0] &+= 1 }
            #expect((0..<count).allSatisfy { hits[$0] == 1 }, "count \(count)")
        }
    }

    @Test func concurrentCallersOfOnePoolEachGetTheirOwnResult() async throws {
        let pool = ComputePool(threads: 2)
        let rows = 256, columns = 512
        let matrix = try QuantizedMatrix(converting: randomFloats(rows * columns, seed: 21), rows: rows,
                                         columns: columns, to: .float16)
        let inputs = (0..<6).map { randomFloats(2 * columns, seed: UInt64(100 + $0)) }
        let expected = inputs.map { matrix.multiply($0, rows: 2) }
        let results = await withTaskGroup(of: (Int, [Float]).self) { group in
            for (i, x) in inputs.enumerated() {
                group.addTask {
                    var y: [Float] = []
                    for _ in 0..<20 { y = matrix.multiply(x, rows: 2, pool: pool) }
                    return (i, y)
                }
            }
            var out = [[Float]](repeating: [], count: inputs.count)
            for await (i, y) in group { out[i] = y }
            return out
        }
        #expect(results == expected)
    }
}
