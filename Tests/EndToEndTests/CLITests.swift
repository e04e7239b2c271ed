import Foundation
import Testing

@testable import Machine

/// Runs the built `lowbit` binary (built beside the test bundle by `swift test`).
struct LowbitBinary {
    let url: URL

    init() throws {
        if let override = ProcessInfo.processInfo.environment["LOWBIT_BIN"] {
            url = URL(fileURLWithPath: override)
            return
        }
        let candidates = [Bundle.main.bundleURL, URL(fileURLWithPath: CommandLine.arguments[0])]
            .map { $0.deletingLastPathComponent().appendingPathComponent("lowbit") }
        guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
            throw CLIError.notFound(candidates.map(\.path))
        }
        url = found
    }

    enum CLIError: Error { case notFound([String]) }

    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    func run(_ arguments: [String], environment extra: [String: String] = [:]) throws -> Output {
        let process = Process()
        process.executableURL = url
        process.arguments = arguments
        if !extra.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(extra) { _, given in given } }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Output(
            status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
            stderr: String(decoding: stderr, as: UTF8.self))
    }
}

@Suite("lowbit command line", .serialized)
struct CLITests {
    @Test func machineJSONMatchesTheLibrary() throws {
        let result = try LowbitBinary().run(["machine", "--json"])
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let fromCLI = try JSONDecoder().decode(MachineDescription.self, from: Data(result.stdout.utf8))
        let fromLibrary = try MachineModel().description
        #expect(fromCLI.topology == fromLibrary.topology)
        #expect(fromCLI.isa == fromLibrary.isa)
        #expect(fromCLI.cpu == fromLibrary.cpu)
        #expect(fromCLI.fingerprint == fromLibrary.fingerprint)
        #expect(fromCLI.counters.hardwareAvailable == fromLibrary.counters.hardwareAvailable)
    }

    @Test func machineTextReportNamesEverySection() throws {
        let result = try LowbitBinary().run(["machine"])
        #expect(result.status == 0)
        for section in ["CPU", "Topology", "Caches", "L1d", "ISA", "Binding", "Counters", "Fingerprint"] {
            #expect(result.stdout.contains(section), "missing \(section)")
        }
    }

    /// --latency: a row per working set from 8 KiB past the last-level cache, each beside the reported
    /// level that holds it (memory past the last), the latencies in ns and cycles, and a line on the
    /// last level; with --json the description and the curve side by side.
    @Test func machineLatencyCurve() throws {
        let cli = try LowbitBinary()
        let text = try cli.run(["machine", "--latency"])
        #expect(text.status == 0, "stderr: \(text.stderr)")
        #expect(text.stdout.contains("Load latency (one thread on PU") && text.stdout.contains("working set     ns  cycles  fits in (reported)"))
        let topology = try MachineModel().description.topology
        let rows = text.stdout.split(separator: "\n").filter { $0.hasSuffix(" L1d") || $0.hasSuffix(" memory") || $0.range(of: #" L[2-9]$"#, options: .regularExpression) != nil }
        #expect(rows.first?.trimmingCharacters(in: .whitespaces).hasPrefix("8 KiB") == true, "\(rows)")
        #expect(rows.last?.hasSuffix(" memory") == true, "\(rows)")
        if let llc = topology.lastLevelCache {
            #expect(text.stdout.contains("\(llc.name) (") && text.stdout.contains("reported): half of it read"), "\(text.stdout)")
        }
        let json = try cli.run(["machine", "--json", "--latency"])
        #expect(json.status == 0)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        let latency = try #require(object["latency"] as? [String: Any])
        let points = try #require(latency["points"] as? [[String: Any]])
        #expect(points.count == rows.count && object["machine"] != nil)
        #expect(points.allSatisfy { (($0["nanoseconds"] as? Double) ?? 0) > 0 })
    }

    @Test func countersListsEveryEvent() throws {
        let result = try LowbitBinary().run(["counters", "--no-sample"])
        #expect(result.status == 0)
        for event in CounterEvent.preferred { #expect(result.stdout.contains(event.name)) }
    }

    @Test func badInputListsWhatIsValid() throws {
        let cli = try LowbitBinary()
        let level = try cli.run(["machine", "--log-level", "loud"])
        #expect(level.status != 0)
        #expect(level.stderr.contains("warning") && level.stderr.contains("debug"))
        let command = try cli.run(["machin"])
        #expect(command.status != 0)
        #expect(command.stderr.contains("machine") && command.stderr.contains("counters"))
        let option = try cli.run(["machine", "--jsn"])
        #expect(option.status != 0)
        #expect(option.stderr.contains("--json"))
    }

    /// LOWBIT_HIDE_ISA: the machine without AVX-512 (another fingerprint), whose bench skips that target.
    @Test func hiddenISAFeaturesAreNotUsed() throws {
        let cli = try LowbitBinary()
        let full = try cli.run(["machine", "--json"])
        let hidden = try cli.run(["machine", "--json"], environment: ["LOWBIT_HIDE_ISA": "avx512f,avx-vnni"])
        #expect(full.status == 0 && hidden.status == 0, "stderr: \(hidden.stderr)")
        let decode = { (text: String) in try JSONDecoder().decode(MachineDescription.self, from: Data(text.utf8)) }
        let a = try decode(full.stdout), b = try decode(hidden.stdout)
        #expect(!b.isa.usable.contains(.avx512f) && !b.isa.usable.contains(.avxvnni))
        #expect(b.isa.usable == a.isa.usable.subtracting([.avx512f, .avx512bw, .avx512vl, .avx512vnni, .avx512bf16, .amxTile, .amxInt8, .avxvnni]))
        #expect(b.isa.hiddenByUser == a.isa.usable.intersection([.avx512f, .avx512bw, .avx512vl, .avx512vnni, .avx512bf16, .amxTile, .amxInt8, .avxvnni]))
        if !b.isa.hiddenByUser.isEmpty { #expect(a.fingerprint.id != b.fingerprint.id) }
        let bench = try cli.run(
            ["bench", "gemm-w8a8", "--m-list", "1", "--n", "16", "--k", "64", "--budget", "0.02", "--db", "/nonexistent/none.sqlite"],
            environment: ["LOWBIT_HIDE_ISA": "avx512f"])
        #expect(bench.status == 0, "stderr: \(bench.stderr)")
        #expect(bench.stdout.contains("avx512-vnni: skipped") && !bench.stdout.contains("  avx512-vnni  "))
        let bad = try cli.run(["machine"], environment: ["LOWBIT_HIDE_ISA": "avx513"])
        #expect(bad.status != 0 && bad.stderr.contains("'avx513' is not an ISA feature"))
    }

    @Test func versionAndHelp() throws {
        let cli = try LowbitBinary()
        let version = try cli.run(["--version"])
        #expect(version.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "0.1.0")
        for command in [[], ["machine"], ["counters"]] {
            let help = try cli.run(command + ["--help"])
            #expect(help.status == 0)
            #expect(help.stdout.contains("USAGE"))
        }
    }
}

@Suite("lowbit bench end to end", .serialized)
struct BenchEndToEndTests {
    @Test func bandwidthBenchPrintsItsTableAgainstAMeasuredPeak() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lowbit-bench-\(UUID().uuidString)")
        let result = try LowbitBinary().run(["bench", "reorder-quantize", "--m-list", "1", "--budget", "0.05", "--cache-dir", dir.path, "--rounds", "2"])
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(result.stdout.contains("% peak") && result.stdout.contains("portable"))
        #expect(result.stdout.contains("its fastest of 2 rounds"))
        #expect(!result.stdout.contains("verify-failed") && !result.stdout.contains("crashed"))
        // Every row is held against a ceiling measured in the same rounds: a number, and the percentage of it.
        let lines: [[String]] = result.stdout.split(separator: "\n").map { line in line.split(separator: " ").map(String.init) }
        let rows = lines.filter { words in words.first == "k=4096" && words.last == "ok" }
        #expect(rows.count >= 2)
        for row in rows {
            let gbs = Double(row[row.count - 4]), peak = Double(row[row.count - 3]), percent = Double(row[row.count - 2].dropLast())
            #expect(gbs != nil && peak != nil && percent != nil, "\(row)")
            if let gbs, let peak, let percent { #expect(abs(100 * gbs / peak - percent) <= 1, "\(row)") }
        }
    }

    /// --vary: a row per value for every variant that can take it, side by side in one run; the values
    /// a variant's rules refuse are left out (portable C has neither insert nor transpose); misuse is named.
    @Test func varyRunsEachValueAsItsOwnRow() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lowbit-bench-vary-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let cli = try LowbitBinary()
        let none = ["--db", dir.appendingPathComponent("none.sqlite").path, "--cache-dir", dir.path, "--budget", "0.02"]
        let result = try cli.run(["bench", "reorder-quantize", "--m-list", "8", "--vary", "gather=insert,transpose"] + none)
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let variants = result.stdout.split(separator: "\n").compactMap { line -> String? in
            let words = line.split(separator: " ").map(String.init)
            return words.first == "k=4096" && words.last == "ok" ? words[3...4].joined(separator: " ") : nil
        }
        #expect(variants == ["avx2 gather=insert", "avx2 gather=transpose"], "\(result.stdout)")
        let gemm = try cli.run(
            ["bench", "gemm-w4a4", "--m-list", "2", "--n", "64", "--k", "256", "--shape", "outliers=128", "--param", "threads=1", "--vary", "unpack=mask,lut"] + none)
        #expect(gemm.status == 0, "stderr: \(gemm.stderr)")
        for label in ["portable unpack=mask", "portable unpack=lut", "avx2 unpack=mask", "avx2 unpack=lut"] {
            #expect(gemm.stdout.contains("  2  \(label) "), "\(label): \(gemm.stdout)")
        }
        let twice = try cli.run(["bench", "reorder-quantize", "--vary", "gather=insert", "--param", "gather=scalar"] + none)
        #expect(twice.status != 0 && twice.stderr.contains("--vary gather and --param gather both set gather"))
        let unknown = try cli.run(["bench", "reorder-quantize", "--vary", "tile=4"] + none)
        #expect(unknown.status != 0 && unknown.stderr.contains("--vary tile: reorder-quantize has no such parameter"))
        let badValue = try cli.run(["bench", "reorder-quantize", "--vary", "gather=insert,sideways"] + none)
        #expect(badValue.status != 0 && badValue.stderr.contains("--vary gather=sideways is not a valid reorder-quantize value"))
    }

    /// A record tuned at m = 8 with a 4-row tile (one every x86 target holds in its registers; 8 x 16 does
    /// not fit AVX2's 16): the bench at m = 2 and 8 adds a "tuned" row for each, the m = 2 one from the
    /// nearest record with its tile fitted to 2 rows, and `lookup` says the same.
    @Test func gemmBenchAddsTheRuntimesTunedRow() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lowbit-bench-tuned-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let db = dir.appendingPathComponent("t.sqlite").path, cache = dir.appendingPathComponent("cache").path
        let cli = try LowbitBinary()
        let shape = ["--n", "64", "--k", "256", "--shape", "outliers=128"]
        let tune = try cli.run(
            ["tune", "gemm-w4a4", "--m", "8"] + shape
                + ["--param", "mr=4", "--param", "mc=8", "--param", "nr=16", "--param", "threads=1", "--trials", "1", "--budget", "0.05", "--db", db, "--cache-dir", cache])
        #expect(tune.status == 0, "stderr: \(tune.stderr)")
        let bench = try cli.run(
            ["bench", "gemm-w4a4", "--m-list", "2,8", "--param", "threads=1", "--budget", "0.05", "--db", db, "--cache-dir", cache, "--against", "gemm-w8a8", "--rounds", "2"]
                + shape)
        #expect(bench.status == 0, "stderr: \(bench.stderr)")
        // --against: gemm-w8a8 has no record here, so its analytical configuration runs beside, with the ratio
        #expect(bench.stdout.contains("gemm-w8a8 analytical") && bench.stdout.contains("M = 2: gemm-w4a4 is ") && bench.stdout.contains("M = 8: gemm-w4a4 is "))
        let wrong = try cli.run(["bench", "gemm-w4a4", "--m-list", "2", "--against", "attention-decode", "--db", db] + shape)
        #expect(wrong.status != 0 && wrong.stderr.contains("--against takes another GEMM family"))
        #expect(bench.stdout.contains("its fastest of 2 rounds") && bench.stderr.contains("tuned round 2:"))
        let noRounds = try cli.run(["bench", "gemm-w4a4", "--m-list", "2", "--rounds", "0", "--db", db] + shape)
        #expect(noRounds.status != 0 && noRounds.stderr.contains("--rounds must be at least 1"))
        let rows = bench.stdout.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        #expect(rows.filter { $0.count > 2 && $0[1] == "tuned" && $0.last == "ok" }.map { $0[0] } == ["2", "8"])
        #expect(rows.filter { $0.count > 3 && $0[1] == "gemm-w8a8" && $0.last == "ok" }.count == 2)
        #expect(bench.stdout.contains("m=2 n=64 outliers=128: nearest record gemm-w4a4 k=256 m=8 n=64 outliers=128"))
        #expect(bench.stdout.contains("fitted: mr=4->2"))
        #expect(bench.stdout.contains("m=8 n=64 outliers=128: exact record"))
        let lookup = try cli.run(["lookup", "gemm-w4a4", "--m", "2", "--db", db] + shape)
        #expect(lookup.status == 0, "stderr: \(lookup.stderr)")
        #expect(lookup.stdout.contains("mr=2") && lookup.stdout.contains("fitted         mr=4->2"))
        let lookupJSON = try cli.run(["lookup", "gemm-w4a4", "--m", "2", "--json", "--db", db] + shape)
        let answer = try JSONSerialization.jsonObject(with: Data(lookupJSON.stdout.utf8)) as? [String: Any]
        #expect(answer?["fitted"] as? String == "mr=4->2" && answer?["waived"] == nil, "stdout: \(lookupJSON.stdout)")
        #expect((answer?["workload"] as? String)?.hasPrefix("gemm-w4a4 ") == true && answer?["source"] is [String: Any])
        // Attention at b = 64, ctx 8192 (INT4) breaks only the harness's pool-size rule: answered, with the waiver.
        let engineShape = ["--shape", "b=64", "--shape", "ctx=8192", "--shape", "hq=32", "--shape", "hkv=32", "--shape", "d=128", "--shape", "kvbits=4"]
        let waivedText = try cli.run(["lookup", "attention-decode", "--db", db] + engineShape)
        #expect(waivedText.status == 0 && waivedText.stdout.contains("waived         shape rule 'size'"), "stderr: \(waivedText.stderr)")
        let waivedJSON = try cli.run(["lookup", "attention-decode", "--json", "--db", db] + engineShape)
        let waivedAnswer = try JSONSerialization.jsonObject(with: Data(waivedJSON.stdout.utf8)) as? [String: Any]
        #expect((waivedAnswer?["waived"] as? [String: Any])?["rule"] as? String == "size", "stdout: \(waivedJSON.stdout)")
        let tooBig = try cli.run(["run", "attention-decode"] + engineShape)
        #expect(tooBig.status != 0 && tooBig.stderr.contains("[rule: size]"), "run keeps the harness rule")
        // A run says which sequence lengths it timed (the workload's own, not b x ctx).
        let small = try cli.run(
            ["run", "attention-decode", "--shape", "b=3", "--shape", "hq=4", "--shape", "hkv=2", "--shape", "d=64", "--shape", "ctx=40",
             "--param", "isa=portable", "--param", "threads=1", "--budget", "0.05", "--cache-dir", cache])
        #expect(small.status == 0 && small.stdout.contains("workload   3 sequences of 21 to 40 tokens"), "stdout: \(small.stdout) stderr: \(small.stderr)")
        // Without a database the table has no tuned rows and says why.
        let none = try cli.run(
            ["bench", "gemm-w4a4", "--m-list", "2", "--param", "threads=1", "--budget", "0.05", "--db", dir.appendingPathComponent("none.sqlite").path, "--cache-dir", cache]
                + shape)
        #expect(none.status == 0, "stderr: \(none.stderr)")
        #expect(!none.stdout.contains("  tuned  ") && none.stdout.contains("no tuning database: no tuned rows"))
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("none.sqlite").path), "bench creates no database")
        // A file that is not a tuning database costs the tuned rows (with a warning), not the benchmark or the file.
        let corrupt = dir.appendingPathComponent("corrupt.sqlite")
        try Data("not a database".utf8).write(to: corrupt)
        let damaged = try cli.run(
            ["bench", "gemm-w4a4", "--m-list", "2", "--param", "isa=portable", "--budget", "0.05", "--db", corrupt.path, "--cache-dir", cache] + shape)
        #expect(damaged.status == 0 && damaged.stderr.contains("warning: no tuned rows"), "stderr: \(damaged.stderr)")
        #expect(try Data(contentsOf: corrupt) == Data("not a database".utf8), "the file is left as it was")
    }
}

@Suite("lowbit verify end to end", .serialized)
struct VerifyEndToEndTests {
    let cache = FileManager.default.temporaryDirectory.appendingPathComponent("lowbit-verify-\(UUID().uuidString)")

    @Test func verifiesWhatRunsAndCompilesWhatCannot() throws {
        let cli = try LowbitBinary()
        let result = try cli.run(["verify", "--family", "peak-bandwidth", "--isa", "portable", "--cache-dir", cache.path])
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(result.stdout.contains("5 verified, 0 failed, 0 compiled only"))
        for op in ["read", "write", "copy", "triad", "runs"] { #expect(result.stdout.contains("peak_bandwidth_\(op)__portable")) }
        #if arch(x86_64)
        // A target hidden from the machine is compiled, not run.
        let hidden = try cli.run(["verify", "--family", "silu-mul-quantize", "--cache-dir", cache.path], environment: ["LOWBIT_HIDE_ISA": "avx2"])
        #expect(hidden.status == 0, "stderr: \(hidden.stderr)")
        #expect(hidden.stdout.contains("atom_silu_mul_quantize__avx2") && hidden.stdout.contains("compiled only (avx2 needs avx2"))
        #expect(hidden.stdout.contains("1 verified, 0 failed"))
        #endif
        let unknown = try cli.run(["verify", "--isa", "avx513"])
        #expect(unknown.status != 0 && unknown.stderr.contains("--isa avx513: not a target"))
    }

    @Test func aVariantThatFailsFailsTheCommand() throws {
        // test-faults misbehaves on request: crashes, a hang, wrong answers; none and slow pass.
        let result = try LowbitBinary().run(["verify", "--family", "test-faults", "--cache-dir", cache.path])
        #expect(result.status == 1, "stdout: \(result.stdout)")
        #expect(result.stdout.contains("2 verified, 7 failed"))
        #expect(result.stdout.contains("crashed: the variant died of SIGSEGV") && result.stdout.contains("verify-failed: 1 of 1000 outputs differ"))
        #expect(result.stdout.contains("timeout: no answer after"))
    }
}
