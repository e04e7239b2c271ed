import Foundation
import GRDB

#if canImport(GRDBSQLite)
import GRDBSQLite
#else
import SQLite3
#endif

/// The database layout and the checks run on an existing file before it is opened for writing.
enum Schema {
    /// `PRAGMA application_id` of a lowbit tuning database: "lowb" in ASCII.
    static let applicationID: Int32 = 0x6C6F_7762
    /// The schema version this build writes and understands (the `schema_version` row of
    /// `lowbit_meta`; one per migration).
    static let version = 6
    static let sqliteMagic = Array("SQLite format 3\0".utf8)

    /// Versioned migrations. Never edit a registered migration: add a new one, and bump `version`.
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: "PRAGMA application_id = \(applicationID)")
            try db.execute(
                sql: """
                    CREATE TABLE lowbit_meta (
                        key TEXT PRIMARY KEY NOT NULL,
                        value TEXT NOT NULL
                    );
                    CREATE TABLE machines (
                        fingerprint TEXT PRIMARY KEY NOT NULL,
                        cpu TEXT NOT NULL,                -- model name, for people browsing with sqlite3
                        description TEXT NOT NULL,        -- JSON MachineDescription
                        ceilings TEXT,                    -- JSON {name: value}, when measured
                        first_seen TEXT NOT NULL,
                        last_seen TEXT NOT NULL
                    );
                    CREATE TABLE workloads (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        key TEXT NOT NULL UNIQUE,         -- Workload.description
                        family TEXT NOT NULL,
                        shape TEXT NOT NULL               -- JSON {dim: size}
                    );
                    CREATE INDEX workloads_family ON workloads(family);
                    CREATE TABLE trials (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        point_key TEXT NOT NULL,          -- TrialRecord.pointKey
                        machine TEXT NOT NULL,
                        workload_id INTEGER NOT NULL REFERENCES workloads(id),
                        workload_key TEXT NOT NULL,
                        family TEXT NOT NULL,
                        configuration TEXT NOT NULL,      -- JSON Configuration
                        configuration_key TEXT NOT NULL,  -- Configuration.description
                        template_version INTEGER NOT NULL,
                        variant TEXT,
                        compiler TEXT NOT NULL,
                        flags TEXT NOT NULL,              -- JSON [String]
                        status TEXT NOT NULL,
                        stage TEXT NOT NULL,
                        message TEXT,
                        timing TEXT,                      -- JSON TimingSummary
                        min_seconds REAL,
                        median_seconds REAL,
                        samples INTEGER,
                        gops REAL,
                        counters TEXT NOT NULL DEFAULT '[]', -- JSON [CounterValue]
                        bindings_honoured INTEGER,
                        data_state TEXT,
                        strategy TEXT,
                        session TEXT,
                        created_at TEXT NOT NULL
                    );
                    CREATE UNIQUE INDEX trials_point ON trials(point_key);
                    CREATE INDEX trials_machine_workload ON trials(machine, workload_key);
                    CREATE INDEX trials_status ON trials(status);
                    CREATE TABLE best (
                        machine TEXT NOT NULL,
                        workload_key TEXT NOT NULL,
                        workload_id INTEGER NOT NULL REFERENCES workloads(id),
                        trial_id INTEGER NOT NULL REFERENCES trials(id),
                        gops REAL NOT NULL,
                        updated_at TEXT NOT NULL,
                        PRIMARY KEY (machine, workload_key)
                    );
                    """)
            try db.execute(
                sql: "INSERT INTO lowbit_meta (key, value) VALUES ('application', 'lowbit'), "
                    + "('schema_version', ?), ('created_at', ?)",
                arguments: ["1", ISO8601DateFormatter().string(from: Date())])
        }
        migrator.registerMigration("v2") { db in
            // Roofline attainment per trial (issue 6), filled when the machine's ceilings are known.
            try db.execute(sql: "ALTER TABLE trials ADD COLUMN attainment REAL")
            try db.execute(sql: "ALTER TABLE trials ADD COLUMN binding TEXT")
            try db.execute(sql: "UPDATE lowbit_meta SET value = '2' WHERE key = 'schema_version'")
        }
        migrator.registerMigration("v3") { db in
            // Decode throughput of the inference engine (issue 7), one row per (run, mode, batch).
            try db.execute(
                sql: """
                    CREATE TABLE serving (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        machine TEXT NOT NULL,
                        model TEXT NOT NULL,
                        mode TEXT NOT NULL,               -- fp32, w8a8, w4a4
                        batch INTEGER NOT NULL,
                        context INTEGER NOT NULL,
                        tokens_per_second REAL NOT NULL,
                        ms_per_token REAL NOT NULL,
                        session TEXT NOT NULL,
                        measured_at TEXT NOT NULL
                    );
                    CREATE INDEX serving_machine ON serving(machine, measured_at);
                    """)
            try db.execute(sql: "UPDATE lowbit_meta SET value = '3' WHERE key = 'schema_version'")
        }
        migrator.registerMigration("v4") { db in
            // A cold measurement is its own point (`TrialRecord.pointKey` ends with `data=cold`), and the
            // best of a workload is chosen by `BestRank`: template version, then cold over hot, then
            // GOP/s (earlier trial on a tie). Rekey the cold trials and choose every best again.
            try db.execute(
                sql: """
                    UPDATE trials SET point_key = point_key || char(10) || ?
                    WHERE substr(data_state, 1, 4) = 'cold' AND substr(point_key, -9) != ?
                    """,
                arguments: [TrialRecord.coldPointLine, TrialRecord.coldPointLine])
            try db.execute(
                sql: """
                    WITH ranked AS (
                        SELECT id, machine, workload_key, workload_id, gops, ROW_NUMBER() OVER (
                            PARTITION BY machine, workload_key
                            ORDER BY template_version DESC, COALESCE(substr(data_state, 1, 4) = 'cold', 0) DESC,
                                gops DESC, id ASC) AS position
                        FROM trials WHERE status = 'ok' AND gops > 0 AND gops < 1e308
                    )
                    INSERT INTO best (machine, workload_key, workload_id, trial_id, gops, updated_at)
                    SELECT machine, workload_key, workload_id, id, gops, ? FROM ranked WHERE position = 1
                    ON CONFLICT(machine, workload_key) DO UPDATE SET
                        trial_id = excluded.trial_id, gops = excluded.gops, updated_at = excluded.updated_at
                    WHERE best.trial_id != excluded.trial_id
                    """,
                arguments: [Date()])
            try db.execute(sql: "UPDATE lowbit_meta SET value = '4' WHERE key = 'schema_version'")
        }
        migrator.registerMigration("v5") { db in
            // Finals: stored trials timed again side by side (`lowbit tune --finalists`), one row per finalist;
            // the one of the highest score (`chosen`) becomes the best with the GOP/s of its fastest round.
            try db.execute(
                sql: """
                    CREATE TABLE finals (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        machine TEXT NOT NULL,
                        workload_key TEXT NOT NULL,
                        session TEXT NOT NULL,
                        trial_id INTEGER NOT NULL REFERENCES trials(id),
                        stored_gops REAL NOT NULL,        -- the trial's GOP/s from its own tuning run
                        rounds TEXT NOT NULL,             -- JSON [GOP/s or null] per round
                        gops REAL,                        -- the fastest round; NULL when every round failed
                        score REAL,                       -- median relative speed over the rounds; NULL: failed a round
                        chosen INTEGER NOT NULL,          -- 1: this finalist became the best
                        measured_at TEXT NOT NULL
                    );
                    CREATE INDEX finals_workload ON finals(machine, workload_key);
                    """)
            try db.execute(sql: "UPDATE lowbit_meta SET value = '5' WHERE key = 'schema_version'")
        }
        migrator.registerMigration("v6") { db in
            // What an import knows about a record beyond the trial itself: how many trials the exporting
            // database held for its workload, and the final that chose it there, so that exporting again
            // gives the same entry (`lowbit import`, then `lowbit export`).
            try db.execute(
                sql: """
                    CREATE TABLE imported (
                        trial_id INTEGER PRIMARY KEY REFERENCES trials(id),
                        trial_count INTEGER NOT NULL,     -- trials of the workload in the exporting database
                        final_finalists INTEGER,          -- the final that chose the record there, if one did:
                        final_rounds INTEGER,             -- its finalists and rounds, the record's GOP/s
                        final_stored_gops REAL,           -- before the final, and when the final ran
                        final_measured_at TEXT
                    );
                    """)
            try db.execute(sql: "UPDATE lowbit_meta SET value = '6' WHERE key = 'schema_version'")
        }
        return migrator
    }

    /// What an existing path holds, once it passed the checks.
    enum FileState {
        /// Nothing there: a new database is created.
        case absent
        /// A zero-length file or an SQLite database with no tables: adopted as a new database.
        case blank
        /// A lowbit database this build can use.
        case lowbit
    }

    /// Decides whether the file at `path` may be opened for writing, without modifying it.
    ///
    /// Reads the 100-byte SQLite header first (magic string, page size, size in pages, application
    /// id), then opens the file read-only to run `PRAGMA quick_check`, look at its tables, and
    /// read the schema version. A read-only connection never writes the database file.
    static func inspect(path: String) throws -> FileState {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDirectory) else { return .absent }
        if isDirectory.boolValue { throw TuningStoreError.io(path: path, message: "it is a directory") }
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw TuningStoreError.io(path: path, message: "it cannot be read (permissions?)")
        }
        let header: [UInt8]
        let size: UInt64
        do {
            defer { try? handle.close() }
            header = Array(try handle.read(upToCount: 100) ?? Data())
            size = try handle.seekToEnd()
        } catch {
            throw TuningStoreError.io(path: path, message: "reading it failed: \(error)")
        }
        if size == 0 { return .blank }
        guard header.count >= 100 else {
            throw TuningStoreError.notADatabase(
                path: path, reason: "it is \(size) bytes long, shorter than an SQLite header")
        }
        guard Array(header[0..<16]) == sqliteMagic else {
            throw TuningStoreError.notADatabase(
                path: path, reason: "it does not start with the SQLite header \"SQLite format 3\\0\"")
        }
        func u32(_ offset: Int) -> UInt32 {
            header[offset..<offset + 4].reduce(0) { $0 << 8 | UInt32($1) }
        }
        let rawPageSize = Int(header[16]) << 8 | Int(header[17])
        let pageSize = rawPageSize == 1 ? 65536 : rawPageSize
        guard pageSize >= 512, pageSize <= 65536, pageSize & (pageSize - 1) == 0 else {
            throw TuningStoreError.corrupt(path: path, reason: "its header gives an invalid page size \(rawPageSize)")
        }
        let pages = UInt64(u32(28))
        if pages > 0, u32(24) == u32(92), size < pages * UInt64(pageSize) {
            throw TuningStoreError.corrupt(
                path: path,
                reason: "it is \(size) bytes but its header says \(pages) pages of \(pageSize) bytes: it was truncated")
        }
        let appID = Int32(bitPattern: u32(68))
        if appID != 0, appID != applicationID {
            throw TuningStoreError.foreignDatabase(
                path: path,
                reason: "its application_id is 0x\(String(UInt32(bitPattern: appID), radix: 16)), "
                    + "lowbit's is 0x\(String(UInt32(bitPattern: applicationID), radix: 16))")
        }
        // Bytes 18 and 19: file format write and read versions, 2 in WAL mode.
        return try inspectReadOnly(path: path, walMode: header[18] == 2 || header[19] == 2)
    }

    /// Opens `path` read-only with the SQLite C API and checks what it holds.
    ///
    /// A WAL-mode file with no `-wal` beside it is opened `immutable`: the main file holds every
    /// committed row then, and SQLite creates no `-wal`/`-shm` files (a plain read-only open would,
    /// and would leave them behind). With a `-wal` present (another process has the database open,
    /// or one was killed), it is opened read-only normally so the WAL's commits are seen.
    private static func inspectReadOnly(path: String, walMode: Bool) throws -> FileState {
        let immutable = walMode && !FileManager.default.fileExists(atPath: path + "-wal")
        let connection = try ReadOnlyConnection(path: path, immutable: immutable)
        let problems = try connection.strings("PRAGMA quick_check(5)")
        if problems != ["ok"] {
            throw TuningStoreError.corrupt(
                path: path, reason: "PRAGMA quick_check reports: " + problems.joined(separator: "; "))
        }
        let appID = Int32(try connection.strings("PRAGMA application_id").first ?? "0") ?? 0
        let tables = try connection.strings(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        if appID != applicationID {
            // No tables, or only GRDB's migration log: blank, or another lowbit process between creating
            // that log and committing its first migration (which sets application_id with the tables).
            if tables.isEmpty || (appID == 0 && tables == ["grdb_migrations"]) { return .blank }
            let shown = tables.prefix(8).joined(separator: ", ") + (tables.count > 8 ? ", ..." : "")
            throw TuningStoreError.foreignDatabase(
                path: path,
                reason: appID == 0 ? "it has tables (\(shown)) and no lowbit application_id" : "its application_id is \(appID)")
        }
        guard tables.contains("lowbit_meta") else {
            throw TuningStoreError.foreignDatabase(
                path: path, reason: "it carries lowbit's application_id but has no lowbit_meta table")
        }
        let found = try connection.strings("SELECT value FROM lowbit_meta WHERE key = 'schema_version'").first
        guard let found, let number = Int(found) else {
            throw TuningStoreError.corrupt(path: path, reason: "lowbit_meta has no valid schema_version")
        }
        if number > version { throw TuningStoreError.tooNew(path: path, found: found, supported: version) }
        if tables.contains("grdb_migrations") {
            let unknown = Set(try connection.strings("SELECT identifier FROM grdb_migrations"))
                .subtracting(migrator.migrations).sorted()
            if !unknown.isEmpty {
                throw TuningStoreError.tooNew(
                    path: path, found: "migrations \(unknown.joined(separator: ", "))", supported: version)
            }
        }
        return .lowbit
    }
}

/// A minimal read-only SQLite connection (C API) for inspecting a file before GRDB opens it.
final class ReadOnlyConnection {
    private var handle: OpaquePointer?
    let path: String

    init(path: String, immutable: Bool) throws {
        self.path = path
        // URI filename: escape what a URI path cannot hold verbatim.
        var escaped = ""
        for character in path {
            switch character {
            case "%": escaped += "%25"
            case "?": escaped += "%3f"
            case "#": escaped += "%23"
            default: escaped.append(character)
            }
        }
        let uri = "file:\(escaped)?mode=ro" + (immutable ? "&immutable=1" : "")
        let code = sqlite3_open_v2(uri, &handle, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, nil)
        if code != SQLITE_OK {
            let error = self.error(code, "opening it read-only")
            sqlite3_close_v2(handle)
            handle = nil
            throw error
        }
        sqlite3_busy_timeout(handle, 10_000)
    }

    deinit { sqlite3_close_v2(handle) }

    /// The first column of every row, as text.
    func strings(_ sql: String) throws -> [String] {
        var statement: OpaquePointer?
        var code = sqlite3_prepare_v2(handle, sql, -1, &statement, nil)
        guard code == SQLITE_OK else { throw error(code, sql) }
        defer { sqlite3_finalize(statement) }
        var values: [String] = []
        while true {
            code = sqlite3_step(statement)
            if code == SQLITE_DONE { return values }
            guard code == SQLITE_ROW else { throw error(code, sql) }
            values.append(sqlite3_column_text(statement, 0).map { String(cString: $0) } ?? "")
        }
    }

    private func error(_ code: Int32, _ what: String) -> TuningStoreError {
        let message = handle.flatMap { sqlite3_errmsg($0) }.map { String(cString: $0) } ?? String(cString: sqlite3_errstr(code))
        switch code & 0xff {
        case SQLITE_NOTADB: return .notADatabase(path: path, reason: message)
        case SQLITE_CORRUPT: return .corrupt(path: path, reason: message)
        default: return .io(path: path, message: "\(what): \(message) (SQLite code \(code))")
        }
    }
}
