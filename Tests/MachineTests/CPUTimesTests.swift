import Testing

@testable import Machine

@Suite("CPU times (/proc/stat steal)")
struct CPUTimesTests {
    static let stat = """
        cpu  6985987 79 997910 5926331 56263 0 15281 45435 0 0
        cpu0 3635156 19 581928 2758086 12039 0 5016 21526 0 0
        cpu1 3350830 59 415981 3168245 44224 0 10265 23909 0 0
        intr 123 0 0
        ctxt 456
        """

    @Test func sumsTheCPUsAskedForAndReadsTheEighthField() throws {
        let one = try #require(CPUTimes.parse(Self.stat, cpus: [1]))
        #expect(one.steal == 23909)
        #expect(one.total == 3350830 + 59 + 415981 + 3168245 + 44224 + 10265 + 23909)
        let both = try #require(CPUTimes.parse(Self.stat, cpus: [0, 1]))
        #expect(both.steal == 21526 + 23909)
        let machine = try #require(CPUTimes.parse(Self.stat, cpus: nil))
        #expect(machine.steal == 45435 && machine.cpus == nil)
        // A CPU that is not there, or a kernel without the steal field: nothing rather than a guess.
        #expect(CPUTimes.parse(Self.stat, cpus: [2]) == nil)
        #expect(CPUTimes.parse("cpu  1 2 3 4 5 6 7\ncpu0 1 2 3 4 5 6 7\n", cpus: [0]) == nil)
    }

    @Test func stealFractionAndItsLine() throws {
        let start = CPUTimes(cpus: [0, 1], total: 1000, steal: 10)
        let end = CPUTimes(cpus: [0, 1], total: 2000, steal: 60)
        #expect(end.stealFraction(since: start) == 0.05)
        #expect(start.stealFraction(since: start) == nil, "no tick passed")
        let line = try #require(CPUTimes.report(start: start, end: end))
        #expect(line == "steal time (/proc/stat, CPUs 0, 1): 5.0% of their time during the run "
            + "(the hypervisor ran other work on the cores behind them: the times measured here include it)")
        #expect(CPUTimes.report(stealFraction: 0.001, cpus: nil) == "steal time (/proc/stat, all CPUs): 0.1% of their time during the run")
        #expect(CPUTimes.report(start: nil, end: end) == nil)
        // This machine's own /proc/stat reads (Linux is what lowbit runs on).
        #expect(CPUTimes.now() != nil)
    }
}
