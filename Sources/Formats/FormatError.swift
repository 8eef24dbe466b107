/// Everything that can be wrong with a file we are asked to read or write.
///
/// The message is written for the user: it names the file, the tensor or key, what was
/// expected and, where there is one, what to do about it.
public struct FormatError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Kind: String, Sendable {
        /// The file could not be opened, read or written.
        case io
        /// The bytes do not follow the format (truncated, garbage, bad offsets).
        case malformed
        /// Well-formed, but uses something we refuse on purpose (e.g. a pickle global).
        case refused
        /// Well-formed, but uses a feature we do not implement.
        case unsupported
        /// The content is not what a MiniMind-V model needs (missing tensor, wrong shape).
        case invalidModel
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}
