/// A GGUF metadata value. Arrays keep their element type so that an empty array round-trips.
public enum GGUFValue: Sendable, Equatable {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16)
    case uint32(UInt32), int32(Int32), float32(Float), bool(Bool)
    case string(String)
    case array(GGUFValueType, [GGUFValue])
    case uint64(UInt64), int64(Int64), float64(Double)

    public var type: GGUFValueType {
        switch self {
        case .uint8: .uint8
        case .int8: .int8
        case .uint16: .uint16
        case .int16: .int16
        case .uint32: .uint32
        case .int32: .int32
        case .float32: .float32
        case .bool: .bool
        case .string: .string
        case .array: .array
        case .uint64: .uint64
        case .int64: .int64
        case .float64: .float64
        }
    }

    /// The value as an integer, for any integer type (and a bool as 0/1).
    public var integer: Int? {
        switch self {
        case .uint8(let v): Int(v)
        case .int8(let v): Int(v)
        case .uint16(let v): Int(v)
        case .int16(let v): Int(v)
        case .uint32(let v): Int(v)
        case .int32(let v): Int(v)
        case .uint64(let v): Int(exactly: v)
        case .int64(let v): Int(v)
        default: nil
        }
    }

    /// The value as a float32, for either float type.
    public var float: Float? {
        switch self {
        case .float32(let v): v
        case .float64(let v): Float(v)
        default: nil
        }
    }

    public var bool: Bool? {
        if case .bool(let v) = self { return v }
        return nil
    }

    public var string: String? {
        if case .string(let v) = self { return v }
        return nil
    }

    public var array: [GGUFValue]? {
        if case .array(_, let v) = self { return v }
        return nil
    }

    public static func strings(_ values: [String]) -> GGUFValue { .array(.string, values.map(GGUFValue.string)) }
    public static func uint32s(_ values: [Int]) -> GGUFValue { .array(.uint32, values.map { .uint32(UInt32(clamping: $0)) }) }
    public static func int32s(_ values: [Int]) -> GGUFValue { .array(.int32, values.map { .int32(Int32(clamping: $0)) }) }
    public static func float32s(_ values: [Float]) -> GGUFValue { .array(.float32, values.map(GGUFValue.float32)) }

    /// A short human-readable rendering; long arrays are elided.
    public func summary(limit: Int = 8) -> String {
        switch self {
        case .string(let s):
            let oneLine = s.split(separator: "\n", omittingEmptySubsequences: false).joined(separator: "\\n")
            return oneLine.count > 80 ? "\"\(oneLine.prefix(77))...\" (\(s.utf8.count) bytes)" : "\"\(oneLine)\""
        case .array(let type, let values):
            let shown = values.prefix(limit).map { $0.summary(limit: limit) }.joined(separator: ", ")
            let more = values.count > limit ? ", ... (\(values.count) \(type.name))" : ""
            return "[\(shown)\(more)]"
        case .bool(let v): return String(v)
        case .float32(let v): return String(v)
        case .float64(let v): return String(v)
        default: return integer.map(String.init) ?? "?"
        }
    }
}

/// GGUF's value type tags.
public enum GGUFValueType: UInt32, Sendable {
    case uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6, bool = 7
    case string = 8, array = 9, uint64 = 10, int64 = 11, float64 = 12

    public var name: String {
        switch self {
        case .uint8: "u8"
        case .int8: "i8"
        case .uint16: "u16"
        case .int16: "i16"
        case .uint32: "u32"
        case .int32: "i32"
        case .float32: "f32"
        case .bool: "bool"
        case .string: "string"
        case .array: "array"
        case .uint64: "u64"
        case .int64: "i64"
        case .float64: "f64"
        }
    }

    /// Encoded size of a scalar of this type; nil for strings and arrays.
    var fixedSize: Int? {
        switch self {
        case .uint8, .int8, .bool: 1
        case .uint16, .int16: 2
        case .uint32, .int32, .float32: 4
        case .uint64, .int64, .float64: 8
        case .string, .array: nil
        }
    }
}

/// Metadata in file order with lookup by key.
public struct GGUFMetadata: Sendable {
    public private(set) var entries: [(key: String, value: GGUFValue)] = []
    private var index: [String: Int] = [:]

    public init() {}

    /// Adds `key`; a key may appear once.
    public mutating func set(_ key: String, _ value: GGUFValue) throws(FormatError) {
        guard index[key] == nil else { throw FormatError(.malformed, "metadata key \(key) appears twice") }
        index[key] = entries.count
        entries.append((key, value))
    }

    public subscript(key: String) -> GGUFValue? {
        index[key].map { entries[$0].value }
    }

    public var keys: [String] { entries.map(\.key) }
    public var count: Int { entries.count }

    public func integer(_ key: String) -> Int? { self[key]?.integer }
    public func float(_ key: String) -> Float? { self[key]?.float }
    public func bool(_ key: String) -> Bool? { self[key]?.bool }
    public func string(_ key: String) -> String? { self[key]?.string }
    public func strings(_ key: String) -> [String]? {
        guard let values = self[key]?.array else { return nil }
        let strings = values.compactMap(\.string)
        return strings.count == values.count ? strings : nil
    }
    public func integers(_ key: String) -> [Int]? {
        guard let values = self[key]?.array else { return nil }
        let ints = values.compactMap(\.integer)
        return ints.count == values.count ? ints : nil
    }
    public func floats(_ key: String) -> [Float]? {
        guard let values = self[key]?.array else { return nil }
        let floats = values.compactMap(\.float)
        return floats.count == values.count ? floats : nil
    }
}
