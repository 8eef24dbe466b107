extension Kernels {
    /// e^x for 16 lanes: Cody–Waite range reduction to r in [-ln2/2, ln2/2], Cephes' degree-6
    /// polynomial, then 2^n put into the exponent bits. Within 2 ulp of `expf` on [-87.3, 88.3];
    /// below that (and for -inf) it returns 0, above it saturates at e^88.3.
    @inline(__always)
    static func exp16(_ x: SIMD16<Float>) -> SIMD16<Float> {
        // `clamped(lowerBound:upperBound:)` is a generic stdlib call that is not specialised here
        // (it took a third of the vision encoder's time); masked replacements inline.
        let clamped = x.replacing(with: -87.3, where: x .< -87.3).replacing(with: 88.3, where: x .> 88.3)
        // Adding 1.5·2²³ rounds to the nearest integer and leaves it in the low mantissa bits.
        let magic = SIMD16<Float>(repeating: 12_582_912)
        let shifted = clamped * 1.442_695_04 + magic
        let n = shifted - magic
        var r = clamped - n * 0.693_359_375
        r = r + n * 2.121_944_4e-4
        var p = SIMD16<Float>(repeating: 1.987_569_15e-4)
        p = p * r + 1.398_199_95e-3
        p = p * r + 8.333_451_9e-3
        p = p * r + 4.166_579_59e-2
        p = p * r + 0.166_666_655
        p = p * r + 0.500_000_01
        let er = p * r * r + r + 1
        let bits = (unsafeBitCast(shifted, to: SIMD16<UInt32>.self) &- 0x4B40_0000 &+ 127) &<< 23
        let result = er * unsafeBitCast(bits, to: SIMD16<Float>.self)
        return result.replacing(with: 0, where: x .< -87.3)
    }

    /// e^x for each of `count` values, in place.
    public static func exp(_ x: UnsafeMutablePointer<Float>, count: Int) {
        var i = 0
        while i + 16 <= count {
            store16(exp16(load16(x, i)), x, i)
            i += 16
        }
        if i < count {
            var tail = SIMD16<Float>(repeating: 0)
            for j in 0..<(count - i) { tail[j] = x[i + j] }
            let e = exp16(tail)
            for j in 0..<(count - i) { x[i + j] = e[j] }
        }
    }

    /// Applies `f` to 16 lanes at a time over `count` values in place (the tail padded with zeros).
    @inline(__always)
    static func map16(_ x: UnsafeMutablePointer<Float>, count: Int, _ f: (SIMD16<Float>) -> SIMD16<Float>) {
        var i = 0
        while i + 16 <= count {
            store16(f(load16(x, i)), x, i)
            i += 16
        }
        if i < count {
            var tail = SIMD16<Float>(repeating: 0)
            for j in 0..<(count - i) { tail[j] = x[i + j] }
            let y = f(tail)
            for j in 0..<(count - i) { x[i + j] = y[j] }
        }
    }
}
