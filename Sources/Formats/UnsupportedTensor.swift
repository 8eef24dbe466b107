/// A tensor whose element type we can read past but not use (e.g. safetensors `F8_E4M3`,
/// PyTorch `complex64`): kept so that tools can list it and errors can name it.
public struct UnsupportedTensor: Sendable {
    public var name: String
    /// The type as the file spells it (`F8_E4M3`, `ComplexFloatStorage`).
    public var dtypeName: String
    public var shape: [Int]
    public var bytes: TensorBytes

    public init(name: String, dtypeName: String, shape: [Int], bytes: TensorBytes) {
        self.name = name
        self.dtypeName = dtypeName
        self.shape = shape
        self.bytes = bytes
    }
}

/// Sources that met tensors of a type we do not convert list them here.
public protocol UnsupportedTensorListing {
    /// Tensors whose element type we cannot convert, in file order.
    var unsupportedTensors: [UnsupportedTensor] { get }
}
