/// What can be wrong with a model file or a request to run it.
public struct ModelError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Kind: String, Sendable {
        /// A metadata key or tensor the model needs is missing or malformed.
        case invalidModel
        /// The file uses something this engine does not run (an unknown encoder, a dtype).
        case unsupported
        /// The request does not fit the model (image count vs placeholder runs, shapes).
        case invalidInput
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}
