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

    /// One folder per test process under the system temporary directory; everything the tests write
    /// goes below it and it is removed when the process exits, so runs do not litter /tmp.
    public static let scratch: URL = {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("minimindv-tests-\(getpid())")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(at: Fixtures.scratch) }
        return url
    }()

    /// A fresh folder inside `scratch`.
    public static func temporaryDirectory(_ label: String = "minimindv-test") throws -> URL {
        let url = scratch.appendingPathComponent("\(label)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}
