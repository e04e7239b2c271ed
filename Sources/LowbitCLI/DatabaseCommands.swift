import ArgumentParser
import Foundation
import KernelKit
import Machine
import Roofline
import TuningStore

struct DbCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "db",
        abstract: "Inspect and maintain the tuning database.",
        subcommands: [List.self, Show.self, Best.self, Trials.self, Prune.self]
    )

    /// Machines and, per machine, how much is stored.
    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Machines in the database, with trial and workload counts.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var database: DatabaseOptions

        func run() throws {
            let store = try database.openExisting(logger: global.logger("lowbit.db"))
            var t = Table(["fingerprint", "CPU", "workloads", "trials", "last seen"], alignments: [.left, .left, .right, .right, .left])
            for m in try store.machines() {
                let trials = try store.trials(machine: m.fingerprint)
                t.add([m.fingerprint, m.description.cpu.name, "\(Set(trials.map(\.workload)).count)", "\(trials.count)", ISO8601DateFormatter().string(from: m.lastSeen)])
            }
            print(t.rows.isEmpty ? "no machines in \(database.path)" : t.render())
        }
    }

    /// The database file and its contents in numbers.
    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The database's path, integrity and counts.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var database: DatabaseOptions

        func run() throws {
            let store = try database.openExisting(logger: global.logger("lowbit.db"))
            let c = try store.counts()
            let problems = try store.check()
            print("database   \(database.path)")
            print("integrity  \(problems.isEmpty ? "ok (quick_check)" : problems.joined(separator: "; "))")
            print("contents   \(c.machines) machine(s), \(c.workloads) workload(s), \(c.trials) trial(s), \(c.ok) verified and timed")
        }
    }

    /// The best configuration per workload.
    struct Best: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The best measured configuration per (machine, workload).")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var database: DatabaseOptions
        @Option(help: "Only this family.") var family: String?
        @Option(help: "Only this machine fingerprint (default: all).") var machine: String?

        func run() throws {
            let store = try database.openExisting(logger: global.logger("lowbit.db"))
            var t = Table(
                ["machine", "workload", "GOP/s", "min", "samples", "roofline", "binding ceiling", "configuration"],
                alignments: [.left, .left, .right, .right, .right, .right, .left, .left])
            // Roofline columns against the ceilings stored now (re-measured ceilings apply to old trials too);
            // the trial's stored attainment where they cannot be computed.
            let records = Dictionary(try store.machines().map { ($0.fingerprint, $0) }, uniquingKeysWith: { a, _ in a })
            for b in try store.bests(machine: machine, family: family) {
                let now = records[b.machine].flatMap { r in
                    r.ceilings.flatMap { c in ReportBuilder.attainment(of: b, ceilings: Ceilings(flat: c), topology: r.description.topology) }
                }
                let fraction = now?.fraction ?? b.attainment, binding = now?.binding ?? b.binding
                t.add([
                    b.machine, b.workload.description, String(format: "%.1f", b.gops), b.minSeconds.map(TrialReport.ms) ?? "-",
                    b.samples.map(String.init) ?? "-", fraction.map { String(format: "%.0f%%", 100 * $0) } ?? "-", binding ?? "-",
                    b.configuration.description,
                ])
            }
            print(t.rows.isEmpty ? "no verified trials yet; run `lowbit tune`" : t.render())
        }
    }

    /// Stored trials, newest first.
    struct Trials: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stored trials, newest first (or fastest first), with outcome and message.",
            discussion: """
                `lowbit db trials --family gemm-w4a4 --shape m=16 --shape n=11008 --fastest` lists the \
                fastest trials of every stored gemm-w4a4 workload with M = 16 and N = 11008, whatever \
                its other sizes. The v column is the template version, data says whether the trial's \
                inputs were hot (reused by every sample) or cold (evicted before every sample).
                """)
        @OptionGroup var global: GlobalOptions
        @OptionGroup var database: DatabaseOptions
        @Option(help: "Only this family.") var family: String?
        @Option(help: "Only this outcome: ok, rejected, unsupported, compile-error, load-error, verify-failed, crashed, timeout.") var status: String?
        @Option(
            name: .customLong("shape"),
            help: ArgumentHelp("Only workloads with this size, as name=value (repeatable; other sizes may be anything).", valueName: "name=value"))
        var shapeFilters: [String] = []
        @Flag(help: "Fastest first (GOP/s), instead of newest first; failed trials last.") var fastest = false
        @Option(help: "At most this many.") var limit: Int = 30

        func validate() throws {
            let valid = ["ok", "rejected", "unsupported", "compile-error", "load-error", "verify-failed", "crashed", "timeout"]
            if let status, !valid.contains(status) {
                throw ValidationError("unknown status '\(status)'; valid: \(valid.joined(separator: ", "))")
            }
            _ = try sizes()
        }

        /// The --shape filters as dimension -> size.
        func sizes() throws -> [String: Int] {
            var sizes: [String: Int] = [:]
            for item in shapeFilters {
                guard let size = ShapeOptions.size(item) else {
                    throw ValidationError("--shape expects name=integer, e.g. m=16; got '\(item)'")
                }
                sizes[size.name] = size.value
            }
            return sizes
        }

        func run() throws {
            let store = try database.openExisting(logger: global.logger("lowbit.db"))
            let sizes = try sizes()
            // Filters on sizes and the GOP/s order need every matching trial before the limit applies.
            let whole = !sizes.isEmpty || fastest
            var records = try store.trials(family: family, status: status, limit: whole ? nil : limit).filter { r in
                sizes.allSatisfy { r.workload.shape[$0.key] == $0.value }
            }
            if fastest { records.sort { ($0.gops ?? -1) > ($1.gops ?? -1) } }
            var t = Table(
                ["id", "workload", "v", "data", "status", "GOP/s", "roofline", "strategy", "configuration / message"],
                alignments: [.right, .left, .right, .left, .left, .right, .right, .left, .left])
            for r in records.prefix(limit) {
                t.add([
                    r.id.map(String.init) ?? "-", r.workload.description, String(r.templateVersion),
                    r.dataState == nil ? "-" : (r.isCold ? "cold" : "hot"), r.status, r.gops.map { String(format: "%.1f", $0) } ?? "-",
                    r.attainment.map { String(format: "%.0f%%", 100 * $0) } ?? "-", r.strategy ?? "-",
                    r.succeeded ? r.configuration.description : "\(r.configuration) -- \(r.stage): \(r.message ?? "")",
                ])
            }
            if t.rows.isEmpty {
                print(sizes.isEmpty ? "no trials" : "no trials with \(shapeFilters.joined(separator: " "))")
            } else {
                print(t.render())
            }
        }
    }

    /// Removes trials that are not the best of their workload.
    struct Prune: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete trials that are not the best of their workload (bests are never deleted).")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var database: DatabaseOptions
        @Option(help: "Only this machine fingerprint.") var machine: String?
        @Flag(help: "Keep failed trials (they record what does not work).") var keepFailures = false
        @Option(help: "Only trials older than this many days.") var olderThanDays: Double?

        func run() throws {
            let store = try database.openExisting(logger: global.logger("lowbit.db"))
            let cutoff = olderThanDays.map { Date().addingTimeInterval(-$0 * 86400) }
            let removed = try store.prune(machine: machine, keepFailures: keepFailures, olderThan: cutoff)
            print("removed \(removed) trial(s) from \(database.path)")
        }
    }
}

enum ExportFormat: String, CaseIterable, ExpressibleByArgument {
    case json
    case cHeader = "c-header"
}

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write the best configurations of a machine for an inference runtime.",
        discussion: """
            JSON (schema "lowbit-tuning-export", version 1; see TuningDB/README.md) to \
            TuningDB/exports/<fingerprint>.json by default, or a C header with a dispatch table per family \
            keyed by shape (--format c-header, default TuningDB/exports/<fingerprint>.h).
            """
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var database: DatabaseOptions
    @Option(help: "Output file.") var out: String?
    @Option(help: "Output format.") var format: ExportFormat = .json
    @Option(help: "Machine fingerprint (default: this machine).") var machine: String?

    func run() throws {
        let logger = global.logger("lowbit.export")
        let store = try database.openExisting(logger: logger)
        let fingerprint = try machine ?? MachineModel(logger: logger).description.fingerprint.id
        let path = try Self.write(store: store, fingerprint: fingerprint, out: out, format: format)
        print("wrote \(path)")
    }

    static func write(store: TuningStore, fingerprint: String, out: String?, format: ExportFormat) throws -> String {
        let export = try store.export(machine: fingerprint, lowbitVersion: Lowbit.version)
        var path = out ?? TuningStore.defaultExportPath(fingerprint: fingerprint, repositoryRoot: FileManager.default.currentDirectoryPath)
        if out == nil, format == .cHeader { path = (path as NSString).deletingPathExtension + ".h" }
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let data = format == .json ? try export.jsonData() : Data(store.cHeader(for: export).utf8)
        try data.write(to: URL(fileURLWithPath: path), options: .atomic)
        return path
    }
}

struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Merge an export into the database, keeping the better measured record on conflict."
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var database: DatabaseOptions
    @Argument(help: "An export written by `lowbit export`.") var file: String

    func run() throws {
        let store = try database.open(logger: global.logger("lowbit.import"))
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: file))
        } catch {
            throw ValidationError("cannot read \(file): \(error.localizedDescription)")
        }
        let export = try TuningExport.decode(data)
        let report = try store.importExport(export)
        print(report.description)
    }
}
