import KernelKit
import Machine
import Measure

/// `CoreSpeed` at the start of a benchmark, and the line comparing it with the end, on the first PU
/// of each core (at most 8: the PUs the benchmarks' scatter placement uses first).
struct SpeedWatch {
    let topology: HwlocTopology
    let pus: [Int]
    let start: CoreSpeed

    init() throws {
        topology = try HwlocTopology()
        let snapshot = topology.snapshot()
        pus = ThreadPlacement.scatter.pus(count: min(8, max(1, snapshot.cores.count)), topology: snapshot)
        start = CoreSpeed.measure(pus: pus, topology: topology)
    }

    func report() -> String {
        CoreSpeed.report(start: start, end: CoreSpeed.measure(pus: pus, topology: topology))
    }
}
