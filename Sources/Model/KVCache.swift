/// The keys and values one sequence has produced so far, per decoder layer.
///
/// Keys are stored after RoPE (and q/k norm), so a new token attends to them as they are.
/// Storage grows by doubling; `count` is the number of positions filled.
public final class KVCache: @unchecked Sendable {
    public let layerCount: Int
    /// Values per position per layer: kv heads × head dim.
    public let width: Int
    public private(set) var count = 0
    public private(set) var capacity: Int
    private var keys: [UnsafeMutablePointer<Float>]     // per layer [capacity, width]
    private var values: [UnsafeMutablePointer<Float>]   // per layer [capacity, width]

    public init(layerCount: Int, width: Int, capacity: Int = 256) {
        self.layerCount = layerCount
        self.width = width
        self.capacity = max(capacity, 1)
        keys = (0..<layerCount).map { _ in .allocate(capacity: max(capacity, 1) * width) }
        values = (0..<layerCount).map { _ in .allocate(capacity: max(capacity, 1) * width) }
    }

    deinit {
        keys.forEach { $0.deallocate() }
        values.forEach { $0.deallocate() }
    }

    /// Makes room for `additional` more positions.
    func reserve(_ additional: Int) {
        let needed = count + additional
        guard needed > capacity else { return }
        var newCapacity = capacity
        while newCapacity < needed { newCapacity *= 2 }
        for layer in 0..<layerCount {
            let k = UnsafeMutablePointer<Float>.allocate(capacity: newCapacity * width)
            let v = UnsafeMutablePointer<Float>.allocate(capacity: newCapacity * width)
            k.update(from: keys[layer], count: count * width)
            v.update(from: values[layer], count: count * width)
            keys[layer].deallocate()
            values[layer].deallocate()
            keys[layer] = k
            values[layer] = v
        }
        capacity = newCapacity
    }

    /// Rows of layer `layer` from position 0 (`[capacity, width]`).
    func keys(_ layer: Int) -> UnsafeMutablePointer<Float> { keys[layer] }
    func values(_ layer: Int) -> UnsafeMutablePointer<Float> { values[layer] }

    /// Marks `rows` more positions as filled, after every layer has written them.
    func advance(_ rows: Int) { count += rows }

    /// Forgets positions from `position` on (e.g. to reuse a shared prompt prefix).
    public func truncate(to position: Int) { count = min(count, max(0, position)) }

    /// Bytes held by this cache.
    public var byteCount: Int { 2 * layerCount * capacity * width * MemoryLayout<Float>.size }
}
