import Foundation
import KernelKit
import Machine
import Measure
import TuningStore

/// This machine's description, probed once; tests vary `fingerprint.id` to get other machines.
let probedMachine: MachineDescription = {
    do { return try MachineModel().description } catch { fatalError("cannot describe this machine: \(error)") }
}()

func machine(_ id: String) -> MachineDescription {
    var description = probedMachine
    description.fingerprint.id = id
    return description
}

/// A fresh directory under the system temporary directory, removed when released.
final class TempDir {
    let url: URL
    var path: String { url.path }

    init(_ name: String = #function) {
        let slug = name.filter { $0.isLetter || $0.isNumber }
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("lowbit-store-tests-\(slug)-\(UUID().uuidString.prefix(8))")
        try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> String { url.appendingPathComponent(name).path }

    deinit { try? FileManager.default.removeItem(at: url) }
}

func gemm(_ m: Int, _ n: Int = 4096, _ k: Int = 4096) -> Workload {
    Workload(family: "gemm-w8a8", shape: ["m": m, "n": n, "k": k])
}

func config(isa: String = "avx2", mr: Int = 4, nr: Int = 8, kc: Int = 256) -> KernelKit.Configuration {
    Configuration(["isa": .name(isa), "mr": .int(mr), "nr": .int(nr), "kc": .int(kc)])
}

let testCompiler = "clang 21.0.0 /opt/swift/usr/bin/clang"
let testFlags = ["-std=c11", "-O3", "-fPIC", "-mavx2", "-mfma"]

func trial(
    machine: String = "test-machine", workload: Workload = gemm(64), configuration: KernelKit.Configuration = config(),
    status: String = "ok", gops: Double? = 100, templateVersion: Int = 1, compiler: String = testCompiler,
    flags: [String] = testFlags, strategy: String? = "grid", session: String? = "s1", createdAt: Date = Date(),
    dataState: String = "warm (weights fit in L3)"
) -> TrialRecord {
    let timing = gops.map { g -> TimingSummary in
        let seconds = 2.0 * Double(workload["m"] * workload["n"] * workload["k"]) / (g * 1e9)
        return TimingSummary(samples: [seconds, seconds * 1.01, seconds * 1.02, seconds * 1.05, seconds * 1.2])
    }
    return TrialRecord(
        machine: machine, workload: workload, configuration: configuration, templateVersion: templateVersion,
        variant: configuration["isa"]?.description, compiler: compiler, flags: flags, status: status,
        stage: status == "ok" ? "time" : "verify", message: status == "ok" ? nil : "mismatch at [0][3]",
        timing: status == "ok" ? timing : nil, gops: gops,
        counters: [CounterValue(event: "task-clock", value: 123_456, status: .counted, source: "os:clock_gettime")],
        bindingsHonoured: true, dataState: dataState, strategy: strategy, session: session,
        createdAt: createdAt)
}

/// The contents of a file (nil when absent).
func bytes(_ path: String) -> Data? { FileManager.default.contents(atPath: path) }

func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

/// The first executable named `name` on PATH (or in /usr/bin).
func executable(_ name: String) -> String? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    for directory in path.split(separator: ":") + ["/usr/bin"] {
        let candidate = "\(directory)/\(name)"
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    return nil
}

let sqlite3Path = executable("sqlite3")

/// Runs a program to completion; returns its exit status and combined output.
@discardableResult
func run(_ program: String, _ arguments: [String], stdin: String? = nil) throws -> (status: Int32, output: String) {
    let directory = TempDir("run")
    return try withExtendedLifetime(directory) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: program)
        process.arguments = arguments
        let output = directory.file("out")
        _ = FileManager.default.createFile(atPath: output, contents: nil)
        let handle = FileHandle(forWritingAtPath: output)!
        process.standardOutput = handle
        process.standardError = handle
        if let stdin {
            let input = directory.file("in")
            _ = FileManager.default.createFile(atPath: input, contents: Data(stdin.utf8))
            process.standardInput = FileHandle(forReadingAtPath: input)!
        }
        try process.run()
        process.waitUntilExit()
        try handle.close()
        return (process.terminationStatus, String(decoding: bytes(output) ?? Data(), as: UTF8.self))
    }
}

/// Runs SQL through the sqlite3 command-line shell.
@discardableResult
func sqlite(_ database: String, _ sql: String) throws -> String {
    let result = try run(sqlite3Path!, ["-batch", database], stdin: ".timeout 10000\n" + sql + "\n")
    if result.status != 0 { throw SQLiteShellError(message: result.output) }
    return result.output.trimmingCharacters(in: .whitespacesAndNewlines)
}

struct SQLiteShellError: Error, CustomStringConvertible {
    var message: String
    var description: String { "sqlite3 failed: \(message)" }
}

/// An INSERT of one raw trial row (as another program would write it) for `gemm(64)`.
func rawTrialInsert(machine: String, key: String, gops: Double) -> String {
    """
    INSERT INTO trials (point_key, machine, workload_id, workload_key, family, configuration, configuration_key,
        template_version, compiler, flags, status, stage, gops, counters, strategy, session, created_at)
    VALUES ('\(key)', '\(machine)', (SELECT id FROM workloads WHERE key = 'gemm-w8a8 k=4096 m=64 n=4096'),
        'gemm-w8a8 k=4096 m=64 n=4096', 'gemm-w8a8', '{"values":{"mr":4}}', 'mr=4', 1, 'cc', '[]', 'ok', 'time',
        \(gops), '[]', 'external', 'external', strftime('%Y-%m-%d %H:%M:%f', 'now'));
    """
}
