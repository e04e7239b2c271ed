import Foundation
import KernelKit
import Machine
import TuningStore

/// The "tuned" rows of `lowbit bench`: for each benchmarked workload, the configuration the runtime's
/// lookup gives on this machine (the exact record, else the best of the nearest stored shape), measured
/// in the same run as the other rows. Workloads with no tuned record of their family get no row: the
/// analytical row already shows what the runtime would run then.
struct TunedRows {
    let store: TuningStore?
    let machine: MachineDescription
    /// One line per tuned row: its workload, where its configuration came from, and the configuration.
    var notes: [String] = []

    init(store: TuningStore?, machine: MachineDescription) {
        self.store = store
        self.machine = machine
    }

    /// The tuned configuration for `workload` with the workload's own fixed parameters (an attention
    /// workload's cache format) and `fixed` on top, or nil when nothing is tuned for the family here or
    /// the record does not run on this machine (then a note says why).
    mutating func configuration(
        _ f: any KernelFamily, _ workload: Workload, fixed: [String: ParamValue] = [:]
    ) -> Configuration? {
        guard let store else { return nil }
        let answer: LookupResult
        do {
            // No record of the family here: no row (and no fallback warning from the lookup).
            guard try !store.bests(machine: machine.fingerprint.id, family: f.name).isEmpty else { return nil }
            answer = try store.lookup(machine: machine.fingerprint.id, workload: workload) { Configuration([:]) }
        } catch {
            notes.append("\(workload): lookup failed (\(error))")
            return nil
        }
        var source: String
        var config = f.completing(answer.configuration)
        switch answer.source {
        case .exact(let id): source = "exact record, trial \(id)"
        case let .nearest(w, distance, id):
            source = String(format: "nearest record %@ (log2 distance %.2f), trial %lld", w.description, distance, id)
            let fitted = f.adapting(config, to: workload, machine: MachineContext(machine))
            if fitted != config { source += ", fitted: \(config.changes(to: fitted))" }
            config = fitted
        case .analyticalDefault: return nil
        }
        for (name, value) in f.workloadParameters(workload).merging(fixed, uniquingKeysWith: { _, given in given }) {
            config[name] = value
        }
        do {
            try f.check(config, machine: MachineContext(machine))
        } catch {
            notes.append("\(workload): the tuned configuration (\(source)) does not run here: \(error)")
            return nil
        }
        notes.append("\(workload): \(source): \(config)")
        return config
    }

    /// Prints the notes under a table (or that there is no database) and starts the next table's.
    mutating func flushNotes() {
        defer { notes = [] }
        guard !notes.isEmpty else {
            if store == nil { print("no tuning database: no tuned rows (`lowbit tune ...` or `make` makes one; --db points at another)") }
            return
        }
        print("tuned rows (the configuration `lowbit lookup` gives the runtime, measured in this run):")
        for note in notes { print("  \(note)") }
    }
}
