import Foundation

/// Paths to the shared reference data (`../shared` beside the checkout) and to this package.
public enum Fixtures {
    /// The package root: the folder holding Package.swift.
    public static let packageRoot: URL = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url
    }()

    /// `../shared`, read-only reference data; override with MINIMINDV_SHARED.
    public static let shared: URL = {
        if let path = ProcessInfo.processInfo.environment["MINIMINDV_SHARED"] {
            return URL(fileURLWithPath: path)
        }
        return packageRoot.deletingLastPathComponent().appendingPathComponent("shared")
    }()

    public static var minimind: URL { shared.appendingPathComponent("minimind") }

    /// `shared/minimind/fixtures/<generation>`.
    public static func generation(_ name: String) -> URL {
        minimind.appendingPathComponent("fixtures").appendingPathComponent(name)
    }

    /// A fresh temporary folder, removed by the caller (or left for the OS to clean).
    public static func temporaryDirectory(_ label: String = "minimindv-test") throws -> URL {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("\(label)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}
