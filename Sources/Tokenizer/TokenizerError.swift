/// Why a tokenizer or chat template could not be loaded or used.
public struct TokenizerError: Error, CustomStringConvertible, Sendable, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
