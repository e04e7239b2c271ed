import Foundation
import Testing
import TuningStore

@testable import Roofline

/// `lowbit roofline measure`, `roofline show`, `compare` and `report` against one scratch database.
@Suite("roofline and report commands", .serialized)
struct RooflineReportTests {
    static let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lowbit-roofline-\(UUID().uuidString)")
    static var db: String { directory.appendingPathComponent("lowbit.sqlite").path }

    /// Measures (one thread, short budgets) and returns what was stored. Other suites run in parallel
    /// with this one and can load both cores for seconds, so a measurement whose orderings do not hold
    /// is taken again, up to three times in all; the tests then check the last one.
    static let measured: Result<Ceilings, Error> = Result {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var ceilings = Ceilings()
        for _ in 0..<3 {
            let run = try LowbitBinary().run(["roofline", "measure", "--db", db, "--threads-list", "1", "--budget", "0.1"])
            guard run.status == 0 else { throw MeasureFailed(stderr: run.stderr) }
            let store = try TuningStore(path: db)
            let machine = try #require(try store.machines().first)
            ceilings = Ceilings(flat: machine.ceilings ?? [:])
            if orderingProblems(ceilings).isEmpty { break }
        }
        return ceilings
    }

    /// The orderings the tests expect, as messages for those that do not hold.
    static func orderingProblems(_ c: Ceilings) -> [String] {
        var problems: [String] = []
        for op in ["read", "write", "copy", "triad"] {
            func at(_ level: String) -> Double? { c.bandwidth(op: op, threads: 1, level: level) }
            guard let l1 = at("L1"), let dram = at("DRAM") else { problems.append("\(op): no L1 or DRAM plateau"); continue }
            if !(l1 > 1.5 * dram) { problems.append("\(op): L1 \(l1) GB/s vs DRAM \(dram) GB/s") }
            if let l3 = at("L3") {
                if !(l1 > 1.2 * l3) { problems.append("\(op): L1 \(l1) vs L3 \(l3)") }
                if !(l3 > 1.2 * dram) { problems.append("\(op): L3 \(l3) vs DRAM \(dram)") }
            }
        }
        func g(_ op: String, _ isa: String) -> Double? { c.compute(op: op, isa: isa, threads: 1) }
        if let i16 = g("int8-i16", "avx2"), let i32 = g("int8-i32", "avx2"), !(i16 > 1.1 * i32) { problems.append("int8-i16 \(i16) vs int8-i32 \(i32)") }
        if let dot = g("int8-dot", "avx512-vnni"), let i32 = g("int8-i32", "avx512-vnni"), !(dot > 1.1 * i32) { problems.append("int8-dot \(dot) vs int8-i32 \(i32)") }
        if let wide = g("fp32-fma", "avx512-vnni"), let narrow = g("fp32-fma", "avx2"), !(wide > 1.2 * narrow) { problems.append("fp32-fma 512 \(wide) vs 256 \(narrow)") }
        return problems
    }

    struct MeasureFailed: Error { var stderr: String }

    @Test func bandwidthFallsPastEachCacheLevel() throws {
        let c = try Self.measured.get()
        for op in ["read", "write", "copy", "triad"] {
            func at(_ level: String) -> Double? { c.bandwidth(op: op, threads: 1, level: level) }
            let l1 = try #require(at("L1"), "\(op) has an L1 plateau")
            let dram = try #require(at("DRAM"), "\(op) has a DRAM plateau")
            #expect(l1 > 1.5 * dram, "\(op): L1 \(l1) GB/s should be well above DRAM \(dram) GB/s")
            if let l3 = at("L3") {
                #expect(l1 > 1.2 * l3, "\(op): L1 \(l1) vs L3 \(l3)")
                #expect(l3 > 1.2 * dram, "\(op): L3 \(l3) vs DRAM \(dram)")
            }
            let sweep = c.sweep.filter { $0.op == op && $0.threads == 1 }
            #expect(sweep.count >= 10, "the sweep covers L1 to past the last level")
        }
    }

    /// The latency curve: from 8 KiB past the last-level cache, positive, and an L1-sized chase faster
    /// than one four times the last level (memory on any machine).
    @Test func latencyCurveIsStored() throws {
        let c = try Self.measured.get()
        #expect(c.latency.count >= 10 && c.latency.allSatisfy { $0.threads == 1 && $0.nanoseconds > 0 })
        let first = try #require(c.latency.first), last = try #require(c.latency.last)
        #expect(first.bytes == 8 << 10 && last.bytes >= 64 << 20)
        #expect(first.nanoseconds < last.nanoseconds, "\(first.nanoseconds) ns in 8 KiB against \(last.nanoseconds) ns in \(last.bytes) bytes")
    }

    @Test func computeCeilingsArePositiveAndOrderedAsTheISAImplies() throws {
        let c = try Self.measured.get()
        #expect(!c.compute.isEmpty)
        for x in c.compute { #expect(x.gops > 0, "\(x.op) \(x.isa)") }
        func g(_ op: String, _ isa: String) -> Double? { c.compute(op: op, isa: isa, threads: 1) }
        if let i16 = g("int8-i16", "avx2"), let i32 = g("int8-i32", "avx2") {
            #expect(i16 > 1.1 * i32, "int16 accumulation skips vpmaddwd: \(i16) vs \(i32)")
        }
        if let dot = g("int8-dot", "avx512-vnni"), let i32 = g("int8-i32", "avx512-vnni") {
            #expect(dot > 1.1 * i32, "vpdpbusd does in one instruction what takes three: \(dot) vs \(i32)")
        }
        if let wide = g("fp32-fma", "avx512-vnni"), let narrow = g("fp32-fma", "avx2") {
            #expect(wide > 1.2 * narrow, "512-bit FMA over 256-bit: \(wide) vs \(narrow)")
        }
        if let int4 = g("int4-dot", "avx512-vnni"), let int8 = g("int8-dot", "avx512-vnni") {
            #expect(int4 <= 1.1 * int8, "unpacking costs: \(int4) vs \(int8)")
        }
    }

    @Test func showCompareAndReport() throws {
        _ = try Self.measured.get()
        let bin = try LowbitBinary()
        let show = try bin.run(["roofline", "show", "--db", Self.db])
        #expect(show.status == 0, "\(show.stderr)")
        #expect(show.stdout.contains("bandwidth plateaus") && show.stdout.contains("DRAM"))
        #expect(show.stdout.contains("load latency (one thread, pointer chase; ns per dependent load)"))

        let compare = try bin.run(["compare", "gemm-w8a8", "--m", "4", "--n", "64", "--k", "128", "--db", Self.db, "--budget", "0.05"])
        #expect(compare.status == 0, "\(compare.stderr)")
        #expect(compare.stdout.contains("% roofline") && compare.stdout.contains("analytical") && compare.stdout.contains("portable"))

        let tune = try bin.run(["tune", "gemm-w8a8", "--m", "4", "--n", "64", "--k", "128", "--trials", "3", "--db", Self.db, "--budget", "0.05"])
        #expect(tune.status == 0, "\(tune.stderr)")
        // One shape under both GEMM families: the report pairs them.
        for (family, extra) in [("gemm-w8a8", [String]()), ("gemm-w4a4", ["--shape", "outliers=128"])] {
            let pair = try bin.run(["tune", family, "--m", "4", "--n", "64", "--k", "256", "--trials", "1", "--db", Self.db, "--budget", "0.05"] + extra)
            #expect(pair.status == 0, "\(pair.stderr)")
        }
        let out = Self.directory.appendingPathComponent("plots")
        let report = try bin.run(["report", "--db", Self.db, "--out", out.path])
        #expect(report.status == 0, "\(report.stderr)")
        let html = try String(contentsOf: out.appendingPathComponent("report.html"), encoding: .utf8)
        for external in ["http://", "https://", "src=", "<script", "@import", "url("] {
            #expect(!html.contains(external), "the report references an external resource: \(external)")
        }
        #expect(html.components(separatedBy: "<svg").count - 1 >= 3, "inline roofline, bandwidth and batch figures")
        #expect(html.contains("attainment") && html.contains("gemm-w8a8 k=128 m=4 n=64"))
        #expect(html.contains("Comparisons") && html.contains("gemm-w4a4 (128 INT8 outlier channels) against gemm-w8a8") && html.contains("m=4 64x256"))
        #expect(html.contains("Load latency against working set (1 thread)"))
        for figure in ["roofline.svg", "bandwidth.svg", "latency.svg", "throughput-vs-batch.svg"] {
            #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent(figure).path), "\(figure)")
        }
    }

    @Test func readOnlyCommandsOnAMissingDatabaseSayWhatToRunAndCreateNothing() throws {
        let missing = FileManager.default.temporaryDirectory.appendingPathComponent("lowbit-missing-\(UUID().uuidString).sqlite").path
        let bin = try LowbitBinary()
        for command in [["roofline", "show"], ["db", "show"], ["db", "best"], ["db", "trials"], ["db", "list"], ["export"], ["report", "--out", missing + "-plots"]] {
            let r = try bin.run(command + ["--db", missing])
            #expect(r.status != 0, "\(command)")
            #expect(r.stderr.contains("no tuning database at \(missing)") && r.stderr.contains("lowbit roofline measure"), "\(command): \(r.stderr)")
        }
        // lookup answers what a runtime would do without a database: the analytical configuration.
        let lookup = try bin.run(["lookup", "gemm-w8a8", "--m", "4", "--n", "64", "--k", "128", "--db", missing])
        #expect(lookup.status == 0)
        #expect(lookup.stdout.contains("analytical default") && lookup.stdout.contains("no tuning database at \(missing)"))
        #expect(!FileManager.default.fileExists(atPath: missing))
        #expect(!FileManager.default.fileExists(atPath: missing + "-plots"))
    }
}
