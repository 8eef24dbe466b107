// swift-tools-version:6.1
// Decode + preprocess timing outside the main package (thread CPU time; the machine is shared).
// Sources/{CJPEG,CPNG,CImageCodecs,Imaging} are symlinks to the real modules, same flags.
//   cd Tools/imaging/bench && swift build -c release && .build/release/Bench IMAGE.jpg...
import PackageDescription
let package = Package(name: "imaging-bench", targets: [
    .systemLibrary(name: "CJPEG", pkgConfig: "libjpeg"),
    .systemLibrary(name: "CPNG", pkgConfig: "libpng"),
    .target(name: "CImageCodecs", dependencies: ["CJPEG", "CPNG"]),
    .target(name: "Imaging", dependencies: ["CImageCodecs"], swiftSettings: [.unsafeFlags(["-Ounchecked", "-target-cpu", "haswell"])]),
    .executableTarget(name: "Bench", dependencies: ["Imaging"]),
])
