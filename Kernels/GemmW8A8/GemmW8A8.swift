import KernelKit
import Machine

/// `gemm-w8a8` (KERNELS.md section 1): int8 x int8 GEMM with per-token and per-channel scales.
public struct GemmW8A8: KernelFamily {
    public init() {}

    public let name = "gemm-w8a8"
    public let summary = "Y = sA * sW * (qA . qW): int8 activations [M,K] x int8 weights [N,K], int32 sums, fp32 out"
    public let templateVersion = 1
    public let dimensions = ["m", "n", "k"]
    public let shapeRules = [
        "positive: m, n and k are at least 1",
        "size: m * n and n * k each fit in 2^31 elements (the C interface uses int indices)",
    ]
    public let targets: [ISATarget] = [.portable, .avx2, .avxvnni, .avx512vnni, .neonDotprod]

    public var parameters: [ParameterSpec] {
        [
            ParameterSpec("isa", .names(targets.map(\.rawValue)), default: .name("portable"), "instruction set of the micro-kernel"),
            ParameterSpec("mr", .ints([1, 2, 3, 4, 5, 6, 8]), default: .int(4), "rows of the register tile"),
            ParameterSpec("nr", .ints([4, 8, 16, 24, 32, 48, 64]), default: .int(8), "columns of the register tile (= packed panel width)"),
            ParameterSpec("kc", .ints([64, 128, 256, 384, 512, 768, 1024, 2048, 4096]), default: .int(256), "K block (multiple of 4)"),
            ParameterSpec("mc", .ints([8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 512]), default: .int(64), "M block (rows of A kept in L2)"),
            ParameterSpec("nc", .ints([64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096]), default: .int(512), "N block (columns of packed W kept in L3)"),
            ParameterSpec("ku", .ints([1, 2, 4]), default: .int(1), "unroll of the k loop (SIMD targets)"),
            ParameterSpec("pf", .ints([0, 64, 128, 256, 512, 1024]), default: .int(0), "prefetch distance in the packed weights, bytes (0: none)"),
            ParameterSpec("threads", .ints([1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]), default: .int(1), "worker threads"),
            ParameterSpec("tm", .ints([1, 2, 3, 4, 6, 8, 12, 16]), default: .int(1), "threads along M (threads / tm along N)"),
            ParameterSpec("placement", .names(ThreadPlacement.allCases.map(\.rawValue)), default: .name("scatter"), "which PUs the threads use"),
        ]
    }

    public let constraints = [
        "vector-width: nr is a multiple of the target's int32 lanes (avx2/avx-vnni 8, avx512-vnni 16, neon 4)",
        "registers: mr * nr/lanes accumulators + nr/lanes weight vectors + row temporaries fit the target's vector registers; portable: mr * nr <= 128",
        "portable-unroll: the portable target takes ku = 1 (the compiler unrolls its loops)",
        "mc-tiles: mc is a multiple of mr",
        "nc-panels: nc is a multiple of nr",
        "thread-layout: threads is a multiple of tm",
        "isa-runs (machine): the target's instructions are usable on this machine",
        "threads-pus (machine): threads <= processing units",
        "l2-panel (machine): kc * nr bytes of packed weights (one K block of a panel) take at most half of L2",
        "l2-block (machine): mc * kc bytes of activations fit in L2",
        "l3-block (machine): nc * kc bytes of packed weights fit in the last-level cache",
    ]

    public func checkShape(_ workload: Workload) throws {
        for d in dimensions where workload[d] < 1 {
            throw ConstraintViolation("positive", "\(d) = \(workload[d]) for \(name); m, n and k must be at least 1")
        }
        let limit = Int(Int32.max)
        if workload["m"] * workload["n"] > limit || workload["n"] * workload["k"] > limit {
            throw ConstraintViolation("size", "\(workload) has more than 2^31 elements in Y or W")
        }
    }

    /// Vector registers the tile may use and int32 lanes per vector, per target.
    static func registerBudget(_ isa: ISATarget) -> (lanes: Int, registers: Int, rowTemps: Int)? {
        guard let d = Int8Dialect.forTarget(isa) else { return nil }
        // avx2 keeps a and |a| per row plus a sign temporary; the others one row register.
        let temps = isa == .avx2 ? 4 : 2
        return (d.lanes, d.registers, temps)
    }

    public func check(_ config: Configuration, machine: MachineContext?) throws {
        try checkDomains(config)
        let isa = ISATarget(rawValue: config.name("isa"))!
        let mr = config.int("mr"), nr = config.int("nr"), kc = config.int("kc")
        let mc = config.int("mc"), nc = config.int("nc")
        if let budget = Self.registerBudget(isa) {
            guard nr % budget.lanes == 0 else {
                throw ConstraintViolation("vector-width", "nr=\(nr) is not a multiple of \(budget.lanes) int32 lanes for \(isa)")
            }
            let vectors = nr / budget.lanes
            let needed = mr * vectors + vectors + budget.rowTemps
            guard needed <= budget.registers else {
                throw ConstraintViolation(
                    "registers", "mr=\(mr) nr=\(nr) on \(isa) needs \(needed) vector registers; the target has \(budget.registers)")
            }
        } else {
            guard mr * nr <= 128 else {
                throw ConstraintViolation("registers", "mr * nr = \(mr * nr) scalar accumulators; the portable tile allows 128")
            }
            guard config.int("ku") == 1 else {
                throw ConstraintViolation("portable-unroll", "ku=\(config.int("ku")) on portable; the portable target takes ku=1")
            }
        }
        guard mc % mr == 0 else { throw ConstraintViolation("mc-tiles", "mc=\(mc) is not a multiple of mr=\(mr)") }
        guard nc % nr == 0 else { throw ConstraintViolation("nc-panels", "nc=\(nc) is not a multiple of nr=\(nr)") }
        let threads = config.int("threads"), tm = config.int("tm")
        guard threads % tm == 0 else {
            throw ConstraintViolation("thread-layout", "threads=\(threads) is not a multiple of tm=\(tm)")
        }
        guard let machine else { return }
        if let why = isa.missingFeatures(on: machine.isa) { throw ConstraintViolation("isa-runs", why) }
        guard threads <= machine.topology.pus.count else {
            throw ConstraintViolation("threads-pus", "threads=\(threads) but this machine has \(machine.topology.pus.count) processing units")
        }
        // As gemm-w4a4's: a block that leaves L1 is the tuner's to judge (small M reads it once or twice).
        if let l2 = machine.topology.dataCache(level: 2), kc * nr > Int(l2.sizeBytes) / 2 {
            throw ConstraintViolation("l2-panel", "kc * nr = \(kc * nr) bytes exceeds half of the \(l2.sizeBytes)-byte L2")
        }
        if let l2 = machine.topology.dataCache(level: 2), mc * kc > Int(l2.sizeBytes) {
            throw ConstraintViolation("l2-block", "mc * kc = \(mc * kc) bytes exceeds the \(l2.sizeBytes)-byte L2")
        }
        if let llc = machine.topology.lastLevelCache, nc * kc > Int(llc.sizeBytes) {
            throw ConstraintViolation("l3-block", "nc * kc = \(nc * kc) bytes exceeds the \(llc.sizeBytes)-byte last-level cache")
        }
    }

    public func defaultConfiguration(isa: ISATarget, machine: MachineContext?) -> Configuration {
        var c = Configuration(Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, $0.defaultValue) }))
        c["isa"] = .name(isa.rawValue)
        let tile: (mr: Int, nr: Int, ku: Int) =
            switch isa {
            case .portable: (4, 8, 1)
            case .avx2: (4, 16, 2)
            case .avxvnni: (6, 16, 2)
            case .avx512vnni: (6, 64, 1)
            case .neonDotprod: (4, 16, 2)
            }
        c["mr"] = .int(tile.mr)
        c["nr"] = .int(tile.nr)
        c["ku"] = .int(tile.ku)
        c["mc"] = .int(tile.mr == 6 ? 96 : 64)
        c["nc"] = .int(tile.nr == 64 ? 1024 : 512)
        if let machine {
            // Largest kc whose micro-panel fits half of L1; threads: one per core.
            let l1 = Int(machine.topology.dataCache(level: 1)?.sizeBytes ?? 32768)
            c["kc"] = .int(intValues("kc").last { $0 * tile.nr <= l1 / 2 } ?? 256)
            c["threads"] = .int(threadsPerCore(machine))
        }
        return c
    }

    /// BLIS-style: the register tile that maximises multiply-adds per loaded vector within the register
    /// budget; KC so a KC x NR weight panel fills half of L1; MC so an MC x KC activation block fills half
    /// of L2; NC so a KC x NC weight block fills half of the last-level cache; one thread per core,
    /// splitting N (weights) between threads unless M is large enough to split too.
    public func analyticalConfiguration(for workload: Workload, machine: MachineContext) -> Configuration {
        let (blocking, base, ku) = analyticalBlocking(machine)
        var c = blocking.configure(self, base: base, workload: workload, machine: machine) { trial in
            trial["kc"] = .int(64)
            trial["ku"] = .int(ku)
        }
        c["ku"] = .int(ku)
        return c
    }

    /// `GemmBlocking.seeds`: the analytical configuration, then the best-ranked tiles for each thread split.
    public func searchSeeds(for workload: Workload, machine: MachineContext) -> [Configuration] {
        let (blocking, base, ku) = analyticalBlocking(machine)
        return blocking.seeds(self, base: base, workload: workload, machine: machine) { trial in
            trial["kc"] = .int(64)
            trial["ku"] = .int(ku)
        } finish: { c in
            c["ku"] = .int(ku)
        }
    }

    private func analyticalBlocking(_ machine: MachineContext) -> (GemmBlocking, Configuration, ku: Int) {
        let isa = bestTarget(on: machine)
        let blocking = GemmBlocking(weightBytesPerK: 1, kRound: 4, kcFloor: 64, lanes: Self.registerBudget(isa)?.lanes ?? 1)
        return (blocking, defaultConfiguration(isa: isa, machine: machine), isa == .portable ? 1 : 2)
    }

    public func render(_ config: Configuration) throws -> KernelSource {
        try check(config, machine: nil)
        return GemmW8A8Template(config: config, templateVersion: templateVersion).render()
    }

    public func usefulOps(_ workload: Workload, _ config: Configuration) -> Double {
        2 * Double(workload["m"]) * Double(workload["n"]) * Double(workload["k"])
    }

    public func makeInstance(workload: Workload, config: Configuration, symbols: SymbolTable, seed: UInt64) throws -> KernelInstance {
        try checkShape(workload)
        try check(config, machine: nil)
        let source = GemmW8A8Template(config: config, templateVersion: templateVersion)
        return try GemmW8A8Instance(workload: workload, config: config, symbols: symbols, names: source.render().symbols, seed: seed)
    }
}
