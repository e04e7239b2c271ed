import Foundation
import Machine
import Measure

/// `lowbit machine` as text a person reads.
struct MachineReport {
    let machine: MachineDescription

    init(_ machine: MachineDescription) { self.machine = machine }

    var text: String {
        let t = machine.topology
        var out: [String] = []
        out.append("lowbit machine report")
        out.append("")
        out.append("CPU          \(machine.cpu.name) (\(machine.cpu.vendor), family \(machine.cpu.family) model \(machine.cpu.model) stepping \(machine.cpu.stepping)), \(machine.isa.architecture.rawValue)")
        let perCore = t.cores.isEmpty ? 0 : t.pus.count / t.cores.count
        out.append("Topology     \(Format.count(t.packages.count, "package")), \(Format.count(t.numaNodes.count, "NUMA node")), \(Format.count(t.cores.count, "core")), \(Format.count(t.pus.count, "PU")) (\(perCore) per core); hwloc API \(t.hwlocAPIVersion)")
        for node in t.numaNodes {
            out.append("NUMA node \(node.index)  \(Format.bytes(node.memoryBytes)), PUs \(Format.puList(node.pus))")
        }
        out.append("")
        out.append("Caches")
        var caches = Table(["level", "size", "line", "ways", "instances", "shared by"], alignments: [.left, .right, .right, .right, .right, .left])
        for level in t.cacheLevels {
            let instances = t.caches.filter { $0.level == level.level && $0.kind == level.kind }
            let sharing = level.pusPerInstance <= 1
                ? "private per PU"
                : instances.map { "PUs \(Format.puList($0.pus))" }.joined(separator: " | ")
            let ways = level.associativity == -1 ? "full" : (level.associativity == 0 ? "?" : "\(level.associativity)")
            caches.add([level.name, Format.bytes(level.sizeBytes), "\(level.lineSize) B", ways, "\(level.instances)", sharing])
        }
        out.append(caches.render())
        out.append("")
        let present = machine.isa.usable.sorted().map(\.rawValue)
        out.append("ISA          \(machine.isa.architecture.rawValue): \(present.isEmpty ? "none detected" : present.joined(separator: " "))")
        let absent = machine.isa.absent.map(\.rawValue)
        if !absent.isEmpty { out.append("  absent     \(absent.joined(separator: " "))") }
        if !machine.isa.disabledByOS.isEmpty {
            out.append("  CPU has, OS disabled  \(machine.isa.disabledByOS.sorted().map(\.rawValue).joined(separator: " "))")
        }
        if !machine.isa.hiddenByUser.isEmpty {
            out.append("  hidden by \(ISAFeatures.hideVariable)  \(machine.isa.hiddenByUser.sorted().map(\.rawValue).joined(separator: " ")) (lowbit runs as on a machine without them)")
        }
        out.append("")
        out.append("Binding      \(bindingLine)")
        out.append("Counters     \(countersLine)")
        out.append("")
        out.append("Fingerprint  \(machine.fingerprint.id)")
        return out.joined(separator: "\n")
    }

    private var bindingLine: String {
        let s = machine.bindingSupport
        var parts = ["thread binding \(s.setThread ? "supported" : "not supported")"]
        if let trial = machine.bindingTrial {
            switch trial.status {
            case .honoured:
                parts.append("bound a thread to PU \(Format.puList(trial.requested)): honoured (read back \(Format.puList(trial.readBack ?? [])), running on \(trial.runningOn.map(Format.puList) ?? "?"))")
            case .notReflected:
                parts.append("bound a thread to PU \(Format.puList(trial.requested)): call succeeded but read back \(trial.readBack.map(Format.puList) ?? "nothing")")
            case .refused(let why):
                parts.append("bound a thread to PU \(Format.puList(trial.requested)): refused (\(why.rawValue): \(trial.message ?? "errno \(trial.errno)"))")
            }
        }
        return parts.joined(separator: "; ")
    }

    private var countersLine: String {
        let c = machine.counters
        let papi = c.papi.initialized
            ? "PAPI \(c.papi.version ?? "?") (\(c.papi.componentName ?? "no component"), \(c.papi.hardwareCounters) counters claimed)"
            : "PAPI unavailable (\(c.papi.problem ?? "unknown reason"))"
        return "\(papi)\n             \(c.summary)"
    }

    /// The latency curve as a table, each size beside the smallest reported cache that holds it, and a
    /// line on the last-level cache: whether half of it reads as a cache or as memory.
    static func latencyText(_ curve: LatencyCurve, topology: Topology) -> String {
        let levels = topology.cacheLevels.filter { $0.kind != .instruction }.sorted { $0.level < $1.level }
        var out = [String(format: "Load latency (one thread on PU %@, a pointer chase through one random cycle of 64-byte lines, best of 3 runs; cycles at the measured %.2f GHz)",
                          topology.pus.first.map(String.init) ?? "?", curve.ghz)]
        var table = Table(["working set", "ns", "cycles", "fits in (reported)"], alignments: [.right, .right, .right, .left])
        for p in curve.points {
            let level = levels.first { $0.sizeBytes >= UInt64(p.bytes) }?.name ?? "memory"
            table.add([Format.bytes(UInt64(p.bytes)), String(format: "%.1f", p.nanoseconds), String(format: "%.0f", p.nanoseconds * curve.ghz), level])
        }
        out.append(table.render())
        // The last level against its own hit latency: the latency of the smallest working set past the
        // level below it (memory's latency includes TLB misses that the cache's does not, so it is no
        // yardstick).
        guard let llc = levels.last, levels.count >= 2, llc.level > levels[levels.count - 2].level else { return out.joined(separator: "\n") }
        let below = levels[levels.count - 2]
        guard let first = curve.points.first(where: { $0.bytes > Int(below.sizeBytes) }),
              let half = curve.nanoseconds(atMost: Int(llc.sizeBytes) / 2), first.bytes <= Int(llc.sizeBytes) / 2 else {
            return out.joined(separator: "\n")
        }
        let held = curve.points.filter { $0.bytes >= first.bytes && $0.bytes <= Int(llc.sizeBytes) && $0.nanoseconds <= 2 * first.nanoseconds }.map(\.bytes).max()
        let heldText = held.map { "working sets up to \(Format.bytes(UInt64($0))) stayed within twice that" } ?? "none stayed within twice that"
        let ratio = half / first.nanoseconds
        if ratio > 3 {
            out.append(String(format: "%@ (%@ reported): half of it read %.0f ns, %.1fx the %.1f ns of a working set just past %@ (%@); %@. This thread gets much less "
                + "of the %@ than the CPU reports (other guests' or processes' data, or a partitioned cache): block for the cache you measure, and on a shared machine "
                + "expect it to change from minute to minute (`memory speed` lines of bench and serve-bench).",
                llc.name, Format.bytes(llc.sizeBytes), half, ratio, first.nanoseconds, below.name, Format.bytes(UInt64(first.bytes)), heldText, llc.name))
        } else {
            out.append(String(format: "%@ (%@ reported): half of it read %.0f ns, %.1fx the %.1f ns of a working set just past %@ (%@): it holds working sets of that size.",
                llc.name, Format.bytes(llc.sizeBytes), half, ratio, first.nanoseconds, below.name, Format.bytes(UInt64(first.bytes))))
        }
        return out.joined(separator: "\n")
    }
}

/// `lowbit counters` tables.
enum CountersReport {
    static func probeTable(_ availability: CounterAvailability) -> String {
        let papi = availability.papi
        var out: [String] = []
        if papi.initialized {
            out.append("PAPI \(papi.version ?? "?"): component \(papi.componentName ?? "?"), \(papi.hardwareCounters) hardware counters claimed, \(papi.multiplexCounters) with multiplexing")
        } else {
            out.append("PAPI unavailable: \(papi.problem ?? "unknown reason")")
        }
        if let problem = papi.problem, papi.initialized { out.append("note: \(problem)") }
        out.append("")
        var table = Table(["event", "kind", "status", "counted by", "why not (PAPI)"])
        for probe in availability.probes {
            let status: String
            let by: String
            if let name = probe.papiName {
                status = "available"
                by = "papi:\(name)"
            } else if let os = probe.osFallback {
                status = "available (OS)"
                by = os
            } else {
                status = "unavailable"
                by = "-"
            }
            let tried = probe.attempts.compactMap { a in a.error.map { "\(a.papiName): \($0)" } }
            table.add([probe.event.name, probe.event.kind.rawValue, status, by, tried.isEmpty ? "" : tried.joined(separator: "; ")])
        }
        out.append(table.render())
        out.append("")
        out.append(availability.summary)
        return out.joined(separator: "\n")
    }

    static func sampleTable<R>(_ m: CounterMeasurement<R>, multiplexed: Bool) -> String {
        var out = ["Sample: 20M xorshift steps on this thread\(multiplexed ? " (multiplexed)" : ""), wall \(String(format: "%.2f", Double(m.wallNanoseconds) / 1e6)) ms"]
        var table = Table(["event", "value", "status", "source"], alignments: [.left, .right, .left, .left])
        for v in m.values {
            let status: String
            switch v.status {
            case .counted: status = "counted"
            case .estimated(let why): status = "estimated (\(why))"
            case .unavailable(let why): status = "unavailable: \(shortReason(why))"
            }
            table.add([v.event, v.value.map(String.init) ?? "-", status, v.source ?? "-"])
        }
        out.append(table.render())
        return out.joined(separator: "\n")
    }

    /// "PAPI: PAPI_add_event(X) failed: Event does not exist (code -7)" -> "Event does not exist".
    private static func shortReason(_ text: String) -> String {
        guard let range = text.range(of: "failed: ") else { return text }
        var rest = String(text[range.upperBound...])
        if let paren = rest.range(of: " (code", options: .backwards) { rest = String(rest[..<paren.lowerBound]) }
        return rest
    }
}
