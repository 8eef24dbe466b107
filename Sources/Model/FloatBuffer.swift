/// A fixed-size block of float32 values: activations, scratch space and weights widened at load.
///
/// Model code passes `pointer` to the kernels; the memory lives as long as the buffer.
public final class FloatBuffer: @unchecked Sendable {
    public let count: Int
    public let pointer: UnsafeMutablePointer<Float>

    public init(count: Int) {
        self.count = count
        pointer = .allocate(capacity: max(count, 1))
        pointer.initialize(repeating: 0, count: max(count, 1))
    }

    /// A buffer whose every value the caller writes before reading any (a product's or a norm's
    /// output): no zero-filling, which for the vision encoder's per-layer activations was 6 % of its time.
    public init(uninitializedCount count: Int) {
        self.count = count
        pointer = .allocate(capacity: max(count, 1))
    }

    public convenience init(_ values: [Float]) {
        self.init(count: values.count)
        values.withUnsafeBufferPointer { pointer.update(from: $0.baseAddress!, count: values.count) }
    }

    deinit { pointer.deallocate() }

    public var array: [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }

    public func rows(_ range: Range<Int>, width: Int) -> [Float] {
        Array(UnsafeBufferPointer(start: pointer + range.lowerBound * width, count: range.count * width))
    }
}
