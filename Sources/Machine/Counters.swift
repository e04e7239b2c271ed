import Foundation

/// A performance event lowbit wants, with the PAPI names that can count it, in order of preference.
public struct CounterEvent: Codable, Sendable, Hashable {
    public enum Kind: String, Codable, Sendable { case hardware, software }

    public var name: String
    public var kind: Kind
    public var papiNames: [String]
    public var summary: String

    /// The events lowbit tries, hardware first. Software events also have an OS fallback.
    public static let preferred: [CounterEvent] = [
        .init(name: "cycles", kind: .hardware, papiNames: ["PAPI_TOT_CYC", "perf::CYCLES"], summary: "core cycles"),
        .init(name: "instructions", kind: .hardware, papiNames: ["PAPI_TOT_INS", "perf::INSTRUCTIONS"], summary: "instructions retired"),
        .init(name: "l1d-misses", kind: .hardware, papiNames: ["PAPI_L1_DCM", "perf::L1-DCACHE-LOAD-MISSES"], summary: "L1 data cache misses"),
        .init(name: "l2-misses", kind: .hardware, papiNames: ["PAPI_L2_DCM", "PAPI_L2_TCM"], summary: "L2 cache misses"),
        .init(name: "llc-misses", kind: .hardware, papiNames: ["PAPI_L3_TCM", "perf::LLC-LOAD-MISSES", "perf::CACHE-MISSES"], summary: "last-level cache misses"),
        .init(name: "branch-misses", kind: .hardware, papiNames: ["PAPI_BR_MSP", "perf::BRANCH-MISSES"], summary: "mispredicted branches"),
        .init(name: "vector-instructions", kind: .hardware, papiNames: ["PAPI_VEC_INS", "PAPI_VEC_SP", "PAPI_VEC_DP"], summary: "vector/SIMD instructions"),
        .init(name: "task-clock", kind: .software, papiNames: ["perf::TASK-CLOCK"], summary: "CPU time of the thread (ns)"),
        .init(name: "page-faults", kind: .software, papiNames: ["perf::PAGE-FAULTS"], summary: "page faults"),
        .init(name: "context-switches", kind: .software, papiNames: ["perf::CONTEXT-SWITCHES"], summary: "context switches"),
        .init(name: "cpu-migrations", kind: .software, papiNames: ["perf::CPU-MIGRATIONS"], summary: "moves to another CPU"),
    ]

    public static func named(_ name: String) -> CounterEvent? { preferred.first { $0.name == name } }
}

/// What probing one event found: the PAPI name that worked, or every attempt and why it failed.
public struct EventProbe: Codable, Sendable, Equatable {
    public struct Attempt: Codable, Sendable, Equatable {
        public var papiName: String
        /// The library's message when the attempt failed (e.g. "Event does not exist"), nil on success.
        public var error: String?
        /// The call that failed (e.g. "PAPI_add_event").
        public var failedCall: String?

        init(papiName: String, error: String? = nil, failedCall: String? = nil) {
            self.papiName = papiName
            self.error = error
            self.failedCall = failedCall
        }
    }

    public var event: CounterEvent
    public var attempts: [Attempt]
    /// The PAPI name that could be added, started and stopped, if any.
    public var papiName: String? { attempts.first { $0.error == nil }?.papiName }
    /// The OS can count this event without PAPI (software events through clock_gettime/getrusage).
    public var osFallback: String? { OSCounters.source(for: event.name) }

    public var available: Bool { papiName != nil || osFallback != nil }

    /// Why the event cannot be counted through PAPI: the last attempt's error.
    public var reason: String? { papiName == nil ? attempts.last?.error ?? "no PAPI name to try" : nil }
}

/// The machine's counter availability: PAPI's status and a probe of every preferred event.
public struct CounterAvailability: Codable, Sendable, Equatable {
    public var papi: PAPI.Status
    public var probes: [EventProbe]

    public var hardwareAvailable: [String] { probes.filter { $0.event.kind == .hardware && $0.papiName != nil }.map(\.event.name) }
    public var softwareAvailable: [String] { probes.filter { $0.event.kind == .software && $0.available }.map(\.event.name) }
    public var hasHardwareCounters: Bool { !hardwareAvailable.isEmpty }

    /// A sentence for reports: what will be counted and what is the fallback.
    public var summary: String {
        let hw = hardwareAvailable
        let sw = softwareAvailable
        let hwPart = hw.isEmpty
            ? "hardware counters unavailable (\(commonHardwareReason ?? "no event could be added"))"
            : "hardware events: \(hw.joined(separator: ", "))"
        let swPart = sw.isEmpty ? "no software events" : "software events: \(sw.joined(separator: ", "))"
        let fallback = hw.isEmpty ? "; timing falls back to software events and wall-clock time" : ""
        return "\(hwPart); \(swPart)\(fallback)"
    }

    private var commonHardwareReason: String? {
        if !papi.initialized { return papi.problem }
        let reasons = Set(probes.filter { $0.event.kind == .hardware }.compactMap(\.reason))
        return reasons.count == 1 ? "PAPI: \(reasons.first!)" : "PAPI: \(reasons.sorted().joined(separator: "; "))"
    }

    /// Probes every preferred event by adding it to a fresh event set and starting and stopping it.
    public static func probe(events: [CounterEvent] = CounterEvent.preferred) -> CounterAvailability {
        let papi = PAPI.status
        let probes = events.map { event -> EventProbe in
            guard papi.initialized else {
                return EventProbe(event: event, attempts: event.papiNames.map {
                    .init(papiName: $0, error: "PAPI unavailable: \(papi.problem ?? "not initialized")")
                })
            }
            var attempts: [EventProbe.Attempt] = []
            for name in event.papiNames {
                do {
                    let set = try PAPIEventSet(multiplexed: false)
                    try set.add(try PAPI.code(for: name), name: name)
                    try set.start()
                    _ = try set.stop()
                    attempts.append(.init(papiName: name))
                    break
                } catch let MachineError.papi(call, _, message) {
                    attempts.append(.init(papiName: name, error: message, failedCall: call))
                } catch {
                    attempts.append(.init(papiName: name, error: "\(error)"))
                }
            }
            return EventProbe(event: event, attempts: attempts)
        }
        return CounterAvailability(papi: papi, probes: probes)
    }
}

/// One counted value and how far to trust it.
public struct CounterValue: Codable, Sendable, Equatable {
    public enum Status: Codable, Sendable, Equatable {
        /// Counted for the whole region.
        case counted
        /// Scaled from a multiplexed count: an estimate.
        case estimated(String)
        /// Not counted, with the reason.
        case unavailable(String)
    }

    public var event: String
    public var value: Int64?
    public var status: Status
    /// Where the value came from: "papi:<event name>" or "os:<call>".
    public var source: String?

    public init(event: String, value: Int64?, status: Status, source: String?) {
        self.event = event
        self.value = value
        self.status = status
        self.source = source
    }
}

/// The result of measuring a closure.
public struct CounterMeasurement<Result> {
    public var result: Result
    public var wallNanoseconds: UInt64
    public var values: [CounterValue]

    public func value(_ event: String) -> CounterValue? { values.first { $0.event == event } }
}

extension CounterMeasurement: Sendable where Result: Sendable {}

/// Measures closures with the events that this machine can count, built from a probe.
///
/// PAPI events that fit together go into one event set. Events that do not fit are reported unavailable
/// unless multiplexing is requested, in which case all go into one multiplexed set and every PAPI value
/// is marked as an estimate. Software events PAPI cannot count come from the OS. Not `Sendable`: PAPI
/// event sets belong to the thread that made them, so make one counter per measuring thread.
public final class Counters {
    public let availability: CounterAvailability
    public let multiplexed: Bool
    private var eventSet: PAPIEventSet?
    private var papiEvents: [(event: String, papiName: String)] = []
    private var unavailable: [String: String] = [:]
    private var osEvents: [String] = []
    private let requested: [CounterEvent]

    /// - Parameters:
    ///   - events: logical event names (defaults to every preferred event).
    ///   - multiplex: put all PAPI events in one multiplexed set (values become estimates).
    public init(events: [String]? = nil, multiplex: Bool = false, availability: CounterAvailability? = nil) throws {
        let names = events ?? CounterEvent.preferred.map(\.name)
        requested = try names.map { name in
            guard let event = CounterEvent.named(name) else {
                throw MachineError.invalidRequest(
                    "unknown counter event '\(name)'; valid events: \(CounterEvent.preferred.map(\.name).joined(separator: ", "))")
            }
            return event
        }
        self.availability = availability ?? CounterAvailability.probe(events: requested)
        self.multiplexed = multiplex
        buildPlan()
    }

    private func buildPlan() {
        let probes = Dictionary(availability.probes.map { ($0.event.name, $0) }, uniquingKeysWith: { a, _ in a })
        var candidates: [(String, String)] = []
        for event in requested {
            guard let probe = probes[event.name] else {
                unavailable[event.name] = "not probed"
                continue
            }
            if let papiName = probe.papiName {
                candidates.append((event.name, papiName))
            } else if probe.osFallback != nil {
                osEvents.append(event.name)
            } else {
                unavailable[event.name] = probe.reason ?? "unavailable"
            }
        }
        guard !candidates.isEmpty, let set = try? PAPIEventSet(multiplexed: multiplexed) else {
            for (event, _) in candidates { fallbackOrUnavailable(event, "PAPI could not create an event set") }
            return
        }
        for (event, papiName) in candidates {
            do {
                try set.add(try PAPI.code(for: papiName), name: papiName)
                papiEvents.append((event, papiName))
            } catch {
                fallbackOrUnavailable(
                    event,
                    multiplexed
                        ? "could not be added to the multiplexed set: \(error)"
                        : "does not fit in the counters together with \(papiEvents.map(\.event).joined(separator: ", ")) (\(error)); measure it separately or enable multiplexing")
            }
        }
        eventSet = papiEvents.isEmpty ? nil : set
    }

    private func fallbackOrUnavailable(_ event: String, _ reason: String) {
        if OSCounters.source(for: event) != nil { osEvents.append(event) } else { unavailable[event] = reason }
    }

    private var osBefore: OSCounters.Snapshot?
    private var startedAt: UInt64 = 0

    /// Starts counting on the calling thread. Pair with `stop()` on the same thread.
    public func start() throws {
        osBefore = OSCounters.read()
        try eventSet?.start()
        startedAt = DispatchTime.now().uptimeNanoseconds
    }

    /// Stops counting and returns the wall time since `start()` and every requested event's value.
    public func stop() throws -> (wallNanoseconds: UInt64, values: [CounterValue]) {
        let stoppedAt = DispatchTime.now().uptimeNanoseconds
        let papiValues = try eventSet?.stop() ?? []
        let osAfter = OSCounters.read()
        guard let osBefore else { throw MachineError.invalidRequest("Counters.stop() without start()") }
        self.osBefore = nil

        var byName: [String: CounterValue] = [:]
        for (i, entry) in papiEvents.enumerated() {
            byName[entry.event] = CounterValue(
                event: entry.event, value: papiValues[i],
                status: multiplexed ? .estimated("multiplexed with \(papiEvents.count - 1) other events") : .counted,
                source: "papi:\(entry.papiName)")
        }
        for event in osEvents {
            let delta = OSCounters.delta(event, osBefore, osAfter)
            byName[event] = CounterValue(event: event, value: delta, status: .counted, source: OSCounters.source(for: event))
        }
        for (event, reason) in unavailable {
            byName[event] = CounterValue(event: event, value: nil, status: .unavailable(reason), source: nil)
        }
        return (stoppedAt - startedAt, requested.compactMap { byName[$0.name] })
    }

    /// Runs `body` once and returns its result, the wall time, and every requested event's value.
    public func measure<R>(_ body: () throws -> R) throws -> CounterMeasurement<R> {
        try start()
        let result: R
        do {
            result = try body()
        } catch {
            _ = try? stop()
            throw error
        }
        let (wall, values) = try stop()
        return CounterMeasurement(result: result, wallNanoseconds: wall, values: values)
    }
}

/// Software events the OS provides without PAPI: thread CPU time and getrusage's counts.
enum OSCounters {
    struct Snapshot {
        var threadCPUNanoseconds: Int64
        var pageFaults: Int64
        var contextSwitches: Int64
    }

    static func source(for event: String) -> String? {
        switch event {
        case "task-clock": return "os:clock_gettime(CLOCK_THREAD_CPUTIME_ID)"
        case "page-faults": return "os:getrusage(RUSAGE_THREAD) minflt+majflt"
        case "context-switches": return "os:getrusage(RUSAGE_THREAD) nvcsw+nivcsw"
        default: return nil
        }
    }

    /// RUSAGE_THREAD: Linux's value, hidden behind _GNU_SOURCE in glibc's headers.
    private static let rusageThread: Int32 = 1

    static func read() -> Snapshot {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        var usage = rusage()
        getrusage(rusageThread, &usage)
        return Snapshot(
            threadCPUNanoseconds: Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec),
            pageFaults: Int64(usage.ru_minflt + usage.ru_majflt),
            contextSwitches: Int64(usage.ru_nvcsw + usage.ru_nivcsw))
    }

    static func delta(_ event: String, _ a: Snapshot, _ b: Snapshot) -> Int64? {
        switch event {
        case "task-clock": return b.threadCPUNanoseconds - a.threadCPUNanoseconds
        case "page-faults": return b.pageFaults - a.pageFaults
        case "context-switches": return b.contextSwitches - a.contextSwitches
        default: return nil
        }
    }
}
