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
        let store = database.exists ? try database.open(logger: logger) : nil
        let fingerprint = machine ?? description.fingerprint.id
        var answer =
            try store?.lookup(machine: fingerprint, workload: workload, fallback: analytical)
            ?? LookupResult(configuration: analytical(), source: .analyticalDefault, warning: "no tuning database at \(database.path)")
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
            let waivedRule = waived.map { LookupAnswer.Waived(rule: $0.rule, message: $0.message) }
            print(try JSONOutput.encode(LookupAnswer(result: answer, workload: workload.description, fitted: fitted, waived: waivedRule)))
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
        let recordWorkload: Workload? = switch answer.source {
        case .exact: workload
        case .nearest(let w, _, _): w
        case .analyticalDefault: nil
        }
        if let store, let recordWorkload, let final = try store.decidingFinal(machine: fingerprint, workload: recordWorkload),
           let winner = final.winnerEntry, let gops = winner.gops
        {
            print(String(
                format: "decided        by a final: %d finalists timed side by side, %d rounds each (%@); %.1f GOP/s there, %.1f in its own tuning run",
                final.entries.count, final.roundCount, ISO8601DateFormatter().string(from: final.measuredAt), gops, winner.storedGops))
        }
        if let waived {
            print("waived         shape rule '\(waived.rule)' (\(waived.message)): it bounds lowbit's test harness, not the kernel; `tune`, `run` and `bench` keep it")
        }
        if let warning = answer.warning { print("warning        \(warning)") }
    }
}

/// `lookup --json`: the library's `LookupResult` (configuration, source, warning) as its own keys, plus the
/// workload asked about, how a nearest shape's configuration was fitted (`"mr=8->2"`), and the harness
/// shape rule the runtime waives for it, where either applies.
struct LookupAnswer: Encodable {
    struct Waived: Encodable {
        var rule: String
        var message: String
    }

    var result: LookupResult
    var workload: String
    var fitted: String?
    var waived: Waived?

    private enum CodingKeys: String, CodingKey {
        case workload, configuration, source, warning, fitted, waived
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(workload, forKey: .workload)
        try c.encode(result.configuration, forKey: .configuration)
        try c.encode(result.source, forKey: .source)
        try c.encodeIfPresent(result.warning, forKey: .warning)
        try c.encodeIfPresent(fitted, forKey: .fitted)
        try c.encodeIfPresent(waived, forKey: .waived)
    }
}
