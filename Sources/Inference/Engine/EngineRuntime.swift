import COpenBLAS
import Kernels
import Logging
import Machine
import Toolchain
import TuningStore

/// The engine's modes: weights, activations and KV cache formats.
public enum EngineMode: String, CaseIterable, Sendable, Codable {
    /// FP32 weights and activations (OpenBLAS sgemm), FP32 KV cache.
    case fp32
    /// INT8 per-channel weights, INT8 per-token activations (gemm-w8a8), INT8 KV cache.
    case w8a8
    /// Atom: INT4 group-128 weights and activations with INT8 outlier channels (gemm-w4a4 and the
    /// fused quantize kernels), INT4 KV cache.
    case w4a4

    /// The KV cache format of the mode (an engine may be given another, `EngineOptions.kvCache`).
    public var kvCache: KVCacheFormat {
        switch self {
        case .fp32: .fp32
        case .w8a8: .int8
        case .w4a4: .int4
        }
    }

    /// Parses a mode name, listing the valid ones when it is not one.
    public static func parse(_ text: String) throws -> EngineMode {
        guard let mode = EngineMode(rawValue: text.lowercased()) else {
            throw EngineError.invalidInput("unknown mode '\(text)'; valid modes: \(allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return mode
    }
}

/// What several engines can share: the machine, kernel dispatch (and so the compiled kernels) and the
/// worker threads. serve-bench runs its three modes on one runtime, so they use the same threads.
public final class EngineRuntime {
    public let machine: MachineModel
    public let provider: KernelProvider
    public let threads: KernelThreads
    /// Where the tuning database is, for `--explain` (nil: analytical configurations only).
    public let databasePath: String?

    /// - Parameters:
    ///   - databasePath: a tuning database to look configurations up in; nil for none.
    ///   - threads: worker threads; nil means one per core. OpenBLAS is set to one thread: the FP32
    ///     projections are split over these threads (see `FP32Linear`).
    public init(
        databasePath: String? = nil, threads: Int? = nil, compiler: CompilerInfo? = nil, cache: ArtifactCache = ArtifactCache(),
        logger: Logger = Logger(label: "lowbit.engine")
    ) throws {
        machine = try MachineModel(logger: logger)
        let store = try databasePath.map { try TuningStore(path: $0, logger: logger) }
        provider = try KernelProvider(machine: machine.description, store: store, compiler: compiler, cache: cache, logger: logger)
        self.threads = try KernelThreads(count: threads, machine: machine)
        self.databasePath = databasePath
        openblas_set_num_threads(1)
    }
}
