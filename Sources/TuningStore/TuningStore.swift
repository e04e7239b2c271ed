import Foundation
import GRDB
import KernelKit
import Logging
import Machine
import Measure

/// The tuning database: every trial, the machines and workloads they ran on, and the best trial per
/// (machine, workload). GRDB over SQLite.
///
/// - Concurrency: the file is opened in WAL mode through a `DatabasePool` with a 10 s busy timeout,
///   so several tuning processes (or several stores in one process) can write to one database at
///   once: writers wait for each other instead of failing, and readers never block.
/// - Durability: every `insert` is its own IMMEDIATE transaction, so a process killed with SIGKILL
///   loses at most the trial it was writing; the next open recovers the WAL. (GRDB runs WAL mode
///   with `synchronous = NORMAL`: commits survive a killed process; a power cut may lose the last
///   few, never the database's consistency.)
/// - Cost of opening: the checks include `PRAGMA quick_check`, which reads the whole file.
/// - Safety: an existing file is checked before anything writes to it (`init(path:logger:)`): a file
///   that is not SQLite, a foreign SQLite database, a damaged one, or one from a newer lowbit is
///   refused with a `TuningStoreError` and left byte-for-byte unchanged.
public final class TuningStore: Sendable {
    /// The database file.
    public let path: String
    /// The schema version this build writes.
    public static let schemaVersion = Schema.version
    /// The environment variable that overrides the default database path.
    public static let environmentVariable = "LOWBIT_DB"

    let pool: DatabasePool
    let logger: Logger

    /// Opens the database at `path`, creating it (and its directory) when it does not exist.
    ///
    /// An existing file is inspected first, without modifying it: it must start with the SQLite
    /// header, not be truncated, carry lowbit's `application_id` (or be an SQLite file with no
    /// tables, which is adopted), pass `PRAGMA quick_check`, and have a schema version this build
    /// knows. Otherwise this throws `.notADatabase`, `.foreignDatabase`, `.corrupt` or `.tooNew`.
    /// Then the pending migrations run.
    public init(path: String, logger: Logger = Logger(label: "lowbit.store")) throws {
        self.path = path
        self.logger = logger
        let state = try Schema.inspect(path: path)
        if state == .absent {
            let directory = (path as NSString).deletingLastPathComponent
            if !directory.isEmpty {
                do {
                    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                } catch {
                    throw TuningStoreError.io(path: path, message: "cannot create directory \(directory): \(error)")
                }
            }
            logger.info("creating tuning database \(path)")
        }
        var configuration = GRDB.Configuration()
        configuration.busyMode = .timeout(10)
        configuration.label = "lowbit.store"
        configuration.foreignKeysEnabled = true
        pool = try Self.openPool(path: path, configuration: configuration)
        try migrate(state: state)
    }

    /// Opens the pool, retrying for up to 10 s while another process holds a lock that SQLite does
    /// not wait for (switching a database that is being created to WAL mode answers SQLITE_BUSY at
    /// once instead of calling the busy handler).
    private static func openPool(path: String, configuration: GRDB.Configuration) throws -> DatabasePool {
        let deadline = Date(timeIntervalSinceNow: 10)
        while true {
            do {
                return try DatabasePool(path: path, configuration: configuration)
            } catch let error as DatabaseError
                where (error.resultCode == .SQLITE_BUSY || error.resultCode == .SQLITE_LOCKED) && Date() < deadline
            {
                Thread.sleep(forTimeInterval: 0.02)
            } catch {
                throw TuningStoreError.io(path: path, message: "opening it failed: \(error)")
            }
        }
    }

    private func migrate(state: Schema.FileState) throws {
        let migrator = Schema.migrator
        do {
            try migrator.migrate(pool)
        } catch {
            // Another process may be creating the same tables between our check and our write: wait
            // for its migrations (each commits on its own) and take over where it is, for up to 5 s.
            var completed = (try? pool.read { try migrator.hasCompletedMigrations($0) }) ?? false
            var attempts = 0
            while !completed, attempts < 50 {
                attempts += 1
                usleep(100_000)
                if (try? migrator.migrate(pool)) != nil { completed = true; break }
                completed = (try? pool.read { try migrator.hasCompletedMigrations($0) }) ?? false
            }
            if !completed {
                if state != .lowbit {
                    // We may have adopted a file that a foreign program filled in the meantime.
                    let foreign = (try? pool.read { try Int32.fetchOne($0, sql: "PRAGMA application_id") }) ?? 0
                    if foreign != Schema.applicationID {
                        throw TuningStoreError.foreignDatabase(
                            path: path, reason: "creating lowbit's tables failed: \(error)")
                    }
                }
                throw TuningStoreError.io(path: path, message: "migrating its schema failed: \(error)")
            }
        }
    }

    /// Closes the database connections (also done when the store is released).
    public func close() throws { try pool.close() }

    /// The default database: `$LOWBIT_DB` if set; else `<cwd>/TuningDB/lowbit.sqlite` when the
    /// current directory has a `TuningDB` folder (the repository's, git-ignored); else
    /// `$XDG_DATA_HOME/lowbit/lowbit.sqlite`, which defaults to `~/.local/share/lowbit/lowbit.sqlite`
    /// (the directory is created when the database is opened).
    public static func defaultPath(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        currentDirectory: String = FileManager.default.currentDirectoryPath
    ) -> String {
        if let path = environment[environmentVariable], !path.isEmpty { return path }
        let repositoryFolder = (currentDirectory as NSString).appendingPathComponent("TuningDB")
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: repositoryFolder, isDirectory: &isDirectory), isDirectory.boolValue {
            return (repositoryFolder as NSString).appendingPathComponent("lowbit.sqlite")
        }
        let dataHome: String
        if let xdg = environment["XDG_DATA_HOME"], xdg.hasPrefix("/") {
            dataHome = xdg
        } else {
            let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 }
                ?? FileManager.default.homeDirectoryForCurrentUser.path
            dataHome = (home as NSString).appendingPathComponent(".local/share")
        }
        return (dataHome as NSString).appendingPathComponent("lowbit/lowbit.sqlite")
    }

    /// Runs `PRAGMA quick_check`; an empty answer means the database is sound.
    public func check() throws -> [String] {
        let answer = try pool.read { try String.fetchAll($0, sql: "PRAGMA quick_check") }
        return answer == ["ok"] ? [] : answer
    }

    // MARK: - Machines

    /// Stores the machine (insert or update): its description and `lastSeen` are refreshed, and its
    /// ceilings replaced when `ceilings` is given (kept when nil).
    public func record(machine: MachineDescription, ceilings: [String: Double]? = nil) throws {
        let description = try JSONText.encode(machine)
        let ceilingsText = try ceilings.map { try JSONText.encode($0) }
        let now = Date()
        try pool.writeWithoutTransaction { db in
            try db.inTransaction(.immediate) {
                try db.execute(
                    sql: """
                        INSERT INTO machines (fingerprint, cpu, description, ceilings, first_seen, last_seen)
                        VALUES (?, ?, ?, ?, ?, ?)
                        ON CONFLICT(fingerprint) DO UPDATE SET
                            cpu = excluded.cpu, description = excluded.description,
                            ceilings = COALESCE(excluded.ceilings, machines.ceilings), last_seen = excluded.last_seen
                        """,
                    arguments: [machine.fingerprint.id, machine.cpu.name, description, ceilingsText, now, now])
                return .commit
            }
        }
    }

    /// Every stored machine, by fingerprint.
    public func machines() throws -> [MachineRecord] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM machines ORDER BY fingerprint").map(Self.machineRecord)
        }
    }

    public func machine(_ fingerprint: String) throws -> MachineRecord? {
        try pool.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM machines WHERE fingerprint = ?", arguments: [fingerprint])
                .map(Self.machineRecord)
        }
    }

    static func machineRecord(_ row: Row) throws -> MachineRecord {
        MachineRecord(
            fingerprint: row["fingerprint"],
            description: try JSONText.decode(MachineDescription.self, row["description"]),
            ceilings: try (row["ceilings"] as String?).map { try JSONText.decode([String: Double].self, $0) },
            firstSeen: row["first_seen"], lastSeen: row["last_seen"])
    }

    // MARK: - Trials

    /// Stores a trial and returns its id, in one write transaction (committed before returning, so
    /// a process killed later loses nothing already inserted):
    /// 1. if a trial with the same `pointKey` is stored, nothing is written and its id is returned
    ///    (the same point is never stored twice; the first measurement stands);
    /// 2. the workload is added if new, and the trial inserted;
    /// 3. if the trial is `ok` with a finite, positive `gops` and its `BestRank` (template version,
    ///    then cold over hot, then GOP/s) is strictly greater than the stored best's for (machine,
    ///    workload), or there is none, it becomes the best. Failures never do.
    @discardableResult
    public func insert(_ trial: TrialRecord) throws -> Int64 {
        let row = try TrialRow(trial)
        return try pool.writeWithoutTransaction { db in
            var id: Int64 = 0
            try db.inTransaction(.immediate) {
                id = try Self.insert(row, db).id
                return .commit
            }
            return id
        }
    }

    /// Inserts inside the caller's transaction; `inserted` is false when the point was stored.
    static func insert(_ row: TrialRow, _ db: Database) throws -> (id: Int64, inserted: Bool) {
        if let existing = try Int64.fetchOne(
            db, sql: "SELECT id FROM trials WHERE point_key = ?", arguments: [row.pointKey])
        {
            return (existing, false)
        }
        let trial = row.trial
        try db.execute(
            sql: "INSERT INTO workloads (key, family, shape) VALUES (?, ?, ?) ON CONFLICT(key) DO NOTHING",
            arguments: [trial.workload.description, trial.workload.family, row.shape])
        let workloadID = try Int64.fetchOne(
            db, sql: "SELECT id FROM workloads WHERE key = ?", arguments: [trial.workload.description])!
        try db.execute(
            sql: """
                INSERT INTO trials (
                    point_key, machine, workload_id, workload_key, family, configuration, configuration_key,
                    template_version, variant, compiler, flags, status, stage, message, timing, min_seconds,
                    median_seconds, samples, gops, counters, bindings_honoured, data_state, strategy, session,
                    created_at, attainment, binding)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
            arguments: [
                row.pointKey, trial.machine, workloadID, trial.workload.description, trial.family,
                row.configuration, trial.configuration.description, trial.templateVersion, trial.variant,
                trial.compiler, row.flags, trial.status, trial.stage, trial.message, row.timing, trial.timing?.min,
                trial.timing?.median, trial.timing?.count, trial.gops, row.counters, trial.bindingsHonoured,
                trial.dataState, trial.strategy, trial.session, trial.createdAt, trial.attainment, trial.binding,
            ])
        let id = db.lastInsertedRowID
        if trial.status == "ok", let gops = trial.gops, gops.isFinite, gops > 0 {
            let current = try storedBest(db, machine: trial.machine, workload: trial.workload)
            let replaces = current.map { BestRank(trial) > $0.rank } ?? true
            if replaces {
                try db.execute(
                    sql: """
                        INSERT INTO best (machine, workload_key, workload_id, trial_id, gops, updated_at)
                        VALUES (?, ?, ?, ?, ?, ?)
                        ON CONFLICT(machine, workload_key) DO UPDATE SET
                            trial_id = excluded.trial_id, gops = excluded.gops, updated_at = excluded.updated_at
                        """,
                    arguments: [trial.machine, trial.workload.description, workloadID, id, gops, Date()])
            }
        }
        return (id, true)
    }

    /// The stored best of (machine, workload): its trial, GOP/s and rank.
    static func storedBest(_ db: Database, machine: String, workload: Workload) throws -> (trialID: Int64, gops: Double, rank: BestRank)? {
        try Row.fetchOne(
            db,
            sql: """
                SELECT b.trial_id AS trial_id, b.gops AS gops, t.template_version AS version, t.data_state AS data_state
                FROM best b JOIN trials t ON t.id = b.trial_id WHERE b.machine = ? AND b.workload_key = ?
                """,
            arguments: [machine, workload.description]
        ).map { row in
            (row["trial_id"], row["gops"],
             BestRank(templateVersion: row["version"], cold: TrialRecord.isCold(row["data_state"]), gops: row["gops"]))
        }
    }

    /// True when a trial with this `TrialRecord.pointKey` is stored.
    public func hasPoint(_ pointKey: String) throws -> Bool {
        try pool.read { db in
            try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM trials WHERE point_key = ?)", arguments: [pointKey])
                ?? false
        }
    }

    /// Every stored trial of one (machine, workload, template version, compiler, flags), by
    /// configuration, failures included: what a resumed tuning run skips.
    public func measuredPoints(
        machine: String, workload: Workload, templateVersion: Int, compiler: String, flags: [String]
    ) throws -> [KernelKit.Configuration: TrialRecord] {
        let flagsText = try JSONText.encode(flags)
        let records = try pool.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT * FROM trials WHERE machine = ? AND workload_key = ? AND template_version = ?
                        AND compiler = ? AND flags = ?
                    """,
                arguments: [machine, workload.description, templateVersion, compiler, flagsText]
            ).map(Self.trialRecord)
        }
        return Dictionary(records.map { ($0.configuration, $0) }, uniquingKeysWith: { a, _ in a })
    }

    /// Stored trials, newest first, filtered by any of machine, family, workload and status.
    public func trials(
        machine: String? = nil, family: String? = nil, workload: Workload? = nil, status: String? = nil,
        limit: Int? = nil
    ) throws -> [TrialRecord] {
        var conditions: [String] = []
        var arguments = StatementArguments()
        if let machine { conditions.append("machine = ?"); arguments += [machine] }
        if let family { conditions.append("family = ?"); arguments += [family] }
        if let workload { conditions.append("workload_key = ?"); arguments += [workload.description] }
        if let status { conditions.append("status = ?"); arguments += [status] }
        var sql = "SELECT * FROM trials"
        if !conditions.isEmpty { sql += " WHERE " + conditions.joined(separator: " AND ") }
        sql += " ORDER BY created_at DESC, id DESC"
        if let limit { sql += " LIMIT ?"; arguments += [limit] }
        return try pool.read { db in try Row.fetchAll(db, sql: sql, arguments: arguments).map(Self.trialRecord) }
    }

    static func trialRecord(_ row: Row) throws -> TrialRecord {
        TrialRecord(
            id: row["id"], machine: row["machine"], family: row["family"],
            workload: try workload(key: row["workload_key"], family: row["family"], row: row),
            configuration: try JSONText.decode(KernelKit.Configuration.self, row["configuration"]),
            templateVersion: row["template_version"], variant: row["variant"], compiler: row["compiler"],
            flags: try JSONText.decode([String].self, row["flags"]), status: row["status"], stage: row["stage"],
            message: row["message"],
            timing: try (row["timing"] as String?).map { try JSONText.decode(TimingSummary.self, $0) },
            gops: row["gops"], counters: try JSONText.decode([CounterValue].self, row["counters"]),
            bindingsHonoured: row["bindings_honoured"], dataState: row["data_state"], strategy: row["strategy"],
            session: row["session"], createdAt: row["created_at"], attainment: row["attainment"], binding: row["binding"])
    }

    /// Rebuilds a workload from the row's `shape` column when selected, else by parsing its key.
    static func workload(key: String, family: String, row: Row) throws -> Workload {
        if let shape = row["shape"] as String? {
            return Workload(family: family, shape: try JSONText.decode([String: Int].self, shape))
        }
        return try parseWorkload(key)
    }

    /// Parses `Workload.description` (`family dim=n dim=n`).
    static func parseWorkload(_ key: String) throws -> Workload {
        let parts = key.split(separator: " ")
        guard let family = parts.first else { throw DatabaseError(message: "empty workload key") }
        var shape: [String: Int] = [:]
        for part in parts.dropFirst() {
            let pair = part.split(separator: "=", maxSplits: 1)
            guard pair.count == 2, let value = Int(pair[1]) else {
                throw DatabaseError(message: "malformed workload key '\(key)'")
            }
            shape[String(pair[0])] = value
        }
        return Workload(family: String(family), shape: shape)
    }

    // MARK: - Bests

    private static let bestSelect = """
        SELECT b.machine AS machine, b.trial_id AS trial_id, b.gops AS gops, t.family AS family,
            t.workload_key AS workload_key, w.shape AS shape, t.configuration AS configuration,
            t.template_version AS template_version, t.variant AS variant, t.timing AS timing,
            t.min_seconds AS min_seconds, t.median_seconds AS median_seconds, t.samples AS samples,
            t.compiler AS compiler, t.flags AS flags, t.data_state AS data_state, t.strategy AS strategy,
            t.created_at AS created_at, t.attainment AS attainment, t.binding AS binding
        FROM best b JOIN trials t ON t.id = b.trial_id JOIN workloads w ON w.id = b.workload_id
        """

    static func bestRecord(_ row: Row) throws -> BestRecord {
        BestRecord(
            machine: row["machine"],
            workload: try workload(key: row["workload_key"], family: row["family"], row: row),
            family: row["family"], trialID: row["trial_id"],
            configuration: try JSONText.decode(KernelKit.Configuration.self, row["configuration"]),
            templateVersion: row["template_version"], variant: row["variant"], gops: row["gops"],
            minSeconds: row["min_seconds"], medianSeconds: row["median_seconds"], samples: row["samples"],
            timing: try (row["timing"] as String?).map { try JSONText.decode(TimingSummary.self, $0) },
            compiler: row["compiler"], flags: try JSONText.decode([String].self, row["flags"]),
            dataState: row["data_state"], strategy: row["strategy"], attainment: row["attainment"], binding: row["binding"],
            measuredAt: row["created_at"])
    }

    /// The best trial for (machine, workload), if any trial of it succeeded.
    public func best(machine: String, workload: Workload) throws -> BestRecord? {
        try pool.read { db in
            try Row.fetchOne(
                db, sql: Self.bestSelect + " WHERE b.machine = ? AND b.workload_key = ?",
                arguments: [machine, workload.description]
            ).map(Self.bestRecord)
        }
    }

    /// Every best, optionally for one machine and/or family, ordered by machine, family and shape.
    public func bests(machine: String? = nil, family: String? = nil) throws -> [BestRecord] {
        var conditions: [String] = []
        var arguments = StatementArguments()
        if let machine { conditions.append("b.machine = ?"); arguments += [machine] }
        if let family { conditions.append("t.family = ?"); arguments += [family] }
        let sql = Self.bestSelect + (conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND "))
        let records = try pool.read { db in try Row.fetchAll(db, sql: sql, arguments: arguments).map(Self.bestRecord) }
        return records.sorted { a, b in
            if a.machine != b.machine { return a.machine < b.machine }
            if a.family != b.family { return a.family < b.family }
            return Self.shapeOrder(a.workload, b.workload)
        }
    }

    /// Orders shapes by their dimensions in key order, numerically.
    static func shapeOrder(_ a: Workload, _ b: Workload) -> Bool {
        let keys = Set(a.shape.keys).union(b.shape.keys).sorted()
        for key in keys where a.shape[key] != b.shape[key] {
            return (a.shape[key] ?? Int.min) < (b.shape[key] ?? Int.min)
        }
        return false
    }

    // MARK: - Workloads, counts, pruning

    /// Stored workloads (those with a trial on `machine`, when given), by family and shape.
    public func workloads(machine: String? = nil) throws -> [Workload] {
        let rows = try pool.read { db in
            if let machine {
                return try Row.fetchAll(
                    db,
                    sql: """
                        SELECT family, shape FROM workloads
                        WHERE id IN (SELECT workload_id FROM trials WHERE machine = ?)
                        """,
                    arguments: [machine])
            }
            return try Row.fetchAll(db, sql: "SELECT family, shape FROM workloads")
        }
        let workloads = try rows.map { row in
            Workload(family: row["family"], shape: try JSONText.decode([String: Int].self, row["shape"]))
        }
        return workloads.sorted { $0.family != $1.family ? $0.family < $1.family : Self.shapeOrder($0, $1) }
    }

    /// How many machines, workloads, trials and successful trials are stored.
    public func counts() throws -> (machines: Int, workloads: Int, trials: Int, ok: Int) {
        try pool.read { db in
            let row = try Row.fetchOne(
                db,
                sql: """
                    SELECT (SELECT COUNT(*) FROM machines) AS machines, (SELECT COUNT(*) FROM workloads) AS workloads,
                        (SELECT COUNT(*) FROM trials) AS trials,
                        (SELECT COUNT(*) FROM trials WHERE status = 'ok') AS ok
                    """)!
            return (row["machines"], row["workloads"], row["trials"], row["ok"])
        }
    }

    /// Deletes trials that are not the best of their (machine, workload) and returns how many.
    ///
    /// - A best trial is never deleted.
    /// - Successful trials that are not a best are deleted.
    /// - Failed trials (any status but `ok`) are deleted too, unless `keepFailures`.
    /// - Only trials of `machine` when given, and only trials created before `olderThan` when given.
    /// - Workloads left with no trial are deleted, and the rows of finals (`recordFinal`) of deleted trials.
    ///
    /// A pruned point is forgotten: a later tuning run may measure it again (pruning trades the
    /// "never measured twice" record for space). Runs in one transaction.
    @discardableResult
    public func prune(machine: String? = nil, keepFailures: Bool = false, olderThan: Date? = nil) throws -> Int {
        var conditions = ["id NOT IN (SELECT trial_id FROM best)"]
        var arguments = StatementArguments()
        if keepFailures { conditions.append("status = 'ok'") }
        if let machine { conditions.append("machine = ?"); arguments += [machine] }
        if let olderThan { conditions.append("created_at < ?"); arguments += [olderThan] }
        let selection = conditions.joined(separator: " AND ")
        let sql = "DELETE FROM trials WHERE " + selection
        let deleted = try pool.writeWithoutTransaction { db in
            var deleted = 0
            try db.inTransaction(.immediate) {
                // A final's rows and an import's notes go with the trials they describe (a kept best keeps its own).
                try db.execute(sql: "DELETE FROM finals WHERE trial_id IN (SELECT id FROM trials WHERE \(selection))", arguments: arguments)
                try db.execute(sql: "DELETE FROM imported WHERE trial_id IN (SELECT id FROM trials WHERE \(selection))", arguments: arguments)
                try db.execute(sql: sql, arguments: arguments)
                deleted = db.changesCount
                try db.execute(
                    sql: """
                        DELETE FROM workloads WHERE id NOT IN (SELECT workload_id FROM trials)
                            AND id NOT IN (SELECT workload_id FROM best)
                        """)
                return .commit
            }
            return deleted
        }
        logger.info("pruned \(deleted) trials from \(path)")
        return deleted
    }
}

/// A trial with its JSON columns encoded (outside the write transaction).
struct TrialRow {
    var trial: TrialRecord
    var pointKey: String
    var shape: String
    var configuration: String
    var flags: String
    var timing: String?
    var counters: String

    init(_ trial: TrialRecord) throws {
        self.trial = trial
        pointKey = trial.pointKey
        shape = try JSONText.encode(trial.workload.shape)
        configuration = try JSONText.encode(trial.configuration)
        flags = try JSONText.encode(trial.flags)
        timing = try trial.timing.map { try JSONText.encode($0) }
        counters = try JSONText.encode(trial.counters)
    }
}

/// The JSON stored in text columns: sorted keys, so equal values give equal text; infinities and
/// NaN (a failed timing) are stored as the strings "inf", "-inf", "nan" rather than refused.
enum JSONText {
    static func encode<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    static func decode<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try decoder.decode(type, from: Data(text.utf8))
    }
}
