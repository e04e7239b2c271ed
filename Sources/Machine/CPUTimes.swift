import Foundation

/// The time Linux accounts to a set of CPUs, from /proc/stat (clock ticks since boot), for the one
/// figure a benchmark on a virtual machine cannot measure itself: steal, the time the hypervisor ran
/// something else on the physical cores behind these virtual ones while they had work.
public struct CPUTimes: Sendable, Equatable {
    /// The OS indices of the CPUs summed, or nil for the machine's total line.
    public var cpus: [Int]?
    /// Every accounted tick (user, nice, system, idle, iowait, irq, softirq, steal).
    public var total: UInt64
    public var steal: UInt64

    public init(cpus: [Int]?, total: UInt64, steal: UInt64) {
        self.cpus = cpus
        self.total = total
        self.steal = steal
    }

    /// Now, for `cpus` (OS indices, as hwloc's PUs have them) or the whole machine; nil where
    /// /proc/stat cannot be read or lacks a CPU asked for.
    public static func now(cpus: [Int]? = nil) -> CPUTimes? {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8) else { return nil }
        return parse(text, cpus: cpus)
    }

    /// The sums of /proc/stat's `cpuN` lines for `cpus` (or its `cpu` line when nil). Fields after the
    /// eighth (guest time, already inside user) are left out; a kernel that prints fewer than eight
    /// has no steal field, and gives nil.
    public static func parse(_ stat: String, cpus: [Int]?) -> CPUTimes? {
        var lines: [String: [UInt64]] = [:]
        for line in stat.split(separator: "\n") where line.hasPrefix("cpu") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            let values = fields.dropFirst().prefix(8).compactMap { UInt64($0) }
            guard values.count == 8 else { continue }
            lines[String(fields[0])] = values
        }
        let names = cpus.map { $0.map { "cpu\($0)" } } ?? ["cpu"]
        var total: UInt64 = 0
        var steal: UInt64 = 0
        for name in names {
            guard let values = lines[name] else { return nil }
            total += values.reduce(0, +)
            steal += values[7]
        }
        return CPUTimes(cpus: cpus, total: total, steal: steal)
    }

    /// Steal as a fraction of the ticks accounted to these CPUs since `start`; nil when none were.
    public func stealFraction(since start: CPUTimes) -> Double? {
        guard total > start.total, steal >= start.steal else { return nil }
        return Double(steal - start.steal) / Double(total - start.total)
    }

    /// The line for the steal between two readings (`report(stealFraction:cpus:)`); nil when either is
    /// missing or no tick passed.
    public static func report(start: CPUTimes?, end: CPUTimes?) -> String? {
        guard let start, let end, let fraction = end.stealFraction(since: start) else { return nil }
        return report(stealFraction: fraction, cpus: end.cpus)
    }

    /// "steal time (/proc/stat, CPUs 0, 1): 0.1% of their time during the run", with a warning above 2%.
    public static func report(stealFraction fraction: Double, cpus: [Int]?) -> String {
        let which = cpus.map { "CPUs " + $0.map(String.init).joined(separator: ", ") } ?? "all CPUs"
        var line = String(format: "steal time (/proc/stat, %@): %.1f%% of their time during the run", which, fraction * 100)
        if fraction > 0.02 {
            line += " (the hypervisor ran other work on the cores behind them: the times measured here include it)"
        }
        return line
    }
}
