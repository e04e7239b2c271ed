import Machine
import Testing

@testable import Measure

@Suite("Core speed probe")
struct CoreSpeedTests {
    @Test func measuresEveryPUAndPutsTheBindingBack() throws {
        let topology = try HwlocTopology()
        let pus = topology.snapshot().pus
        let before = topology.currentThreadBinding()
        let speed = CoreSpeed.measure(pus: pus, topology: topology, runs: 3)
        #expect(speed.pus == pus)
        #expect(speed.ghz.count == pus.count)
        // Any core of this century runs a dependent add in well under 10 ns and cannot beat one per
        // cycle at 10 GHz: a broken chain (optimized away, or timed wrongly) lands outside.
        for ghz in speed.ghz { #expect(ghz > 0.1 && ghz < 10, "\(ghz) adds per ns") }
        #expect(topology.currentThreadBinding() == before)
        #expect(speed.summary.hasPrefix("PU \(pus[0]) "))
    }

    @Test func reportWarnsOnlyWhenTheSpeedMovedMoreThanTenPercent() {
        let start = CoreSpeed(pus: [0, 1], ghz: [3.0, 3.0], bound: true)
        let steady = CoreSpeed.report(start: start, end: CoreSpeed(pus: [0, 1], ghz: [2.9, 2.8], bound: true))
        #expect(steady.contains("start PU 0 3.00, PU 1 3.00 GHz; end PU 0 2.90, PU 1 2.80 GHz"))
        #expect(!steady.contains("slowed"))
        let slower = CoreSpeed.report(start: start, end: CoreSpeed(pus: [0, 1], ghz: [1.5, 1.5], bound: false))
        #expect(slower.contains("-50%: the machine slowed down during the run"))
        #expect(slower.contains("(unbound)"))
        let faster = CoreSpeed.report(start: start, end: CoreSpeed(pus: [0, 1], ghz: [3.6, 3.6], bound: true))
        #expect(faster.contains("+20%: the machine sped up"))
    }
}
