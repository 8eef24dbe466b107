// swift-tools-version:6.1
import PackageDescription

// Kernels and the C hot loops are compiled for the CPUs this service runs on (x86-64 with
// AVX2/FMA/F16C, i.e. Haswell or newer); the rest of the package stays at the baseline.
let fastMath: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-target-cpu", "haswell"])]
// Format readers and the converter touch every weight once; optimised even in debug builds so
// that tests over real checkpoints stay fast (safe -O: bounds checks stay on).
let optimized: [SwiftSetting] = [.unsafeFlags(["-O"])]

let package = Package(
    name: "minimindv",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "minimindv", targets: ["minimindv"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", exact: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", exact: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", exact: "3.12.3"),
        .package(url: "https://github.com/groue/GRDB.swift", exact: "7.10.0"),
    ],
    targets: [
        // MARK: - System libraries (Debian -dev packages; see .ci/run)
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CJPEG", pkgConfig: "libjpeg", providers: [.apt(["libjpeg-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CSystemd", pkgConfig: "libsystemd", providers: [.apt(["libsystemd-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),

        // MARK: - C shims: libjpeg/libpng report errors by longjmp, which Swift cannot catch.
        .target(name: "CImageCodecs", dependencies: ["CJPEG", "CPNG"]),
        // Hot loops that need target attributes (F16C, AVX2, AVX-512 BF16) in one place.
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O3"])]),

        // MARK: - Library modules (data flows down this list)
        .target(name: "Kernels", dependencies: ["COpenBLAS", "CKernels"], swiftSettings: fastMath),
        .target(name: "Formats", dependencies: [.product(name: "Crypto", package: "swift-crypto")], swiftSettings: optimized),
        .target(name: "Tokenizer"),
        .target(name: "Imaging", dependencies: ["CImageCodecs"], swiftSettings: fastMath),
        .target(name: "Conversion", dependencies: ["Formats", "Tokenizer"], swiftSettings: optimized),
        .target(name: "Model", dependencies: ["Formats", "Kernels", "Tokenizer", "Imaging"], swiftSettings: fastMath),
        .target(name: "Engine", dependencies: ["Model", "Kernels", "Tokenizer", "Imaging"]),
        .target(name: "Store", dependencies: ["CSQLite", .product(name: "GRDB", package: "GRDB.swift")]),
        .target(name: "Spool", dependencies: [.product(name: "Crypto", package: "swift-crypto")]),
        .target(name: "Service", dependencies: [
            "Engine", "Spool", "Store", "CSystemd",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "minimindv", dependencies: [
            "Formats", "Conversion", "Tokenizer", "Imaging", "Model", "Engine", "Spool", "Store", "Service",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        // Benchmark of the low-precision kernels against OpenBLAS (not a test; see its header).
        .executableTarget(name: "kernels-bench", dependencies: ["Kernels", "CKernels", "COpenBLAS"],
                          path: "Tools/kernels-bench", exclude: ["make_lowprecision_vectors.py", "RESULTS.md"], swiftSettings: fastMath),

        // MARK: - Tests (one target per module, plus the binary as users run it)
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "KernelsTests", dependencies: ["Kernels", "TestSupport"]),
        .testTarget(name: "FormatsTests", dependencies: ["Formats", "TestSupport"]),
        .testTarget(name: "ConversionTests", dependencies: ["Conversion", "Formats", "TestSupport"]),
        .testTarget(name: "TokenizerTests", dependencies: ["Tokenizer", "TestSupport"]),
        .testTarget(name: "ImagingTests", dependencies: ["Imaging", "TestSupport", .product(name: "Crypto", package: "swift-crypto")]),
        .target(name: "ModelFixtureSupport", dependencies: ["Conversion", "TestSupport"], path: "Tests/ModelFixtureSupport"),
        .testTarget(name: "ModelTests", dependencies: ["ModelFixtureSupport", "Model", "Conversion", "Formats", "TestSupport"]),
        .testTarget(name: "EngineTests", dependencies: ["ModelFixtureSupport", "Engine", "Model", "Conversion", "TestSupport"]),
        .testTarget(name: "StoreTests", dependencies: ["Store", "TestSupport"]),
        .testTarget(name: "SpoolTests", dependencies: ["Spool", "TestSupport"]),
        .testTarget(name: "ServiceTests", dependencies: ["Service", "Spool", "Store", "TestSupport"]),
        // The daemon loop with a paced fake executor, run as a child process by IntegrationTests (kill -9, two daemons).
        .executableTarget(name: "SpoolTestDaemon", dependencies: [
            "Service", "Spool", "Store", .product(name: "Logging", package: "swift-log"),
        ], path: "Tests/SpoolTestDaemon"),
        .testTarget(name: "IntegrationTests", dependencies: ["TestSupport", "Store"]),
    ]
)
