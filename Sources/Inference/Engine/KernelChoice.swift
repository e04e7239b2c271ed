import KernelKit
import Toolchain

/// Where a kernel's configuration came from, as `--explain` prints it.
public enum ConfigurationOrigin: Sendable, Equatable, CustomStringConvertible {
    /// The tuning database's best trial for exactly this (machine, workload).
    case exact(trialID: Int64)
    /// The best trial of the nearest stored shape of the family on this machine.
    case nearest(workload: Workload, distance: Double, trialID: Int64)
    /// No usable tuned record: the family's analytical configuration for this machine and shape.
    case analyticalDefault
    /// The portable target's default, after the machine's own target could not be compiled or loaded.
    case portableFallback

    /// True for the two database-backed origins.
    public var isTuned: Bool {
        switch self {
        case .exact, .nearest: true
        case .analyticalDefault, .portableFallback: false
        }
    }

    public var description: String {
        switch self {
        case .exact(let id): "exact tuned (trial \(id))"
        case let .nearest(w, d, id):
            "nearest tuned shape \(w.shape.keys.sorted().map { "\($0)=\(w.shape[$0]!)" }.joined(separator: " ")) (log2 distance \(String(format: "%.2f", d)), trial \(id))"
        case .analyticalDefault: "analytical default"
        case .portableFallback: "portable fallback"
        }
    }
}

/// The decision for one (family, workload): the configuration that runs, where it came from, and
/// what the engine changed in it.
public struct KernelChoice: Sendable, Equatable {
    public var family: String
    public var workload: Workload
    public var configuration: Configuration
    public var origin: ConfigurationOrigin
    /// The generated variant's name (`gemm_w4a4__avx512vnni_mr4_nr32_...`).
    public var variant: String
    /// Changes made to the looked-up configuration, and why (a page size fixed by the cache, a tuned
    /// record this machine cannot run...).
    public var notes: [String]
}

/// A compiled, loaded kernel variant: the shared object stays open while this object lives, so the
/// function pointers taken from it stay valid.
public final class LoadedKernel: @unchecked Sendable {
    public let choice: KernelChoice
    /// Exported symbols by role ("kernel", "pack", ...), as the template names them.
    public let symbols: [String: String]
    private let library: LoadedLibrary

    init(choice: KernelChoice, symbols: [String: String], library: LoadedLibrary) {
        self.choice = choice
        self.symbols = symbols
        self.library = library
    }

    /// The configuration's integer parameter `name`.
    public func int(_ name: String) -> Int { choice.configuration.int(name) }

    /// The exported function of `role` as a `@convention(c)` type (the caller's contract: `T` must
    /// match the generated C signature).
    public func function<T>(_ role: String, as type: T.Type) throws -> T {
        guard let name = symbols[role] else {
            throw EngineError.kernelUnavailable(
                family: choice.family, workload: choice.workload.description, reason: "the variant exports no '\(role)' function")
        }
        return try library.symbol(name, as: type)
    }

    /// The same loaded library under another choice (a workload that resolved to the same variant).
    func relabelled(_ choice: KernelChoice) -> LoadedKernel {
        LoadedKernel(choice: choice, symbols: symbols, library: library)
    }
}
