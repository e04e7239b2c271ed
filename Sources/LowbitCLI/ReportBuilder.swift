import Foundation
import KernelKit
import Kernels
import Machine
import Report
import Roofline
import TuningStore

/// Assembles `lowbit report`: the machine, its measured ceilings, the tuned results held against the
/// roofline, and the figures, all from one tuning database. Nothing here measures: every number comes
/// from the database, where `roofline measure`, `tune` and `bench` put what they measured.
struct ReportBuilder {
    let machine: MachineRecord
    let ceilings: Ceilings
    let bests: [BestRecord]
    let trials: [TrialRecord]
    /// The latest serve-bench run of this machine.
    let serving: [ServingRecord]
    /// The latest serve-bench run of each model on this machine (a model with more layers, or the same
    /// model at other batch sizes, is its own run), oldest first.
    let servingRuns: [[ServingRecord]]

    init(store: TuningStore, machine: MachineRecord) throws {
        self.machine = machine
        ceilings = Ceilings(flat: machine.ceilings ?? [:])
        bests = try store.bests(machine: machine.fingerprint)
        trials = try store.trials(machine: machine.fingerprint)
        let all = try store.serving(machine: machine.fingerprint)
        let latest = all.last?.session
        serving = all.filter { $0.session == latest }
        var lastSession: [String: String] = [:]
        for r in all { lastSession[r.model] = r.session }
        let sessions = Set(lastSession.values)
        servingRuns = all.reduce(into: [[ServingRecord]]()) { runs, r in
            guard sessions.contains(r.session) else { return }
            if let i = runs.firstIndex(where: { $0.first?.session == r.session }) { runs[i].append(r) } else { runs.append([r]) }
        }
    }

    var topology: Topology { machine.description.topology }
    var maxThreads: Int { ceilings.plateaus.map(\.threads).max() ?? max(1, topology.cores.count) }

    /// One best result against the roofline.
    struct Row {
        var best: BestRecord
        var attainment: Attainment?
        var cold: Bool { TrialRecord.isCold(best.dataState) }
    }

    var rows: [Row] {
        bests.sorted { ($0.family, $0.workload.description) < ($1.family, $1.workload.description) }.map { b in
            Row(best: b, attainment: Self.attainment(of: b, ceilings: ceilings, topology: topology))
        }
    }

    /// A best record against the ceilings given (those stored now, which may be newer than the trial's
    /// own `attainment`); nil for a family this build does not know or a shape with no byte model.
    static func attainment(of b: BestRecord, ceilings: Ceilings, topology: Topology) -> Attainment? {
        let ops = (try? KernelRegistry.family(named: b.family)).map { $0.usefulOps(b.workload, b.configuration) }
        return ops.flatMap {
            Attainment.of(
                family: b.family, workload: b.workload, config: b.configuration, achieved: b.gops, usefulOps: $0,
                ceilings: ceilings, topology: topology, cold: TrialRecord.isCold(b.dataState))
        }
    }

    // MARK: Figures

    /// Log-log roofline: the read plateaus of every level at the most threads measured, the compute
    /// ceilings of the best ISA, and every tuned best that has an intensity model.
    func rooflineChart() -> RooflineChart {
        let threads = maxThreads
        let bandwidth = ceilings.plateaus.filter { $0.op == "read" && $0.threads == threads }
            .map { RooflineChart.BandwidthCeiling("\($0.level) read", gigabytesPerSecond: $0.gbps) }
        let isas = Set(bests.compactMap { $0.configuration["isa"]?.description })
        let compute = ceilings.compute.filter { $0.threads == threads && (isas.isEmpty || isas.contains($0.isa)) }
            .map { RooflineChart.ComputeCeiling("\($0.op) \($0.isa)", gigaOpsPerSecond: $0.gops) }
        let points = rows.compactMap { r -> RooflineChart.KernelPoint? in
            guard let a = r.attainment else { return nil }
            return RooflineChart.KernelPoint(
                Self.shortName(r.best.workload), series: r.best.family, intensity: a.intensity, gigaOpsPerSecond: r.best.gops,
                attainment: a.fraction)
        }
        return RooflineChart(
            title: "Roofline of \(machine.description.cpu.name), \(threads) thread\(threads == 1 ? "" : "s")",
            bandwidthCeilings: bandwidth, computeCeilings: compute, points: points)
    }

    /// Bandwidth against working-set size, one line per operation at the most threads, with the cache
    /// capacities marked.
    func bandwidthChart() -> LineChart {
        let threads = maxThreads
        let series = ["read", "write", "copy", "triad"].compactMap { op -> LineChart.Series? in
            let points = ceilings.sweep.filter { $0.op == op && $0.threads == threads }.map { DataPoint(Double($0.bytes), $0.gbps) }
            return points.isEmpty ? nil : LineChart.Series(op, points: points)
        }
        let marks = PlateauDetector(topology: topology, threads: threads).levels.map {
            ReferenceLine.vertical(at: $0.bytes, label: $0.name)
        }
        return LineChart(
            title: "Bandwidth against working set (\(threads) thread\(threads == 1 ? "" : "s"))",
            xAxis: AxisSpec("Working set", kind: .log2, format: .bytes), yAxis: AxisSpec("GB/s", kind: .log10),
            series: series, referenceLines: marks, yIncludesZero: false)
    }

    /// Nanoseconds per dependent load against working-set size (one thread), with the reported cache
    /// capacities marked; nil when the ceilings have no latency curve.
    func latencyChart() -> LineChart? {
        guard !ceilings.latency.isEmpty else { return nil }
        let points = ceilings.latency.filter { $0.threads == 1 }.map { DataPoint(Double($0.bytes), $0.nanoseconds) }
        let marks = PlateauDetector(topology: topology, threads: 1).levels.map { ReferenceLine.vertical(at: $0.bytes, label: $0.name) }
        return LineChart(
            title: "Load latency against working set (1 thread)",
            xAxis: AxisSpec("Working set", kind: .log2, format: .bytes), yAxis: AxisSpec("ns per load", kind: .log10),
            series: [LineChart.Series("pointer chase", points: points)], referenceLines: marks, yIncludesZero: false)
    }

    /// Best-so-far GOP/s against trial number for the workload with the most trials, one line per
    /// strategy (trials in the order they were stored).
    func convergenceChart() -> LineChart? {
        let byWorkload = Dictionary(grouping: trials.filter { $0.strategy != nil }, by: \.workload)
        guard let (workload, list) = byWorkload.max(by: { $0.value.count < $1.value.count }), list.count >= 3 else { return nil }
        let strategies = Dictionary(grouping: list, by: { $0.strategy ?? "?" })
        let series = strategies.keys.sorted().map { name -> LineChart.Series in
            var best = 0.0
            let points = strategies[name]!.sorted { ($0.createdAt, $0.id ?? 0) < ($1.createdAt, $1.id ?? 0) }.enumerated().map { i, t in
                best = max(best, t.gops ?? 0)
                return DataPoint(Double(i + 1), best)
            }
            return LineChart.Series(name, points: points, step: true)
        }
        return LineChart(
            title: "Tuning convergence: \(workload.description)", xAxis: AxisSpec("Trial", kind: .linear),
            yAxis: AxisSpec("Best GOP/s so far", kind: .linear), series: series, step: true)
    }

    /// Tuned throughput against batch size (M) per GEMM family and layer shape: Atom's kernel figure.
    func batchChart() -> LineChart? {
        let gemms = bests.filter { $0.workload.shape["m"] != nil && $0.workload.shape["n"] != nil }
        guard !gemms.isEmpty else { return nil }
        let groups = Dictionary(grouping: gemms) { "\($0.family) \($0.workload["n"])x\($0.workload["k"])" }
        let series = groups.keys.sorted().map { key in
            LineChart.Series(key, points: groups[key]!.sorted { $0.workload["m"] < $1.workload["m"] }.map { DataPoint(Double($0.workload["m"]), $0.gops) })
        }
        return LineChart(
            title: "Tuned GEMM throughput against batch size", xAxis: AxisSpec("Batch (M)", kind: .log2),
            yAxis: AxisSpec("GOP/s", kind: .linear), series: series)
    }

    /// Decode throughput against batch size, one line per engine mode (the latest serve-bench run, or
    /// `run`).
    func servingChart(_ run: [ServingRecord]? = nil) -> LineChart? {
        let serving = run ?? self.serving
        guard let first = serving.first else { return nil }
        let modes = ["fp32", "w8a8", "w4a4"].filter { m in serving.contains { $0.mode == m } }
        let series = modes.map { mode in
            LineChart.Series(
                Self.modeName(mode),
                points: serving.filter { $0.mode == mode }.sorted { $0.batch < $1.batch }.map { DataPoint(Double($0.batch), $0.tokensPerSecond) })
        }
        return LineChart(
            title: "Decode throughput: \(first.model), context \(first.context)", xAxis: AxisSpec("Batch", kind: .log2),
            yAxis: AxisSpec("Tokens per second", kind: .log10), series: series, yIncludesZero: false)
    }

    static func modeName(_ mode: String) -> String {
        switch mode {
        case "fp32": "FP32 (OpenBLAS, FP32 KV)"
        case "w8a8": "W8A8 + INT8 KV"
        case "w4a4": "W4A4 Atom + INT4 KV"
        default: mode
        }
    }

    // MARK: Page

    func html(generator: String) -> HTMLReport {
        let d = machine.description
        var report = HTMLReport(
            title: "lowbit report: \(d.cpu.name)", subtitle: "machine \(machine.fingerprint)", generator: generator)

        var m = HTMLReport.Section("Machine")
        let caches = d.topology.cacheLevels.map { "\($0.name) \(Format.bytes($0.sizeBytes)) x\($0.instances)" }.joined(separator: ", ")
        m.definitions([
            .init("CPU", d.cpu.name),
            .init("Cores / PUs", "\(d.topology.cores.count) / \(d.topology.pus.count)"),
            .init("Caches", caches),
            .init("ISA", d.isa.usable.map(\.rawValue).sorted().joined(separator: " ")),
            .init("Fingerprint", machine.fingerprint),
        ])
        report.sections.append(m)

        var c = HTMLReport.Section("Ceilings")
        if ceilings.isEmpty {
            c.note("No ceilings stored for this machine: run `lowbit roofline measure` and write the report again.")
        } else {
            let computeTable = ceilings.computeTable, plateauTable = ceilings.plateauTable
            c.table(HTMLReport.Table(caption: "Compute ceilings (peak-compute)", header: computeTable.header, rows: computeTable.rows))
            c.table(HTMLReport.Table(
                caption: "Bandwidth plateaus in GB/s (peak-bandwidth), by the level holding the working set",
                header: plateauTable.header, rows: plateauTable.rows))
            c.figure(bandwidthChart(), caption: "Measured bandwidth against working-set size; dashed lines mark the cache capacities the threads see.")
            if let latency = latencyChart() {
                c.figure(latency, caption: "Load latency against working-set size on one thread (a pointer chase); dashed lines mark the cache "
                    + "capacities the CPU reports. Where the curve climbs before a line, the thread gets less of that cache than reported.")
            }
        }
        report.sections.append(c)

        var r = HTMLReport.Section("Tuned results against the roofline")
        let list = rows
        if list.isEmpty {
            r.note("No tuned results for this machine yet: run `lowbit tune --suite default`.")
        } else {
            if !ceilings.isEmpty { r.figure(rooflineChart(), caption: "Each tuned best at its operational intensity (useful operations per byte of the fewest bytes moved).") }
            r.table(HTMLReport.Table(
                caption: "Best configuration per workload: attainment = achieved / min(compute ceiling, bandwidth ceiling x intensity)",
                header: ["workload", "GOP/s", "ops/byte", "bound GOP/s", "attainment", "binding ceiling", "data", "configuration"],
                rows: list.map { row in
                    let a = row.attainment
                    return [
                        row.best.workload.description, String(format: "%.1f", row.best.gops), a.map { String(format: "%.2f", $0.intensity) } ?? "-",
                        a.map { String(format: "%.1f", $0.bound) } ?? "-", a.map { String(format: "%.0f%%", 100 * $0.fraction) } ?? "-",
                        a?.binding ?? "-", row.cold ? "cold" : "hot", row.best.configuration.description,
                    ]
                }))
        }
        report.sections.append(r)

        var f = HTMLReport.Section("Tuning")
        if let chart = batchChart() { f.figure(chart, caption: "Best tuned GOP/s of each GEMM family and layer shape against the batch size.") }
        if let chart = convergenceChart() { f.figure(chart, caption: "Best GOP/s found so far against the trial number, one line per search strategy.") }
        if f.blocks.isEmpty { f.note("No tuning trials stored yet.") }
        report.sections.append(f)

        let pairs = comparisons
        if !pairs.isEmpty {
            var cmp = HTMLReport.Section("Comparisons")
            cmp.note(
                "Pairs of stored bests of one shape: the quantized kernel against its 8-bit counterpart. Each best was measured "
                    + "on its own, possibly at another time and data state (column data); `lowbit bench gemm-w4a4 --against gemm-w8a8 "
                    + "--rounds 3` and `lowbit bench attention-decode` measure a pair in one run.")
            for group in pairs {
                cmp.table(HTMLReport.Table(
                    caption: group.caption, header: ["shape", group.names.0 + " GOP/s", group.names.1 + " GOP/s", "speed-up", "data"],
                    rows: group.rows.map { row in
                        [
                            row.shape, String(format: "%.1f", row.a.gops), String(format: "%.1f", row.b.gops),
                            String(format: "%.2fx", row.a.gops / row.b.gops),
                            Set([row.a.dataState, row.b.dataState].map { TrialRecord.isCold($0) ? "cold" : "hot" }).sorted().joined(separator: " / "),
                        ]
                    }))
            }
            report.sections.append(cmp)
        }

        var sv = HTMLReport.Section("Serving")
        for serving in servingRuns {
            guard let chart = servingChart(serving) else { continue }
            sv.figure(chart, caption: "Tokens per second of batched decode, the three engine modes measured interleaved in one serve-bench run.")
            let batches = Set(serving.map(\.batch)).sorted()
            func tps(_ mode: String, _ b: Int) -> Double? { serving.first { $0.mode == mode && $0.batch == b }?.tokensPerSecond }
            sv.table(HTMLReport.Table(
                caption: "Tokens per second and ratios (same run): \(serving.first?.model ?? "")",
                header: ["batch", "FP32", "W8A8", "W4A4", "W4A4 / FP32", "W4A4 / W8A8"],
                rows: batches.map { b in
                    let f = tps("fp32", b), e = tps("w8a8", b), a = tps("w4a4", b)
                    return [
                        "\(b)", f.map { String(format: "%.1f", $0) } ?? "-", e.map { String(format: "%.1f", $0) } ?? "-",
                        a.map { String(format: "%.1f", $0) } ?? "-",
                        (a.flatMap { x in f.map { String(format: "%.2fx", x / $0) } }) ?? "-",
                        (a.flatMap { x in e.map { String(format: "%.2fx", x / $0) } }) ?? "-",
                    ]
                }))
        }
        if !servingRuns.isEmpty { report.sections.append(sv) }
        return report
    }

    /// A table of paired bests: the same shape under two families (or two cache formats).
    struct Comparison {
        var caption: String
        var names: (String, String)
        var rows: [(shape: String, a: BestRecord, b: BestRecord)]
    }

    /// gemm-w4a4 against gemm-w8a8 on every GEMM shape both have (W4A4 with 128 outliers), and INT4 against
    /// INT8 KV for every stored attention shape with both; speed-up = the first's GOP/s over the second's
    /// (both count the same useful operations).
    var comparisons: [Comparison] {
        var out: [Comparison] = []
        let w8 = Dictionary(bests.filter { $0.family == "gemm-w8a8" }.map { ("\($0.workload["m"]) \($0.workload["n"]) \($0.workload["k"])", $0) }) { a, _ in a }
        let gemm = bests.filter { $0.family == "gemm-w4a4" && $0.workload["outliers"] == AtomQuantization.defaultOutliers }
            .compactMap { a -> (shape: String, a: BestRecord, b: BestRecord)? in
                guard let b = w8["\(a.workload["m"]) \(a.workload["n"]) \(a.workload["k"])"] else { return nil }
                return ("m=\(a.workload["m"]) \(a.workload["n"])x\(a.workload["k"])", a, b)
            }
            .sorted { ($0.a.workload["m"], $0.a.workload["n"], $0.a.workload["k"]) < ($1.a.workload["m"], $1.a.workload["n"], $1.a.workload["k"]) }
        if !gemm.isEmpty {
            out.append(Comparison(caption: "gemm-w4a4 (128 INT8 outlier channels) against gemm-w8a8, stored bests", names: ("W4A4", "W8A8"), rows: gemm))
        }
        func attentionKey(_ w: Workload) -> String { ["b", "hq", "hkv", "d", "ctx"].map { "\($0)=\(w[$0])" }.joined(separator: " ") }
        let kv8 = Dictionary(bests.filter { $0.family == "attention-decode" && $0.workload["kvbits"] == 8 }.map { (attentionKey($0.workload), $0) }) { a, _ in a }
        let attention = bests.filter { $0.family == "attention-decode" && $0.workload["kvbits"] == 4 }
            .compactMap { a -> (shape: String, a: BestRecord, b: BestRecord)? in
                kv8[attentionKey(a.workload)].map { (attentionKey(a.workload), a, $0) }
            }
            .sorted { ($0.a.workload["b"], $0.a.workload["ctx"]) < ($1.a.workload["b"], $1.a.workload["ctx"]) }
        if !attention.isEmpty {
            out.append(Comparison(caption: "attention-decode over an INT4 KV cache against INT8, stored bests", names: ("INT4 KV", "INT8 KV"), rows: attention))
        }
        return out
    }

    /// "w4a4 m=16 4096x4096" and the like, for point labels.
    static func shortName(_ w: Workload) -> String {
        let family = w.family.replacingOccurrences(of: "gemm-", with: "")
        if w.shape["n"] != nil { return "\(family) m=\(w["m"]) \(w["n"])x\(w["k"])" }
        if w.family == "attention-decode" { return "attn b=\(w["b"]) ctx=\(w["ctx"])\(w["kvbits"] > 0 ? " kv\(w["kvbits"])" : "")" }
        if w.shape["m"] != nil { return "\(family) m=\(w["m"])" }
        return w.description
    }
}
