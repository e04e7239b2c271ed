import Foundation
import GRDB
import KernelKit
import Machine
import Measure

/// A machine's tuned configurations as a versioned JSON document (`TuningDB/exports/<fingerprint>.json`
/// by default): what an inference runtime or another lowbit database needs.
///
/// Schema `lowbit-tuning-export`, version 1: `machine` (the full `MachineDescription`), `ceilings`
/// (measured roofline ceilings, when known), and one entry per workload with the best configuration,
/// its performance and how it was measured. Dates are ISO 8601, keys sorted, times in seconds.
public struct TuningExport: Codable, Sendable, Equatable {
    public static let schemaName = "lowbit-tuning-export"
    public static let currentVersion = 1

    /// One workload's best configuration.
    public struct Entry: Codable, Sendable, Equatable {
        /// The timing summary of the measurement, in seconds.
        public struct Timing: Codable, Sendable, Equatable {
            public var min: Double
            public var median: Double
            public var p20: Double
            public var p80: Double
            public var count: Int

            public init(min: Double, median: Double, p20: Double, p80: Double, count: Int) {
                self.min = min
                self.median = median
                self.p20 = p20
                self.p80 = p80
                self.count = count
            }
        }

        public var family: String
        public var workload: Workload
        public var configuration: KernelKit.Configuration
        public var templateVersion: Int
        public var variant: String?
        /// GOP/s at the minimum time.
        public var gops: Double
        public var timing: Timing?
        public var compiler: String
        public var flags: [String]
        public var measuredAt: Date
        public var dataState: String?
        /// How many trials (failures included) the exporting database held for this workload.
        public var trialCount: Int
        /// Set when the best was chosen by a final (`lowbit tune --finalists`): `gops` is then the winner's
        /// fastest round, timed side by side with the other finalists; `timing` stays its tuning run's.
        public var final: Final?

        public struct Final: Codable, Sendable, Equatable {
            /// Finalists timed, and rounds each.
            public var finalists: Int
            public var rounds: Int
            /// The winner's GOP/s from its own tuning run.
            public var storedGops: Double
            public var measuredAt: Date

            public init(finalists: Int, rounds: Int, storedGops: Double, measuredAt: Date) {
                self.finalists = finalists
                self.rounds = rounds
                self.storedGops = storedGops
                self.measuredAt = measuredAt
            }
        }

        public init(
            family: String, workload: Workload, configuration: KernelKit.Configuration, templateVersion: Int,
            variant: String? = nil, gops: Double, timing: Timing?, compiler: String, flags: [String],
            measuredAt: Date, dataState: String?, trialCount: Int, final: Final? = nil
        ) {
            self.family = family
            self.workload = workload
            self.configuration = configuration
            self.templateVersion = templateVersion
            self.variant = variant
            self.gops = gops
            self.timing = timing
            self.compiler = compiler
            self.flags = flags
            self.measuredAt = measuredAt
            self.dataState = dataState
            self.trialCount = trialCount
            self.final = final
        }
    }

    public var schema: String = TuningExport.schemaName
    public var version: Int = TuningExport.currentVersion
    public var exportedAt: Date
    public var lowbitVersion: String
    public var machine: MachineDescription
    public var ceilings: [String: Double]?
    /// Sorted by family, then shape.
    public var entries: [Entry]

    public init(
        exportedAt: Date = Date(), lowbitVersion: String, machine: MachineDescription, ceilings: [String: Double]?,
        entries: [Entry]
    ) {
        self.exportedAt = exportedAt
        self.lowbitVersion = lowbitVersion
        self.machine = machine
        self.ceilings = ceilings
        self.entries = entries
    }

    /// The export as pretty-printed JSON with sorted keys and ISO 8601 dates.
    public func jsonData() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return try encoder.encode(self)
    }

    /// Reads an export, refusing another schema or a newer version.
    public static func decode(_ data: Data) throws -> TuningExport {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        struct Header: Decodable { var schema: String?; var version: Int? }
        let header: Header
        do { header = try decoder.decode(Header.self, from: data) } catch {
            throw TuningStoreError.invalidExport("not a JSON object: \(error)")
        }
        guard header.schema == schemaName else {
            throw TuningStoreError.invalidExport("schema is '\(header.schema ?? "missing")', expected '\(schemaName)'")
        }
        guard let version = header.version, version <= currentVersion else {
            throw TuningStoreError.invalidExport(
                "version \(header.version.map(String.init) ?? "missing") is newer than this lowbit reads "
                    + "(\(currentVersion)); use a newer lowbit")
        }
        do { return try decoder.decode(TuningExport.self, from: data) } catch {
            throw TuningStoreError.invalidExport("\(error)")
        }
    }
}

/// What `importExport` did, per workload.
public struct ImportReport: Sendable, CustomStringConvertible {
    /// A workload for which both the database and the export had a best.
    public struct Conflict: Sendable, Equatable {
        public var workload: Workload
        /// GOP/s of the record that was stored before the import.
        public var storedGops: Double
        /// GOP/s of the imported record.
        public var importedGops: Double
        /// Set when the comparison was not by GOP/s (e.g. the same point was already stored).
        public var note: String?
    }

    public var machine: String
    /// Workloads that had no best before: the imported record is now the best.
    public var added: [Workload] = []
    /// The imported record outranked the stored best (`BestRank`) and replaced it.
    public var replaced: [Conflict] = []
    /// The stored best ranks at least as high (or was the same point) and stays.
    public var kept: [Conflict] = []

    public var description: String {
        var lines = [
            "import into machine \(machine): \(added.count) added, \(replaced.count) replaced, \(kept.count) kept"
        ]
        for workload in added { lines.append("  \(workload): added (no stored record)") }
        for c in replaced {
            lines.append(
                "  \(c.workload): replaced the stored record: \(Self.gops(c.importedGops)) GOP/s imported vs "
                    + "\(Self.gops(c.storedGops)) measured here" + (c.note.map { " (\($0))" } ?? ""))
        }
        for c in kept {
            if let note = c.note {
                lines.append("  \(c.workload): kept the stored record: \(note)")
            } else {
                lines.append(
                    "  \(c.workload): kept the stored record: \(Self.gops(c.storedGops)) GOP/s measured vs "
                        + "\(Self.gops(c.importedGops)) imported")
            }
        }
        return lines.joined(separator: "\n")
    }

    static func gops(_ value: Double) -> String { String(format: "%.1f", value) }
}

extension TuningStore {
    /// The default export file: `<repositoryRoot>/TuningDB/exports/<fingerprint>.json`.
    public static func defaultExportPath(fingerprint: String, repositoryRoot: String) -> String {
        ((repositoryRoot as NSString).appendingPathComponent("TuningDB/exports") as NSString)
            .appendingPathComponent("\(fingerprint).json")
    }

    /// Builds the export of one machine: its description and ceilings, and every best with the
    /// number of trials stored for its workload. Throws `.unknownMachine` if the machine was never
    /// recorded.
    public func export(machine fingerprint: String, lowbitVersion: String) throws -> TuningExport {
        guard let machine = try machine(fingerprint) else { throw TuningStoreError.unknownMachine(fingerprint) }
        let bests = try bests(machine: fingerprint)
        // An imported trial stands for the trials its exporting database held for the workload.
        let trialCounts = try pool.read { db in
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT t.workload_key AS workload_key, COUNT(*) + COALESCE(SUM(i.trial_count - 1), 0) AS n
                    FROM trials t LEFT JOIN imported i ON i.trial_id = t.id
                    WHERE t.machine = ? GROUP BY t.workload_key
                    """,
                arguments: [fingerprint])
            return Dictionary(uniqueKeysWithValues: rows.map { ($0["workload_key"] as String, $0["n"] as Int) })
        }
        let entries = try bests.map { best in
            // A final run here decides; else the final an imported best came with, while it is the best.
            let final = try decidingFinal(machine: fingerprint, workload: best.workload).flatMap { f in
                f.winnerEntry.map {
                    TuningExport.Entry.Final(
                        finalists: f.entries.count, rounds: f.roundCount, storedGops: $0.storedGops, measuredAt: f.measuredAt)
                }
            } ?? importedFinal(trialID: best.trialID)
            return TuningExport.Entry(
                family: best.family, workload: best.workload, configuration: best.configuration,
                templateVersion: best.templateVersion, variant: best.variant, gops: best.gops,
                timing: best.timing.map {
                    .init(min: $0.min, median: $0.median, p20: $0.p20, p80: $0.p80, count: $0.count)
                },
                compiler: best.compiler, flags: best.flags, measuredAt: best.measuredAt, dataState: best.dataState,
                trialCount: trialCounts[best.workload.description] ?? 1, final: final)
        }
        return TuningExport(
            lowbitVersion: lowbitVersion, machine: machine.description, ceilings: machine.ceilings, entries: entries)
    }

    /// The final an imported trial came with, if any.
    func importedFinal(trialID: Int64) throws -> TuningExport.Entry.Final? {
        try pool.read { db in
            guard let row = try Row.fetchOne(
                db,
                sql: """
                    SELECT final_finalists, final_rounds, final_stored_gops, final_measured_at FROM imported
                    WHERE trial_id = ? AND final_finalists IS NOT NULL
                    """,
                arguments: [trialID])
            else { return nil }
            return TuningExport.Entry.Final(
                finalists: row["final_finalists"], rounds: row["final_rounds"], storedGops: row["final_stored_gops"],
                measuredAt: row["final_measured_at"])
        }
    }

    /// Merges an export into this database, in one transaction.
    ///
    /// The machine is recorded (its ceilings taken when the export has them). Each entry is stored
    /// as an `ok` trial with strategy `import` (so it has a trial id, and its point is not measured
    /// again), with the entry's trial count and final beside it (table `imported`: an export of this
    /// database repeats them); it becomes the best only when it outranks the stored best (`BestRank`:
    /// newer template version, then cold over hot, then faster), or when there is none. The report
    /// says, per workload, which record was kept and why.
    public func importExport(_ export: TuningExport) throws -> ImportReport {
        guard export.schema == TuningExport.schemaName, export.version <= TuningExport.currentVersion else {
            throw TuningStoreError.invalidExport("schema \(export.schema) version \(export.version)")
        }
        let fingerprint = export.machine.fingerprint.id
        let session = "import " + ISO8601DateFormatter().string(from: export.exportedAt)
        let rows = try export.entries.map { entry in
            var timing: TimingSummary? = nil
            if let t = entry.timing {
                var summary = TimingSummary(samples: [])
                summary.min = t.min
                summary.median = t.median
                summary.p20 = t.p20
                summary.p80 = t.p80
                summary.count = t.count
                timing = summary
            }
            return try TrialRow(
                TrialRecord(
                    machine: fingerprint, family: entry.family, workload: entry.workload,
                    configuration: entry.configuration, templateVersion: entry.templateVersion, variant: entry.variant,
                    compiler: entry.compiler, flags: entry.flags, status: "ok", stage: "import",
                    message: "imported from an export made by lowbit \(export.lowbitVersion)", timing: timing,
                    gops: entry.gops, dataState: entry.dataState, strategy: "import", session: session,
                    createdAt: entry.measuredAt))
        }
        try record(machine: export.machine, ceilings: export.ceilings)
        var report = ImportReport(machine: fingerprint)
        try pool.writeWithoutTransaction { db in
            try db.inTransaction(.immediate) {
                report = ImportReport(machine: fingerprint)
                for (row, entry) in zip(rows, export.entries) {
                    let workload = row.trial.workload
                    let stored = try Self.storedBest(db, machine: fingerprint, workload: workload)
                    let incoming = row.trial.gops ?? 0
                    let (id, inserted) = try Self.insert(row, db)
                    if inserted {
                        try db.execute(
                            sql: """
                                INSERT INTO imported (trial_id, trial_count, final_finalists, final_rounds, final_stored_gops, final_measured_at)
                                VALUES (?, ?, ?, ?, ?, ?)
                                """,
                            arguments: [
                                id, max(entry.trialCount, 1), entry.final?.finalists, entry.final?.rounds, entry.final?.storedGops,
                                entry.final?.measuredAt,
                            ])
                    }
                    guard let stored else {
                        let isBest = try Bool.fetchOne(
                            db, sql: "SELECT EXISTS (SELECT 1 FROM best WHERE trial_id = ?)", arguments: [id]) ?? false
                        if isBest {
                            report.added.append(workload)
                        } else if inserted {
                            report.kept.append(
                                .init(workload: workload, storedGops: 0, importedGops: incoming,
                                      note: "the imported record has no positive GOP/s; stored as trial \(id), not a best"))
                        } else {
                            let status = try String.fetchOne(db, sql: "SELECT status FROM trials WHERE id = ?", arguments: [id])
                            report.kept.append(
                                .init(workload: workload, storedGops: 0, importedGops: incoming,
                                      note: "the same point is already stored as trial \(id) (\(status ?? "?")), not re-imported"))
                        }
                        continue
                    }
                    let storedID = stored.trialID, storedGops = stored.gops
                    if storedID == id {
                        report.kept.append(
                            .init(workload: workload, storedGops: storedGops, importedGops: incoming,
                                  note: "the imported record is the stored one (trial \(id))"))
                    } else if !inserted {
                        report.kept.append(
                            .init(workload: workload, storedGops: storedGops, importedGops: incoming,
                                  note: "the same point is already stored as trial \(id); "
                                      + "\(ImportReport.gops(storedGops)) GOP/s best measured vs "
                                      + "\(ImportReport.gops(incoming)) imported"))
                    } else if try Self.storedBest(db, machine: fingerprint, workload: workload)?.trialID == id {
                        report.replaced.append(
                            .init(workload: workload, storedGops: storedGops, importedGops: incoming,
                                  note: BestRank(row.trial).contrast(with: stored.rank, "the imported record", "the stored one")))
                    } else {
                        report.kept.append(
                            .init(workload: workload, storedGops: storedGops, importedGops: incoming,
                                  note: stored.rank.contrast(with: BestRank(row.trial), "the stored record", "the imported one")
                                      .map {
                                          "\(ImportReport.gops(storedGops)) GOP/s measured vs \(ImportReport.gops(incoming)) imported, "
                                              + "and \($0)"
                                      }))
                    }
                }
                return .commit
            }
        }
        logger.info("\(report.description)")
        return report
    }

    /// A C header holding the export as dispatch tables, one per family, keyed by shape.
    ///
    /// Per family `<f>` (its name in snake case): `struct lowbit_<f>_entry` with one `int` per shape
    /// dimension (in `Workload` key order, i.e. sorted by name), one field per parameter (`int`, or
    /// `const char *` for name-valued ones such as `isa`), `template_version` and `gops`; the table
    /// `lowbit_<f>_table[]` sorted by shape with `lowbit_<f>_table_size`; and
    /// `lowbit_<f>_lookup(dims...)`, which returns the entry of exactly that shape, else the nearest
    /// one by Euclidean distance over log2 of the dimensions, else NULL (empty table). Plain C11, no
    /// libm, positional initializers: it compiles with `-std=c11 -Wall -Wextra -Werror` and as C++.
    public func cHeader(for export: TuningExport) -> String {
        CHeader.render(export)
    }
}

fileprivate extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}

enum CHeader {
    static let keywords: Set<String> = [
        "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else", "enum", "extern",
        "float", "for", "goto", "if", "inline", "int", "long", "register", "restrict", "return", "short",
        "signed", "sizeof", "static", "struct", "switch", "typedef", "union", "unsigned", "void", "volatile",
        "while", "bool", "true", "false", "alignas", "alignof", "noreturn", "static_assert", "thread_local",
    ]

    /// A C identifier made of `name`'s letters and digits (anything else becomes `_`).
    static func identifier(_ name: String) -> String {
        var text = String(name.map { ($0.isASCII && ($0.isLetter || $0.isNumber)) ? $0 : "_" })
        if text.isEmpty || text.first!.isNumber { text = "_" + text }
        if keywords.contains(text) || text.hasPrefix("__") { text += "_" }
        return text
    }

    /// A C string literal of `text`'s UTF-8 bytes (non-printable and non-ASCII bytes as octal escapes).
    static func stringLiteral(_ text: String) -> String {
        var out = "\""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out += "\\\""
            case UInt8(ascii: "\\"): out += "\\\\"
            case UInt8(ascii: "?"): out += "\\?"  // no trigraphs
            case 0x20...0x7e: out.unicodeScalars.append(Unicode.Scalar(byte))
            default: out += "\\" + String(byte, radix: 8).leftPadded(to: 3)
            }
        }
        return out + "\""
    }

    static func comment(_ text: String) -> String {
        text.replacingOccurrences(of: "*/", with: "* /").replacingOccurrences(of: "\n", with: " ")
    }

    static func double(_ value: Double) -> String {
        guard value.isFinite else { return "0.0" }
        let text = "\(value)"
        return text.contains(".") || text.contains("e") ? text : text + ".0"
    }

    enum FieldKind { case int, string }

    static func render(_ export: TuningExport) -> String {
        let date = ISO8601DateFormatter().string(from: export.exportedAt)
        var out = """
            /* Tuned kernel parameters: generated by lowbit \(comment(export.lowbitVersion)) on \(date). Do not edit.
             * machine: \(comment(export.machine.cpu.name)) (\(comment(export.machine.cpu.vendor)))
             * fingerprint: \(comment(export.machine.fingerprint.id))
             * from export schema \(comment(export.schema)) version \(export.version)
             * Per family: a table sorted by shape and a lookup returning the exact shape's entry, else the
             * nearest by Euclidean distance over log2 of the dimensions, else NULL.
             */
            #ifndef LOWBIT_TUNING_H
            #define LOWBIT_TUNING_H

            #include <stdint.h>

            #define LOWBIT_TUNING_FINGERPRINT \(stringLiteral(export.machine.fingerprint.id))
            #define LOWBIT_TUNING_EXPORT_VERSION \(export.version)

            /* log2 of a positive int, without libm (atanh series on the mantissa). */
            static inline double lowbit_log2_(int value) {
                double x = (double)value, exponent = 0.0;
                while (x >= 2.0) { x *= 0.5; exponent += 1.0; }
                while (x < 1.0) { x *= 2.0; exponent -= 1.0; }
                double s = (x - 1.0) / (x + 1.0), s2 = s * s, term = s, sum = 0.0;
                for (int i = 1; i < 60; i += 2) { sum += term / i; term *= s2; }
                return exponent + 2.0 * sum / 0.693147180559945309417232121458176568;
            }

            """
        let families = Dictionary(grouping: export.entries, by: \.family)
        for family in families.keys.sorted() {
            let entries = families[family]!.sorted { TuningStore.shapeOrder($0.workload, $1.workload) }
            out += "\n" + renderFamily(family, entries)
        }
        out += "\n#endif /* LOWBIT_TUNING_H */\n"
        return out
    }

    static func renderFamily(_ family: String, _ entries: [TuningExport.Entry]) -> String {
        let prefix = "lowbit_" + identifier(family).lowercased()
        let dims = Set(entries.flatMap { $0.workload.shape.keys }).sorted()
        var params: [String: FieldKind] = [:]
        for entry in entries {
            for (name, value) in entry.configuration.values {
                if case .name = value { params[name] = .string } else if params[name] == nil { params[name] = .int }
            }
        }
        // Field names: dims first; a parameter whose name collides gets a `p_` prefix.
        var used = Set(dims.map(identifier))
        used.formUnion(["template_version", "gops"])
        var paramFields: [(name: String, field: String, kind: FieldKind)] = []
        for name in params.keys.sorted() {
            var field = identifier(name)
            while used.contains(field) { field = "p_" + field }
            used.insert(field)
            paramFields.append((name, field, params[name]!))
        }
        let dimFields = dims.map(identifier)
        let entryType = "struct \(prefix)_entry"

        var out = "/* \(comment(family)): shape (\(dims.joined(separator: ", "))), "
        out += "\(entries.count) tuned shape\(entries.count == 1 ? "" : "s"). */\n"
        out += "\(entryType) {\n"
        for field in dimFields { out += "    int \(field);\n" }
        for p in paramFields { out += p.kind == .int ? "    int \(p.field);\n" : "    const char *\(p.field);\n" }
        out += "    int template_version;\n    double gops; /* GOP/s measured at the minimum time */\n};\n\n"

        out += "static const \(entryType) \(prefix)_table[] = {\n"
        let columns = dimFields + paramFields.map(\.field) + ["template_version", "gops"]
        out += "    /* " + columns.joined(separator: ", ") + " */\n"
        for entry in entries {
            var fields: [String] = dims.map { String(entry.workload.shape[$0] ?? 0) }
            for p in paramFields {
                switch (entry.configuration.values[p.name], p.kind) {
                case (.int(let v)?, .int): fields.append(String(v))
                case (_, .int): fields.append("0")
                case (let value?, .string): fields.append(stringLiteral(value.description))
                case (nil, .string): fields.append("(const char *)0")
                }
            }
            fields.append(String(entry.templateVersion))
            fields.append(double(entry.gops))
            out += "    { " + fields.joined(separator: ", ") + " },\n"
        }
        if entries.isEmpty { out += "    { 0 },\n" }
        out += "};\n"
        out += "static const int \(prefix)_table_size = \(entries.count);\n\n"

        let arguments = dimFields.map { "int \($0)" }.joined(separator: ", ")
        let n = max(dims.count, 1)
        let query = dimFields.isEmpty ? "0" : dimFields.joined(separator: ", ")
        let entryDims = dimFields.isEmpty ? "0" : dimFields.map { "e->\($0)" }.joined(separator: ", ")
        out += """
            /* The entry for exactly this shape, else the nearest by log2 distance, else NULL. */
            static inline const \(entryType) *\(prefix)_lookup(\(arguments.isEmpty ? "void" : arguments)) {
                const int query[\(n)] = { \(query) };
                const \(entryType) *nearest = 0;
                double nearest_distance = 0.0;
                for (int i = 0; i < \(prefix)_table_size; ++i) {
                    const \(entryType) *e = &\(prefix)_table[i];
                    const int dims[\(n)] = { \(entryDims) };
                    int exact = 1, comparable = 1;
                    double distance = 0.0;
                    for (int d = 0; d < \(n); ++d) {
                        if (dims[d] != query[d]) exact = 0;
                        if (dims[d] <= 0 || query[d] <= 0) {
                            comparable = 0;
                        } else {
                            double diff = lowbit_log2_(dims[d]) - lowbit_log2_(query[d]);
                            distance += diff * diff;
                        }
                    }
                    if (exact) return e;
                    if (comparable && (nearest == 0 || distance < nearest_distance)) {
                        nearest = e;
                        nearest_distance = distance;
                    }
                }
                return nearest;
            }

            """
        return out
    }
}
