import CCPUFeatures
import Machine

/// How fast each core runs right now, measured: a chain of dependent one-cycle integer adds, timed on
/// each PU in turn. In GHz when one add takes one cycle (x86-64 and aarch64 cores do), so it shows the
/// clock a thread actually gets: turbo, power limits, and on a virtual machine the share of the core
/// the hypervisor leaves it. Benchmarks print it at their start and end, because a machine that
/// slows down (or speeds up) during a run moves every absolute number while ratios measured side by
/// side stay comparable.
public struct CoreSpeed: Codable, Sendable, Equatable {
    /// OS indices of the PUs measured, in order.
    public var pus: [Int]
    /// Dependent adds per nanosecond on each PU: the median of `runs` timed chains.
    public var ghz: [Double]
    /// Whether the calling thread could be bound to every PU; when not, the chains ran wherever the OS
    /// put the thread.
    public var bound: Bool

    public init(pus: [Int], ghz: [Double], bound: Bool) {
        self.pus = pus
        self.ghz = ghz
        self.bound = bound
    }

    /// Adds per timed chain: about 3 ms at 3 GHz.
    static let roundsPerRun: UInt64 = 1_000_000

    /// Measures `pus` one after the other on the calling thread (bound to each in turn, then given its
    /// binding back), `runs` chains each.
    public static func measure(pus: [Int], topology: HwlocTopology, runs: Int = 5) -> CoreSpeed {
        let before = topology.currentThreadBinding()
        var bound = true
        var speeds: [Double] = []
        for pu in pus {
            let outcome = try? topology.bindCurrentThread(to: [pu])
            if outcome?.status != .honoured { bound = false }
            speeds.append(chainSpeed(runs: runs))
        }
        let restored = before.map { (try? topology.bindCurrentThread(to: $0)) != nil } ?? false
        if !restored { topology.unbindCurrentThread() }
        return CoreSpeed(pus: pus, ghz: speeds, bound: bound)
    }

    /// The median over `runs` chains of dependent adds per nanosecond, on the calling thread.
    public static func chainSpeed(runs: Int = 5) -> Double {
        var rates: [Double] = []
        var x: UInt64 = 0
        for _ in 0..<max(1, runs) {
            let t0 = Stopwatch.nanoseconds()
            x = lowbit_dependent_adds(x, roundsPerRun)
            let t1 = Stopwatch.nanoseconds()
            rates.append(Double(8 * roundsPerRun) / Double(max(1, t1 &- t0)))
        }
        precondition(x == 8 * roundsPerRun * UInt64(max(1, runs)), "the dependent-add chain returned \(x)")
        rates.sort()
        return rates[rates.count / 2]
    }

    /// "PU 0 2.79, PU 1 2.80 GHz", with "(unbound)" when the thread could not be bound.
    public var summary: String {
        zip(pus, ghz).map { "PU \($0) \(String(format: "%.2f", $1))" }.joined(separator: ", ") + " GHz" + (bound ? "" : " (unbound)")
    }

    /// One line comparing a run's start and end: both measurements and, when the mean moved by more
    /// than 10%, a warning that absolute numbers drifted during the run.
    public static func report(start: CoreSpeed, end: CoreSpeed) -> String {
        let a = start.ghz.reduce(0, +) / Double(max(1, start.ghz.count))
        let b = end.ghz.reduce(0, +) / Double(max(1, end.ghz.count))
        var line = "core speed (dependent integer adds, GHz at one add per cycle): start \(start.summary); end \(end.summary)"
        if a > 0, abs(b / a - 1) > 0.1 {
            line += String(format: " (%+.0f%%: the machine %@ during the run; compare numbers measured side by side, not across runs)",
                           (b / a - 1) * 100, b < a ? "slowed down" : "sped up")
        }
        return line
    }
}
