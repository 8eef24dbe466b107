import Formats

/// A metadata value as a model file stores it.
public enum MetadataValue: Sendable, Equatable {
    case integer(Int)
    case float(Double)
    case bool(Bool)
    case string(String)
    case array([MetadataValue])
}

/// Where a model's configuration and weights come from: the GGUF file in production.
///
/// Keys and tensor names are those of `ModelKey` and `TensorName`; shapes are PyTorch order.
public protocol ModelFile: Sendable {
    /// For error messages: the file's path.
    var sourceDescription: String { get }
    func metadataValue(_ key: String) -> MetadataValue?
    func tensor(named name: String) -> Tensor?
}

extension ModelFile {
    func integer(_ key: String) throws(ModelError) -> Int {
        guard let value = optionalInteger(key) else { throw missing(key, "an integer") }
        return value
    }

    func optionalInteger(_ key: String) -> Int? {
        switch metadataValue(key) {
        case .integer(let v): v
        case .float(let v) where v == v.rounded(): Int(exactly: v)
        default: nil
        }
    }

    func float(_ key: String) throws(ModelError) -> Float {
        guard let value = optionalFloat(key) else { throw missing(key, "a number") }
        return value
    }

    func optionalFloat(_ key: String) -> Float? {
        switch metadataValue(key) {
        case .float(let v): Float(v)
        case .integer(let v): Float(v)
        default: nil
        }
    }

    func bool(_ key: String, default fallback: Bool) -> Bool {
        if case .bool(let v) = metadataValue(key) { return v }
        return fallback
    }

    func optionalString(_ key: String) -> String? {
        if case .string(let v) = metadataValue(key) { return v }
        return nil
    }

    func floats(_ key: String) -> [Float]? {
        guard case .array(let items) = metadataValue(key) else { return nil }
        var out: [Float] = []
        for item in items {
            switch item {
            case .float(let v): out.append(Float(v))
            case .integer(let v): out.append(Float(v))
            default: return nil
            }
        }
        return out
    }

    func missing(_ key: String, _ what: String) -> ModelError {
        ModelError(.invalidModel, "\(sourceDescription): metadata key \(key) (\(what)) is missing; "
            + "was this file written by `minimindv convert`?")
    }
}
