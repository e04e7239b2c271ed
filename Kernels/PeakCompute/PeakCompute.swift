import KernelKit

/// `peak-compute`: the machine's compute ceilings, measured by the same pipeline as every kernel.
///
/// Each thread runs `iterations` rounds of independent vector operations on register operands that
/// an empty `asm volatile` keeps the compiler from hoisting; nothing touches memory until the end.
/// Results are exact (operands are small integers or powers of two), so the output is verified bit
/// for bit like any kernel before the loop is timed.
public struct PeakCompute: KernelFamily {
    public init() {}

    /// What one instruction (or fused sequence) of the loop computes.
    public enum Operation: String, CaseIterable, Sendable {
        /// fp32 fused multiply-add: 2 flops per lane.
        case fp32FMA = "fp32-fma"
        /// int8 x int8 with int32 accumulation through vpmaddubsw + vpmaddwd + vpaddd: 2 ops per byte pair.
        case int8I32 = "int8-i32"
        /// int8 x int8 with int16 accumulation (vpmaddubsw + vpaddw): exact only for small operands.
        case int8I16 = "int8-i16"
        /// int8 dot products with int32 accumulation in one instruction (vpdpbusd, sdot).
        case int8Dot = "int8-dot"
        /// 4-bit unpack (mask the low nibbles) then the target's best byte dot product: vpdpbusd or
        /// sdot into int32 where the target has one, vpmaddubsw + vpaddw into int16 on AVX2.
        case int4Dot = "int4-dot"
    }

    public let name = "peak-compute"
    public let summary = "compute ceilings: independent fp32 FMA or int8 dot-product chains per thread"
    public let templateVersion = 2
    public let dimensions = ["iterations"]
    public let shapeRules = ["range: 1 <= iterations <= 2^20 (keeps fp32 sums exact)"]
    public let targets: [ISATarget] = [.avx2, .avxvnni, .avx512vnni, .neonDotprod]
    public let constraints = ["op-isa: the operation exists on the target (int8-dot needs avx-vnni, avx512-vnni or neon-dotprod; int8-i32 and int8-i16 need x86; int4-dot runs everywhere)"]

    public var parameters: [ParameterSpec] {
        [
            ParameterSpec("isa", .names(targets.map(\.rawValue)), default: .name("avx2"), "instruction set"),
            ParameterSpec("op", .names(Operation.allCases.map(\.rawValue)), default: .name("fp32-fma"), "operation whose peak is measured"),
            ParameterSpec("threads", .ints([1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]), default: .int(1), "threads, each running the loop"),
            ParameterSpec("placement", .names(ThreadPlacement.allCases.map(\.rawValue)), default: .name("scatter"), "which PUs the threads use"),
        ]
    }

    public func checkShape(_ workload: Workload) throws {
        let n = workload["iterations"]
        guard n >= 1, n <= 1 << 20 else {
            throw ConstraintViolation("range", "iterations = \(n); it must be in 1...\(1 << 20)")
        }
    }

    public func check(_ config: Configuration, machine: MachineContext?) throws {
        try checkDomains(config)
        let isa = ISATarget(rawValue: config.name("isa"))!
        let op = Operation(rawValue: config.name("op"))!
        guard PeakDialect.make(isa: isa, op: op) != nil else {
            throw ConstraintViolation("op-isa", "\(op.rawValue) has no \(isa.rawValue) form")
        }
        if let machine {
            if let why = isa.missingFeatures(on: machine.isa) { throw ConstraintViolation("isa-runs", why) }
            let threads = config.int("threads")
            guard threads <= machine.topology.pus.count else {
                throw ConstraintViolation("threads-pus", "threads=\(threads) but this machine has \(machine.topology.pus.count) processing units")
            }
        }
    }

    public func defaultConfiguration(isa: ISATarget, machine: MachineContext?) -> Configuration {
        var c = Configuration(Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, $0.defaultValue) }))
        c["isa"] = .name(isa.rawValue)
        return c
    }

    /// The (isa, op) pairs that exist, for sweeping every ceiling of a machine.
    public static var operations: [(ISATarget, Operation)] {
        PeakCompute().targets.flatMap { isa in Operation.allCases.filter { PeakDialect.make(isa: isa, op: $0) != nil }.map { (isa, $0) } }
    }

    public func render(_ config: Configuration) throws -> KernelSource {
        try check(config, machine: nil)
        let isa = ISATarget(rawValue: config.name("isa"))!
        let op = Operation(rawValue: config.name("op"))!
        let d = PeakDialect.make(isa: isa, op: op)!
        let name = "peak_\(op.rawValue.replacingOccurrences(of: "-", with: "_"))__\(isa.rawValue.replacingOccurrences(of: "-", with: ""))"
        var c = CSource()
        c.comment(lines: [
            "peak-compute, template version \(templateVersion): \(name)",
            "Parameters: isa=\(isa.rawValue) op=\(op.rawValue)",
            "",
            "\(d.accumulators) independent accumulators, \(d.opsPerUpdate) useful operations per update: \(d.note).",
            "The empty asm statements make the operands opaque to the compiler each round, so nothing",
            "is hoisted out of the loop; the sums are exact and checked before timing.",
        ])
        c.include("stdint.h")
        for h in d.headers { c.include(h) }
        c.line()
        c.function("void \(name)(\(d.elementType) *out, long iterations)") { c in
            c.lines(d.setup)
            for j in 0..<d.accumulators { c.declare(d.vectorType, "acc\(j)", d.zero) }
            c.forLoop("long i = 0", "i < iterations", "i++") { c in
                c.line("__asm__ volatile(\"\" : \(d.operands.map { "\"+\(d.constraint)\"(\($0))" }.joined(separator: ", ")));")
                for j in 0..<d.accumulators { c.line("acc\(j) = \(d.update("acc\(j)", j)));") }
            }
            for j in 0..<d.accumulators { c.line(d.store("out + \(j * d.lanes)", "acc\(j)")) }
        }
        return KernelSource(name: name, isa: isa, code: c.description, symbols: ["kernel": name])
    }

    /// Iterations x accumulators x operations per update x threads.
    public func usefulOps(_ workload: Workload, _ config: Configuration) -> Double {
        let d = PeakDialect.make(isa: ISATarget(rawValue: config.name("isa"))!, op: Operation(rawValue: config.name("op"))!)!
        return Double(workload["iterations"]) * Double(d.accumulators * d.opsPerUpdate * config.int("threads"))
    }

    public func makeInstance(workload: Workload, config: Configuration, symbols: SymbolTable, seed: UInt64) throws -> KernelInstance {
        try checkShape(workload)
        try check(config, machine: nil)
        let d = PeakDialect.make(isa: ISATarget(rawValue: config.name("isa"))!, op: Operation(rawValue: config.name("op"))!)!
        return PeakInstance(
            dialect: d, iterations: workload["iterations"], threads: config.int("threads"),
            kernel: try symbols.address(of: try render(config).symbols["kernel"]!))
    }
}

/// Runs the peak loop on every thread and checks each thread's accumulators against closed forms.
final class PeakInstance: KernelInstance {
    typealias Kernel = @convention(c) (UnsafeMutableRawPointer?, Int) -> Void
    let dialect: PeakDialect
    let iterations: Int
    let threadCount: Int
    let kernel: Kernel
    private var output: UnsafeMutableRawPointer?

    init(dialect: PeakDialect, iterations: Int, threads: Int, kernel: UnsafeMutableRawPointer) {
        self.dialect = dialect
        self.iterations = iterations
        threadCount = threads
        self.kernel = unsafeBitCast(kernel, to: Kernel.self)
    }

    var perThreadBytes: Int { dialect.accumulators * dialect.lanes * dialect.elementBytes }
    var outputBytes: Int { perThreadBytes * threadCount }
    var workspaceBytesPerThread: Int { 0 }
    var workingSetBytes: Int { outputBytes }
    func prepare() throws {}
    func bind(output: UnsafeMutableRawPointer, workspaces: [UnsafeMutableRawPointer]) { self.output = output }
    func run(thread index: Int) { kernel(output! + index * perThreadBytes, iterations) }

    func verify() -> Verification {
        var mismatches = 0
        var first: String?
        let total = dialect.accumulators * dialect.lanes * threadCount
        for t in 0..<threadCount {
            for j in 0..<dialect.accumulators {
                let expected = dialect.expected(j, iterations)
                for lane in 0..<dialect.lanes {
                    let index = (t * dialect.accumulators + j) * dialect.lanes + lane
                    let actual = dialect.read(output!, index)
                    if actual != expected {
                        mismatches += 1
                        if first == nil { first = "thread \(t) accumulator \(j) lane \(lane) = \(actual), expected \(expected)" }
                    }
                }
            }
        }
        return Verification(
            passed: mismatches == 0, checked: total, mismatches: mismatches, maxAbsError: 0, maxRelError: 0,
            tolerance: "exact", firstMismatch: first)
    }
}
