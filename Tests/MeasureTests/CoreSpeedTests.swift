import CCPUFeatures
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
        // Any core of this century runs a dependent add in well under 10 ns, and none clocks above
        // about 6.2 GHz: a broken chain (optimized away, timed wrongly, or folded by the renamer, as
        // adds of immediates are on Intel cores since Golden Cove: 5-10 "GHz" on a Xeon) lands outside.
        for ghz in speed.ghz { #expect(ghz > 0.1 && ghz < 6.5, "\(ghz) adds per ns") }
        #expect(topology.currentThreadBinding() == before)
        #expect(speed.summary.hasPrefix("PU \(pus[0]) "))
        // x86-64 and aarch64 have a vector probe; one vector instruction does at most 2 x 64 byte
        // operations and no core issues more than 8 a cycle at 10 GHz: 10 TOP/s bounds a real loop.
        if CPUArchitecture.current != .other {
            let vector = try #require(speed.vectorGops)
            #expect(vector.count == pus.count)
            for gops in vector { #expect(gops > 0.5 && gops < 10_000, "\(gops) GOP/s") }
            #expect(speed.vectorProbe != nil)
        }
    }

    @Test func vectorLoopCountsItsOperations() throws {
        #if arch(x86_64)
        #expect(lowbit_vector_madds(10, 0) == 10 * 12 * 16)
        let isa = ISAFeatures.probe()
        if isa.has(.avx2) { #expect(lowbit_vector_madds(10, 1) == 10 * 12 * 64) }
        #elseif arch(arm64)
        #expect(lowbit_vector_madds(10, 0) == 10 * 16 * 32)
        #endif
        #expect(lowbit_vector_madds(0, 0) == 0)
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
        #expect(!faster.contains("vector speed"), "no vector line without vector readings")
    }

    @Test func reportComparesTheVectorReadingsOnTheirOwnLine() {
        let start = CoreSpeed(pus: [0, 1], ghz: [3.0, 3.0], bound: true, vectorGops: [400, 410], vectorProbe: "vpmaddubsw 256-bit")
        let shared = CoreSpeed.report(start: start, end: CoreSpeed(pus: [0, 1], ghz: [3.0, 3.0], bound: true, vectorGops: [300, 310], vectorProbe: "vpmaddubsw 256-bit"))
        let lines = shared.split(separator: "\n")
        #expect(lines.count == 2)
        #expect(!lines[0].contains("slowed"), "the clock held")
        #expect(lines[1] == "vector speed (independent vpmaddubsw 256-bit chains): start PU 0 400, PU 1 410 GOP/s; end PU 0 300, PU 1 310 GOP/s "
            + "(-25%: the vector units' share of the cores slowed down during the run; compare numbers measured side by side, not across runs)")
        let steady = CoreSpeed.report(start: start, end: CoreSpeed(pus: [0, 1], ghz: [3.0, 3.0], bound: true, vectorGops: [390, 400], vectorProbe: "vpmaddubsw 256-bit"))
        #expect(steady.hasSuffix("end PU 0 390, PU 1 400 GOP/s"))
    }
}

@Suite("Memory probe")
struct MemoryProbeTests {
    @Test func sizesFromTheLastLevelCacheAndReadsPlausibly() {
        let probe = MemoryProbe(lastLevelCacheBytes: 16 << 20)
        #expect(probe.chaseBytes == 2 << 20 && probe.readBytes == 64 << 20)
        #expect(MemoryProbe(lastLevelCacheBytes: nil).chaseBytes == 4 << 20)
        let speed = probe.measure()
        // A dependent load takes between a cycle and a few microseconds; one thread reads between 0.1
        // and 1000 GB/s: a chase optimized away or a wrongly timed read lands outside.
        #expect(speed.chaseNs > 0.2 && speed.chaseNs < 5_000, "\(speed.chaseNs) ns")
        #expect(speed.readGBps > 0.1 && speed.readGBps < 1_000, "\(speed.readGBps) GB/s")
    }

    @Test func reportWarnsWhenLatencyOrBandwidthMovedMoreThanAQuarter() {
        let start = MemorySpeed(chaseBytes: 4 << 20, chaseNs: 30, readBytes: 128 << 20, readGBps: 12)
        let steady = MemorySpeed.report(start: start, end: MemorySpeed(chaseBytes: 4 << 20, chaseNs: 33, readBytes: 128 << 20, readGBps: 11))
        #expect(steady == "memory speed (one thread: pointer chase in 4 MiB, read of 128 MiB): start 30 ns, 12.0 GB/s; end 33 ns, 11.0 GB/s")
        let shared = MemorySpeed.report(start: start, end: MemorySpeed(chaseBytes: 4 << 20, chaseNs: 150, readBytes: 128 << 20, readGBps: 12))
        #expect(shared.hasSuffix("(latency +400%, bandwidth +0%: other work shares this machine's cache and memory; compare numbers measured side by side, not across runs)"))
    }
}

@Suite("Latency curve")
struct LatencyCurveTests {
    @Test func sizesRunFromEightKiBToFourTimesTheLastLevel() {
        let sizes = LatencyCurve.sizes(lastLevelCacheBytes: 32 << 20)
        #expect(sizes.first == 8 << 10 && sizes.last == 128 << 20 && sizes.count == 15)
        #expect(LatencyCurve.sizes(lastLevelCacheBytes: 4 << 20).last == 64 << 20, "at least 64 MiB")
    }

    @Test func chasesVisitEveryLineAndTakeAPlausibleTime() {
        let curve = LatencyCurve.measure(sizes: [16 << 10, 64 << 10], steps: 20_000)
        #expect(curve.points.map(\.bytes) == [16 << 10, 64 << 10])
        // An L1-sized chase cannot beat a cycle at 10 GHz nor take microseconds.
        for p in curve.points { #expect(p.nanoseconds > 0.1 && p.nanoseconds < 5_000, "\(p)") }
        #expect(curve.nanoseconds(atMost: 32 << 10) == curve.points[0].nanoseconds)
        #expect(curve.nanoseconds(atMost: 1 << 10) == nil)
        // Sizes round down to whole lines, at least two of them.
        #expect(PointerChase(bytes: 1000).bytes == 960 && PointerChase(bytes: 1).bytes == 128)
    }
}
