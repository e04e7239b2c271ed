import ArgumentParser
import Foundation
import KernelKit
import Kernels
import Machine
import TuningStore

/// What a runtime gets for one workload: the library call `TuningStore.lookup`, from the command line.
struct LookupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lookup",
        abstract: "Show the configuration a runtime would use for a workload on this machine, and where it came from.",
        discussion: """
            The exact (machine, workload) record; else the best of the nearest stored shape of the same \
            family on this machine (distance on log-shape); else the family's analytical configuration, \
            with a warning.
            """
    )

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Kernel family.") var family: String
    @OptionGroup var shape: ShapeOptions
    @OptionGroup var database: DatabaseOptions
    @Option(help: "Machine fingerprint (default: this machine).") var machine: String?
    @Flag(help: "Print the answer as JSON.") var json = false

    func run() throws {
        let logger = global.logger("lowbit.lookup")
        let f = try KernelRegistry.family(named: family)
        let workload = try shape.workload(for: f)
        // A rule that only bounds lowbit's test harness does not bind a runtime (the engine waives it too).
        let waived = try f.checkShapeForRuntime(workload)
        let description = try MachineModel(logger: logger).description
        let analytical = { f.analyticalConfiguration(for: workload, machine: MachineContext(description)) }
        // Without a database the runtime falls back to the analytical configuration; say so, create nothing.
        var answer =
            database.exists
            ? try database.open(logger: logger).lookup(machine: machine ?? description.fingerprint.id, workload: workload, fallback: analytical)
            : LookupResult(configuration: analytical(), source: .analyticalDefault, warning: "no tuning database at \(database.path)")
        // A record stored before its template gained a parameter runs with that parameter's default;
        // another shape's record is fitted to this one (a register tile no taller than m).
        answer.configuration = f.completing(answer.configuration)
        var fitted: String?
        if case .nearest = answer.source {
            let adapted = f.adapting(answer.configuration, to: workload, machine: MachineContext(description))
            if adapted != answer.configuration { fitted = answer.configuration.changes(to: adapted) }
            answer.configuration = adapted
        }
        if json {
            print(try JSONOutput.encode(answer))
            return
        }
        print("\(workload)")
        print("configuration  \(answer.configuration)")
        switch answer.source {
        case .exact(let id): print("source         exact record (trial \(id))")
        case let .nearest(w, distance, id): print(String(format: "source         nearest stored shape %@ (log2 distance %.2f, trial %lld)", w.description, distance, id))
        case .analyticalDefault: print("source         analytical default (no tuned record)")
        }
        if let fitted { print("fitted         \(fitted) (the stored shape's configuration, fitted to this workload)") }
        if let waived {
            print("waived         shape rule '\(waived.rule)' (\(waived.message)): it bounds lowbit's test harness, not the kernel; `tune`, `run` and `bench` keep it")
        }
        if let warning = answer.warning { print("warning        \(warning)") }
    }
}
