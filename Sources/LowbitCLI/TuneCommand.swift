import ArgumentParser
import Foundation
import KernelKit
import Kernels
import Logging
import Machine
import Measure
import Pipeline
import Tuner
import TuningStore

/// `--db PATH`, shared by every command that opens the tuning database.
struct DatabaseOptions: ParsableArguments {
    @Option(help: "Tuning database (default: $LOWBIT_DB, else ./TuningDB/lowbit.sqlite, else ~/.local/share/lowbit/lowbit.sqlite).")
    var db: String?

    var path: String { db ?? TuningStore.defaultPath() }

    func open(logger: Logger) throws -> TuningStore { try TuningStore(path: path, logger: logger) }

    /// Whether a file is at `path`.
    var exists: Bool { FileManager.default.fileExists(atPath: path) }

    /// Opens the database for a command that only reads it: with nothing at `path` it says how to
    /// make one (and creates no file there).
    func openExisting(logger: Logger) throws -> TuningStore {
        guard exists else {
            throw ValidationError(
                "no tuning database at \(path) (nothing measured yet): `lowbit tune ...` or `lowbit roofline measure` "
                    + "creates it; --db or $LOWBIT_DB points at another one")
        }
        return try open(logger: logger)
    }
}

extension StrategyKind: ExpressibleByArgument {}

struct TuneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tune",
        abstract: "Search a family's parameters for the fastest verified variant and store every trial.",
        discussion: """
            One workload (`lowbit tune gemm-w8a8 --m 64 --n 4096 --k 4096`) or a suite (`--suite smoke`, \
            `--suite default`, `--suite llama-7b`). Points already in the database for this machine, template \
            version and compiler are reused, never measured again, so running the same command again \
            resumes. Ctrl-C stops after the trial in flight; everything measured is kept. \
            By default the ISA is fixed to the best target this machine runs (--all-isas searches all). \
            Suites: \(Suite.all.map { "\($0.name) (\($0.workloads.count) workloads)" }.joined(separator: ", ")).
            """
    )

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Kernel family (omit with --suite).") var family: String?
    @OptionGroup var shape: ShapeOptions
    @Option(help: "A named suite of workloads: \(Suite.all.map(\.name).joined(separator: ", ")).") var suite: String?
    @Option(help: "Search strategy.") var strategy: StrategyKind = .modelGuided
    @Option(help: "Maximum trials per workload.") var trials: Int?
    @Option(help: "Maximum time per workload, e.g. 90s, 5m.") var time: String?
    @Option(help: "Stop a workload after this many trials without improvement.") var patience: Int?
    @Flag(help: "Search every ISA target this machine runs instead of the best one.") var allIsas = false
    @Option(help: "Seed for the search strategies.") var searchSeed: UInt64 = 7
    @Option(help: ArgumentHelp(
        "After each workload's search, time its N fastest stored configurations again side by side and make the fastest the best (0: no final).",
        discussion: "Trials measured minutes or sessions apart are ranked by the machine's phases as much as by the code; a final compares them in one run. --trials 0 runs only the final."))
    var finalists = 0
    @Option(help: "Rounds of the final: each finalist is timed this many times, in turns.") var finalRounds = 3
    @Flag(help: "Write the export (TuningDB/exports/<fingerprint>.json) at the end.") var export = false
    @OptionGroup var params: ParamOptions
    @OptionGroup var measure: MeasureOptions
    @OptionGroup var database: DatabaseOptions

    func validate() throws {
        if suite == nil && family == nil { throw ValidationError("give a family and its shape, or --suite NAME (\(Suite.all.map(\.name).joined(separator: ", ")))") }
        if let suite, Suite.named(suite) == nil {
            throw ValidationError("unknown suite '\(suite)'; valid suites: \(Suite.all.map(\.name).joined(separator: ", "))")
        }
        if let time, Budget.parseDuration(time) == nil { throw ValidationError("--time expects a duration such as 90s, 5m or 1h, got '\(time)'") }
        if finalists < 0 || finalists == 1 { throw ValidationError("--finalists takes 0 (no final) or at least 2, got \(finalists)") }
        if finalRounds < 1 { throw ValidationError("--final-rounds takes at least 1, got \(finalRounds)") }
        if let trials, trials < 0 { throw ValidationError("--trials takes 0 or more, got \(trials)") }
    }

    func run() throws {
        let logger = global.logger("lowbit.tune")
        let description = try MachineModel(logger: logger).description
        let machine = MachineContext(description)
        let store = try database.open(logger: logger)
        try store.record(machine: description)

        var workloads: [(any KernelFamily, Workload)]
        var budget: Budget
        var chosenSuite: Suite?
        if let name = suite, let s = Suite.named(name) {
            chosenSuite = s
            workloads = try s.workloads.map { (try KernelRegistry.family(named: $0.family), $0) }
            budget = s.budget
        } else {
            let f = try KernelRegistry.family(named: family!)
            workloads = [(f, try shape.workload(for: f))]
            budget = Budget(maxTrials: 30, maxTime: .seconds(300), patience: 12)
        }
        if let trials { budget.maxTrials = trials }
        if let time { budget.maxTime = Budget.parseDuration(time) }
        if let patience { budget.patience = patience }

        var tuningMeasure = measure
        if tuningMeasure.budgetWasDefault { tuningMeasure.budget = 0.5 }
        let runner = try tuningMeasure.runner(machine: description, logger: logger)
        let tuner = Tuner(executor: runner, store: store, machine: machine, fingerprint: description.fingerprint.id, logger: logger)
        Interrupt.install()

        let live = isatty(STDOUT_FILENO) == 1
        let watch = try SpeedWatch()
        print("tuning \(workloads.count) workload(s) on \(description.fingerprint.id) with \(strategy.rawValue); budget per workload: \(budget); database \(database.path)")
        var summaries: [TuneSummary] = []
        for (f, workload) in workloads {
            if Interrupt.requested { break }
            runner.cold = tuningMeasure.cold || (chosenSuite?.measuresCold(workload) ?? false)
            if runner.cold && !tuningMeasure.cold { print("\(workload): measured cold (the suite's decode-sized GEMMs stream their weights from memory)") }
            var fixed = try fixedParameters(f, machine: machine)
            try f.checkShape(workload)
            if f.parameter("isa") != nil, fixed["isa"] == nil, !allIsas { fixed["isa"] = .name(f.bestTarget(on: machine).rawValue) }
            var s = strategy.make(seed: searchSeed)
            var summary = try tuner.tune(family: f, workload: workload, strategy: &s, budget: budget, fixed: fixed) { p in
                Self.report(p, live: live)
            }
            if live { print("") }
            print(Self.line(summary))
            if finalists > 0, !Interrupt.requested {
                var timed = 0
                let outcome = try tuner.final(family: f, workload: workload, count: finalists, rounds: finalRounds) { round, _, _ in
                    timed += 1
                    if live { FileHandle.standardOutput.write(Data("\r  final: round \(round) of \(finalRounds), \(timed) runs done   ".utf8)) }
                }
                if live && timed > 0 { print("") }
                switch outcome {
                case .success(let record):
                    print(Self.finalReport(record, cold: runner.cold))
                    // The summary's best is then the final's winner, at its GOP/s in the final.
                    if let w = record.winnerEntry, let gops = w.gops { summary.best = Observation(configuration: w.configuration, gops: gops) }
                case .failure(let skip): print("  final: not run: \(skip)")
                }
            }
            summaries.append(summary)
        }
        print("")
        print(Self.table(summaries))
        // Trials of one workload run minutes apart: a machine that drifted ranks them by its phases too.
        print(watch.report())
        if Interrupt.requested { print("interrupted: every finished trial is in \(database.path)") }
        if export {
            let path = try ExportCommand.write(store: store, fingerprint: description.fingerprint.id, out: nil, format: .json)
            print("export written to \(path)")
        }
    }

    /// Parameters given with --param are held fixed during the search.
    func fixedParameters(_ f: any KernelFamily, machine: MachineContext) throws -> [String: ParamValue] {
        var fixed: [String: ParamValue] = [:]
        for (name, text) in try params.overrides() {
            guard let spec = f.parameter(name) else {
                throw ValidationError("unknown parameter '\(name)' for \(f.name); valid parameters: \(f.parameters.map(\.name).joined(separator: ", "))")
            }
            guard let value = spec.domain.parse(text), spec.domain.contains(value) else {
                throw ValidationError("\(name)=\(text) is not valid for \(f.name); valid: \(spec.domain)")
            }
            fixed[name] = value
        }
        return fixed
    }

    static func report(_ p: TuneProgress, live: Bool) {
        let best = p.best?.gops.map { String(format: "%.1f GOP/s", $0) } ?? "-"
        let budget = p.trialBudget.map { "/\($0)" } ?? ""
        let eta = p.eta.map { " ETA \(Budget.format($0))" } ?? ""
        if live {
            let text = "\r  \(p.workload): trial \(p.trialsDone)\(budget), \(p.failures) failed, best \(best),\(eta)   "
            FileHandle.standardOutput.write(Data(text.utf8))
        } else {
            let last = p.last.map { r in r.succeeded ? String(format: "%.1f GOP/s", r.gops ?? 0) : "\(r.status.rawValue) at \(r.stage)" } ?? ""
            print("  \(p.workload) trial \(p.trialsDone)\(budget): \(last) [\(p.last?.configuration.description ?? "")]; best \(best)")
        }
    }

    static func line(_ s: TuneSummary) -> String {
        let best = s.best?.gops.map { String(format: "%.1f GOP/s", $0) } ?? "none"
        return "  \(s.workload): \(s.trials) trials (\(s.failures) failed, \(s.resumed) from the database), best \(best); stopped: \(s.stop.rawValue)"
    }

    /// The finalists with their stored and fresh GOP/s, the parameters in which they differ, and the outcome.
    static func finalReport(_ f: FinalRecord, cold: Bool) -> String {
        let differing = Set(f.entries.flatMap { $0.configuration.values.keys }).sorted().filter { name in
            Set(f.entries.map { $0.configuration.values[name]?.description ?? "-" }).count > 1
        }
        let rounds = f.roundCount
        var t = Table(
            ["", "trial", "stored GOP/s"] + (1...max(1, rounds)).map { "round \($0)" } + ["relative", "final GOP/s", "differs in"],
            alignments: [.left, .right, .right] + Array(repeating: .right, count: max(1, rounds) + 2) + [.left])
        let scores = FinalEntry.scores(f.entries)
        let order = f.entries.indices.sorted { (scores[$0] ?? -1) > (scores[$1] ?? -1) }
        for i in order {
            let e = f.entries[i]
            let cells = (0..<max(1, rounds)).map { i in i < e.rounds.count ? (e.rounds[i].map { String(format: "%.1f", $0) } ?? "failed") : "-" }
            t.add([e.trialID == f.winner ? "*" : "", "\(e.trialID)", String(format: "%.1f", e.storedGops)] + cells
                  + [scores[i].map { String(format: "%.3f", $0) } ?? "failed", e.gops.map { String(format: "%.1f", $0) } ?? "failed",
                     differing.map { "\($0)=\(e.configuration.values[$0]?.description ?? "-")" }.joined(separator: " ")])
        }
        var lines = [
            "  final: \(f.entries.count) finalists timed side by side\(cold ? " cold" : ""), \(rounds) round\(rounds == 1 ? "" : "s") each in turns; "
                + "relative: GOP/s over the round's geometric mean, median over the rounds (the highest wins)",
        ]
        lines.append(t.render(indent: "    "))
        if let w = f.winnerEntry, let gops = w.gops {
            let change = f.previousBest == w.trialID ? "the stored best held" : "replaces trial \(f.previousBest.map(String.init) ?? "-")"
            lines.append(String(format: "  best: trial %lld at %.1f GOP/s in the final (%@)", w.trialID, gops, change))
        } else {
            lines.append("  best: unchanged (every finalist failed in the final)")
        }
        return lines.joined(separator: "\n")
    }

    static func table(_ summaries: [TuneSummary]) -> String {
        var t = Table(["workload", "trials", "failed", "resumed", "best GOP/s", "stop", "best configuration"],
                      alignments: [.left, .right, .right, .right, .right, .left, .left])
        for s in summaries {
            t.add([s.workload.description, "\(s.trials)", "\(s.failures)", "\(s.resumed)",
                   s.best?.gops.map { String(format: "%.1f", $0) } ?? "-", s.stop.rawValue, s.best?.configuration.description ?? "-"])
        }
        return t.render()
    }
}
