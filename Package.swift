// swift-tools-version:6.0
// lowbit: a kernel research workbench and autotuner for low-bit LLM kernels.
import PackageDescription

let package = Package(
    name: "lowbit",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "lowbit", targets: ["lowbit"]),
        .library(name: "Machine", targets: ["Machine"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // C libraries, found through pkg-config. Only the Machine module imports them.
        .systemLibrary(
            name: "CHwloc",
            path: "Sources/CHwloc",
            pkgConfig: "hwloc",
            providers: [.apt(["libhwloc-dev"])]
        ),
        .systemLibrary(
            name: "CPAPI",
            path: "Sources/CPAPI",
            pkgConfig: "papi",
            providers: [.apt(["libpapi-dev"])]
        ),
        // cpuid/xgetbv and aarch64 hwcaps: instructions and macros Swift cannot reach.
        .target(name: "CCPUFeatures", path: "Sources/CCPUFeatures"),

        .target(
            name: "Machine",
            dependencies: [
                "CHwloc", "CPAPI", "CCPUFeatures",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "LowbitCLI",
            dependencies: [
                "Machine",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(name: "lowbit", dependencies: ["LowbitCLI"]),

        .testTarget(name: "MachineTests", dependencies: ["Machine"]),
        .testTarget(name: "EndToEndTests", dependencies: ["Machine", "lowbit"]),
    ]
)
