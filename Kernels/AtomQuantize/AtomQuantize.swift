import KernelKit
import Machine

/// The fused Atom quantize kernels (KERNELS.md section 3), one family per operation:
/// `rmsnorm-reorder-quantize`, `reorder-quantize` and `silu-mul-quantize`. Each makes one pass over a
/// row (RMSNorm first reads the row once for its sum of squares) and emits exactly
/// `AtomQuantization.Quantized` with the activation clip: INT4 codes of the K' = K - O normal channels
/// packed two per byte, an fp32 scale and an int32 code sum per group of 128, INT8 codes of the O
/// outlier channels and one fp32 outlier scale per row.
///
/// Three families rather than one with an `op` parameter: the operation is not a tuning choice (the
/// tuner must never pick it), and each operation is its own workload in the tuning database and the
/// runtime lookup. They share the template, the reference and the rules.
///
/// These kernels are bandwidth-bound: `usefulOps` counts elements (M * K), so their GOP/s means
/// elements per nanosecond; `bytesMoved` gives the fewest bytes a run must move, for bandwidth tables.
public struct AtomQuantize: KernelFamily {
    public enum Op: String, CaseIterable, Sendable {
        case rmsnormReorderQuantize = "rmsnorm-reorder-quantize"
        case reorderQuantize = "reorder-quantize"
        case siluMulQuantize = "silu-mul-quantize"

        /// Whether the op reads its input through the permutation.
        public var reorders: Bool { self != .siluMulQuantize }
    }

    /// How reordered elements are loaded.
    public enum Gather: String, CaseIterable, Sendable {
        /// The hardware gather (vgatherdps).
        case vector
        /// One scalar load per element into a buffer, which the vector code then reads.
        case scalar
        /// One scalar load per lane, inserted into the vector (`vinsertps`, NEON lane loads): no buffer.
        case insert
        /// Eight rows at a time through a transposed copy in the thread's stage (`xt[c]` holds channel c
        /// of the eight rows): one vector load per reordered channel serves eight rows, each row a lane.
        /// Rows left over (fewer than eight, or rows cut into parts) go row by row with `insert`. AVX2.
        case transpose

        /// Rows one call quantizes together (the unit `shares` hands out in).
        public var rowBlock: Int { self == .transpose ? AtomQuantize.blockRows : 1 }
    }

    /// Rows per block of `gather=transpose`: AVX2's eight fp32 lanes.
    public static let blockRows = 8

    public let op: Op

    public init(_ op: Op) { self.op = op }

    /// The three families, in registry order.
    public static let families: [AtomQuantize] = Op.allCases.map(AtomQuantize.init)

    public var name: String { op.rawValue }

    public var summary: String {
        let what =
            switch op {
            case .rmsnormReorderQuantize: "y = x[perm] * w[perm] / sqrt(mean(x^2) + eps)"
            case .reorderQuantize: "y = x[perm]"
            case .siluMulQuantize: "y = silu(gate) * up"
            }
        return "\(what), then Atom quantization per row: INT4 group-128 codes, scales and code sums, INT8 outliers (GOP/s = elements per ns)"
    }

    /// Version 7 for the reordering kernels; silu-mul-quantize is at 8 (pass A's exp steps interleaved
    /// across four vectors, same bits), so the reordering kernels' tuning records stay current.
    public var templateVersion: Int { op == .siluMulQuantize ? 8 : 7 }
    public let dimensions = ["m", "k", "outliers"]
    public let shapeRules = [
        "positive: m is at least 1",
        "outliers: 0 <= outliers < k (the last `outliers` channels after reordering are kept in INT8; usually 0 or 128)",
        "groups: k - outliers is a multiple of the group size 128",
        "size: m * k fits in 2^31 elements (the C interface uses int indices)",
    ]
    /// avx-vnni is left out: these kernels use no dot products, so it would be the AVX2 code again.
    public let targets: [ISATarget] = [.portable, .avx2, .avx512vnni, .neonDotprod]

    public var parameters: [ParameterSpec] {
        var p = [ParameterSpec("isa", .names(targets.map(\.rawValue)), default: .name("portable"), "instruction set of the row loop")]
        if op.reorders {
            p.append(ParameterSpec(
                "gather", .names(Gather.allCases.map(\.rawValue)), default: .name(Gather.scalar.rawValue),
                "reordered loads: vector (hardware gather), scalar (one load per element into a buffer), insert (one load per lane, inserted into the vector) or transpose (eight rows transposed into a buffer, one vector load per channel for the eight)"))
        }
        p += [
            ParameterSpec("threads", .ints([1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]), default: .int(1), "worker threads, each quantizing a contiguous block of rows (of parts of rows when rows are fewer than threads)"),
            ParameterSpec("placement", .names(ThreadPlacement.allCases.map(\.rawValue)), default: .name("scatter"), "which PUs the threads use"),
        ]
        return p
    }

    public var constraints: [String] {
        var c: [String] = []
        if op.reorders {
            c.append("gather-isa: gather=vector needs a target with a gather instruction (avx2, avx512-vnni); gather=insert a vector target (not portable); gather=transpose avx2 (eight rows in its eight lanes)")
        }
        c += [
            "isa-runs (machine): the target's instructions are usable on this machine",
            "threads-pus (machine): threads <= processing units",
        ]
        return c
    }

    public func checkShape(_ workload: Workload) throws {
        let m = workload["m"], k = workload["k"], outliers = workload["outliers"]
        guard m >= 1 else { throw ConstraintViolation("positive", "m = \(m) for \(name); m must be at least 1") }
        try AtomQuantization.checkLayout(k: k, outliers: outliers)
        guard m * k <= Int(Int32.max) else {
            throw ConstraintViolation("size", "\(workload) has more than 2^31 elements")
        }
    }

    public func check(_ config: Configuration, machine: MachineContext?) throws {
        try checkDomains(config)
        let isa = ISATarget(rawValue: config.name("isa"))!
        if op.reorders, config.name("gather") == Gather.vector.rawValue, QuantDialect.forTarget(isa)?.vectorGather == nil {
            throw ConstraintViolation("gather-isa", "gather=vector on \(isa) has no gather instruction; \(isa) takes gather=scalar")
        }
        if op.reorders, config.name("gather") == Gather.insert.rawValue, QuantDialect.forTarget(isa)?.laneGather == nil {
            throw ConstraintViolation("gather-isa", "gather=insert needs vector lanes; \(isa) takes gather=scalar")
        }
        if op.reorders, config.name("gather") == Gather.transpose.rawValue, isa != .avx2 {
            throw ConstraintViolation("gather-isa", "gather=transpose is written for avx2 (eight rows in eight lanes); \(isa) takes gather=insert or scalar")
        }
        guard let machine else { return }
        if let why = isa.missingFeatures(on: machine.isa) { throw ConstraintViolation("isa-runs", why) }
        let threads = config.int("threads")
        guard threads <= machine.topology.pus.count else {
            throw ConstraintViolation("threads-pus", "threads=\(threads) but this machine has \(machine.topology.pus.count) processing units")
        }
    }

    /// Reordered loads inserted lane by lane where the target has lanes (on the Zen 3 development
    /// machine 1.2-1.3x faster than the scalar gather into a buffer and than vgatherdps, which the tuner
    /// also tries), else the scalar gather; one thread per core when the machine is known.
    public func defaultConfiguration(isa: ISATarget, machine: MachineContext?) -> Configuration {
        var c = Configuration(Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, $0.defaultValue) }))
        c["isa"] = .name(isa.rawValue)
        if op.reorders, QuantDialect.forTarget(isa)?.laneGather != nil { c["gather"] = .name(Gather.insert.rawValue) }
        if let machine { c["threads"] = .int(threadsPerCore(machine)) }
        return c
    }

    /// The gather of a configuration (nil: the op does not reorder).
    public func gather(_ config: Configuration) -> Gather? {
        op.reorders ? Gather(rawValue: config.name("gather")) : nil
    }

    /// Bytes of the per-thread `stage` buffer the kernel takes: O floats for the outliers' y; with
    /// gather=transpose the eight rows' transposed copy, K * 8 floats, then their outliers' y, O * 8.
    /// At least a cache line, in whole lines.
    public static func stageBytes(k: Int, outliers: Int, gather: Gather?) -> Int {
        let floats = gather == .transpose ? blockRows * (k + outliers) : outliers
        return max(64, (floats * 4 + 63) / 64 * 64)
    }

    /// One thread per core: fewer rows than threads are cut into parts (`shares`), so M = 1 uses them too.
    public func analyticalConfiguration(for workload: Workload, machine: MachineContext) -> Configuration {
        defaultConfiguration(isa: bestTarget(on: machine), machine: machine)
    }

    /// How `threads` share an m-row run: whole rows (parts = 1) when there are at least as many rows as
    /// threads, else each row cut into `parts` units of consecutive groups (the last unit also takes the
    /// outlier channels) so that every thread has work, M = 1 included. `units[t]` is thread t's range of
    /// units, unit u being part u % parts of row u / parts: the kernel's u0 and u1. With a `rowBlock`
    /// (gather=transpose's eight rows) and at least that many rows per thread, whole rows are handed
    /// out in blocks, so that each thread's rows are whole blocks but for the last thread's remainder.
    public static func shares(m: Int, k: Int, outliers: Int, threads: Int, rowBlock: Int = 1) -> (parts: Int, units: [Range<Int>]) {
        if rowBlock > 1, m >= rowBlock * threads {
            return (1, balancedRanges(count: m, parts: threads, unit: rowBlock))
        }
        let groups = max(1, (k - outliers) / AtomQuantization.groupSize)
        let parts = m >= threads ? 1 : min(groups, (threads + m - 1) / m)
        return (parts, balancedRanges(count: m * parts, parts: threads, unit: 1))
    }

    public func render(_ config: Configuration) throws -> KernelSource {
        try check(config, machine: nil)
        return AtomQuantizeTemplate(op: op, config: config, templateVersion: templateVersion).render()
    }

    /// Elements processed, M * K: for this family GOP/s means elements per nanosecond.
    public func usefulOps(_ workload: Workload, _ config: Configuration) -> Double {
        Double(workload["m"]) * Double(workload["k"])
    }

    /// The fewest bytes one run must move: its inputs read once (rows, plus the norm weight and the
    /// permutation) and its outputs written once (`OutputLayout`'s arrays, without padding).
    public func bytesMoved(_ workload: Workload, _ config: Configuration) -> Double {
        Self.bytesMoved(op: op, m: workload["m"], k: workload["k"], outliers: workload["outliers"])
    }

    public static func bytesMoved(op: Op, m: Int, k: Int, outliers: Int) -> Double {
        let rows = Double(m) * Double(k) * 4
        let inputs: Double =
            switch op {
            case .rmsnormReorderQuantize: rows + Double(k) * 8  // plus the weight (in reordered order) and perm
            case .reorderQuantize: rows + Double(k) * 4
            case .siluMulQuantize: 2 * rows
            }
        let normal = k - outliers, groups = normal / AtomQuantization.groupSize
        let outputs = Double(m) * Double(normal / 2 + groups * 8 + outliers + 4)
        return inputs + outputs
    }

    public func makeInstance(workload: Workload, config: Configuration, symbols: SymbolTable, seed: UInt64) throws -> KernelInstance {
        try checkShape(workload)
        try check(config, machine: nil)
        let source = try render(config)
        let kernel = try symbols.address(of: source.symbols["kernel"]!)
        return AtomQuantizeInstance(family: self, workload: workload, config: config, kernel: kernel, seed: seed)
    }

    /// Where the five arrays of `AtomQuantization.Quantized` lie in one output region: in that order,
    /// each starting at a multiple of 64 bytes (a cache line; fp32 and int32 arrays stay aligned):
    /// codes [M][K' / 2] bytes at 0, scales [M][K' / 128] fp32, group sums [M][K' / 128] int32,
    /// outlier codes [M][O] int8, outlier scales [M] fp32. Padding between arrays is never written.
    public struct OutputLayout: Sendable, Equatable {
        public let m: Int
        public let k: Int
        public let outliers: Int
        public let codes: Int
        public let scales: Int
        public let groupSums: Int
        public let outlierCodes: Int
        public let outlierScales: Int
        /// Bytes of the whole region.
        public let bytes: Int

        public init(m: Int, k: Int, outliers: Int) {
            self.m = m
            self.k = k
            self.outliers = outliers
            func line(_ n: Int) -> Int { (n + 63) / 64 * 64 }
            let normal = k - outliers, groups = normal / AtomQuantization.groupSize
            codes = 0
            scales = line(codes + m * normal / 2)
            groupSums = line(scales + m * groups * 4)
            outlierCodes = line(groupSums + m * groups * 4)
            outlierScales = line(outlierCodes + m * outliers)
            bytes = outlierScales + m * 4
        }
    }

    /// Compares a kernel's output region with the reference, array by array, bit for bit.
    public static func compare(expected q: AtomQuantization.Quantized, output: UnsafeRawPointer, layout: OutputLayout) -> Verification {
        var mismatches = 0, checked = 0
        var first: String?
        func check<T: Equatable>(_ array: String, _ expected: [T], at offset: Int, columns: Int, show: (T) -> String) {
            let actual = (output + offset).assumingMemoryBound(to: T.self)
            for i in expected.indices {
                checked += 1
                if actual[i] != expected[i] {
                    mismatches += 1
                    if first == nil {
                        first = "\(array)[\(i / max(columns, 1))][\(i % max(columns, 1))] = \(show(actual[i])), expected \(show(expected[i]))"
                    }
                }
            }
        }
        let groups = q.groups
        check("codes", q.codes, at: layout.codes, columns: q.normal / 2) { "0x" + String($0, radix: 16) }
        check("scales", q.scales.map(\.bitPattern), at: layout.scales, columns: groups) { "\(Float(bitPattern: $0))" }
        check("group_sums", q.groupSums, at: layout.groupSums, columns: groups) { "\($0)" }
        check("outlier_codes", q.outlierCodes, at: layout.outlierCodes, columns: q.outliers) { "\($0)" }
        check("outlier_scales", q.outlierScales.map(\.bitPattern), at: layout.outlierScales, columns: 1) { "\(Float(bitPattern: $0))" }
        return Verification(
            passed: mismatches == 0, checked: checked, mismatches: mismatches, maxAbsError: 0, maxRelError: 0,
            tolerance: "bit-exact (codes, scales, group sums, outlier codes and scales)", firstMismatch: first)
    }
}
