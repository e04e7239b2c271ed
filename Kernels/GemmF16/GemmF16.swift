import KernelKit
import Machine

/// `gemm-f16`: Y[M][N] = X[M][K] . W[N][K]^T with fp16 weights and fp32 activations, accumulation and
/// output. It is the FP16 lm_head of the Atom method (Atom keeps the embedding and lm_head in FP16);
/// at decode batch sizes it is a stream over the weights, so half the bytes of fp32 is half the time.
///
/// Each output is one fp32 fused multiply-add chain over k in ascending order, y = fma(x[k], w[k], y),
/// starting from 0: the Swift reference does the same (`Float.addingProduct`), so every variant is
/// bit-exact. Weights must be finite (the AVX2 variant widens halves with integer operations that do
/// not special-case infinities and NaNs; `GemmF16Reference.checkFinite` is the check).
public struct GemmF16: KernelFamily {
    public init() {}

    public let name = "gemm-f16"
    public let summary = "Y = X . W^T with fp16 weights [N,K] and fp32 activations [M,K]: the FP16 lm_head"
    public let templateVersion = 3
    public let dimensions = ["m", "n", "k"]
    public let shapeRules = [
        "positive: m, n and k are at least 1",
        "size: m * n, m * k and n * k each fit in 2^31 elements",
    ]
    public let targets: [ISATarget] = [.portable, .avx2, .avx512vnni, .neonDotprod]

    public var parameters: [ParameterSpec] {
        [
            ParameterSpec("isa", .names(targets.map(\.rawValue)), default: .name("portable"), "instruction set (avx512-vnni: AVX-512F code; avx2 widens halves with integer operations or F16C, see halves)"),
            ParameterSpec("mr", .ints([1, 2, 3, 4, 6, 8, 12, 16]), default: .int(4), "rows of the register tile"),
            ParameterSpec("nr", .ints([4, 8, 16, 32, 48, 64]), default: .int(8), "columns of the register tile (= packed panel width)"),
            ParameterSpec("pf", .ints([0, 1024, 2048, 4096, 8192]), default: .int(0), "software prefetch distance along the packed panel, bytes (0: none; v1 had none)"),
            ParameterSpec("halves", .names(["target", "f16c"]), default: .name("target"), "how halves become fp32: the target's own way (integer operations on avx2), or F16C's vcvtph2ps (avx2 only; v3)"),
            ParameterSpec("threads", .ints([1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]), default: .int(1), "worker threads"),
            ParameterSpec("tm", .ints([1, 2, 3, 4, 6, 8, 12, 16]), default: .int(1), "threads along M (threads / tm along N)"),
            ParameterSpec("placement", .names(ThreadPlacement.allCases.map(\.rawValue)), default: .name("scatter"), "which PUs the threads use"),
        ]
    }

    public let constraints = [
        "vector-width: nr is a multiple of the target's fp32 lanes (avx2 8, avx512-vnni 16, neon 4)",
        "registers: mr * nr/lanes accumulators + nr/lanes weight vectors + 2 fit the vector registers; portable: mr * nr <= 128",
        "thread-layout: threads is a multiple of tm",
        "halves-f16c: halves=f16c is for isa=avx2, and needs F16C (machine)",
        "isa-runs (machine): the target's instructions are usable on this machine",
        "threads-pus (machine): threads <= processing units",
    ]

    public func checkShape(_ workload: Workload) throws {
        for d in dimensions where workload[d] < 1 {
            throw ConstraintViolation("positive", "\(d) = \(workload[d]) for \(name); m, n and k must be at least 1")
        }
        let limit = Int(Int32.max)
        let (m, n, k) = (workload["m"], workload["n"], workload["k"])
        if m * n > limit || m * k > limit || n * k > limit {
            throw ConstraintViolation("size", "\(workload) has more than 2^31 elements in Y, X or W")
        }
    }

    public func check(_ config: Configuration, machine: MachineContext?) throws {
        try checkDomains(config)
        let isa = ISATarget(rawValue: config.name("isa"))!
        let mr = config.int("mr"), nr = config.int("nr")
        if let d = F16Dialect.forTarget(isa), d.lanes > 1 {
            guard nr % d.lanes == 0 else {
                throw ConstraintViolation("vector-width", "nr=\(nr) is not a multiple of \(d.lanes) fp32 lanes for \(isa)")
            }
            let needed = mr * (nr / d.lanes) + nr / d.lanes + 2
            guard needed <= d.registers else {
                throw ConstraintViolation("registers", "mr=\(mr) nr=\(nr) on \(isa) needs \(needed) vector registers; the target has \(d.registers)")
            }
        } else if mr * nr > 128 {
            throw ConstraintViolation("registers", "mr * nr = \(mr * nr) scalar accumulators; the portable tile allows 128")
        }
        let threads = config.int("threads"), tm = config.int("tm")
        guard threads % tm == 0 else { throw ConstraintViolation("thread-layout", "threads=\(threads) is not a multiple of tm=\(tm)") }
        let f16c = config["halves"] == .name("f16c")
        if f16c, isa != .avx2 {
            throw ConstraintViolation("halves-f16c", "halves=f16c is AVX2's option; \(isa) widens halves its own way (use halves=target)")
        }
        guard let machine else { return }
        if let why = isa.missingFeatures(on: machine.isa) { throw ConstraintViolation("isa-runs", why) }
        if f16c, !machine.isa.usable.contains(.f16c) {
            throw ConstraintViolation("halves-f16c", "halves=f16c needs F16C, which this machine lacks (use halves=target)")
        }
        guard threads <= machine.topology.pus.count else {
            throw ConstraintViolation("threads-pus", "threads=\(threads) but this machine has \(machine.topology.pus.count) processing units")
        }
    }

    public func defaultConfiguration(isa: ISATarget, machine: MachineContext?) -> Configuration {
        var c = Configuration(Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, $0.defaultValue) }))
        c["isa"] = .name(isa.rawValue)
        let tile: (mr: Int, nr: Int) =
            switch isa {
            case .portable, .avxvnni: (4, 8)
            case .avx2: (4, 16)
            case .avx512vnni: (4, 32)
            case .neonDotprod: (4, 16)
            }
        c["mr"] = .int(tile.mr)
        c["nr"] = .int(tile.nr)
        if let machine { c["threads"] = .int(threadsPerCore(machine)) }
        return c
    }

    /// The default tile's width with MR as tall as the registers allow (8 on AVX-512, 6 on AVX2 and NEON,
    /// 4 in portable C) but no taller than M (a tile's extra rows would repeat the last one); one thread
    /// per core, splitting N.
    public func analyticalConfiguration(for workload: Workload, machine: MachineContext) -> Configuration {
        let isa = bestTarget(on: machine)
        var c = defaultConfiguration(isa: isa, machine: machine)
        let tallest = isa == .avx512vnni ? 8 : (isa == .portable ? 4 : 6)
        c["mr"] = .int(intValues("mr").last { $0 <= min(workload["m"], tallest) } ?? 1)
        // The panel streams from memory at decode M (the lm_head's weights are far beyond the caches),
        // and every row panel of a larger M but the first finds it in L2; prefetching 4 KiB ahead costs
        // one load slot per 64 bytes. Measured at M = 8 and 16 (32000 x 4096, cold): 20-35% faster.
        if isa != .portable { c["pf"] = .int(4096) }
        // vcvtph2ps widens 8 halves in one instruction where AVX2's integer path takes about ten (32000 x
        // 4096 at M = 16, cold, 2 threads, on a Zen 3 machine: see the README).
        if isa == .avx2, machine.isa.usable.contains(.f16c) { c["halves"] = .name("f16c") }
        return c
    }

    public func render(_ config: Configuration) throws -> KernelSource {
        try check(config, machine: nil)
        return F16Template(config: config, templateVersion: templateVersion).render()
    }

    public func usefulOps(_ workload: Workload, _ config: Configuration) -> Double {
        2 * Double(workload["m"]) * Double(workload["n"]) * Double(workload["k"])
    }

    public func makeInstance(workload: Workload, config: Configuration, symbols: SymbolTable, seed: UInt64) throws -> KernelInstance {
        try checkShape(workload)
        try check(config, machine: nil)
        return try GemmF16Instance(workload: workload, config: config, symbols: symbols, names: render(config).symbols, seed: seed)
    }
}

/// The plain Swift definition every variant matches bit for bit.
public enum GemmF16Reference {
    /// Seeded inputs: x uniform in [-1, 1]; w uniform in [-0.5, 0.5] rounded to fp16, with some
    /// subnormal halves and signed zeros, so the widening is tested at its edges.
    public static func inputs(m: Int, n: Int, k: Int, seed: UInt64) -> (x: [Float], w: [UInt16]) {
        var rng = SeededGenerator(seed: seed ^ 0xF16F_16F1)
        let x = (0..<m * k).map { _ in Float.random(in: -1...1, using: &rng) }
        var w = (0..<n * k).map { _ in Float16(Float.random(in: -0.5...0.5, using: &rng)).bitPattern }
        for i in stride(from: 0, to: w.count, by: 97) { w[i] = UInt16.random(in: 1...0x3FF, using: &rng) | (i % 2 == 0 ? 0 : 0x8000) }
        for i in stride(from: 5, to: w.count, by: 389) { w[i] = i % 2 == 0 ? 0 : 0x8000 }
        return (x, w)
    }

    /// Throws when a weight is infinite or NaN (the fp16 kernels take finite weights).
    public static func checkFinite(_ w: UnsafeBufferPointer<UInt16>) throws {
        if let i = w.firstIndex(where: { $0 & 0x7C00 == 0x7C00 }) {
            throw ConstraintViolation("finite", "fp16 weight \(i) is infinite or NaN (bits 0x\(String(w[i], radix: 16)))")
        }
    }

    public static func compute(x: UnsafePointer<Float>, w: UnsafePointer<UInt16>, m: Int, n: Int, k: Int) -> [Float] {
        var y = [Float](repeating: 0, count: m * n)
        let widened = (0..<n * k).map { Float(Float16(bitPattern: w[$0])) }
        for r in 0..<m {
            for c in 0..<n {
                var acc: Float = 0
                for i in 0..<k { acc = acc.addingProduct(x[r * k + i], widened[c * k + i]) }
                y[r * n + c] = acc
            }
        }
        return y
    }
}

/// gemm-f16 bound to one workload: seeded x and w, the packed panels, each thread's block of Y.
final class GemmF16Instance: KernelInstance {
    typealias PackedBytes = @convention(c) (Int32, Int32) -> Int
    typealias Pack = @convention(c) (UnsafePointer<UInt16>?, Int32, Int32, UnsafeMutableRawPointer?) -> Void
    typealias Kernel = @convention(c) (UnsafePointer<Float>?, UnsafeRawPointer?, UnsafeMutablePointer<Float>?, Int32, Int32, Int32, Int32, Int32, Int32) -> Void

    let m: Int, n: Int, k: Int, seed: UInt64
    let x: AlignedBuffer, w: AlignedBuffer, packed: AlignedBuffer
    let pack: Pack
    let kernel: Kernel
    let threadCount: Int
    let blocks: [(rows: Range<Int>, cols: Range<Int>)]
    private var output: UnsafeMutablePointer<Float>?

    var outputBytes: Int { m * n * MemoryLayout<Float>.size }
    var workspaceBytesPerThread: Int { 0 }
    var workingSetBytes: Int { x.byteCount + packed.byteCount + outputBytes }

    init(workload: Workload, config: Configuration, symbols: SymbolTable, names: [String: String], seed: UInt64) throws {
        m = workload["m"]
        n = workload["n"]
        k = workload["k"]
        self.seed = seed
        let inputs = GemmF16Reference.inputs(m: m, n: n, k: k, seed: seed)
        x = AlignedBuffer(copying: inputs.x)
        w = AlignedBuffer(copying: inputs.w)
        let packedBytes = try symbols.function(names["packed_bytes"]!, as: PackedBytes.self)
        pack = try symbols.function(names["pack"]!, as: Pack.self)
        kernel = try symbols.function(names["kernel"]!, as: Kernel.self)
        packed = AlignedBuffer(byteCount: packedBytes(Int32(n), Int32(k)))
        threadCount = config.int("threads")
        blocks = gemmThreadBlocks(m: m, n: n, config: config)
    }

    var dataRegions: [UnsafeRawBufferPointer] { [x, packed].map(\.region) }

    func prepare() throws {
        pack(w.pointer.assumingMemoryBound(to: UInt16.self), Int32(n), Int32(k), packed.pointer)
    }

    func bind(output: UnsafeMutableRawPointer, workspaces: [UnsafeMutableRawPointer]) {
        self.output = output.assumingMemoryBound(to: Float.self)
    }

    func run(thread index: Int) {
        let block = blocks[index]
        guard !block.rows.isEmpty, !block.cols.isEmpty else { return }
        kernel(
            x.pointer.assumingMemoryBound(to: Float.self), UnsafeRawPointer(packed.pointer), output, Int32(n), Int32(k),
            Int32(block.rows.lowerBound), Int32(block.rows.upperBound), Int32(block.cols.lowerBound), Int32(block.cols.upperBound))
    }

    func verify() -> Verification {
        let expected = ReferenceCache.shared.value(for: "gemm-f16 \(m) \(n) \(k) \(seed)") {
            GemmF16Reference.compute(
                x: x.pointer.assumingMemoryBound(to: Float.self), w: w.pointer.assumingMemoryBound(to: UInt16.self), m: m, n: n, k: k)
        }
        guard let output else {
            return Verification(passed: false, checked: 0, mismatches: 0, maxAbsError: .nan, maxRelError: .nan, tolerance: "bit-exact", firstMismatch: "no output bound")
        }
        return compareBitExact(expected: expected, actual: UnsafeBufferPointer(start: output, count: m * n), columns: n)
    }
}
