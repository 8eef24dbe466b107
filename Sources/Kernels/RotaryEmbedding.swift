#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Cosines and sines of RoPE angles `pos · θ^(-2i/hd)` for positions 0..<capacity, computed in
/// float32 as upstream's `precompute_freqs_cis` does; grows on demand.
public struct RotaryTable: Sendable {
    public let headDim: Int
    public let theta: Float
    private let inverseFrequencies: [Float]   // [hd/2]
    private(set) var cosines: [Float] = []    // [capacity, hd/2]
    private(set) var sines: [Float] = []      // [capacity, hd/2]
    public private(set) var capacity = 0

    public init(headDim: Int, theta: Float) {
        self.headDim = headDim
        self.theta = theta
        let half = headDim / 2
        inverseFrequencies = (0..<half).map { i in
            1 / powf(theta, Float(2 * i) / Float(headDim))
        }
    }

    /// Makes sure positions 0..<count are in the table.
    public mutating func reserve(_ count: Int) {
        guard count > capacity else { return }
        var newCapacity = max(count, capacity * 2, 64)
        newCapacity = max(newCapacity, count)
        let half = headDim / 2
        cosines.reserveCapacity(newCapacity * half)
        sines.reserveCapacity(newCapacity * half)
        for pos in capacity..<newCapacity {
            for i in 0..<half {
                let angle = Float(pos) * inverseFrequencies[i]
                cosines.append(cosf(angle))
                sines.append(sinf(angle))
            }
        }
        capacity = newCapacity
    }

    /// Rotates `heads` head vectors of one row (`[heads, hd]`, stride `headDim`) to `position`.
    public func rotate(_ row: UnsafeMutablePointer<Float>, heads: Int, position: Int) {
        precondition(position < capacity, "RotaryTable: reserve(\(position + 1)) before rotating")
        let half = headDim / 2
        cosines.withUnsafeBufferPointer { cosBuffer in
            sines.withUnsafeBufferPointer { sinBuffer in
                Kernels.rotateHalf(row, heads: heads, headDim: headDim,
                                   cos: cosBuffer.baseAddress! + position * half,
                                   sin: sinBuffer.baseAddress! + position * half)
            }
        }
    }
}

extension Kernels {
    /// Rotate-half RoPE on `heads` vectors of `headDim` values: with halves (a, b),
    /// `(a·cos - b·sin, b·cos + a·sin)`; `cos`/`sin` hold `headDim / 2` values.
    public static func rotateHalf(
        _ x: UnsafeMutablePointer<Float>, heads: Int, headDim: Int,
        cos: UnsafePointer<Float>, sin: UnsafePointer<Float>
    ) {
        let half = headDim / 2
        for h in 0..<heads {
            let a = x + h * headDim
            let b = a + half
            for i in 0..<half {
                let ai = a[i], bi = b[i]
                a[i] = ai * cos[i] - bi * sin[i]
                b[i] = bi * cos[i] + ai * sin[i]
            }
        }
    }
}
