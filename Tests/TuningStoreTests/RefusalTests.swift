import Foundation
import Testing
import TuningStore

/// Every refusal leaves the file byte-for-byte unchanged and creates no -wal/-shm beside it.
@Suite("Tuning store: refusing files that are not a usable lowbit database")
struct RefusalTests {
    /// Opens `path`, expects a refusal matching `check`, and that the file did not change.
    func expectRefusal(
        _ path: String, sourceLocation: SourceLocation = #_sourceLocation,
        _ check: (TuningStoreError) -> Bool
    ) {
        let before = bytes(path)
        let hadWAL = exists(path + "-wal"), hadSHM = exists(path + "-shm")
        do {
            _ = try TuningStore(path: path)
            Issue.record("\(path) was opened", sourceLocation: sourceLocation)
        } catch let error as TuningStoreError {
            #expect(check(error), "unexpected refusal: \(error)", sourceLocation: sourceLocation)
            let text = error.description
            #expect(text.contains(path), sourceLocation: sourceLocation)
            #expect(text.contains("--db PATH") && text.contains("LOWBIT_DB"), sourceLocation: sourceLocation)
        } catch {
            Issue.record("unexpected error type: \(error)", sourceLocation: sourceLocation)
        }
        #expect(bytes(path) == before, "the file changed", sourceLocation: sourceLocation)
        #expect(exists(path + "-wal") == hadWAL && exists(path + "-shm") == hadSHM, sourceLocation: sourceLocation)
    }

    /// A closed lowbit database with enough trials to span many pages.
    func lowbitDatabase(_ dir: TempDir) throws -> String {
        let path = dir.file("lowbit.sqlite")
        do {
            let store = try TuningStore(path: path)
            for i in 0..<300 { try store.insert(trial(configuration: config(nr: i), gops: Double(i + 1))) }
            try store.close()
        }
        #expect(!exists(path + "-wal"), "closing the last connection checkpoints and removes the WAL")
        return path
    }

    @Test func randomBytesAreNotADatabase() throws {
        let dir = TempDir()
        let path = dir.file("random.sqlite")
        var generator = SystemRandomNumberGenerator()
        _ = FileManager.default.createFile(
            atPath: path, contents: Data((0..<8192).map { _ in UInt8.random(in: 0...255, using: &generator) }))
        expectRefusal(path) { if case .notADatabase = $0 { true } else { false } }

        let text = dir.file("notes.txt")
        _ = FileManager.default.createFile(atPath: text, contents: Data("my precious notes\n".utf8))
        expectRefusal(text) { if case .notADatabase = $0 { true } else { false } }
    }

    @Test(.enabled(if: sqlite3Path != nil, "needs the sqlite3 command-line shell"))
    func foreignSQLiteDatabaseIsRefused() throws {
        let dir = TempDir()
        let path = dir.file("other.sqlite")
        try sqlite(path, "CREATE TABLE recipes (name TEXT, minutes INTEGER); INSERT INTO recipes VALUES ('soup', 30);")
        expectRefusal(path) {
            if case .foreignDatabase(_, let reason) = $0 { reason.contains("recipes") } else { false }
        }
        // Another application's id is refused from the header alone.
        let tagged = dir.file("tagged.sqlite")
        try sqlite(tagged, "PRAGMA application_id = 1234; CREATE TABLE t (x);")
        expectRefusal(tagged) { if case .foreignDatabase = $0 { true } else { false } }
        // Even one in WAL mode with a table and no lowbit id.
        let wal = dir.file("wal.sqlite")
        try sqlite(wal, "PRAGMA journal_mode = WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        expectRefusal(wal) { if case .foreignDatabase = $0 { true } else { false } }
    }

    @Test func truncatedLowbitDatabaseIsCorrupt() throws {
        let dir = TempDir()
        let path = try lowbitDatabase(dir)
        let full = try #require(bytes(path))
        #expect(full.count >= 8 * 4096)
        _ = FileManager.default.createFile(atPath: path, contents: full.prefix(full.count / 2))
        expectRefusal(path) {
            if case .corrupt(_, let reason) = $0 { reason.contains("truncated") } else { false }
        }
    }

    @Test func damagedPagesAreCorrupt() throws {
        let dir = TempDir()
        let path = try lowbitDatabase(dir)
        var data = try #require(bytes(path))
        // Scribble over every page but the first (the header and schema).
        var generator = SystemRandomNumberGenerator()
        for i in 4096..<data.count { data[i] = UInt8.random(in: 0...255, using: &generator) }
        _ = FileManager.default.createFile(atPath: path, contents: data)
        expectRefusal(path) { if case .corrupt = $0 { true } else { false } }
    }

    @Test(.enabled(if: sqlite3Path != nil, "needs the sqlite3 command-line shell"))
    func newerSchemaIsRefused() throws {
        let dir = TempDir()
        let path = try lowbitDatabase(dir)
        try sqlite(path, "PRAGMA journal_mode = DELETE; UPDATE lowbit_meta SET value = '7' WHERE key = 'schema_version';")
        expectRefusal(path) {
            if case .tooNew(_, let found, let supported) = $0 { found == "7" && supported == TuningStore.schemaVersion } else { false }
        }
        // An unknown migration (same schema_version) is refused as well.
        let other = TempDir()
        let path2 = try lowbitDatabase(other)
        try sqlite(path2, "INSERT INTO grdb_migrations VALUES ('v2-from-the-future');")
        expectRefusal(path2) {
            if case .tooNew(_, let found, _) = $0 { found.contains("v2-from-the-future") } else { false }
        }
    }

    @Test func directoryIsRefused() throws {
        let dir = TempDir()
        #expect(throws: TuningStoreError.self) { try TuningStore(path: dir.path) }
    }
}
