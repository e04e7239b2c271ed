import KernelKit
import Machine
import Measure

/// `CoreSpeed`, `MemorySpeed` and `CPUTimes` at the start of a benchmark, and the lines comparing them with the end,
/// on the first PU of each core (at most 8: the PUs the benchmarks' scatter placement uses first).
struct SpeedWatch {
    let topology: HwlocTopology
    let pus: [Int]
    let start: CoreSpeed
    let times: CPUTimes?
    let memory: MemoryProbe
    let memoryStart: MemorySpeed

    init() throws {
        topology = try HwlocTopology()
        let snapshot = topology.snapshot()
        pus = ThreadPlacement.scatter.pus(count: min(8, max(1, snapshot.cores.count)), topology: snapshot)
        start = CoreSpeed.measure(pus: pus, topology: topology)
        times = CPUTimes.now(cpus: pus)
        memory = MemoryProbe(lastLevelCacheBytes: snapshot.lastLevelCache.map { Int($0.sizeBytes) })
        memoryStart = memory.measure()
    }

    func report() -> String {
        let steal = CPUTimes.report(start: times, end: CPUTimes.now(cpus: pus))
        return CoreSpeed.report(start: start, end: CoreSpeed.measure(pus: pus, topology: topology))
            + "\n" + MemorySpeed.report(start: memoryStart, end: memory.measure()) + (steal.map { "\n" + $0 } ?? "")
    }
}
