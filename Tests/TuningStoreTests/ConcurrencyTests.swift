import Foundation
import KernelKit
import Testing
import TuningStore

#if canImport(Glibc)
import Glibc
#endif

@Suite("Tuning store: concurrent writers and killed writers")
struct ConcurrencyTests {
    /// Two stores on one file (two SQLite connections, as two processes would have), each inserting
    /// 200 trials at the same time from its own thread.
    @Test func twoWritersAtOnceLoseNothing() throws {
        let dir = TempDir()
        let path = dir.file("db.sqlite")
        let stores = [try TuningStore(path: path), try TuningStore(path: path)]
        let failures = FailureLog()
        let group = DispatchGroup()
        for (writer, store) in stores.enumerated() {
            group.enter()
            Thread {
                defer { group.leave() }
                for i in 0..<200 {
                    do {
                        try store.insert(
                            trial(workload: gemm(1 << (i % 4)), configuration: config(mr: writer, nr: i),
                                  gops: Double(writer * 1000 + i + 1)))
                    } catch {
                        failures.add("writer \(writer) trial \(i): \(error)")
                    }
                }
            }.start()
        }
        group.wait()
        #expect(failures.messages.isEmpty)
        let store = try TuningStore(path: path)
        #expect(try store.counts().trials == 400)
        #expect(try store.check().isEmpty)
        // The best of each workload is the fastest of both writers' trials.
        for w in 0..<4 {
            let fastest = Double(1000 + (196 + w) + 1)
            #expect(try store.best(machine: "test-machine", workload: gemm(1 << w))?.gops == fastest)
        }
    }

    /// Several stores creating the same new database at once: one creates it, the others wait and
    /// find it migrated.
    @Test func concurrentCreationOfOneDatabase() throws {
        let dir = TempDir()
        let path = dir.file("new/db.sqlite")
        let failures = FailureLog()
        let group = DispatchGroup()
        for writer in 0..<4 {
            group.enter()
            Thread {
                defer { group.leave() }
                do {
                    let store = try TuningStore(path: path)
                    try store.insert(trial(configuration: config(mr: writer)))
                } catch {
                    failures.add("writer \(writer): \(error)")
                }
            }.start()
        }
        group.wait()
        #expect(failures.messages.isEmpty)
        #expect(try TuningStore(path: path).counts().trials == 4)
    }

    /// The sqlite3 shell (another process) inserts 200 rows, one transaction each, while this process
    /// inserts 200 trials through the store.
    @Test(.enabled(if: sqlite3Path != nil, "needs the sqlite3 command-line shell (Debian package sqlite3)"))
    func anotherProcessWritingAtTheSameTimeLosesNothing() throws {
        let dir = TempDir()
        let path = dir.file("db.sqlite")
        let store = try TuningStore(path: path)
        try store.insert(trial(workload: gemm(64), configuration: config(mr: 99), gops: 1))

        let script = dir.file("writer.sql")
        var sql = ".timeout 10000\n"
        for i in 0..<200 {
            sql += "BEGIN IMMEDIATE;\n" + rawTrialInsert(machine: "test-machine", key: "external-\(i)", gops: 1) + "\nCOMMIT;\n"
        }
        _ = FileManager.default.createFile(atPath: script, contents: Data(sql.utf8))
        let child = Process()
        child.executableURL = URL(fileURLWithPath: sqlite3Path!)
        child.arguments = ["-batch", "-bail", path]
        child.standardInput = FileHandle(forReadingAtPath: script)!
        let log = dir.file("writer.log")
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        child.standardOutput = FileHandle(forWritingAtPath: log)!
        child.standardError = FileHandle(forWritingAtPath: log)!
        try child.run()

        var errors: [String] = []
        for i in 0..<200 {
            do { try store.insert(trial(workload: gemm(64), configuration: config(nr: i), gops: Double(i + 2))) } catch {
                errors.append("\(error)")
            }
        }
        child.waitUntilExit()
        #expect(child.terminationStatus == 0, "sqlite3 writer: \(String(decoding: bytes(log) ?? Data(), as: UTF8.self))")
        #expect(errors.isEmpty)
        #expect(try store.counts().trials == 401)
        #expect(try store.trials(status: "ok").filter { $0.strategy == "external" }.count == 200)
        #expect(try store.best(machine: "test-machine", workload: gemm(64))?.gops == 201)
    }

    /// A writer killed with SIGKILL, mid-transaction more often than not, leaves a sound database that
    /// holds every trial it committed.
    @Test(.enabled(if: sqlite3Path != nil && executable("setsid") != nil, "needs sqlite3 and setsid"))
    func writerKilledWithSIGKILLLosesOnlyTheTrialInFlight() throws {
        let dir = TempDir()
        let path = dir.file("db.sqlite")
        do {
            let store = try TuningStore(path: path)
            try store.insert(trial(workload: gemm(64), configuration: config(mr: 99), gops: 1))
        }
        // Each loop iteration is one sqlite3 process with one transaction that inserts a trial and
        // then works for a while before COMMIT; the shell prints i only once that commit returned.
        let sql = """
            .timeout 10000
            BEGIN IMMEDIATE;
            \(rawTrialInsert(machine: "test-machine", key: "killed-$i", gops: 2))
            WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200000) SELECT count(*) FROM c;
            COMMIT;
            """
        let shell = """
            echo $$ > "\(dir.file("pgid"))"
            i=0
            while [ $i -lt 100000 ]; do
              i=$((i + 1))
              "\(sqlite3Path!)" -batch -bail "\(path)" > /dev/null <<EOF || exit 1
            \(sql)
            EOF
              echo $i
            done
            """
        let progress = dir.file("progress")
        _ = FileManager.default.createFile(atPath: progress, contents: nil)
        let child = Process()
        child.executableURL = URL(fileURLWithPath: executable("setsid")!)
        child.arguments = ["-w", "/bin/sh", "-c", shell]
        child.standardOutput = FileHandle(forWritingAtPath: progress)!
        _ = FileManager.default.createFile(atPath: dir.file("stderr"), contents: nil)
        child.standardError = FileHandle(forWritingAtPath: dir.file("stderr"))!
        try child.run()

        func lines() -> [Int] {
            String(decoding: bytes(progress) ?? Data(), as: UTF8.self).split(separator: "\n").compactMap { Int($0) }
        }
        let deadline = Date(timeIntervalSinceNow: 60)
        while (lines().last ?? 0) < 15, Date() < deadline, child.isRunning { usleep(20_000) }
        // Land the kill inside a transaction: wait a few ms into the next iteration.
        usleep(30_000)
        let pgid = try #require(
            Int32(String(decoding: bytes(dir.file("pgid")) ?? Data(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(kill(-pgid, SIGKILL) == 0)
        child.waitUntilExit()
        let committed = lines().last ?? 0
        #expect(committed >= 15)

        let store = try TuningStore(path: path)
        #expect(try store.check().isEmpty)
        let rows = try store.trials(machine: "test-machine").filter { $0.strategy == "external" }
        // Every trial the writer reported committed is there; at most one more (committed, killed
        // before it could say so); the one in flight is not half there.
        #expect(rows.count == committed || rows.count == committed + 1, "committed \(committed), stored \(rows.count)")
        #expect(try store.counts().trials == rows.count + 1)
        // The database keeps working.
        try store.insert(trial(workload: gemm(64), configuration: config(mr: 100), gops: 3))
        #expect(try store.best(machine: "test-machine", workload: gemm(64))?.gops == 3)
    }
}

final class FailureLog: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [String] = []
    func add(_ message: String) { lock.lock(); list.append(message); lock.unlock() }
    var messages: [String] { lock.lock(); defer { lock.unlock() }; return list }
}
