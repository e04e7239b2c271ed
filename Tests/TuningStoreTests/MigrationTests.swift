import Foundation
import KernelKit
import Testing
import TuningStore

@Suite("Tuning store: schema migrations")
struct MigrationTests {
    @Test(.enabled(if: sqlite3Path != nil, "needs the sqlite3 shell"))
    func aVersionOneDatabaseGainsAttainmentAndKeepsItsTrials() throws {
        let dir = TempDir()
        let path = dir.file("lowbit.sqlite")
        do {
            let store = try TuningStore(path: path)
            try store.insert(trial(gops: 100))
        }
        // Turn it back into what a version-1 build wrote: no attainment columns, no v2 migration.
        _ = try sqlite(path, """
            PRAGMA journal_mode = DELETE;
            ALTER TABLE trials DROP COLUMN attainment;
            ALTER TABLE trials DROP COLUMN binding;
            DELETE FROM grdb_migrations WHERE identifier = 'v2';
            UPDATE lowbit_meta SET value = '1' WHERE key = 'schema_version';
            """)
        #expect(try sqlite(path, "SELECT value FROM lowbit_meta WHERE key = 'schema_version';") == "1")

        let store = try TuningStore(path: path)
        #expect(try sqlite(path, "SELECT value FROM lowbit_meta WHERE key = 'schema_version';") == "2")
        let old = try store.trials()
        #expect(old.count == 1 && old[0].gops == 100 && old[0].attainment == nil)

        var new = trial(workload: gemm(16), gops: 50)
        new.attainment = 0.42
        new.binding = "compute: int8-dot avx512-vnni"
        try store.insert(new)
        let back = try #require(try store.trials(workload: gemm(16)).first)
        #expect(back.attainment == 0.42 && back.binding == "compute: int8-dot avx512-vnni")
        let best = try #require(try store.best(machine: "test-machine", workload: gemm(16)))
        #expect(best.attainment == 0.42)
    }
}
