import Testing

@testable import Machine

/// Work whose amount scales with `n` and whose result is used.
@inline(never)
func busyWork(_ n: Int) -> UInt64 {
    var x: UInt64 = 88_172_645_463_325_252
    for i in 0..<n {
        x ^= x << 13
        x ^= x >> 7
        x ^= x << 17
        x &+= UInt64(truncatingIfNeeded: i)
    }
    return x
}

@Suite("Performance counters", .serialized)
struct CounterTests {
    @Test func taskClockGrowsWithWork() throws {
        let counters = try Counters(events: ["task-clock"])
        let small = try counters.measure { busyWork(2_000_000) }
        let large = try counters.measure { busyWork(20_000_000) }
        let a = try #require(small.value("task-clock"))
        let b = try #require(large.value("task-clock"))
        #expect(a.status == .counted)
        #expect(b.status == .counted)
        let av = try #require(a.value), bv = try #require(b.value)
        #expect(av > 0)
        #expect(bv > av * 3, "10x the work should cost well over 3x the CPU time (\(av) ns vs \(bv) ns)")
        #expect(large.wallNanoseconds > 0)
        #expect(small.result != large.result)
    }

    @Test func hardwareEventsCountOrSayWhyNot() throws {
        let availability = CounterAvailability.probe()
        let counters = try Counters(availability: availability)
        let m = try counters.measure { busyWork(5_000_000) }
        #expect(m.values.count == CounterEvent.preferred.count)
        for value in m.values {
            switch value.status {
            case .counted, .estimated:
                #expect(value.value != nil, "\(value.event) counted but has no value")
                #expect(value.source != nil)
            case .unavailable(let reason):
                #expect(value.value == nil)
                #expect(!reason.isEmpty, "\(value.event) is unavailable without a reason")
            }
        }
        if let cycles = m.value("cycles"), cycles.status == .counted {
            #expect((cycles.value ?? 0) > 1_000_000)
        }
        // Probe records agree with availability summaries.
        for probe in availability.probes where probe.papiName == nil {
            #expect(!probe.attempts.isEmpty || !availability.papi.initialized)
            #expect(probe.reason != nil)
        }
    }

    @Test func multiplexedValuesAreMarkedEstimates() throws {
        let counters = try Counters(multiplex: true)
        let m = try counters.measure { busyWork(1_000_000) }
        for value in m.values where value.source?.hasPrefix("papi:") == true {
            if case .estimated = value.status {} else { Issue.record("\(value.event) from a multiplexed set is not marked estimated") }
        }
    }

    @Test func unknownEventIsAnErrorListingValidOnes() {
        #expect {
            _ = try Counters(events: ["cycles", "flops"])
        } throws: { error in
            "\(error)".contains("unknown counter event 'flops'") && "\(error)".contains("task-clock")
        }
    }

    @Test func softwareEventsAlwaysHaveAFallback() {
        for name in ["task-clock", "page-faults", "context-switches"] {
            #expect(OSCounters.source(for: name) != nil)
        }
        let before = OSCounters.read()
        _ = busyWork(1_000_000)
        let after = OSCounters.read()
        #expect((OSCounters.delta("task-clock", before, after) ?? 0) > 0)
    }
}
