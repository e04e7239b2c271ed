import KernelKit
import Machine

/// `gemm-w4a4` (KERNELS.md section 2): Atom's main kernel. INT4 activations and weights with group-128
/// scales on the normal channels and INT8 outlier channels at the end of K, in one kernel, fp32 out
/// (binary16 out as an option: `out=fp16`, which a workload asks for with `ybits` = 16).
public struct GemmW4A4: KernelFamily {
    public init() {}

    public let name = "gemm-w4a4"
    public let summary = "Atom W4A4: INT4 group-128 activations x weights, + O INT8 outlier channels, fp32 accumulation, fp32 (or fp16) output"
    public let templateVersion = 8
    public let dimensions = ["m", "n", "k", "outliers"]
    public let shapeRules = [
        "positive: m, n and k are at least 1",
        "outliers: 0 <= outliers < k, a multiple of 4",
        "groups: k - outliers is a positive multiple of 128",
        "size: m * n and n * k each fit in 2^31 elements",
        "ybits (optional): 16 stores Y as binary16 (out=fp16); absent, 0 or 32 as fp32 (out=fp32)",
    ]
    public let targets: [ISATarget] = [.portable, .avx2, .avxvnni, .avx512vnni, .neonDotprod]

    /// Y's format is the caller's, not the tuner's: `ybits` fixes `out`, fp32 unless it says 16.
    public var optionalDimensions: [String] { ["ybits"] }

    public func workloadParameters(_ workload: Workload) -> [String: ParamValue] {
        ["out": .name(workload.shape["ybits"] == 16 ? "fp16" : "fp32")]
    }

    public var parameters: [ParameterSpec] {
        [
            ParameterSpec("isa", .names(targets.map(\.rawValue)), default: .name("portable"), "instruction set of the micro-kernel"),
            ParameterSpec("mr", .ints([1, 2, 3, 4, 5, 6, 8, 12]), default: .int(4), "rows of the register tile"),
            ParameterSpec("nr", .ints([4, 8, 16, 24, 32, 48, 64]), default: .int(8), "columns of the register tile (= packed panel width)"),
            ParameterSpec("kc", .ints([128, 256, 512, 1024, 2048, 4096]), default: .int(512), "K block, whole groups"),
            ParameterSpec("mc", .ints([8, 16, 24, 32, 48, 64, 96, 128, 192, 256]), default: .int(64), "M block (unpacked activations kept in L2)"),
            ParameterSpec("nc", .ints([64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 4096]), default: .int(512), "N block (packed weights kept in L3)"),
            ParameterSpec("unpack", .names(["mask", "lut"]), default: .name("mask"), "nibble unpacking: shift and mask, or table lookup (vpshufb / tbl)"),
            ParameterSpec("pf", .ints([0, 512, 1024, 2048, 4096, 8192]), default: .int(0), "software prefetch distance along the packed weight panel, bytes (0: none)"),
            ParameterSpec("acc", .names(["registers", "memory"]), default: .name("registers"), "where the tile's fp32 sums live: vector registers, or the tile's partial buffer in L1 (frees registers for taller tiles)"),
            ParameterSpec("gsum", .names(["int16", "int32"]), default: .name("int16"), "group sums: int16 on AVX2 (vpmaddubsw added in int16 over a whole group, widened once; exact for 4-bit codes) or int32 (AVX2's int32 path: widened after every vpmaddubsw); the dot-product targets and portable sum in int32 and take int16"),
            ParameterSpec("layout", .names(["split", "interleaved"]), default: .name("split"), "packed weight panel: all codes then all group scales (split), or each group's scales right after its codes (interleaved, one stream)"),
            ParameterSpec("out", .names(["fp32", "fp16"]), default: .name("fp32"), "Y's format: fp32, or IEEE binary16 rounded to nearest even (fixed by the workload's ybits, not tuned)"),
            ParameterSpec("threads", .ints([1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]), default: .int(1), "worker threads"),
            ParameterSpec("tm", .ints([1, 2, 3, 4, 6, 8, 12, 16]), default: .int(1), "threads along M (threads / tm along N)"),
            ParameterSpec("placement", .names(ThreadPlacement.allCases.map(\.rawValue)), default: .name("scatter"), "which PUs the threads use"),
        ]
    }

    public let constraints = [
        "vector-width: nr is a multiple of the target's int32 lanes (avx2/avx-vnni 8, avx512-vnni 16, neon 4)",
        "registers: mr * nr/lanes int group sums (+ as many fp32 sums with acc=registers) + 2 * nr/lanes unpacked weight vectors + 4 fit the vector registers; portable: mr * nr <= 128",
        "acc-target: acc=memory needs a vector target",
        "gsum-target: gsum=int32 is AVX2's int32 path; the other targets take gsum=int16",
        "mc-tiles: mc is a multiple of mr",
        "nc-panels: nc is a multiple of nr",
        "thread-layout: threads is a multiple of tm",
        "isa-runs (machine): the target's instructions are usable on this machine",
        "half-store (machine): out=fp16 on avx2 or avx-vnni needs F16C",
        "threads-pus (machine): threads <= processing units",
        "l2-panel (machine): kc * nr / 2 bytes of packed weights (one K block of a panel) take at most half of L2",
        "l2-block (machine): mc * kc bytes of unpacked activations fit in L2",
    ]

    public func checkShape(_ workload: Workload) throws {
        for d in ["m", "n", "k"] where workload[d] < 1 {
            throw ConstraintViolation("positive", "\(d) = \(workload[d]) for \(name); m, n and k must be at least 1")
        }
        let outliers = workload.shape["outliers"] ?? AtomQuantization.defaultOutliers
        try AtomQuantization.checkLayout(k: workload["k"], outliers: outliers)
        guard outliers % 4 == 0 else { throw ConstraintViolation("outliers", "outliers = \(outliers) is not a multiple of 4") }
        let limit = Int(Int32.max)
        if workload["m"] * workload["n"] > limit || workload["n"] * workload["k"] > limit {
            throw ConstraintViolation("size", "\(workload) has more than 2^31 elements in Y or W")
        }
        if let bits = workload.shape["ybits"], ![0, 16, 32].contains(bits) {
            throw ConstraintViolation("ybits", "ybits = \(bits): Y is stored as fp32 (32, or leave it out) or binary16 (16)")
        }
    }

    public func check(_ config: Configuration, machine: MachineContext?) throws {
        try checkDomains(config)
        try Self.checkBlocking(config, machine: machine)
        let isa = ISATarget(rawValue: config.name("isa"))!
        if let machine, config.name("out") == "fp16", isa == .avx2 || isa == .avxvnni, !machine.isa.usable.contains(.f16c) {
            throw ConstraintViolation("half-store", "out=fp16 on \(isa) converts with F16C, which this machine lacks")
        }
    }

    /// The register tile, blocking, threads and machine rules (everything but the domains), shared with
    /// gemm-w4a4-kv.
    static func checkBlocking(_ config: Configuration, machine: MachineContext?) throws {
        let isa = ISATarget(rawValue: config.name("isa"))!
        let mr = config.int("mr"), nr = config.int("nr"), kc = config.int("kc")
        let mc = config.int("mc"), nc = config.int("nc")
        if let d = W4Dialect.forTarget(isa, groupSums: config["gsum"]?.description) {
            guard nr % d.lanes == 0 else {
                throw ConstraintViolation("vector-width", "nr=\(nr) is not a multiple of \(d.lanes) int32 lanes for \(isa)")
            }
            let needed = registersNeeded(mr: mr, vectors: nr / d.lanes, memoryAccumulators: config.name("acc") == "memory")
            guard needed <= d.registers else {
                throw ConstraintViolation("registers", "mr=\(mr) nr=\(nr) on \(isa) needs \(needed) vector registers; the target has \(d.registers)")
            }
        } else if mr * nr > 128 {
            throw ConstraintViolation("registers", "mr * nr = \(mr * nr) scalar accumulators; the portable tile allows 128")
        } else if config.name("acc") == "memory" {
            throw ConstraintViolation("acc-target", "acc=memory is for the vector targets; the portable tile keeps its sums in an array already")
        }
        if config["gsum"] == .name("int32") && isa != .avx2 {
            throw ConstraintViolation("gsum-target", "gsum=int32 is AVX2's int32 path; \(isa) sums in int32 already and takes gsum=int16")
        }
        guard mc % mr == 0 else { throw ConstraintViolation("mc-tiles", "mc=\(mc) is not a multiple of mr=\(mr)") }
        guard nc % nr == 0 else { throw ConstraintViolation("nc-panels", "nc=\(nc) is not a multiple of nr=\(nr)") }
        let threads = config.int("threads"), tm = config.int("tm")
        guard threads % tm == 0 else { throw ConstraintViolation("thread-layout", "threads=\(threads) is not a multiple of tm=\(tm)") }
        guard let machine else { return }
        if let why = isa.missingFeatures(on: machine.isa) { throw ConstraintViolation("isa-runs", why) }
        guard threads <= machine.topology.pus.count else {
            throw ConstraintViolation("threads-pus", "threads=\(threads) but this machine has \(machine.topology.pus.count) processing units")
        }
        // Not L1: at small M a block is read by one or two row tiles, and a long block streams better (kc 4096
        // ran 5-15% faster than 512 at M = 16 here); at large M the tuner finds the blocks that stay in L1.
        if let l2 = machine.topology.dataCache(level: 2), kc * nr / 2 > Int(l2.sizeBytes) / 2 {
            throw ConstraintViolation("l2-panel", "kc * nr / 2 = \(kc * nr / 2) bytes exceeds half of the \(l2.sizeBytes)-byte L2")
        }
        if let l2 = machine.topology.dataCache(level: 2), mc * kc > Int(l2.sizeBytes) {
            throw ConstraintViolation("l2-block", "mc * kc = \(mc * kc) bytes exceeds the \(l2.sizeBytes)-byte L2")
        }
    }

    public func defaultConfiguration(isa: ISATarget, machine: MachineContext?) -> Configuration {
        var c = Configuration(Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, $0.defaultValue) }))
        c["isa"] = .name(isa.rawValue)
        let tile: (mr: Int, nr: Int) =
            switch isa {
            case .portable: (4, 8)
            case .avx2, .avxvnni: (4, 8)
            case .avx512vnni: (6, 32)
            case .neonDotprod: (4, 8)
            }
        c["mr"] = .int(tile.mr)
        c["nr"] = .int(tile.nr)
        c["mc"] = .int(tile.mr == 6 ? 96 : 64)
        c["nc"] = .int(512)
        c["kc"] = .int(1024)
        if let machine {
            c["threads"] = .int(threadsPerCore(machine))
        }
        return c
    }

    /// The analytical configuration (`GemmBlocking`): packed weights are half a byte per k, K blocks
    /// whole groups.
    public func analyticalConfiguration(for workload: Workload, machine: MachineContext) -> Configuration {
        let isa = bestTarget(on: machine)
        return withOwnParameters(
            Self.analytical(self, blocking: Self.blocking(isa), base: defaultConfiguration(isa: isa, machine: machine), workload: workload, machine: machine),
            of: workload)
    }

    /// `c` with the workload's own parameters (Y's format).
    private func withOwnParameters(_ c: Configuration, of workload: Workload) -> Configuration {
        var c = c
        for (name, value) in workloadParameters(workload) { c[name] = value }
        return c
    }

    /// `GemmBlocking.seeds`: the analytical configuration, then the best-ranked tiles for each thread split.
    public func searchSeeds(for workload: Workload, machine: MachineContext) -> [Configuration] {
        let isa = bestTarget(on: machine)
        return Self.seeds(self, blocking: Self.blocking(isa), base: defaultConfiguration(isa: isa, machine: machine), workload: workload, machine: machine)
            .map { withOwnParameters($0, of: workload) }
    }

    /// Vector registers a SIMD tile needs: the integer group sums, as many fp32 sums unless they live in
    /// memory, two unpacked weight vectors per column vector, and four constants.
    static func registersNeeded(mr: Int, vectors v: Int, memoryAccumulators: Bool) -> Int {
        (memoryAccumulators ? mr * v : 2 * mr * v) + 2 * v + 4
    }

    /// `blocking`'s configuration (shared with gemm-w4a4-kv), each candidate tile keeping its fp32 sums
    /// in registers when they fit beside the integer sums, else in the tile's partial buffer.
    static func analytical(
        _ family: some KernelFamily, blocking: GemmBlocking, base: Configuration, workload: Workload, machine: MachineContext
    ) -> Configuration {
        var c = blocking.configure(family, base: base, workload: workload, machine: machine, trial: placeAccumulators)
        placeAccumulators(&c)
        return c
    }

    /// `blocking`'s search seeds (shared with gemm-w4a4-kv), accumulators placed as in `analytical`.
    static func seeds(
        _ family: some KernelFamily, blocking: GemmBlocking, base: Configuration, workload: Workload, machine: MachineContext
    ) -> [Configuration] {
        blocking.seeds(family, base: base, workload: workload, machine: machine, trial: placeAccumulators, finish: placeAccumulators)
    }

    /// fp32 sums in registers when they fit beside the integer sums, else in the tile's partial buffer.
    private static func placeAccumulators(_ c: inout Configuration) {
        guard let d = W4Dialect.forTarget(ISATarget(rawValue: c.name("isa"))!) else { return }
        let fits = registersNeeded(mr: c.int("mr"), vectors: c.int("nr") / d.lanes, memoryAccumulators: false) <= d.registers
        c["acc"] = .name(fits ? "registers" : "memory")
    }

    static func blocking(_ isa: ISATarget) -> GemmBlocking {
        GemmBlocking(
            weightBytesPerK: 0.5, kRound: AtomQuantization.groupSize, kcFloor: AtomQuantization.groupSize,
            lanes: W4Dialect.forTarget(isa)?.lanes ?? 1,
            // AVX2 adds each vpmaddubsw into int16 sums; the dot-product targets do it in one instruction.
            // Unpacking a load: two masks on the vpdpbusd targets, two masks and a shift elsewhere.
            dotOps: isa == .avx2 ? 4 : 2, unpackOps: isa == .portable ? 0 : (isa == .avx512vnni || isa == .avxvnni ? 2 : 3),
            broadcasts: 2)
    }

    /// What the packed weights of `config` depend on: two configurations with the same key share one
    /// packing (panel width, the scales' place, and whether the codes are stored as w + 8).
    public static func packingKey(_ config: Configuration) -> String {
        let template = GemmW4A4Template(config: config, templateVersion: 0)
        return "nr=\(template.nr) layout=\(template.interleaved ? "interleaved" : "split") codes=\(template.nibbles.storesUnsigned ? "w+8" : "w")"
    }

    public func render(_ config: Configuration) throws -> KernelSource {
        try check(config, machine: nil)
        return GemmW4A4Template(config: config, templateVersion: templateVersion).render()
    }

    /// 2 * M * N * K: the outlier channels count, nothing else does (MEASURE.md).
    public func usefulOps(_ workload: Workload, _ config: Configuration) -> Double {
        2 * Double(workload["m"]) * Double(workload["n"]) * Double(workload["k"])
    }

    /// The fewest bytes of weights a run must read: packed INT4 codes, group scales, INT8 outliers and
    /// their scales. For decode-sized M this is what bounds the kernel.
    public static func weightBytes(_ workload: Workload) -> Double {
        let n = Double(workload["n"]), k = workload["k"], o = workload.shape["outliers"] ?? AtomQuantization.defaultOutliers
        let normal = Double(k - o)
        return n * (normal / 2 + normal / Double(AtomQuantization.groupSize) * 4 + Double(o) + 4)
    }

    /// The C function `static uint16_t half_from_float(float)` every out=fp16 variant carries (for
    /// partial tiles and the portable target), with the includes it needs: for tests against Swift's
    /// Float16 conversion.
    public static var halfFromFloatSource: String {
        var c = CSource()
        for h in ["stdint.h", "string.h"] { c.include(h) }
        c.line()
        GemmW4A4Template.renderHalfFromFloat(&c)
        return c.description
    }

    public func makeInstance(workload: Workload, config: Configuration, symbols: SymbolTable, seed: UInt64) throws -> KernelInstance {
        try checkShape(workload)
        try check(config, machine: nil)
        let names = GemmW4A4Template(config: config, templateVersion: templateVersion).render().symbols
        return try GemmW4A4Instance(workload: workload, config: config, symbols: symbols, names: names, seed: seed)
    }
}
