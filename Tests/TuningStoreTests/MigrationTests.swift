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
            DROP TABLE serving;
            DROP TABLE finals;
            DROP TABLE imported;
            DELETE FROM grdb_migrations WHERE identifier IN ('v2', 'v3', 'v4', 'v5', 'v6');
            UPDATE lowbit_meta SET value = '1' WHERE key = 'schema_version';
            """)
        #expect(try sqlite(path, "SELECT value FROM lowbit_meta WHERE key = 'schema_version';") == "1")

        let store = try TuningStore(path: path)
        #expect(try sqlite(path, "SELECT value FROM lowbit_meta WHERE key = 'schema_version';") == "\(TuningStore.schemaVersion)")
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

    @Test(.enabled(if: sqlite3Path != nil, "needs the sqlite3 shell"))
    func versionFourRekeysColdTrialsAndRanksColdBestsAboveHot() throws {
        let dir = TempDir()
        let path = dir.file("lowbit.sqlite")
        let cold = "cold: every line flushed before every sample"
        var coldKey = ""
        do {
            let store = try TuningStore(path: path)
            try store.insert(trial(workload: gemm(1), configuration: config(mr: 1), gops: 500))
            let coldTrial = trial(workload: gemm(1), configuration: config(mr: 2), gops: 100, dataState: cold)
            coldKey = coldTrial.pointKey
            try store.insert(coldTrial)
            try store.insert(trial(workload: gemm(64), configuration: config(mr: 1), gops: 70))
        }
        #expect(coldKey.hasSuffix("\ndata=cold"))
        // What a version-3 build left: cold keys without the data line, the faster hot trial as the best.
        _ = try sqlite(path, """
            PRAGMA journal_mode = DELETE;
            UPDATE trials SET point_key = substr(point_key, 1, length(point_key) - 10) WHERE data_state LIKE 'cold%';
            UPDATE best SET trial_id = (SELECT id FROM trials WHERE gops = 500), gops = 500 WHERE workload_key = '\(gemm(1).description)';
            DROP TABLE finals;
            DROP TABLE imported;
            DELETE FROM grdb_migrations WHERE identifier IN ('v4', 'v5', 'v6');
            UPDATE lowbit_meta SET value = '3' WHERE key = 'schema_version';
            """)
        #expect(try sqlite(path, "SELECT gops FROM best WHERE workload_key = '\(gemm(1).description)';") == "500.0")

        let store = try TuningStore(path: path)
        #expect(try sqlite(path, "SELECT value FROM lowbit_meta WHERE key = 'schema_version';") == "\(TuningStore.schemaVersion)")
        #expect(try store.hasPoint(coldKey))
        let best = try #require(try store.best(machine: "test-machine", workload: gemm(1)))
        #expect(best.gops == 100 && best.dataState == cold)
        #expect(try store.best(machine: "test-machine", workload: gemm(64))?.gops == 70)
        #expect(try store.trials().count == 3)
    }

    @Test func servingPointsRoundTrip() throws {
        let dir = TempDir()
        let store = try TuningStore(path: dir.file("lowbit.sqlite"))
        let points = [1, 8].flatMap { b in
            ["fp32", "w4a4"].map { mode in
                ServingRecord(
                    machine: "m", model: "tiny 2 layers", mode: mode, batch: b, context: 64, tokensPerSecond: Double(b) * (mode == "fp32" ? 10 : 40),
                    millisecondsPerToken: 1000 / (mode == "fp32" ? 10 : 40), session: "s")
            }
        }
        try store.record(serving: points)
        let back = try store.serving(machine: "m")
        #expect(back.count == 4)
        #expect(back.map(\.mode) == points.map(\.mode) && back.map(\.batch) == points.map(\.batch))
        #expect(back.last?.tokensPerSecond == 320)
        #expect(try store.serving(machine: "other").isEmpty)
    }
}
