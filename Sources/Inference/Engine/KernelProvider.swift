import Foundation
import KernelKit
import Logging
import Machine
import Toolchain
import TuningStore

/// Kernel dispatch for the engine: (family, workload) -> tuning-database lookup -> configuration ->
/// render -> compile (through the content-addressed artifact cache) -> dlopen -> typed functions.
///
/// The configuration is the database's best for exactly this workload on this machine, else the best of
/// the nearest stored shape, else the family's analytical configuration (`TuningStore.lookup`); with no
/// database, the analytical configuration. Parameters the engine must decide (the cache format a
/// workload's `kvbits` implies, the cache's page size) are fixed afterwards and noted. A tuned record
/// this machine cannot run (an ISA it lacks, more threads than PUs) falls back to the analytical
/// configuration; a variant that does not compile or load falls back to the portable target's default;
/// both are stated in the choice's notes. Results are memoized per workload and per configuration.
public final class KernelProvider {
    public let machine: MachineDescription
    /// The tuning database, or nil to use analytical configurations only.
    public let store: TuningStore?
    public let compiler: CompilerInfo
    public let cache: ArtifactCache
    private let logger: Logger
    private var byWorkload: [String: LoadedKernel] = [:]
    private var byConfiguration: [String: LoadedKernel] = [:]

    /// - Parameters:
    ///   - machine: this machine (`MachineModel().description`); its fingerprint keys the lookups.
    ///   - store: the tuning database; nil means analytical configurations only.
    ///   - compiler: nil discovers one (`CompilerDiscovery.discover()`).
    public init(
        machine: MachineDescription, store: TuningStore?, compiler: CompilerInfo? = nil, cache: ArtifactCache = ArtifactCache(),
        logger: Logger = Logger(label: "lowbit.engine.dispatch")
    ) throws {
        self.machine = machine
        self.store = store
        self.compiler = try compiler ?? CompilerDiscovery.discover()
        self.cache = cache
        self.logger = logger
    }

    /// The loaded kernel for `workload`, with `fixed` parameters forced (e.g. the cache's page size).
    /// The family's harness shape rules are waived, with a note (the cache families' 2^31-byte pool rule:
    /// the engine's pools use 64-bit offsets, as the kernels do).
    public func kernel(_ family: any KernelFamily, for workload: Workload, fixing fixed: [String: ParamValue] = [:]) throws -> LoadedKernel {
        let key = workload.description + " | " + fixed.keys.sorted().map { "\($0)=\(fixed[$0]!)" }.joined(separator: " ")
        if let known = byWorkload[key] { return known }
        let loaded = try resolve(family, workload, fixed)
        byWorkload[key] = loaded
        return loaded
    }

    /// Every distinct kernel loaded so far, by workload.
    public var loaded: [KernelChoice] { byWorkload.keys.sorted().compactMap { byWorkload[$0]?.choice } }

    // MARK: resolution

    private func unavailable(_ workload: Workload, _ reason: String) -> EngineError {
        .kernelUnavailable(family: workload.family, workload: workload.description, reason: reason)
    }

    private func resolve(_ family: any KernelFamily, _ workload: Workload, _ fixed: [String: ParamValue]) throws -> LoadedKernel {
        var notes: [String] = []
        do {
            if let waived = try family.checkShapeForRuntime(workload) {
                notes.append("shape rule '\(waived.rule)' waived (\(waived.message)): it bounds the test harness, not the kernel")
            }
        } catch {
            throw unavailable(workload, "\(error)")
        }
        let context = MachineContext(machine)
        let forced = family.workloadParameters(workload).merging(fixed) { _, engine in engine }
        func applyFixes(_ config: Configuration, record: Bool) -> Configuration {
            var c = config
            for name in forced.keys.sorted() where c[name] != forced[name] {
                if record { notes.append("\(name)=\(forced[name]!) (looked up \(c[name].map { "\($0)" } ?? "none")): fixed by the engine") }
                c[name] = forced[name]
            }
            return c
        }
        let analytical = { family.analyticalConfiguration(for: workload, machine: context) }
        var origin = ConfigurationOrigin.analyticalDefault
        var config: Configuration
        if let store {
            let answer: LookupResult
            do {
                answer = try store.lookup(machine: machine.fingerprint.id, workload: workload, fallback: analytical)
            } catch {
                throw unavailable(workload, "tuning database lookup failed: \(error)")
            }
            config = family.completing(answer.configuration)
            switch answer.source {
            case .exact(let id): origin = .exact(trialID: id)
            case let .nearest(w, d, id):
                origin = .nearest(workload: w, distance: d, trialID: id)
                let fitted = family.adapting(config, to: workload, machine: context)
                if fitted != config { notes.append("fitted to the workload: \(config.changes(to: fitted))") }
                config = fitted
            case .analyticalDefault: origin = .analyticalDefault
            }
        } else {
            config = analytical()
        }
        config = applyFixes(config, record: true)
        do {
            try family.check(config, machine: context)
        } catch {
            guard origin.isTuned else { throw unavailable(workload, "the analytical configuration does not run here: \(error)") }
            notes.append("tuned \(origin) rejected on this machine (\(error)); using the analytical default")
            origin = .analyticalDefault
            config = applyFixes(analytical(), record: false)
            do { try family.check(config, machine: context) } catch {
                throw unavailable(workload, "the analytical configuration does not run here either: \(error)")
            }
        }
        do {
            return try load(family, workload, config, origin, notes)
        } catch let first {
            guard config["isa"] != .name(ISATarget.portable.rawValue), family.targets.contains(.portable) else { throw first }
            let portable = applyFixes(family.defaultConfiguration(isa: .portable, machine: context), record: false)
            logger.warning("\(workload): \(first); falling back to the portable target")
            notes.append("\(config["isa"]!) variant unavailable (\(first)); running the portable target's default")
            do {
                try family.check(portable, machine: context)
                return try load(family, workload, portable, .portableFallback, notes)
            } catch {
                throw unavailable(workload, "\(first); the portable fallback failed too: \(error)")
            }
        }
    }

    /// Renders, compiles (cached on disk) and opens the variant, reusing one already opened for the
    /// same configuration.
    private func load(
        _ family: any KernelFamily, _ workload: Workload, _ config: Configuration, _ origin: ConfigurationOrigin, _ notes: [String]
    ) throws -> LoadedKernel {
        let configKey = family.name + " " + config.description
        let source: KernelSource
        do { source = try family.render(config) } catch { throw unavailable(workload, "render failed: \(error)") }
        let choice = KernelChoice(
            family: family.name, workload: workload, configuration: config, origin: origin, variant: source.name, notes: notes)
        if let known = byConfiguration[configKey] { return known.relabelled(choice) }
        if let why = source.isa.missingFeatures(on: machine.isa) {
            throw unavailable(workload, "\(source.isa) does not run on this machine: \(why)")
        }
        let job = CompileJob(name: source.name, source: source.code, flags: source.isa.compilerFlags, compiler: compiler)
        let artifact: Artifact
        do {
            artifact = try cache.artifact(for: job)
        } catch let failure as CompileFailure {
            throw unavailable(workload, "\(source.name) does not compile with \(compiler.path): \(failure.stderr.isEmpty ? "\(failure)" : failure.stderr)")
        } catch {
            throw unavailable(workload, "\(source.name): \(error)")
        }
        let library: LoadedLibrary
        do { library = try LoadedLibrary(path: artifact.path) } catch { throw unavailable(workload, "\(error)") }
        logger.debug("\(workload): \(source.name) (\(origin))\(artifact.fromCache ? " from the cache" : " compiled")")
        let loaded = LoadedKernel(choice: choice, symbols: source.symbols, library: library)
        byConfiguration[configKey] = loaded
        return loaded
    }
}
