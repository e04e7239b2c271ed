import ArgumentParser
import Foundation
import KernelKit
import Kernels
import Machine
import Measure
import Pipeline
import Roofline
import TuningStore

struct RooflineCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "roofline",
        abstract: "Measure the machine's roofline ceilings into the tuning database, or show them.",
        subcommands: [Measure.self, Show.self]
    )

    struct Measure: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Measure compute ceilings (per ISA and operation) and the bandwidth sweep (read, write, copy, triad over working sets from L1 to past the last-level cache), find the plateaus and store them.",
            discussion: """
                The microbenchmarks are the peak-compute and peak-bandwidth families, generated, compiled, \
                verified and timed like every kernel. Thread counts default to 1 and one per core.
                """)
        @OptionGroup var global: GlobalOptions
        @OptionGroup var database: DatabaseOptions
        @OptionGroup var measure: MeasureOptions
        @Option(help: "Comma-separated thread counts (default: 1 and the number of cores).") var threadsList: String?
        @Flag(help: "Sweep working sets at 1.5x steps as well as powers of two (twice the runs).") var fine = false

        func run() throws {
            let logger = global.logger("lowbit.roofline")
            let machine = try MachineModel(logger: logger).description
            var options = measure
            if options.budgetWasDefault { options.budget = 0.25 }
            let runner = try options.runner(machine: machine, logger: logger)
            let cores = max(1, machine.topology.cores.count)
            let threads = try threadsList.map(BenchCommand.parseList) ?? Array(Set([1, cores])).sorted()
            let ceilings = RooflineMeasurement(runner: runner, machine: machine, seed: options.seed, threads: threads, fine: fine).measure { line in
                FileHandle.standardError.write(Data("  \(line)\n".utf8))
            }
            let store = try database.open(logger: logger)
            try store.record(machine: machine, ceilings: ceilings.flat)
            print(RooflineTables.render(ceilings, machine: machine))
            print("")
            print("stored for \(machine.fingerprint.id) in \(database.path)")
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The ceilings stored for this machine (or --machine).")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var database: DatabaseOptions
        @Option(help: "Machine fingerprint (default: this machine).") var machine: String?

        func run() throws {
            let logger = global.logger("lowbit.roofline")
            let store = try database.openExisting(logger: logger)
            let fingerprint = try machine ?? MachineModel(logger: logger).description.fingerprint.id
            guard let record = try store.machine(fingerprint) else {
                throw ValidationError("no machine \(fingerprint) in \(database.path); run `lowbit roofline measure` first")
            }
            let ceilings = Ceilings(flat: record.ceilings ?? [:])
            guard !ceilings.isEmpty else {
                throw ValidationError("no ceilings stored for \(fingerprint) in \(database.path); run `lowbit roofline measure` first")
            }
            print(RooflineTables.render(ceilings, machine: record.description))
        }
    }
}

/// Runs the ceiling microbenchmarks through the kernel pipeline.
struct RooflineMeasurement {
    let runner: KernelRunner
    let machine: MachineDescription
    let seed: UInt64
    let threads: [Int]
    /// Sweep at 1.5 x steps as well as powers of two.
    var fine = false

    var context: MachineContext { MachineContext(machine) }

    func measure(progress: (String) -> Void) -> Ceilings {
        var ceilings = Ceilings()
        let compute = PeakCompute()
        for isa in compute.targets where isa.runs(on: machine.isa) {
            for op in PeakCompute.Operation.allCases {
                var oneThread: Double?
                for t in threads {
                    let config = Configuration([
                        "isa": .name(isa.rawValue), "op": .name(op.rawValue), "threads": .int(t), "placement": .name("scatter"),
                    ])
                    guard (try? compute.check(config, machine: context)) != nil else { continue }
                    let workload = Workload(family: compute.name, shape: ["iterations": 1 << 20])
                    let r = runner.run(compute, workload, config, seed: seed)
                    guard let first = r.gops else {
                        progress("compute \(op.rawValue) \(isa.rawValue) x\(t): \(r.status.rawValue) \(r.message ?? "")")
                        continue
                    }
                    // A reading that does not scale with the threads is measured again (ScalingCheck).
                    let settled = ScalingCheck.settle(first: first, threads: t, oneThread: oneThread) {
                        runner.run(compute, workload, config, seed: seed).gops
                    }
                    if t == 1 { oneThread = settled.kept }
                    ceilings.compute.append(.init(op: op.rawValue, isa: isa.rawValue, threads: t, gops: settled.kept))
                    var line = String(format: "compute %@ %@ x%d: %.1f GOP/s", op.rawValue, isa.rawValue, t, settled.kept)
                    if settled.readings.count > 1, let one = oneThread {
                        line += String(format: " (the first reading was under %.0f%% of %d x the 1-thread %.1f; readings %@, the highest kept)",
                                       ScalingCheck.floor * 100, t, one, settled.readings.map { String(format: "%.1f", $0) }.joined(separator: ", "))
                    }
                    progress(line)
                }
            }
        }
        let bandwidth = PeakBandwidth()
        let isa = bandwidth.bestTarget(on: context)
        for t in threads {
            let detector = PlateauDetector(topology: machine.topology, threads: t)
            for op in PeakBandwidth.Operation.sweeps {
                var points: [Ceilings.SweepPoint] = []
                for bytes in detector.sizes(fine: fine) {
                    var config = bandwidth.defaultConfiguration(isa: isa, machine: context)
                    config["op"] = .name(op.rawValue)
                    config["threads"] = .int(t)
                    let rounded = max(16384, (bytes + 4095) / 4096 * 4096)
                    let r = runner.run(bandwidth, Workload(family: bandwidth.name, shape: ["bytes": rounded]), config, seed: seed)
                    if let g = r.gops { points.append(.init(op: op.rawValue, threads: t, bytes: rounded, gbps: g)) }
                }
                ceilings.sweep += points
                let plateaus = detector.plateaus(of: points)
                ceilings.plateaus += plateaus
                progress("bandwidth \(op.rawValue) x\(t): " + plateaus.map { String(format: "%@ %.1f GB/s", $0.level, $0.gbps) }.joined(separator: ", "))
            }
        }
        // Load latency on one thread (`LatencyCurve`), bound to the first PU where binding holds.
        let points = LatencyCurve.measure(topology: machine.topology, hwloc: try? HwlocTopology()).points
        ceilings.latency = points.map { .init(threads: 1, bytes: $0.bytes, nanoseconds: $0.nanoseconds) }
        progress("latency x1: " + points.map { String(format: "%@ %.1f ns", Format.bytes(UInt64($0.bytes)), $0.nanoseconds) }.joined(separator: ", "))
        return ceilings
    }
}

/// Tables of a roofline for the terminal.
enum RooflineTables {
    static func render(_ c: Ceilings, machine: MachineDescription) -> String {
        var out = "Roofline of \(machine.cpu.name) (\(machine.fingerprint.id))\n\ncompute ceilings (peak-compute, GOP/s):\n"
        let computeTable = c.computeTable
        var t = Table(computeTable.header, alignments: [.left, .left, .right, .right])
        for row in computeTable.rows { t.add(row) }
        out += t.render() + "\n\nbandwidth plateaus (peak-bandwidth, GB/s; level = where the working set lives):\n"
        let plateauTable = c.plateauTable
        var p = Table(plateauTable.header, alignments: [.left] + plateauTable.header.dropFirst().map { _ in .right })
        for row in plateauTable.rows { p.add(row) }
        out += p.render()
        if let triad = c.plateaus.first(where: { $0.op == "triad" && $0.level == "DRAM" && $0.threads == c.plateaus.map(\.threads).max() }),
            let read = c.plateaus.first(where: { $0.op == "read" && $0.level == "DRAM" && $0.threads == triad.threads })
        {
            out += String(format: "\n\nDRAM with %d threads: read %.1f GB/s, STREAM-style triad %.1f GB/s (ratio %.2f)", triad.threads, read.gbps, triad.gbps, read.gbps / triad.gbps)
        }
        if !c.latency.isEmpty {
            out += "\n\nload latency (one thread, pointer chase; ns per dependent load):\n"
            var l = Table(["working set", "ns"], alignments: [.right, .right])
            for p in c.latency { l.add([Format.bytes(UInt64(p.bytes)), String(format: "%.1f", p.nanoseconds)]) }
            out += l.render()
        }
        return out
    }
}
