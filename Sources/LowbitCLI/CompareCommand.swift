import ArgumentParser
import Foundation
import KernelKit
import Kernels
import Machine
import Pipeline
import Roofline
import TuningStore

/// `lowbit compare`: every variant of one workload measured in one run and held against the roofline.
struct CompareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Measure a family's variants on one workload (portable, each ISA, the analytical choice, the best tuned) and hold each against the roofline.",
        discussion: """
            Every row is verified and timed in this run, interleaved. The roofline bound of a row is \
            min(compute ceiling of its ISA and threads, bandwidth plateau of the level holding its working \
            set x its intensity), with the ceilings `lowbit roofline measure` stored for this machine.
            """)
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Kernel family (see `lowbit kernels`).") var family: String
    @OptionGroup var shape: ShapeOptions
    @OptionGroup var database: DatabaseOptions
    @OptionGroup var measure: MeasureOptions

    func run() throws {
        let logger = global.logger("lowbit.compare")
        let f = try KernelRegistry.family(named: family)
        let workload = try shape.workload(for: f)
        try f.checkShape(workload)
        let machine = try MachineModel(logger: logger).description
        let context = MachineContext(machine)
        // Read only: no database file is created when there is none (no ceilings, no tuned row then).
        let store = database.exists ? try database.open(logger: logger) : nil
        let ceilings = Ceilings(flat: try store?.machine(machine.fingerprint.id)?.ceilings ?? [:])
        let runner = try measure.runner(machine: machine, logger: logger)
        let fixed = f.workloadParameters(workload)

        var variants: [(name: String, config: Configuration)] = []
        for isa in f.targets where isa.runs(on: machine.isa) {
            var c = f.defaultConfiguration(isa: isa, machine: context)
            for (k, v) in fixed { c[k] = v }
            variants.append((isa == .portable ? "portable" : "\(isa.rawValue) default", c))
        }
        var analytical = f.analyticalConfiguration(for: workload, machine: context)
        for (k, v) in fixed { analytical[k] = v }
        variants.append(("analytical", analytical))
        if let best = try store?.best(machine: machine.fingerprint.id, workload: workload) {
            variants.append(("best tuned", best.configuration))
        }

        print("\(workload) on \(machine.cpu.name) (\(machine.fingerprint.id)), \(measure.cold ? "cold" : "hot") data")
        if ceilings.isEmpty { print("no ceilings stored for this machine: run `lowbit roofline measure` for the roofline columns") }
        var t = Table(
            ["variant", "min", "median", "GOP/s", "ops/byte", "bound GOP/s", "% roofline", "binding ceiling", "model bytes", "LLC-miss bytes", "status"],
            alignments: [.left, .right, .right, .right, .right, .right, .right, .left, .right, .right, .left])
        for v in variants {
            let r = runner.run(f, workload, v.config, seed: measure.seed)
            let a = r.gops.flatMap {
                Attainment.of(
                    family: f.name, workload: workload, config: v.config, achieved: $0, usefulOps: f.usefulOps(workload, v.config),
                    ceilings: ceilings, topology: machine.topology, cold: measure.cold)
            }
            t.add([
                v.name, r.timing.map { TrialReport.ms($0.min) } ?? "-", r.timing.map { TrialReport.ms($0.median) } ?? "-",
                r.gops.map { String(format: "%.1f", $0) } ?? "-", a.map { String(format: "%.2f", $0.intensity) } ?? "-",
                a.map { String(format: "%.1f", $0.bound) } ?? "-", a.map { String(format: "%.0f%%", 100 * $0.fraction) } ?? "-",
                a?.binding ?? "-",
                IntensityModel.bytes(family: f.name, workload: workload, config: v.config).map { Format.bytes(UInt64($0)) } ?? "-",
                Self.measuredTraffic(r.counters, lineSize: machine.topology.lastLevelCache?.lineSize ?? 64),
                r.succeeded ? "ok" : "\(r.status.rawValue): \(r.message ?? "")",
            ])
            FileHandle.standardError.write(Data("  \(v.name) [\(v.config)]: \(r.gops.map { String(format: "%.1f GOP/s", $0) } ?? r.status.rawValue)\n".utf8))
        }
        print(t.render())
        for v in variants { print("  \(v.name): \(v.config)") }
        print("model bytes: the fewest bytes a run moves (the intensity model); LLC-miss bytes: last-level misses x line size per run, where hardware counters exist")
    }

    /// Last-level misses per run times the line size, or why not.
    static func measuredTraffic(_ counters: [CounterValue], lineSize: Int) -> String {
        guard let llc = counters.first(where: { $0.event == "llc-misses" }) else { return "-" }
        guard let misses = llc.value else { return "n/a (no counter)" }
        return Format.bytes(UInt64(max(0, misses)) * UInt64(lineSize))
    }
}
