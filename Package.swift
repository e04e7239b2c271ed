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
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
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
        // Kernel families as data: parameters, constraints, the C source builder, ISA targets.
        .target(name: "KernelKit", dependencies: ["Machine"]),
        // The kernel families themselves: templates, Swift references, shape rules.
        .target(name: "Kernels", dependencies: ["KernelKit"], path: "Kernels"),
        // C compiler discovery, compile jobs, the content-addressed artifact cache, dlopen.
        .target(
            name: "Toolchain",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Isolated worker processes, guarded buffers, timing protocol, pinned thread pool.
        .target(
            name: "Measure",
            dependencies: ["Machine", "CCPUFeatures", .product(name: "Logging", package: "swift-log")]
        ),
        // The tuning database (GRDB over SQLite): machines, workloads, trials, best per workload;
        // export/import and the runtime lookup.
        .target(
            name: "TuningStore",
            dependencies: [
                "KernelKit", "Machine", "Measure",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Generate -> compile -> verify -> time, for one point of a family.
        .target(
            name: "Pipeline",
            dependencies: [
                "KernelKit", "Kernels", "Toolchain", "Measure", "Machine",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Search strategies, cost model, budgets and the tuning loop.
        .target(
            name: "Tuner",
            dependencies: [
                "KernelKit", "Kernels", "Pipeline", "TuningStore", "Machine", "Roofline",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Llama models: safetensors, config, weights, the synthesizer and the FP32 reference forward.
        .target(name: "Model", path: "Sources/Model"),
        .target(
            name: "LowbitCLI",
            dependencies: [
                "Tuner", "TuningStore", "Roofline", "Report", "Model", "Inference",
                "Machine", "KernelKit", "Kernels", "Toolchain", "Measure", "Pipeline",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(name: "lowbit", dependencies: ["LowbitCLI"]),
        // SVG charts (roofline, line charts) and the self-contained HTML report; Foundation only.
        .target(name: "Report", path: "Sources/Report"),
        // OpenBLAS (Debian libopenblas-dev) through pkg-config: the FP32 baseline's sgemm.
        .systemLibrary(
            name: "COpenBLAS",
            path: "Sources/COpenBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        // The inference path: Atom quantization of a model, the engine on the tuned kernels, baselines.
        .target(
            name: "Inference",
            dependencies: [
                "Model", "Kernels", "KernelKit", "Toolchain", "TuningStore", "Machine", "Measure", "COpenBLAS",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Measured ceilings, plateaus, each family's intensity model and attainment.
        .target(name: "Roofline", dependencies: ["KernelKit", "Kernels", "Machine"]),

        .testTarget(name: "MachineTests", dependencies: ["Machine"]),
        .testTarget(name: "ModelTests", dependencies: ["Model"]),
        .testTarget(name: "KernelsTests", dependencies: ["KernelKit", "Kernels", "Toolchain"]),
        .testTarget(name: "ToolchainTests", dependencies: ["Toolchain"]),
        .testTarget(name: "MeasureTests", dependencies: ["Measure", "Machine"]),
        .testTarget(name: "TuningStoreTests", dependencies: ["TuningStore", "KernelKit", "Machine", "Measure"]),
        .testTarget(name: "PipelineTests", dependencies: ["Pipeline", "Kernels", "KernelKit", "Toolchain", "Measure", "Machine", "lowbit"]),
        .testTarget(name: "TunerTests", dependencies: ["Tuner", "KernelKit", "Kernels", "Pipeline", "TuningStore", "Machine"]),
        .testTarget(name: "EndToEndTests", dependencies: ["Machine", "KernelKit", "TuningStore", "Roofline", "lowbit"]),
        .testTarget(name: "ReportTests", dependencies: ["Report"]),
        .testTarget(name: "InferenceTests", dependencies: ["Inference", "Model", "Kernels", "KernelKit", "Toolchain", "TuningStore", "Machine", "Measure"]),
        .testTarget(name: "RooflineTests", dependencies: ["Roofline", "KernelKit", "Kernels", "Machine"]),
    ]
)
