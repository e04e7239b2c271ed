import KernelKit

/// `test-faults`: a trivial kernel (y = 2x) that misbehaves on request. It exists so tests can prove
/// that the worker survives what a real variant may do: crash, hang, write outside its output, execute
/// an illegal instruction, or compute a wrong answer. Not listed by `lowbit kernels`.
public struct FaultInjection: KernelFamily {
    public init() {}

    public enum Fault: String, CaseIterable, Sendable {
        case none, segfault, hang, abort
        case illegalInstruction = "illegal-instruction"
        case writePastEnd = "write-past-end"
        case writeBeforeStart = "write-before-start"
        case wrongAnswer = "wrong-answer"
        case slow
    }

    public let name = "test-faults"
    public let summary = "y = 2x, with injected faults (testing only)"
    public let templateVersion = 1
    public let dimensions = ["n"]
    public let shapeRules = ["positive: n >= 1"]
    public let targets: [ISATarget] = [.portable]
    public let constraints: [String] = []

    public var parameters: [ParameterSpec] {
        [
            ParameterSpec("isa", .names(["portable"]), default: .name("portable"), "instruction set"),
            ParameterSpec("fault", .names(Fault.allCases.map(\.rawValue)), default: .name("none"), "what goes wrong"),
            ParameterSpec("threads", .ints([1, 2]), default: .int(1), "worker threads"),
            ParameterSpec("placement", .names(ThreadPlacement.allCases.map(\.rawValue)), default: .name("scatter"), "which PUs the threads use"),
        ]
    }

    public func checkShape(_ workload: Workload) throws {
        guard workload["n"] >= 1 else { throw ConstraintViolation("positive", "n = \(workload["n"]); n must be at least 1") }
    }

    public func check(_ config: Configuration, machine: MachineContext?) throws { try checkDomains(config) }

    public func defaultConfiguration(isa: ISATarget, machine: MachineContext?) -> Configuration {
        Configuration(Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, $0.defaultValue) }))
    }

    public func render(_ config: Configuration) throws -> KernelSource {
        try check(config, machine: nil)
        let fault = Fault(rawValue: config.name("fault"))!
        let name = "test_faults__" + fault.rawValue.replacingOccurrences(of: "-", with: "_")
        var c = CSource()
        c.comment("test-faults, template version \(templateVersion): \(name) (fault=\(fault.rawValue))")
        c.include("stddef.h")
        c.include("stdlib.h")
        c.line()
        c.function("void \(name)(const float *x, float *y, int n0, int n1, int n)") { c in
            c.line("(void)n; /* used by some faults only */")
            switch fault {
            case .segfault: c.line("*(volatile int *)(size_t)(n - n) = 1;")
            case .hang: c.line("for (volatile int spin = 1; spin;) {}")
            case .abort: c.line("abort();")
            case .illegalInstruction: c.line("__builtin_trap();")
            case .writePastEnd: c.line("y[n + 1024] = 0.0f;")
            case .writeBeforeStart: c.line("y[-1] = 0.0f;")
            case .slow:
                c.forLoop("volatile long spin = 0", "spin < 200000000L", "spin++") { _ in }
            case .none, .wrongAnswer: break
            }
            c.forLoop("int i = n0", "i < n1", "i++") { c in
                c.line(fault == .wrongAnswer ? "y[i] = 2.0f * x[i] + (i == n / 2 ? 1.0f : 0.0f);" : "y[i] = 2.0f * x[i];")
            }
        }
        return KernelSource(name: name, isa: .portable, code: c.description, symbols: ["kernel": name])
    }

    public func usefulOps(_ workload: Workload, _ config: Configuration) -> Double { Double(workload["n"]) }

    public func makeInstance(workload: Workload, config: Configuration, symbols: SymbolTable, seed: UInt64) throws -> KernelInstance {
        try FaultInstance(n: workload["n"], threads: config.int("threads"), symbol: symbols.address(of: try render(config).symbols["kernel"]!), seed: seed)
    }
}

final class FaultInstance: KernelInstance {
    typealias Kernel = @convention(c) (UnsafePointer<Float>?, UnsafeMutablePointer<Float>?, Int32, Int32, Int32) -> Void
    let n: Int
    let threadCount: Int
    let x: AlignedBuffer
    let kernel: Kernel
    private var output: UnsafeMutablePointer<Float>?

    init(n: Int, threads: Int, symbol: UnsafeMutableRawPointer, seed: UInt64) {
        self.n = n
        threadCount = threads
        var rng = SeededGenerator(seed: seed)
        x = AlignedBuffer(copying: (0..<n).map { _ in Float.random(in: -1...1, using: &rng) })
        kernel = unsafeBitCast(symbol, to: Kernel.self)
    }

    var outputBytes: Int { n * MemoryLayout<Float>.size }
    var workingSetBytes: Int { 2 * outputBytes }
    var workspaceBytesPerThread: Int { 0 }
    func prepare() throws {}
    func bind(output: UnsafeMutableRawPointer, workspaces: [UnsafeMutableRawPointer]) {
        self.output = output.assumingMemoryBound(to: Float.self)
    }

    func run(thread index: Int) {
        let range = balancedRanges(count: n, parts: threadCount, unit: 1)[index]
        kernel(x.pointer.assumingMemoryBound(to: Float.self), output, Int32(range.lowerBound), Int32(range.upperBound), Int32(n))
    }

    func verify() -> Verification {
        let xs = x.pointer.assumingMemoryBound(to: Float.self)
        let expected = (0..<n).map { 2 * xs[$0] }
        return compareBitExact(expected: expected, actual: UnsafeBufferPointer(start: output!, count: n), columns: n)
    }
}
