import Kernels

/// The keys and values one sequence has produced so far, per decoder layer.
///
/// Keys are stored after RoPE (and q/k norm), so a new token attends to them as they are. Each
/// layer holds `[capacity, width]` keys and as many values, in float32 or float16 (`precision`);
/// storage grows by doubling; `count` is the number of positions filled.
public final class KVCache: @unchecked Sendable {
    public typealias Precision = DecodeKernels.CachePrecision

    public let layerCount: Int
    /// Values per position per layer: kv heads × head dim.
    public let width: Int
    public let precision: Precision
    public private(set) var count = 0
    public private(set) var capacity: Int
    private var keys: [UnsafeMutableRawPointer]     // per layer [capacity, width]
    private var values: [UnsafeMutableRawPointer]   // per layer [capacity, width]

    public init(layerCount: Int, width: Int, capacity: Int = 256, precision: Precision = .float32) {
        self.layerCount = layerCount
        self.width = width
        self.precision = precision
        self.capacity = max(capacity, 1)
        let bytes = max(capacity, 1) * width * precision.bytesPerValue
        keys = (0..<layerCount).map { _ in .allocate(byteCount: bytes, alignment: 64) }
        values = (0..<layerCount).map { _ in .allocate(byteCount: bytes, alignment: 64) }
    }

    deinit {
        keys.forEach { $0.deallocate() }
        values.forEach { $0.deallocate() }
    }

    private var rowBytes: Int { width * precision.bytesPerValue }

    /// Makes room for `additional` more positions.
    func reserve(_ additional: Int) {
        let needed = count + additional
        guard needed > capacity else { return }
        var newCapacity = capacity
        while newCapacity < needed { newCapacity *= 2 }
        for layer in 0..<layerCount {
            let k = UnsafeMutableRawPointer.allocate(byteCount: newCapacity * rowBytes, alignment: 64)
            let v = UnsafeMutableRawPointer.allocate(byteCount: newCapacity * rowBytes, alignment: 64)
            k.copyMemory(from: keys[layer], byteCount: count * rowBytes)
            v.copyMemory(from: values[layer], byteCount: count * rowBytes)
            keys[layer].deallocate()
            values[layer].deallocate()
            keys[layer] = k
            values[layer] = v
        }
        capacity = newCapacity
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
        }
    }

    /// Layer `layer`'s rows from position 0 (`[capacity, width]` in `precision`).
    func keys(_ layer: Int) -> UnsafeRawPointer { UnsafeRawPointer(keys[layer]) }
    func values(_ layer: Int) -> UnsafeRawPointer { UnsafeRawPointer(values[layer]) }

    /// Positions `0..<length` of layer `layer` as float32 `[length, width]` keys and values: the
    /// stored rows themselves when the cache is float32, else widened into `widened`.
    struct Float32Rows {
        let keys: UnsafePointer<Float>
        let values: UnsafePointer<Float>
        /// Owns the widened rows of a float16 cache.
        let widened: FloatBuffer?
    }

    func float32Rows(layer: Int, length: Int) -> Float32Rows {
        switch precision {
        case .float32:
            return Float32Rows(keys: UnsafePointer(keys[layer].assumingMemoryBound(to: Float.self)),
                               values: UnsafePointer(values[layer].assumingMemoryBound(to: Float.self)), widened: nil)
        case .float16:
            let n = length * width
            let buffer = FloatBuffer(uninitializedCount: 2 * n)
            Kernels.widenFloat16(keys[layer], count: n, into: buffer.pointer)
            Kernels.widenFloat16(values[layer], count: n, into: buffer.pointer + n)
            return Float32Rows(keys: UnsafePointer(buffer.pointer), values: UnsafePointer(buffer.pointer + n), widened: buffer)
        }
    }

    /// A new cache holding positions `0..<length` of this one, with room for `capacity` positions.
    public func copy(prefix length: Int, capacity: Int) -> KVCache {
        let n = min(max(length, 0), count)
        let copy = KVCache(layerCount: layerCount, width: width, capacity: max(capacity, n), precision: precision)
        for layer in 0..<layerCount {
            copy.keys[layer].copyMemory(from: keys[layer], byteCount: n * rowBytes)
            copy.values[layer].copyMemory(from: values[layer], byteCount: n * rowBytes)
        }
        copy.count = n
        return copy
    }

    /// Marks `rows` more positions as filled, after every layer has written them.
    func advance(_ rows: Int) { count += rows }

    /// Forgets positions from `position` on (e.g. to reuse a shared prompt prefix).
    public func truncate(to position: Int) { count = min(count, max(0, position)) }

    /// Bytes held by this cache.
    public var byteCount: Int { 2 * layerCount * capacity * rowBytes }
}
