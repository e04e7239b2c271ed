import Machine

/// What a family needs to know about the machine to check a configuration.
public struct MachineContext: Sendable {
    public var isa: ISAFeatures
    public var topology: Topology

    public init(isa: ISAFeatures, topology: Topology) {
        self.isa = isa
        self.topology = topology
    }

    public init(_ description: MachineDescription) { self.init(isa: description.isa, topology: description.topology) }
}

/// C source for one point of a family, with the names of the functions it exports.
public struct KernelSource: Sendable, Hashable {
    /// The variant's name: what, then how (`gemm_w8a8__avx2_mr4_nr16_...`).
    public var name: String
    public var isa: ISATarget
    public var code: String
    /// Exported symbols by role (e.g. "kernel", "pack").
    public var symbols: [String: String]

    public init(name: String, isa: ISATarget, code: String, symbols: [String: String]) {
        self.name = name
        self.isa = isa
        self.code = code
        self.symbols = symbols
    }
}

/// Resolves exported C symbols of a loaded variant (implemented over dlsym by the pipeline).
public protocol SymbolTable {
    func address(of symbol: String) throws -> UnsafeMutableRawPointer
}

extension SymbolTable {
    /// The exported function `symbol` as a typed C function pointer (`T` is a `@convention(c)` type
    /// matching the generated signature).
    public func function<T>(_ symbol: String, as type: T.Type) throws -> T {
        unsafeBitCast(try address(of: symbol), to: T.self)
    }
}

/// How a variant's output compared with the reference.
public struct Verification: Codable, Sendable, Equatable {
    public var passed: Bool
    public var checked: Int
    public var mismatches: Int
    public var maxAbsError: Double
    public var maxRelError: Double
    /// The rule applied, e.g. "bit-exact" or "normwise relative error <= 1e-5".
    public var tolerance: String
    /// The first offending element, for the failure message.
    public var firstMismatch: String?

    public init(passed: Bool, checked: Int, mismatches: Int, maxAbsError: Double, maxRelError: Double, tolerance: String, firstMismatch: String?) {
        self.passed = passed
        self.checked = checked
        self.mismatches = mismatches
        self.maxAbsError = maxAbsError
        self.maxRelError = maxRelError
        self.tolerance = tolerance
        self.firstMismatch = firstMismatch
    }
}

/// A variant bound to inputs, ready to run: made in the worker process after the library is loaded.
public protocol KernelInstance: AnyObject {
    /// Bytes of the output buffer the harness must provide (it guards and poisons it).
    var outputBytes: Int { get }
    /// Scratch bytes each thread needs (0 if none); allocated once, outside timing.
    var workspaceBytesPerThread: Int { get }
    /// Threads the configuration asks for.
    var threadCount: Int { get }
    /// Bytes the kernel reads and writes per run (inputs as the kernel sees them, plus the output),
    /// to say whether the timed data fit in the caches.
    var workingSetBytes: Int { get }
    /// Untimed preparation (e.g. packing weights).
    func prepare() throws
    /// Hands over the output and per-thread workspaces before any `run`.
    func bind(output: UnsafeMutableRawPointer, workspaces: [UnsafeMutableRawPointer])
    /// Runs thread `index`'s share of the work; every index in `0..<threadCount` is run once per call.
    func run(thread index: Int)
    /// Compares the bound output with the Swift reference.
    func verify() -> Verification
    /// Every buffer the kernel reads (inputs, packed weights, caches, scratch it owns), for cold
    /// timing: the harness flushes them, with the output and workspaces, before every sample.
    var dataRegions: [UnsafeRawBufferPointer] { get }
}

extension KernelInstance {
    /// None known: cold timing falls back to reading a buffer larger than the caches.
    public var dataRegions: [UnsafeRawBufferPointer] { [] }
}

/// A kernel family: shape rules, typed parameters with constraints, a C renderer, a Swift reference.
public protocol KernelFamily: Sendable {
    var name: String { get }
    var summary: String { get }
    /// Bumped whenever generated code changes; part of every cache and database key.
    var templateVersion: Int { get }
    /// Shape dimensions in command-line order, e.g. ["m", "n", "k"].
    var dimensions: [String] { get }
    var shapeRules: [String] { get }
    var parameters: [ParameterSpec] { get }
    /// Every constraint as "rule: explanation", for `lowbit kernels`.
    var constraints: [String] { get }
    /// ISA targets the family has code for.
    var targets: [ISATarget] { get }

    /// Throws the shape rule the workload breaks.
    func checkShape(_ workload: Workload) throws
    /// Throws the constraint the configuration breaks; machine rules apply when `machine` is given.
    func check(_ config: Configuration, machine: MachineContext?) throws
    /// A sensible starting configuration for the target on this machine.
    func defaultConfiguration(isa: ISATarget, machine: MachineContext?) -> Configuration
    /// The configuration a model of the machine predicts for this workload (BLIS-style for GEMMs);
    /// the tuner's analytical starting point and the runtime's last fallback.
    func analyticalConfiguration(for workload: Workload, machine: MachineContext) -> Configuration
    /// The configurations a search measures first, the analytical one first: alternatives the same model
    /// cannot rank against it with confidence (e.g. another register tile, the other thread split).
    func searchSeeds(for workload: Workload, machine: MachineContext) -> [Configuration]
    func render(_ config: Configuration) throws -> KernelSource
    /// Useful operations of one run (MEASURE.md: padding excluded), for GOPS.
    func usefulOps(_ workload: Workload, _ config: Configuration) -> Double
    func makeInstance(workload: Workload, config: Configuration, symbols: SymbolTable, seed: UInt64) throws -> KernelInstance
    /// Dimensions a workload may leave out (read as 0), e.g. attention-decode's `kvbits`.
    var optionalDimensions: [String] { get }
    /// Parameters the workload decides rather than the tuner (e.g. the KV cache format an inference
    /// runtime chose): held fixed by every search and checked by the runner.
    func workloadParameters(_ workload: Workload) -> [String: ParamValue]
    /// Shape rules that guard lowbit's own harness (the inputs `makeInstance` allocates) rather than the
    /// kernel, e.g. the cache families' 2^31-byte pool: tuning, running and benchmarking keep them, a
    /// runtime (the engine, `lowbit lookup`) waives them and says so.
    var harnessShapeRules: Set<String> { get }
    /// What the workload's shape does not show but its timing depends on, in one line for `lowbit run`
    /// and `bench` (e.g. attention-decode's sequence lengths), or nil.
    func workloadNote(_ workload: Workload) -> String?
}

extension KernelFamily {
    public func parameter(_ name: String) -> ParameterSpec? { parameters.first { $0.name == name } }

    public var optionalDimensions: [String] { [] }

    public func workloadParameters(_ workload: Workload) -> [String: ParamValue] { [:] }

    public var harnessShapeRules: Set<String> { [] }

    public func workloadNote(_ workload: Workload) -> String? { nil }

    /// `checkShape` as a runtime applies it: a broken harness rule is returned (to be reported as waived)
    /// instead of thrown; any other broken rule is thrown.
    public func checkShapeForRuntime(_ workload: Workload) throws -> ConstraintViolation? {
        do {
            try checkShape(workload)
            return nil
        } catch let violation as ConstraintViolation where harnessShapeRules.contains(violation.rule) {
            return violation
        }
    }

    /// The integer values of parameter `name`'s domain, in order (empty for names and unknown parameters).
    public func intValues(_ name: String) -> [Int] {
        parameter(name)?.domain.values.compactMap { if case .int(let v) = $0 { v } else { nil } } ?? []
    }

    /// The most threads the `threads` domain offers up to `limit` (default: one per core of `machine`).
    public func threadsPerCore(_ machine: MachineContext, limit: Int? = nil) -> Int {
        let cap = limit ?? max(1, machine.topology.cores.count)
        return intValues("threads").last { $0 <= cap } ?? 1
    }

    /// The best target this machine runs (the last of `targets` that runs), or portable.
    public func bestTarget(on machine: MachineContext) -> ISATarget {
        targets.last { $0.runs(on: machine.isa) } ?? .portable
    }

    /// The default configuration of the best target, with the workload's own parameters.
    public func analyticalConfiguration(for workload: Workload, machine: MachineContext) -> Configuration {
        var c = defaultConfiguration(isa: bestTarget(on: machine), machine: machine)
        for (name, value) in workloadParameters(workload) { c[name] = value }
        return c
    }

    /// The analytical configuration alone.
    public func searchSeeds(for workload: Workload, machine: MachineContext) -> [Configuration] {
        [analyticalConfiguration(for: workload, machine: machine)]
    }

    /// Builds a configuration from `name=value` overrides on top of the default for the chosen ISA (and
    /// `workload`'s own parameters, when given: an override still wins, and the runner then rejects the
    /// contradiction), rejecting unknown names and out-of-domain values with messages that list what is valid.
    public func configuration(overrides: [String: String], for workload: Workload? = nil, machine: MachineContext?) throws -> Configuration {
        for key in overrides.keys where parameter(key) == nil {
            throw ConstraintViolation(
                "known-parameter",
                "unknown parameter '\(key)' for \(name); valid parameters: \(parameters.map(\.name).joined(separator: ", "))")
        }
        var isa = ISATarget.portable
        if let text = overrides["isa"] {
            guard let target = ISATarget(rawValue: text), targets.contains(target) else {
                throw ConstraintViolation(
                    "domain", "isa=\(text) is not valid for \(name); valid: \(targets.map(\.rawValue).joined(separator: ", "))")
            }
            isa = target
        } else if let machine {
            isa = targets.last { $0.runs(on: machine.isa) } ?? .portable
        }
        var config = defaultConfiguration(isa: isa, machine: machine)
        if let workload {
            for (name, value) in workloadParameters(workload) { config[name] = value }
        }
        for (key, text) in overrides {
            let spec = parameter(key)!
            guard let value = spec.domain.parse(text), spec.domain.contains(value) else {
                throw ConstraintViolation("domain", "\(key)=\(text) is not valid for \(name); valid: \(spec.domain)")
            }
            config[key] = value
        }
        try checkDomains(config)
        try check(config, machine: machine)
        return config
    }

    /// `config` with every parameter it lacks set to that parameter's default: a configuration stored
    /// before a template version added a parameter runs as it did then, when the default keeps the old
    /// code (gemm-f16's `pf` = 0). Parameters it has are left alone, unknown ones included.
    public func completing(_ config: Configuration) -> Configuration {
        var c = config
        for spec in parameters where c[spec.name] == nil { c[spec.name] = spec.defaultValue }
        return c
    }

    /// A configuration tuned for another shape of this family, fitted to `workload` before it runs
    /// there (the runtime's nearest-shape lookup). The workload's own parameters replace the record's
    /// (`workloadParameters`: attention's cache format comes from kvbits, so a nearest INT8 record
    /// serving an FP32-cache workload runs with cache=fp32). A register tile with more rows than the
    /// workload (`mr` > `m`) would compute padding rows against every weight panel, so `mr` drops to the
    /// largest value of its domain not above `m`, and `mc` to a multiple of it; a fitted tile that
    /// breaks a constraint is left as it was.
    public func adapting(_ config: Configuration, to workload: Workload, machine: MachineContext?) -> Configuration {
        var base = config
        for (name, value) in workloadParameters(workload) { base[name] = value }
        guard let m = workload.shape["m"], case .int(let mr)? = base["mr"], mr > m,
            case .ints(let rows)? = parameter("mr")?.domain, let fitted = rows.filter({ $0 <= max(m, 1) }).max()
        else { return base }
        var c = base
        c["mr"] = .int(fitted)
        if case .int(let mc)? = c["mc"], mc % fitted != 0, case .ints(let blocks)? = parameter("mc")?.domain {
            guard let block = blocks.filter({ $0 % fitted == 0 && $0 >= mc }).min() ?? blocks.filter({ $0 % fitted == 0 }).max() else {
                return base
            }
            c["mc"] = .int(block)
        }
        return (try? check(c, machine: machine)) != nil ? c : base
    }

    /// Every parameter present and inside its domain.
    public func checkDomains(_ config: Configuration) throws {
        for spec in parameters {
            guard let value = config[spec.name] else {
                throw ConstraintViolation("complete", "parameter '\(spec.name)' is missing")
            }
            guard spec.domain.contains(value) else {
                throw ConstraintViolation("domain", "\(spec.name)=\(value) is not valid for \(name); valid: \(spec.domain)")
            }
        }
        for key in config.values.keys where parameter(key) == nil {
            throw ConstraintViolation(
                "known-parameter",
                "unknown parameter '\(key)' for \(name); valid parameters: \(parameters.map(\.name).joined(separator: ", "))")
        }
    }

    /// Every point of the space (domains' product) that passes `check`; for small spaces and tests.
    public func enumerate(machine: MachineContext?, fixing fixed: [String: ParamValue] = [:]) -> [Configuration] {
        var points: [Configuration] = [Configuration()]
        for spec in parameters {
            let values = fixed[spec.name].map { [$0] } ?? spec.domain.values
            points = points.flatMap { p in values.map { v in var q = p; q[spec.name] = v; return q } }
        }
        return points.filter { (try? check($0, machine: machine)) != nil }
    }
}
