import Foundation
import KernelKit
import Testing
import TuningStore

@Suite("lowbit tune end to end", .serialized)
struct TuneEndToEndTests {
    func scratch() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lowbit-e2e-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test func aTunerKilledWithSIGKILLLeavesEveryFinishedTrial() throws {
        let dir = try scratch()
        let db = dir.appendingPathComponent("tune.sqlite").path
        let process = Process()
        process.executableURL = try LowbitBinary().url
        process.arguments = [
            "tune", "gemm-w8a8", "--m", "8", "--n", "256", "--k", "256", "--strategy", "random", "--trials", "500",
            "--time", "10m", "--patience", "500", "--budget", "0.05", "--db", db,
        ]
        var environment = ProcessInfo.processInfo.environment
        environment["LOWBIT_CACHE_DIR"] = dir.appendingPathComponent("cache").path
        process.environment = environment
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()

        // Each finished trial is stored before its line is printed; wait for a few, then kill.
        var text = ""
        var finished = 0
        let deadline = Date().addingTimeInterval(120)
        while finished < 4, Date() < deadline {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            text += String(decoding: chunk, as: UTF8.self)
            finished = text.components(separatedBy: "\n").filter { $0.contains(" trial ") && $0.contains("/500:") }.count
        }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        #expect(process.terminationReason == .uncaughtSignal)
        #expect(finished >= 4, "the tuner printed: \(text)")

        let store = try TuningStore(path: db)
        #expect(try store.check().isEmpty, "the database is not sound after SIGKILL")
        let stored = try store.trials().count
        #expect(stored >= finished, "\(finished) trials reported finished, \(stored) stored")
        #expect(stored <= finished + 1, "at most the trial in flight may be extra")
    }

    @Test func badTuneInputListsWhatIsValid() throws {
        let cli = try LowbitBinary()
        let suite = try cli.run(["tune", "--suite", "huge"])
        #expect(suite.status != 0)
        #expect(suite.stderr.contains("smoke") && suite.stderr.contains("llama-7b"))
        let strategy = try cli.run(["tune", "gemm-w8a8", "--m", "1", "--n", "8", "--k", "8", "--strategy", "genetic"])
        #expect(strategy.status != 0)
        #expect(strategy.stderr.contains("model-guided"))
        let corrupt = try scratch().appendingPathComponent("bad.sqlite")
        try Data("not a database at all".utf8).write(to: corrupt)
        let before = try Data(contentsOf: corrupt)
        let refused = try cli.run(["db", "show", "--db", corrupt.path])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("--db") || refused.stderr.contains("LOWBIT_DB"))
        #expect(try Data(contentsOf: corrupt) == before, "a refused file must be left unchanged")
    }

    @Test func dbTrialsFiltersBySizesAndSortsByGOPs() throws {
        let db = try scratch().appendingPathComponent("trials.sqlite").path
        let store = try TuningStore(path: db)
        func add(m: Int, n: Int, gops: Double?, mr: Int, cold: Bool = false) throws {
            let w = Workload(family: "gemm-w4a4", shape: ["m": m, "n": n, "k": 4096, "outliers": 128])
            _ = try store.insert(
                TrialRecord(
                    machine: "test-machine", workload: w, configuration: Configuration(["mr": .int(mr)]), templateVersion: 5,
                    compiler: "cc", status: gops == nil ? "verify-failed" : "ok", stage: gops == nil ? "verify" : "done",
                    message: gops == nil ? "3 of 9 outputs differ" : nil, gops: gops,
                    dataState: cold ? "cold: flushed before every sample" : "hot: reused"))
        }
        try add(m: 16, n: 11008, gops: 400, mr: 4)
        try add(m: 16, n: 11008, gops: 550, mr: 8, cold: true)
        try add(m: 16, n: 4096, gops: 500, mr: 6)
        try add(m: 16, n: 11008, gops: nil, mr: 12)
        try add(m: 8, n: 11008, gops: 900, mr: 2)
        let cli = try LowbitBinary()
        let run = try cli.run(["db", "trials", "--db", db, "--family", "gemm-w4a4", "--shape", "m=16", "--shape", "n=11008", "--fastest"])
        #expect(run.status == 0, "\(run.stderr)")
        let rows = run.stdout.split(separator: "\n").filter { $0.contains("gemm-w4a4 ") }
        #expect(rows.count == 3, "three trials have M = 16 and N = 11008:\n\(run.stdout)")
        #expect(rows.first?.contains("mr=8") == true && rows.first?.contains("cold") == true, "the fastest first, marked cold")
        #expect(rows.last?.contains("verify-failed") == true, "failed trials last")
        #expect(!run.stdout.contains("m=8 ") && !run.stdout.contains("n=4096 "))
        let none = try cli.run(["db", "trials", "--db", db, "--shape", "m=3"])
        #expect(none.status == 0 && none.stdout.contains("no trials with m=3"))
        let bad = try cli.run(["db", "trials", "--db", db, "--shape", "m"])
        #expect(bad.status != 0 && bad.stderr.contains("name=integer"))
    }

    @Test func aFinalRetimesTheFinalistsAndLookupSaysSo() throws {
        let dir = try scratch()
        let db = dir.appendingPathComponent("final.sqlite").path
        let cli = try LowbitBinary()
        let env = ["LOWBIT_CACHE_DIR": dir.appendingPathComponent("cache").path]
        let shape = ["--m", "4", "--n", "64", "--k", "64"]
        let tune = try cli.run(
            ["tune", "gemm-w8a8"] + shape + ["--strategy", "random", "--trials", "3", "--budget", "0.05", "--finalists", "2", "--final-rounds", "2", "--db", db],
            environment: env)
        #expect(tune.status == 0, "\(tune.stderr)")
        #expect(tune.stdout.contains("final: 2 finalists timed side by side, 2 rounds each"), "\(tune.stdout)")
        #expect(tune.stdout.contains("best: trial "), "\(tune.stdout)")
        let lookup = try cli.run(["lookup", "gemm-w8a8"] + shape + ["--db", db], environment: env)
        #expect(lookup.status == 0 && lookup.stdout.contains("decided        by a final: 2 finalists"), "\(lookup.stdout)")
        // --trials 0 runs only the final; a final of one is refused.
        let again = try cli.run(["tune", "gemm-w8a8"] + shape + ["--trials", "0", "--finalists", "3", "--final-rounds", "1", "--budget", "0.05", "--db", db], environment: env)
        #expect(again.status == 0 && again.stdout.contains("0 trials") && again.stdout.contains("final: 3 finalists"), "\(again.stdout)")
        let one = try cli.run(["tune", "gemm-w8a8"] + shape + ["--finalists", "1", "--db", db], environment: env)
        #expect(one.status != 0 && one.stderr.contains("--finalists"))
    }
}
