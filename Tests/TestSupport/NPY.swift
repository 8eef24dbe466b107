import Foundation

/// A numpy `.npy` array (format 1.0/2.0/3.0, little-endian, C order): the reference outputs
/// in `shared/minimind/fixtures` are stored this way.
public struct NPYArray: Sendable {
    public enum Element: String, Sendable {
        case float32 = "<f4", float64 = "<f8", int64 = "<i8", int32 = "<i4", uint8 = "|u1"
    }

    public let element: Element
    public let shape: [Int]
    public let data: Data

    public init(contentsOf url: URL) throws {
        let data = try Data(contentsOf: url)
        guard data.count >= 10, data.prefix(6) == Data([0x93]) + Data("NUMPY".utf8) else {
            throw NPYError("\(url.path) is not a .npy file")
        }
        let major = data[data.startIndex + 6]
        let headerLength: Int
        let headerStart: Int
        if major == 1 {
            headerLength = Int(data[data.startIndex + 8]) | Int(data[data.startIndex + 9]) << 8
            headerStart = 10
        } else {
            headerLength = (0..<4).reduce(0) { $0 | Int(data[data.startIndex + 8 + $1]) << (8 * $1) }
            headerStart = 12
        }
        guard let header = String(data: data.subdata(in: headerStart..<(headerStart + headerLength)), encoding: .utf8) else {
            throw NPYError("\(url.path): unreadable header")
        }
        guard let descr = Self.field("descr", in: header), let element = Element(rawValue: descr) else {
            throw NPYError("\(url.path): unsupported dtype in \(header)")
        }
        guard header.contains("'fortran_order': False") else { throw NPYError("\(url.path): Fortran order") }
        guard let open = header.range(of: "'shape': ("), let close = header[open.upperBound...].firstIndex(of: ")") else {
            throw NPYError("\(url.path): no shape in \(header)")
        }
        self.element = element
        self.shape = header[open.upperBound..<close].split(separator: ",")
            .compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        self.data = data.subdata(in: (headerStart + headerLength)..<data.count)
    }

    public var count: Int { shape.reduce(1, *) }

    public var floats: [Float] {
        switch element {
        case .float32: data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        case .float64: data.withUnsafeBytes { $0.bindMemory(to: Double.self).map { Float($0) } }
        default: ints.map { Float($0) }
        }
    }

    public var ints: [Int] {
        switch element {
        case .int64: data.withUnsafeBytes { $0.bindMemory(to: Int64.self).map { Int($0) } }
        case .int32: data.withUnsafeBytes { $0.bindMemory(to: Int32.self).map { Int($0) } }
        case .uint8: data.map { Int($0) }
        case .float32, .float64: floats.map { Int($0) }
        }
    }

    public var bytes: [UInt8] { [UInt8](data) }

    private static func field(_ name: String, in header: String) -> String? {
        guard let key = header.range(of: "'\(name)': '") else { return nil }
        guard let end = header[key.upperBound...].firstIndex(of: "'") else { return nil }
        return String(header[key.upperBound..<end])
    }
}

public struct NPYError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// max |a - b| / max |b|: the relative error measure the issues state their bounds in.
public func relativeError(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count, "length \(a.count) vs \(b.count)")
    var maxDiff: Float = 0, maxRef: Float = 0
    for i in a.indices {
        maxDiff = max(maxDiff, abs(a[i] - b[i]))
        maxRef = max(maxRef, abs(b[i]))
    }
    return maxRef == 0 ? maxDiff : maxDiff / maxRef
}
