import CCPUFeatures
import Machine

/// How fast each core runs right now, measured: a chain of dependent one-cycle integer adds, timed on
/// each PU in turn. In GHz when one add takes one cycle (x86-64 and aarch64 cores do), so it shows the
/// clock a thread actually gets: turbo, power limits, and on a virtual machine the share of the core
/// the hypervisor leaves it. Benchmarks print it at their start and end, because a machine that
/// slows down (or speeds up) during a run moves every absolute number while ratios measured side by
/// side stay comparable.
///
/// Beside the clock, each PU's vector throughput: independent integer multiply-add chains
/// (`VectorProbe`). A core whose other hardware thread runs vector code (a co-tenant's, on a VM) keeps
/// its clock and loses vector throughput: on the Zen 3 VM this project tunes on, the chains' rate moved
/// by a quarter from one minute to the next while the clock moved 3%.
public struct CoreSpeed: Codable, Sendable, Equatable {
    /// OS indices of the PUs measured, in order.
    public var pus: [Int]
    /// Dependent adds per nanosecond on each PU: the median of `runs` timed chains.
    public var ghz: [Double]
    /// Whether the calling thread could be bound to every PU; when not, the chains ran wherever the OS
    /// put the thread.
    public var bound: Bool
    /// Vector multiply-add throughput on each PU in GOP/s (`VectorProbe`), nil where there is no probe
    /// for this architecture (and in reports stored before it existed).
    public var vectorGops: [Double]?
    /// The instruction the vector chains ran, e.g. "vpmaddubsw 256-bit".
    public var vectorProbe: String?

    public init(pus: [Int], ghz: [Double], bound: Bool, vectorGops: [Double]? = nil, vectorProbe: String? = nil) {
        self.pus = pus
        self.ghz = ghz
        self.bound = bound
        self.vectorGops = vectorGops
        self.vectorProbe = vectorProbe
    }

    /// Adds per timed chain: about 3 ms at 3 GHz.
    static let roundsPerRun: UInt64 = 1_000_000

    /// Measures `pus` one after the other on the calling thread (bound to each in turn, then given its
    /// binding back), `runs` chains each.
    public static func measure(pus: [Int], topology: HwlocTopology, runs: Int = 5) -> CoreSpeed {
        let probe = VectorProbe.host
        var speeds: [Double] = []
        var vector: [Double] = []
        let bound = onEach(pus, topology: topology) {
            speeds.append(chainSpeed(runs: runs))
            if let probe { vector.append(probe.gops(runs: runs)) }
        }
        return CoreSpeed(pus: pus, ghz: speeds, bound: bound, vectorGops: probe == nil ? nil : vector, vectorProbe: probe?.instruction)
    }

    /// Runs `body` on the calling thread bound to each of `pus` in turn, then gives the thread its
    /// binding back. Returns whether every binding held.
    public static func onEach(_ pus: [Int], topology: HwlocTopology, _ body: () -> Void) -> Bool {
        let before = topology.currentThreadBinding()
        var bound = true
        for pu in pus {
            let outcome = try? topology.bindCurrentThread(to: [pu])
            if outcome?.status != .honoured { bound = false }
            body()
        }
        let restored = before.map { (try? topology.bindCurrentThread(to: $0)) != nil } ?? false
        if !restored { topology.unbindCurrentThread() }
        return bound
    }

    /// The median over `runs` chains of dependent adds per nanosecond, on the calling thread.
    public static func chainSpeed(runs: Int = 5) -> Double {
        var x: UInt64 = 0
        let rates = Stopwatch.rates(runs: runs) {
            x = lowbit_dependent_adds(x, roundsPerRun)
            return Double(8 * roundsPerRun)
        }
        precondition(x == 8 * roundsPerRun * UInt64(max(1, runs)), "the dependent-add chain returned \(x)")
        return rates[rates.count / 2]
    }

    /// "PU 0 2.79, PU 1 2.80 GHz", with "(unbound)" when the thread could not be bound.
    public var summary: String {
        zip(pus, ghz).map { "PU \($0) \(String(format: "%.2f", $1))" }.joined(separator: ", ") + " GHz" + (bound ? "" : " (unbound)")
    }

    /// "PU 0 409, PU 1 408 GOP/s", nil without a vector probe.
    public var vectorSummary: String? {
        vectorGops.map { v in zip(pus, v).map { "PU \($0) \(String(format: "%.0f", $1))" }.joined(separator: ", ") + " GOP/s" }
    }

    /// Lines comparing a run's start and end: the clock and, where measured, the vector throughput,
    /// each with a warning when its mean moved by more than 10% (absolute numbers drifted during the run).
    public static func report(start: CoreSpeed, end: CoreSpeed) -> String {
        var line = "core speed (dependent integer adds, GHz at one add per cycle): start \(start.summary); end \(end.summary)"
        line += drift(start.ghz, end.ghz, what: "the machine")
        if let a = start.vectorSummary, let b = end.vectorSummary, let sv = start.vectorGops, let ev = end.vectorGops {
            line += "\nvector speed (independent \(start.vectorProbe ?? "multiply-add") chains): start \(a); end \(b)"
            line += drift(sv, ev, what: "the vector units' share of the cores")
        }
        return line
    }

    /// " (+12%: ... )" when the mean of `end` differs from that of `start` by more than 10%, else "".
    static func drift(_ start: [Double], _ end: [Double], what: String) -> String {
        let a = start.reduce(0, +) / Double(max(1, start.count))
        let b = end.reduce(0, +) / Double(max(1, end.count))
        guard a > 0, abs(b / a - 1) > 0.1 else { return "" }
        return String(format: " (%+.0f%%: %@ %@ during the run; compare numbers measured side by side, not across runs)",
                      (b / a - 1) * 100, what, b < a ? "slowed down" : "sped up")
    }
}

/// Vector throughput as a thread gets it now: `lowbit_vector_madds`, independent multiply-add chains
/// in inline assembly, timed. In GOP/s (two operations per product).
public struct VectorProbe: Sendable {
    /// Whether the x86 loop runs on 256-bit registers (AVX2).
    public let wide: Bool
    public let instruction: String

    /// The probe for the machine this process runs on (AVX2 unless `LOWBIT_HIDE_ISA` hides it), nil on
    /// an architecture without one.
    public static var host: VectorProbe? {
        let isa = (try? ISAFeatures.detect()) ?? ISAFeatures.probe()
        switch isa.architecture {
        case .x86_64: return isa.has(.avx2) ? VectorProbe(wide: true, instruction: "vpmaddubsw 256-bit") : VectorProbe(wide: false, instruction: "pmaddwd 128-bit")
        case .aarch64: return VectorProbe(wide: false, instruction: "mla 16 x 8-bit")
        case .other: return nil
        }
    }

    /// Rounds per timed run: 12 to 16 instructions each, about 0.4 ms on the wide x86 loop at 3 GHz.
    static let roundsPerRun: UInt64 = 200_000

    /// The median over `runs` timed loops on the calling thread, in GOP/s.
    public func gops(runs: Int = 5) -> Double {
        let rates = Stopwatch.rates(runs: runs) { Double(lowbit_vector_madds(Self.roundsPerRun, wide ? 1 : 0)) }
        return rates[rates.count / 2]
    }
}
