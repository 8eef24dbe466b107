import Kernels

/// The keys and values one sequence has produced so far, per decoder layer.
///
/// Keys are stored after RoPE (and q/k norm), so a new token attends to them as they are. Each
/// layer holds `[capacity, width]` keys and as many values, in float32, float16 or int8
/// (`precision`; int8 rows carry a float32 scale per position and KV head, `[capacity, heads]`, and
/// int8 keys are laid out in blocks of 16 positions for integer dot products, see
/// `Kernels.narrowToInt8KeyBlocks`); storage grows by doubling; `count` is the number of positions filled.
public final class KVCache: @unchecked Sendable {
    public typealias Precision = DecodeKernels.CachePrecision

    public let layerCount: Int
    /// Values per position per layer: kv heads × head dim.
    public let width: Int
    /// KV heads per position (the unit an int8 row is scaled by).
    public let heads: Int
    public let precision: Precision
    public private(set) var count = 0
    public private(set) var capacity: Int
    private var keys: [UnsafeMutableRawPointer]     // per layer [capacity, width]
    private var values: [UnsafeMutableRawPointer]   // per layer [capacity, width]
    private var keyScales: [UnsafeMutablePointer<Float>]     // int8: per layer [capacity, heads]; else empty
    private var valueScales: [UnsafeMutablePointer<Float>]

    public init(layerCount: Int, width: Int, heads: Int = 1, capacity: Int = 256, precision: Precision = .float32) {
        precondition(heads >= 1 && width % heads == 0, "KVCache: \(width) values a position do not split into \(heads) heads")
        precondition(precision.holds(headDim: width / heads), "KVCache: a \(precision) cache cannot hold heads of \(width / heads) values")
        self.layerCount = layerCount
        self.width = width
        self.heads = heads
        self.precision = precision
        self.capacity = Self.rounded(max(capacity, 1), precision)
        let bytes = self.capacity * width * precision.bytesPerValue
        keys = (0..<layerCount).map { _ in .allocate(byteCount: bytes, alignment: 64) }
        values = (0..<layerCount).map { _ in .allocate(byteCount: bytes, alignment: 64) }
        let scaleCount = precision == .int8 ? self.capacity * heads : 0
        keyScales = precision == .int8 ? (0..<layerCount).map { _ in .allocate(capacity: scaleCount) } : []
        valueScales = precision == .int8 ? (0..<layerCount).map { _ in .allocate(capacity: scaleCount) } : []
    }

    deinit {
        keys.forEach { $0.deallocate() }
        values.forEach { $0.deallocate() }
        keyScales.forEach { $0.deallocate() }
        valueScales.forEach { $0.deallocate() }
    }

    private var rowBytes: Int { width * precision.bytesPerValue }
    private var headDim: Int { width / heads }

    /// int8 keys come in whole blocks of 16 positions.
    private static func rounded(_ positions: Int, _ precision: Precision) -> Int {
        guard precision == .int8 else { return positions }
        let block = Kernels.int8KeyBlockPositions
        return (positions + block - 1) / block * block
    }

    /// Key bytes holding positions `0..<positions` (whole blocks for int8).
    private func keyBytes(_ positions: Int) -> Int { Self.rounded(positions, precision) * rowBytes }

    /// Makes room for `additional` more positions.
    func reserve(_ additional: Int) {
        let needed = count + additional
        guard needed > capacity else { return }
        var newCapacity = capacity
        while newCapacity < needed { newCapacity *= 2 }
        for layer in 0..<layerCount {
            keys[layer] = Self.moved(keys[layer], bytes: keyBytes(count), to: newCapacity * rowBytes)
            values[layer] = Self.moved(values[layer], bytes: count * rowBytes, to: newCapacity * rowBytes)
        }
        for layer in keyScales.indices {
            keyScales[layer] = Self.moved(keyScales[layer], count: count * heads, to: newCapacity * heads)
            valueScales[layer] = Self.moved(valueScales[layer], count: count * heads, to: newCapacity * heads)
        }
        capacity = newCapacity
    }

    private static func moved(_ old: UnsafeMutableRawPointer, bytes: Int, to newBytes: Int) -> UnsafeMutableRawPointer {
        let new = UnsafeMutableRawPointer.allocate(byteCount: newBytes, alignment: 64)
        new.copyMemory(from: old, byteCount: bytes)
        old.deallocate()
        return new
    }

    private static func moved(_ old: UnsafeMutablePointer<Float>, count: Int, to newCount: Int) -> UnsafeMutablePointer<Float> {
        let new = UnsafeMutablePointer<Float>.allocate(capacity: newCount)
        new.update(from: old, count: count)
        old.deallocate()
        return new
    }

    /// Writes `rows` positions from `position` on of layer `layer` (`[rows, width]` float32 each),
    /// rounded to the cache's precision. The caller keeps within the reserved capacity.
    func store(layer: Int, at position: Int, rows: Int, keys newKeys: UnsafePointer<Float>, values newValues: UnsafePointer<Float>) {
        let offset = position * rowBytes, n = rows * width
        switch precision {
        case .float32:
            (keys[layer] + offset).copyMemory(from: newKeys, byteCount: n * 4)
            (values[layer] + offset).copyMemory(from: newValues, byteCount: n * 4)
        case .float16:
            Kernels.narrowToFloat16(newKeys, count: n, into: keys[layer] + offset)
            Kernels.narrowToFloat16(newValues, count: n, into: values[layer] + offset)
        case .int8:
            let scaleOffset = position * heads
            Kernels.narrowToInt8KeyBlocks(newKeys, rows: rows, first: position, heads: heads, headDim: headDim,
                                          into: keys[layer], scales: keyScales[layer])
            Kernels.narrowToScaledInt8(newValues, rows: rows, heads: heads, headDim: headDim, into: values[layer] + offset,
                                       scales: valueScales[layer] + scaleOffset)
        }
    }

    /// Layer `layer`'s rows from position 0 (`[capacity, width]` in `precision`).
    func keys(_ layer: Int) -> UnsafeRawPointer { UnsafeRawPointer(keys[layer]) }
    func values(_ layer: Int) -> UnsafeRawPointer { UnsafeRawPointer(values[layer]) }
    /// An int8 cache's scales of layer `layer` (`[capacity, heads]`); nil for the other precisions.
    func keyScales(_ layer: Int) -> UnsafePointer<Float>? { keyScales.isEmpty ? nil : UnsafePointer(keyScales[layer]) }
    func valueScales(_ layer: Int) -> UnsafePointer<Float>? { valueScales.isEmpty ? nil : UnsafePointer(valueScales[layer]) }

    /// Positions `0..<length` of layer `layer` as float32 `[length, width]` keys and values: the
    /// stored rows themselves when the cache is float32, else widened into `widened`.
    struct Float32Rows {
        let keys: UnsafePointer<Float>
        let values: UnsafePointer<Float>
        /// Owns the widened rows of a float16 or int8 cache.
        let widened: FloatBuffer?
    }

    func float32Rows(layer: Int, length: Int) -> Float32Rows {
        let n = length * width
        switch precision {
        case .float32:
            return Float32Rows(keys: UnsafePointer(keys[layer].assumingMemoryBound(to: Float.self)),
                               values: UnsafePointer(values[layer].assumingMemoryBound(to: Float.self)), widened: nil)
        case .float16:
            let buffer = FloatBuffer(uninitializedCount: 2 * n)
            Kernels.widenFloat16(keys[layer], count: n, into: buffer.pointer)
            Kernels.widenFloat16(values[layer], count: n, into: buffer.pointer + n)
            return Float32Rows(keys: UnsafePointer(buffer.pointer), values: UnsafePointer(buffer.pointer + n), widened: buffer)
        case .int8:
            let buffer = FloatBuffer(uninitializedCount: 2 * n)
            Kernels.widenInt8KeyBlocks(keys[layer], scales: keyScales[layer], rows: length, heads: heads, headDim: headDim,
                                       into: buffer.pointer)
            Kernels.widenScaledInt8(values[layer], scales: valueScales[layer], rows: length, heads: heads, headDim: headDim,
                                    into: buffer.pointer + n)
            return Float32Rows(keys: UnsafePointer(buffer.pointer), values: UnsafePointer(buffer.pointer + n), widened: buffer)
        }
    }

    /// A new cache holding positions `0..<length` of this one, with room for `capacity` positions.
    public func copy(prefix length: Int, capacity: Int) -> KVCache {
        let n = min(max(length, 0), count)
        let copy = KVCache(layerCount: layerCount, width: width, heads: heads, capacity: max(capacity, n), precision: precision)
        for layer in 0..<layerCount {
            copy.keys[layer].copyMemory(from: keys[layer], byteCount: keyBytes(n))
            copy.values[layer].copyMemory(from: values[layer], byteCount: n * rowBytes)
        }
        for layer in keyScales.indices {
            copy.keyScales[layer].update(from: keyScales[layer], count: n * heads)
            copy.valueScales[layer].update(from: valueScales[layer], count: n * heads)
        }
        copy.count = n
        return copy
    }

    /// Marks `rows` more positions as filled, after every layer has written them.
    func advance(_ rows: Int) { count += rows }

    /// Forgets positions from `position` on (e.g. to reuse a shared prompt prefix).
    public func truncate(to position: Int) { count = min(count, max(0, position)) }

    /// Bytes held by this cache.
    public var byteCount: Int {
        2 * layerCount * capacity * (rowBytes + (precision == .int8 ? heads * MemoryLayout<Float>.size : 0))
    }
}
