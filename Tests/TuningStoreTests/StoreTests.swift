import Foundation
import KernelKit
import Machine
import Measure
import Testing
import TuningStore

@Suite("Tuning store: schema, trials, bests")
struct StoreTests {
    @Test func migratesAnEmptyDatabaseAndReopens() throws {
        let dir = TempDir()
        let path = dir.file("nested/deeper/lowbit.sqlite")
        do {
            let store = try TuningStore(path: path)
            let counts = try store.counts()
            #expect(counts.machines == 0 && counts.workloads == 0 && counts.trials == 0 && counts.ok == 0)
            #expect(try store.check().isEmpty)
            try store.insert(trial())
        }
        #expect(exists(path))
        // Reopening runs no migration twice and keeps the data.
        let store = try TuningStore(path: path)
        #expect(try store.counts().trials == 1)
        if sqlite3Path != nil {
            let tables = try sqlite(path, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name;")
            for table in ["best", "grdb_migrations", "lowbit_meta", "machines", "trials", "workloads"] {
                #expect(tables.contains(table))
            }
            #expect(try sqlite(path, "PRAGMA journal_mode;") == "wal")
            #expect(try sqlite(path, "SELECT value FROM lowbit_meta WHERE key = 'schema_version';") == "\(TuningStore.schemaVersion)")
        }
    }

    @Test func adoptsAnEmptyFile() throws {
        let dir = TempDir()
        let path = dir.file("empty.sqlite")
        _ = FileManager.default.createFile(atPath: path, contents: Data())
        let store = try TuningStore(path: path)
        try store.insert(trial())
        #expect(try store.counts().trials == 1)
    }

    @Test func recordsMachinesAndKeepsCeilings() throws {
        let dir = TempDir()
        let store = try TuningStore(path: dir.file("db.sqlite"))
        try store.record(machine: machine("m-a"), ceilings: ["int8-gops": 150, "dram-gbps": 14])
        let first = try #require(try store.machine("m-a"))
        #expect(first.description == machine("m-a"))
        #expect(first.ceilings == ["int8-gops": 150, "dram-gbps": 14])
        // Without ceilings: they are kept; lastSeen moves.
        try store.record(machine: machine("m-a"))
        let second = try #require(try store.machine("m-a"))
        #expect(second.ceilings == ["int8-gops": 150, "dram-gbps": 14])
        #expect(second.lastSeen >= first.lastSeen)
        #expect(second.firstSeen == first.firstSeen)
        try store.record(machine: machine("m-b"), ceilings: nil)
        #expect(try store.machines().map(\.fingerprint) == ["m-a", "m-b"])
        #expect(try store.machine("m-b")?.ceilings == nil)
        #expect(try store.machine("nope") == nil)
    }

    @Test func bestFollowsTheFastestOkTrial() throws {
        let dir = TempDir()
        let store = try TuningStore(path: dir.file("db.sqlite"))
        let w = gemm(64)
        let first = try store.insert(trial(workload: w, configuration: config(mr: 1), gops: 100))
        #expect(try store.best(machine: "test-machine", workload: w)?.trialID == first)

        // Worse: the best stays.
        try store.insert(trial(workload: w, configuration: config(mr: 2), gops: 80))
        #expect(try store.best(machine: "test-machine", workload: w)?.trialID == first)
        // Equal: the stored one stays.
        try store.insert(trial(workload: w, configuration: config(mr: 3), gops: 100))
        #expect(try store.best(machine: "test-machine", workload: w)?.trialID == first)

        // Better: replaces.
        let better = try store.insert(trial(workload: w, configuration: config(mr: 4), gops: 120))
        let best = try #require(try store.best(machine: "test-machine", workload: w))
        #expect(best.trialID == better)
        #expect(best.gops == 120)
        #expect(best.configuration == config(mr: 4))
        #expect(best.samples == 5)
        #expect(best.minSeconds != nil && best.medianSeconds! >= best.minSeconds!)
        #expect(best.compiler == testCompiler && best.flags == testFlags)

        // Failures never become best, whatever their gops says.
        for (i, status) in ["verify-failed", "crashed", "timeout", "compile-error", "rejected"].enumerated() {
            try store.insert(trial(workload: w, configuration: config(mr: 10 + i), status: status, gops: 1e9))
        }
        // An ok trial without a rate is no best either.
        try store.insert(trial(workload: w, configuration: config(mr: 20), gops: nil))
        #expect(try store.best(machine: "test-machine", workload: w)?.trialID == better)

        // Another machine and another workload have their own bests.
        try store.insert(trial(machine: "other", workload: w, gops: 5))
        try store.insert(trial(workload: gemm(1), gops: 7))
        #expect(try store.best(machine: "other", workload: w)?.gops == 5)
        #expect(try store.bests(machine: "test-machine").map(\.workload) == [gemm(1), gemm(64)])
        #expect(try store.bests().count == 3)
        #expect(try store.bests(family: "nothing").isEmpty)

        let counts = try store.counts()
        #expect(counts.trials == 12)
        #expect(counts.ok == 7)
        #expect(counts.workloads == 2)
        #expect(try store.trials(status: "crashed").count == 1)
        #expect(try store.trials(machine: "other").count == 1)
        #expect(try store.trials(workload: gemm(1)).count == 1)
        #expect(try store.trials(limit: 3).count == 3)
        #expect(try store.workloads(machine: "other") == [w])
        #expect(try store.workloads() == [gemm(1), gemm(64)])
    }

    /// A template change makes the old best's code unreachable: the first trial of a newer version takes
    /// the best however slow, an older version's trial never does, and within a version speed decides.
    @Test func newerTemplateVersionReplacesTheBest() throws {
        let dir = TempDir()
        let store = try TuningStore(path: dir.file("db.sqlite"))
        let w = gemm(64)
        try store.insert(trial(workload: w, configuration: config(mr: 1), gops: 500, templateVersion: 1))
        let newer = try store.insert(trial(workload: w, configuration: config(mr: 2), gops: 100, templateVersion: 2))
        #expect(try store.best(machine: "test-machine", workload: w)?.trialID == newer)
        try store.insert(trial(workload: w, configuration: config(mr: 3), gops: 900, templateVersion: 1))
        #expect(try store.best(machine: "test-machine", workload: w)?.trialID == newer)
        let faster = try store.insert(trial(workload: w, configuration: config(mr: 4), gops: 150, templateVersion: 2))
        let best = try #require(try store.best(machine: "test-machine", workload: w))
        #expect(best.trialID == faster && best.templateVersion == 2)
    }

    @Test func aColdTrialOutranksHotOnesAndIsItsOwnPoint() throws {
        let dir = TempDir()
        let store = try TuningStore(path: dir.file("db.sqlite"))
        let w = gemm(1)
        let coldState = "cold: every line of the kernel's 1 MiB flushed from the caches before every sample"
        try store.insert(trial(workload: w, configuration: config(mr: 1), gops: 500))
        // The same configuration timed cold is another point, and its best replaces the hot one.
        let cold = try store.insert(trial(workload: w, configuration: config(mr: 1), gops: 100, dataState: coldState))
        #expect(try store.trials(workload: w).count == 2)
        #expect(try store.best(machine: "test-machine", workload: w)?.trialID == cold)
        // A faster hot trial does not displace it; a faster cold one does; a newer version always does.
        try store.insert(trial(workload: w, configuration: config(mr: 2), gops: 900))
        #expect(try store.best(machine: "test-machine", workload: w)?.trialID == cold)
        let faster = try store.insert(trial(workload: w, configuration: config(mr: 3), gops: 150, dataState: coldState))
        #expect(try store.best(machine: "test-machine", workload: w)?.trialID == faster)
        let newer = try store.insert(trial(workload: w, configuration: config(mr: 3), gops: 50, templateVersion: 2))
        #expect(try store.best(machine: "test-machine", workload: w)?.trialID == newer)
        #expect(BestRank(templateVersion: 1, cold: true, gops: 1) > BestRank(templateVersion: 1, cold: false, gops: 1000))
    }

    @Test func trialRoundTripsEveryField() throws {
        let dir = TempDir()
        let store = try TuningStore(path: dir.file("db.sqlite"))
        var original = trial(workload: gemm(8, 512, 1024), createdAt: Date(timeIntervalSince1970: 1_750_000_000.25))
        original.counters.append(CounterValue(event: "cycles", value: nil, status: .unavailable("no PMU"), source: nil))
        let id = try store.insert(original)
        let stored = try #require(try store.trials().first)
        var expected = original
        expected.id = id
        #expect(stored == expected)
        #expect(stored.pointKey == original.pointKey)
    }

    @Test func samePointIsStoredOnce() throws {
        let dir = TempDir()
        let store = try TuningStore(path: dir.file("db.sqlite"))
        let a = trial(gops: 100)
        #expect(try !store.hasPoint(a.pointKey))
        let first = try store.insert(a)
        #expect(try store.hasPoint(a.pointKey))
        // The same point again (even with another result) keeps the first row.
        let again = try store.insert(trial(gops: 300))
        #expect(again == first)
        #expect(try store.counts().trials == 1)
        #expect(try store.best(machine: "test-machine", workload: gemm(64))?.gops == 100)
        // Any change in the identity is another point.
        try store.insert(trial(templateVersion: 2))
        try store.insert(trial(compiler: "gcc 14.2.0 /usr/bin/gcc"))
        try store.insert(trial(flags: testFlags + ["-funroll-loops"]))
        try store.insert(trial(configuration: config(kc: 512)))
        try store.insert(trial(machine: "other"))
        #expect(try store.counts().trials == 6)
    }

    @Test func measuredPointsSupportResume() throws {
        let dir = TempDir()
        let path = dir.file("db.sqlite")
        let w = gemm(16)
        let configs = (1...6).map { config(mr: $0) }
        do {
            // A first run measures half the points (one of them fails), then stops.
            let store = try TuningStore(path: path)
            for (i, c) in configs.prefix(3).enumerated() {
                try store.insert(trial(workload: w, configuration: c, status: i == 1 ? "timeout" : "ok"))
            }
            // Same points under another build are not "measured" for this one.
            try store.insert(trial(workload: w, configuration: configs[4], compiler: "gcc 14"))
            try store.insert(trial(workload: w, configuration: configs[5], flags: ["-O2"]))
            try store.insert(trial(workload: w, configuration: configs[5], templateVersion: 9))
        }
        let store = try TuningStore(path: path)
        let measured = try store.measuredPoints(
            machine: "test-machine", workload: w, templateVersion: 1, compiler: testCompiler, flags: testFlags)
        #expect(Set(measured.keys) == Set(configs.prefix(3)))
        #expect(measured[configs[1]]?.status == "timeout")
        let remaining = configs.filter { measured[$0] == nil }
        #expect(remaining == Array(configs.suffix(3)))
        for c in remaining { try store.insert(trial(workload: w, configuration: c)) }
        #expect(
            try store.measuredPoints(
                machine: "test-machine", workload: w, templateVersion: 1, compiler: testCompiler, flags: testFlags
            ).count == 6)
    }

    @Test func pruneKeepsBestsAndOptionallyFailures() throws {
        let dir = TempDir()
        let store = try TuningStore(path: dir.file("db.sqlite"))
        let old = Date(timeIntervalSinceNow: -86400 * 30)
        for (i, g) in [50.0, 90, 70].enumerated() {
            try store.insert(trial(workload: gemm(64), configuration: config(mr: i + 1), gops: g, createdAt: old))
        }
        try store.insert(trial(workload: gemm(64), configuration: config(mr: 9), status: "crashed", createdAt: old))
        try store.insert(trial(workload: gemm(32), configuration: config(mr: 1), gops: 40))
        try store.insert(trial(workload: gemm(32), configuration: config(mr: 2), gops: 30))
        try store.insert(trial(workload: gemm(128), configuration: config(mr: 1), status: "crashed"))
        try store.insert(trial(machine: "other", workload: gemm(64), configuration: config(mr: 1), gops: 1))
        try store.insert(trial(machine: "other", workload: gemm(64), configuration: config(mr: 2), gops: 2))

        // Only old trials of one machine, failures kept: the two slower ok trials of gemm(64).
        #expect(try store.prune(machine: "test-machine", keepFailures: true, olderThan: Date(timeIntervalSinceNow: -86400)) == 2)
        #expect(try store.trials(machine: "test-machine", workload: gemm(64)).count == 2)
        // Everything on test-machine that is not a best.
        #expect(try store.prune(machine: "test-machine") == 3)
        #expect(try store.trials(machine: "test-machine").map(\.gops).sorted { ($0 ?? 0) < ($1 ?? 0) } == [40, 90])
        #expect(try store.bests(machine: "test-machine").map(\.gops) == [40, 90])
        // The workload left with no trial is gone.
        #expect(try !store.workloads().contains(gemm(128)))
        #expect(try store.prune() == 1)
        #expect(try store.prune() == 0)
        #expect(try store.counts().trials == 3)
    }

    @Test func defaultPathPrecedence() throws {
        let dir = TempDir()
        #expect(
            TuningStore.defaultPath(environment: ["LOWBIT_DB": "/x/y.sqlite", "HOME": "/home/u"], currentDirectory: dir.path)
                == "/x/y.sqlite")
        #expect(
            TuningStore.defaultPath(environment: ["HOME": "/home/u"], currentDirectory: dir.path)
                == "/home/u/.local/share/lowbit/lowbit.sqlite")
        try FileManager.default.createDirectory(atPath: dir.file("TuningDB"), withIntermediateDirectories: true)
        #expect(
            TuningStore.defaultPath(environment: ["HOME": "/home/u"], currentDirectory: dir.path)
                == dir.file("TuningDB/lowbit.sqlite"))
        #expect(
            TuningStore.defaultExportPath(fingerprint: "x86_64-amd-2c-0123", repositoryRoot: "/repo")
                == "/repo/TuningDB/exports/x86_64-amd-2c-0123.json")
    }
}
