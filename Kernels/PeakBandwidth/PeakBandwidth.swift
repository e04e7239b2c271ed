import KernelKit

/// `peak-bandwidth`: memory bandwidth at a given working-set size, STREAM-style, measured by the same
/// pipeline as every kernel. Each thread streams over its own slice of the arrays `passes` times (so a
/// run lasts long enough to time even when the slice sits in L1); results are exact integers or
/// fp32 values computed in a fixed order, checked before timing.
///
/// Bytes counted per pass (the fewest the operation must move): read: the array; write: the array;
/// copy: 2x; triad (a = b + s * c): 3x; runs: the array. "GOP/s" in this family's trials are GB/s.
///
/// `runs` is not a STREAM sweep but an access pattern: each thread reads its slice in runs of `run`
/// bytes, visiting the runs in a shuffled order and prefetching the run `ahead` places later a line at
/// a time, which is how a kernel reads a paged cache (one page, or one head's block of a page, after
/// another, scattered over a pool). Against `read` at the same size it says what the layout costs.
public struct PeakBandwidth: KernelFamily {
    public init() {}

    public enum Operation: String, CaseIterable, Sendable {
        case read, write, copy, triad, runs

        /// Bytes moved per pass per byte of one array.
        var arrays: Int {
            switch self {
            case .read, .write, .runs: return 1
            case .copy: return 2
            case .triad: return 3
            }
        }

        /// The STREAM-style sweeps, whose plateaus make the roofline; `runs` is a pattern measured on its own.
        public static let sweeps: [Operation] = [.read, .write, .copy, .triad]
    }

    /// Run lengths `runs` can take, in bytes.
    public static let runLengths = [256, 512, 1024, 2048, 4096, 8192, 16384, 65536]

    public let name = "peak-bandwidth"
    public let summary = "memory bandwidth (read, write, copy, triad; reads in shuffled runs) at a working-set size; GOP/s here are GB/s"
    public let templateVersion = 1
    public let dimensions = ["bytes"]
    public let shapeRules = ["range: 4 KiB <= bytes <= 4 GiB, a multiple of 4 KiB (the total of all arrays)"]
    public let targets: [ISATarget] = [.portable, .avx2, .avx512vnni, .neonDotprod]
    public let constraints = [
        "thread-slices: each thread's slice of each array (bytes / arrays / threads, rounded down to 256 bytes) is at least 256 bytes",
        "run-slice: with op=runs, each thread's slice (bytes / threads) holds at least two runs",
    ]

    public var parameters: [ParameterSpec] {
        [
            ParameterSpec("isa", .names(targets.map(\.rawValue)), default: .name("portable"), "instruction set of the loop"),
            ParameterSpec("op", .names(Operation.allCases.map(\.rawValue)), default: .name("read"), "what each pass does"),
            ParameterSpec("threads", .ints([1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]), default: .int(1), "threads, each on its own slice"),
            ParameterSpec("placement", .names(ThreadPlacement.allCases.map(\.rawValue)), default: .name("scatter"), "which PUs the threads use"),
            ParameterSpec(
                "passes", .ints([0, 1, 2, 4, 8, 16, 64]), default: .int(0),
                "sweeps per run; 0: enough to move 64 MiB (hot ceilings), 1: a single sweep (cold ceilings)"),
            ParameterSpec("run", .ints(Self.runLengths), default: .int(4096), "op=runs: bytes read in order before jumping to the next run (other ops ignore it)"),
            ParameterSpec("ahead", .ints([0, 1, 2, 4]), default: .int(2), "op=runs: the run prefetched while one is read, this many runs later in the order (0: none)"),
        ]
    }

    public func checkShape(_ workload: Workload) throws {
        let b = workload["bytes"]
        guard b >= 4096, b <= 1 << 32, b % 4096 == 0 else {
            throw ConstraintViolation("range", "bytes = \(b); it must be a multiple of 4096 in 4096...\(1 << 32)")
        }
    }

    public func check(_ config: Configuration, machine: MachineContext?) throws {
        try checkDomains(config)
        if let machine {
            let isa = ISATarget(rawValue: config.name("isa"))!
            if let why = isa.missingFeatures(on: machine.isa) { throw ConstraintViolation("isa-runs", why) }
            guard config.int("threads") <= machine.topology.pus.count else {
                throw ConstraintViolation("threads-pus", "threads=\(config.int("threads")) but this machine has \(machine.topology.pus.count) processing units")
            }
        }
    }

    /// Elements of one array each thread streams: the working set split over arrays and threads,
    /// rounded down to whole 64-element (256-byte) steps, or for `runs` to whole runs.
    static func elementsPerThread(_ workload: Workload, _ config: Configuration) -> Int {
        let op = Operation(rawValue: config.name("op"))!
        let step = op == .runs ? config.int("run") : 256
        return workload["bytes"] / op.arrays / config.int("threads") / step * step / 4
    }

    /// Runs in each thread's slice (op=runs).
    public static func runsPerThread(_ workload: Workload, _ config: Configuration) -> Int {
        elementsPerThread(workload, config) * 4 / config.int("run")
    }

    /// The rules that join the shape and the configuration (`thread-slices`, `run-slice`); the runner
    /// meets them through `makeInstance`.
    public func checkSlices(_ workload: Workload, _ config: Configuration) throws {
        if Operation(rawValue: config.name("op")) == .runs {
            guard Self.runsPerThread(workload, config) >= 2 else {
                throw ConstraintViolation(
                    "run-slice",
                    "\(workload["bytes"]) bytes over \(config.int("threads")) threads leave fewer than two runs of \(config.int("run")) bytes per thread; use a larger bytes or a smaller run")
            }
        }
        guard Self.elementsPerThread(workload, config) > 0 else {
            throw ConstraintViolation("thread-slices", "\(workload["bytes"]) bytes leave less than 256 bytes per array per thread")
        }
    }

    public func defaultConfiguration(isa: ISATarget, machine: MachineContext?) -> Configuration {
        var c = Configuration(Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, $0.defaultValue) }))
        c["isa"] = .name(isa.rawValue)
        return c
    }

    /// Passes per run: the `passes` parameter, or when it is 0 (automatic) enough that one run moves
    /// at least 64 MiB.
    static func passes(bytes: Int, _ config: Configuration) -> Int {
        let fixed = config["passes"].flatMap { if case .int(let p) = $0 { p } else { nil } } ?? 0
        return fixed > 0 ? fixed : max(1, (64 << 20) / bytes)
    }

    /// Bytes moved per run: every array's slices, every pass.
    public func usefulOps(_ workload: Workload, _ config: Configuration) -> Double {
        let op = Operation(rawValue: config.name("op"))!
        let moved = Self.elementsPerThread(workload, config) * 4 * op.arrays * config.int("threads")
        return Double(moved) * Double(Self.passes(bytes: workload["bytes"], config))
    }

    public func render(_ config: Configuration) throws -> KernelSource {
        try check(config, machine: nil)
        let isa = ISATarget(rawValue: config.name("isa"))!
        let op = Operation(rawValue: config.name("op"))!
        let v = BandwidthDialect.forTarget(isa)
        let name = "peak_bandwidth_\(op.rawValue)__\(isa.rawValue.replacingOccurrences(of: "-", with: ""))"
        var c = CSource()
        c.comment(lines: [
            "peak-bandwidth, template version \(templateVersion): \(name)",
            "Parameters: isa=\(isa.rawValue) op=\(op.rawValue)",
            "",
            "`passes` sweeps over arrays of n 32-bit elements (n a multiple of 64). read: int32 sum into",
            "the result (wrapping); write: x[i] = value; copy: x[i] = y[i]; triad: x[i] = y[i] + s * z[i];",
            "runs: the read's sum, taken in runs of run_elems elements in the order `order` lists them.",
        ])
        for h in ["stddef.h", "stdint.h"] + v.headers { c.include(h) }
        c.line()
        switch op {
        case .runs:
            c.comment(lines: [
                "order[r] is the r-th run read (run i: elements [i * run_elems, (i + 1) * run_elems) of base);",
                "while a run is read, the run `ahead` places later in the order is prefetched, four lines per",
                "step of 64 elements, so its requests are spread over the time the current run takes.",
            ])
            c.function("int32_t \(name)(const int32_t *base, const int32_t *order, size_t runs, size_t run_elems, size_t ahead, int passes)") { c in
                Self.summedPasses(&c, v) { c in
                    c.forLoop("size_t r = 0", "r < runs", "r++") { c in
                        c.line("const int32_t *x = base + (size_t)order[r] * run_elems;")
                        c.line("const char *next = ahead > 0 && r + ahead < runs ? (const char *)(base + (size_t)order[r + ahead] * run_elems) : NULL;")
                        c.forLoop("size_t i = 0", "i < run_elems", "i += \(v.stride)") { c in
                            c.block("if (next)") { c in
                                c.forLoop("size_t line = 0", "line < 256", "line += 64") { c in
                                    c.line("__builtin_prefetch(next + i * sizeof(int32_t) + line, 0, 3);")
                                }
                            }
                            c.lines(v.sumStep)
                        }
                    }
                }
            }
        case .read:
            c.function("int32_t \(name)(const int32_t *x, size_t n, int passes)") { c in
                Self.summedPasses(&c, v) { c in
                    c.forLoop("size_t i = 0", "i < n", "i += \(v.stride)") { c in c.lines(v.sumStep) }
                }
            }
        case .write:
            c.function("void \(name)(int32_t *x, size_t n, int passes, int32_t value)") { c in
                c.forLoop("int p = 0", "p < passes", "p++") { c in
                    c.lines(v.fillSetup("value + p"))
                    c.forLoop("size_t i = 0", "i < n", "i += \(v.stride)") { c in c.lines(v.fillStep) }
                }
            }
        case .copy:
            c.function("void \(name)(int32_t *x, const int32_t *y, size_t n, int passes)") { c in
                c.forLoop("int p = 0", "p < passes", "p++") { c in
                    c.forLoop("size_t i = 0", "i < n", "i += \(v.stride)") { c in c.lines(v.copyStep) }
                }
            }
        case .triad:
            c.function("void \(name)(float *x, const float *y, const float *z, size_t n, int passes, float s)") { c in
                c.forLoop("int p = 0", "p < passes", "p++") { c in
                    c.lines(v.triadSetup)
                    c.forLoop("size_t i = 0", "i < n", "i += \(v.stride)") { c in c.lines(v.triadStep) }
                }
            }
        }
        return KernelSource(name: name, isa: isa, code: c.description, symbols: ["kernel": name])
    }

    /// The body of a summing kernel (read, runs): `passes` times the dialect's partial sums over what
    /// `sweep` emits, each pass's total added into the wrapping int32 result.
    static func summedPasses(_ c: inout CSource, _ v: BandwidthDialect, sweep: (inout CSource) -> Void) {
        c.declare("uint32_t", "total", "0")
        c.forLoop("int p = 0", "p < passes", "p++") { c in
            c.lines(v.sumSetup)
            sweep(&c)
            c.lines(v.sumFinish)
            c.line("total += part;")
        }
        c.line("return (int32_t)total;")
    }

    public func makeInstance(workload: Workload, config: Configuration, symbols: SymbolTable, seed: UInt64) throws -> KernelInstance {
        try checkShape(workload)
        try check(config, machine: nil)
        try checkSlices(workload, config)
        let op = Operation(rawValue: config.name("op"))!
        return BandwidthInstance(
            op: op, elementsPerThread: Self.elementsPerThread(workload, config), passes: Self.passes(bytes: workload["bytes"], config), threads: config.int("threads"),
            run: config.int("run"), ahead: config.int("ahead"),
            kernel: try symbols.address(of: try render(config).symbols["kernel"]!), seed: seed)
    }
}

/// One STREAM-style array set; each thread works on its own contiguous slice.
final class BandwidthInstance: KernelInstance {
    typealias Read = @convention(c) (UnsafePointer<Int32>?, Int, Int32) -> Int32
    typealias Write = @convention(c) (UnsafeMutablePointer<Int32>?, Int, Int32, Int32) -> Void
    typealias Copy = @convention(c) (UnsafeMutablePointer<Int32>?, UnsafePointer<Int32>?, Int, Int32) -> Void
    typealias Triad = @convention(c) (UnsafeMutablePointer<Float>?, UnsafePointer<Float>?, UnsafePointer<Float>?, Int, Int32, Float) -> Void
    typealias Runs = @convention(c) (UnsafePointer<Int32>?, UnsafePointer<Int32>?, Int, Int, Int, Int32) -> Int32

    let op: PeakBandwidth.Operation
    let threadCount: Int
    let elementsPerThread: Int
    let passes: Int
    let kernel: UnsafeMutableRawPointer
    /// Source arrays (y, z); the destination x lives in the harness's output buffer for write, copy
    /// and triad, and read writes one int32 sum per thread there.
    let y: AlignedBuffer, z: AlignedBuffer, xSource: AlignedBuffer
    /// runs: each thread's order of its runs (a shuffled permutation of 0..<runs per thread, thread
    /// after thread), the run length in elements, and how many runs ahead the kernel prefetches.
    let order: AlignedBuffer
    let runElements: Int, ahead: Int
    /// Runs in each thread's slice (op=runs; 0 otherwise).
    let runsPerThread: Int
    private var output: UnsafeMutableRawPointer?
    let scalar: Float = 3

    init(op: PeakBandwidth.Operation, elementsPerThread: Int, passes: Int, threads: Int, run: Int, ahead: Int, kernel: UnsafeMutableRawPointer, seed: UInt64) {
        self.op = op
        threadCount = threads
        self.elementsPerThread = elementsPerThread
        self.passes = passes
        self.kernel = kernel
        var rng = SeededGenerator(seed: seed)
        let n = elementsPerThread * threads
        // Random values repeating with period `period` (filled by doubling copies, so building and
        // checking hundreds of MiB stays fast even in debug builds). Small integers keep fp32 triad
        // results exact.
        let ints = (0..<Self.period).map { _ in Int32.random(in: -1000...1000, using: &rng) }
        let small = (0..<Self.period).map { _ in Float(Int.random(in: -64...64, using: &rng)) }
        let bits = (0..<Self.period).map { _ in Float(bitPattern: UInt32.random(in: 0...0x3F00_0000, using: &rng)) }
        let reads = op == .read || op == .runs
        xSource = Self.periodic(reads ? ints : [0], count: reads ? n : 1)
        y = Self.periodic(op == .triad ? small : bits, count: op == .copy || op == .triad ? n : 1)
        z = Self.periodic(small, count: op == .triad ? n : 1)
        readPeriod = ints
        runElements = run / 4
        self.ahead = ahead
        let runs = op == .runs ? elementsPerThread / runElements : 0
        runsPerThread = runs
        order = AlignedBuffer(byteCount: max(1, runs * threads) * 4)
        let slots = order.pointer.assumingMemoryBound(to: Int32.self)
        for t in 0..<threads where runs > 0 {
            var shuffled = (0..<runs).map { Int32(t * runs + $0) }
            shuffled.shuffle(using: &rng)
            for (i, r) in shuffled.enumerated() { slots[t * runs + i] = r }
        }
    }

    /// Elements after which the inputs repeat.
    static let period = 16384
    /// The read input's period, for its expected sums.
    let readPeriod: [Int32]

    /// `count` elements repeating `pattern`.
    static func periodic<T>(_ pattern: [T], count: Int) -> AlignedBuffer {
        let stride = MemoryLayout<T>.stride
        let buffer = AlignedBuffer(byteCount: count * stride)
        let first = min(count, pattern.count)
        pattern.withUnsafeBytes { buffer.pointer.copyMemory(from: $0.baseAddress!, byteCount: first * stride) }
        var filled = first
        while filled < count {
            let chunk = min(filled, count - filled)
            (buffer.pointer + filled * stride).copyMemory(from: buffer.pointer, byteCount: chunk * stride)
            filled += chunk
        }
        return buffer
    }

    /// The wrapping int32 sum of elements [start, start + count) of the periodic read input.
    func readSum(from start: Int, count: Int) -> UInt32 {
        let p = readPeriod.count
        var periodSum: UInt32 = 0
        for v in readPeriod { periodSum &+= UInt32(bitPattern: v) }
        var s = periodSum &* UInt32(truncatingIfNeeded: count / p)
        for i in 0..<(count % p) { s &+= UInt32(bitPattern: readPeriod[(start + i) % p]) }
        return s
    }

    var outputBytes: Int { op == .read || op == .runs ? threadCount * 64 : elementsPerThread * threadCount * 4 }
    var workspaceBytesPerThread: Int { 0 }
    var workingSetBytes: Int { elementsPerThread * threadCount * 4 * op.arrays }
    var dataRegions: [UnsafeRawBufferPointer] { [xSource, y, z, order].map(\.region) }

    func prepare() throws {}
    func bind(output: UnsafeMutableRawPointer, workspaces: [UnsafeMutableRawPointer]) { self.output = output }

    func run(thread index: Int) {
        let n = elementsPerThread, offset = index * n
        switch op {
        case .read:
            let sum = unsafeBitCast(kernel, to: Read.self)(xSource.pointer.assumingMemoryBound(to: Int32.self) + offset, n, Int32(passes))
            output!.storeBytes(of: sum, toByteOffset: index * 64, as: Int32.self)
        case .runs:
            // The order holds run numbers of the whole array; each thread's are its own slice's.
            let runs = runsPerThread
            let sum = unsafeBitCast(kernel, to: Runs.self)(
                xSource.pointer.assumingMemoryBound(to: Int32.self), order.pointer.assumingMemoryBound(to: Int32.self) + index * runs,
                runs, runElements, ahead, Int32(passes))
            output!.storeBytes(of: sum, toByteOffset: index * 64, as: Int32.self)
        case .write:
            unsafeBitCast(kernel, to: Write.self)(output!.assumingMemoryBound(to: Int32.self) + offset, n, Int32(passes), 7)
        case .copy:
            unsafeBitCast(kernel, to: Copy.self)(
                output!.assumingMemoryBound(to: Int32.self) + offset, y.pointer.assumingMemoryBound(to: Int32.self) + offset, n, Int32(passes))
        case .triad:
            unsafeBitCast(kernel, to: Triad.self)(
                output!.assumingMemoryBound(to: Float.self) + offset, y.pointer.assumingMemoryBound(to: Float.self) + offset,
                z.pointer.assumingMemoryBound(to: Float.self) + offset, n, Int32(passes), scalar)
        }
    }

    func verify() -> Verification {
        let n = elementsPerThread * threadCount
        var mismatches = 0
        var first: String?
        func check(_ i: Int, _ ok: Bool, _ text: @autoclosure () -> String) {
            if !ok {
                mismatches += 1
                if first == nil { first = text() }
            }
        }
        // Every element for small arrays; for large ones the first and last 64 Ki elements and one in
        // every 61 in between (every element goes through the same loop, so a wrong loop shows).
        let sampled: [Int] = n <= 1 << 18 ? Array(0..<n) : Array(0..<65536) + Array(stride(from: 65536, to: n - 65536, by: 61)) + Array(n - 65536..<n)
        switch op {
        case .read, .runs:
            for t in 0..<threadCount {
                let s = readSum(from: t * elementsPerThread, count: elementsPerThread)
                let expected = Int32(bitPattern: s &* UInt32(passes))
                let got = output!.load(fromByteOffset: t * 64, as: Int32.self)
                check(t, got == expected, "thread \(t) sum \(got), expected \(expected)")
            }
            return Verification(passed: mismatches == 0, checked: threadCount, mismatches: mismatches, maxAbsError: 0, maxRelError: 0, tolerance: "exact", firstMismatch: first)
        case .write:
            let x = output!.assumingMemoryBound(to: Int32.self)
            for i in sampled { check(i, x[i] == 7 + Int32(passes - 1), "x[\(i)] = \(x[i])") }
        case .copy:
            let x = output!.assumingMemoryBound(to: Int32.self), src = y.pointer.assumingMemoryBound(to: Int32.self)
            for i in sampled { check(i, x[i] == src[i], "x[\(i)] = \(x[i]), expected \(src[i])") }
        case .triad:
            let x = output!.assumingMemoryBound(to: Float.self)
            let b = y.pointer.assumingMemoryBound(to: Float.self), cz = z.pointer.assumingMemoryBound(to: Float.self)
            for i in sampled { check(i, x[i] == b[i] + scalar * cz[i], "x[\(i)] = \(x[i])") }
        }
        return Verification(
            passed: mismatches == 0, checked: sampled.count, mismatches: mismatches, maxAbsError: 0, maxRelError: 0,
            tolerance: n == sampled.count ? "exact" : "exact, \(sampled.count) of \(n) elements sampled", firstMismatch: first)
    }
}
