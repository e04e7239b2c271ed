import ArgumentParser
import Foundation
import KernelKit
import Kernels
import Machine
import Pipeline

/// `lowbit bench <quantize family>` and `lowbit bench attention-decode`: bandwidth-bound kernels, each
/// row held against `peak-bandwidth` measured in the same run at the row's working-set size (so a row
/// whose data sit in L2 is compared with L2 bandwidth, one in DRAM with DRAM bandwidth).
struct BandwidthBenchmark {
    let runner: KernelRunner
    let machine: MachineDescription
    let seed: UInt64
    /// The user's --param values (already checked against the family's domains); `isa` picks the one
    /// variant to run.
    var overrides: [String: ParamValue] = [:]
    /// The tuned rows (the database's configuration for each workload), when a database is given.
    var tuned: TunedRows? = nil
    /// Times the rows of one shape run, taking turns; each row shows its fastest round.
    var rounds = 1
    /// --vary: every variant's row once per value of one parameter.
    var variation: Variation? = nil

    var context: MachineContext { MachineContext(machine) }

    /// How the data stand in every row and its ceiling.
    var dataNote: String {
        runner.cold ? "data cold (caches evicted before every sample, ceilings too)" : "data hot (inputs reused by every sample, ceilings too)"
    }

    /// The variants to compare: portable and the best target this machine runs (or the one --param isa
    /// names), default configurations with one thread per core, then the --param values; with --vary,
    /// each once per value it can take.
    func variants(_ f: any KernelFamily, fixed: [String: ParamValue]) -> [Configuration] {
        let best = f.bestTarget(on: context)
        let chosen = overrides["isa"].flatMap { ISATarget(rawValue: $0.description) }.map { [$0] } ?? Array(Set([ISATarget.portable, best]))
        let configs = chosen.sorted { $0.rawValue < $1.rawValue }.map { isa in
            var c = f.defaultConfiguration(isa: isa, machine: context)
            let cores = max(1, machine.topology.cores.count)
            if f.parameter("threads") != nil { c["threads"] = .int(min(cores, 2)) }
            for (k, v) in overrides where f.parameter(k) != nil { c[k] = v }
            for (k, v) in fixed { c[k] = v }
            return c
        }
        return variation?.expand(configs, f) ?? configs
    }

    /// A ceiling a row is held against: the operation, the working set rounded up to whole pages (at
    /// least 16 KiB), the thread count, and for `runs` the run length in bytes (0 otherwise).
    struct CeilingKey: Hashable {
        var op: PeakBandwidth.Operation
        var bytes: Int
        var threads: Int
        var run = 0

        init(op: PeakBandwidth.Operation, bytes: Double, threads: Int, run: Int = 0) {
            self.op = op
            self.bytes = max(4096 * 4, Int((bytes / 4096).rounded(.up)) * 4096)
            self.threads = threads
            self.run = op == .runs ? run : 0
        }
    }

    /// peak-bandwidth at `key` with the best target (gops is its GB/s). At least 20 samples: a sweep
    /// of a few hundred KiB takes tens of microseconds, where thread wake-ups make the times fall in
    /// modes, and five samples that agree within the slow mode looked "stable" (rows then showed
    /// 150% of a ceiling).
    func ceilingRun(_ key: CeilingKey) -> TrialResult {
        let saved = runner.policy
        runner.policy.minSamples = max(saved.minSamples, 20)
        defer { runner.policy = saved }
        let family = PeakBandwidth()
        var c = family.defaultConfiguration(isa: family.bestTarget(on: context), machine: context)
        c["op"] = .name(key.op.rawValue)
        c["threads"] = .int(key.threads)
        if key.op == .runs { c["run"] = .int(key.run) }
        // Cold rows are held against one cold sweep; hot ones against repeated sweeps.
        if runner.cold { c["passes"] = .int(1) }
        return runner.run(family, Workload(family: family.name, shape: ["bytes": key.bytes]), c, seed: seed)
    }

    /// One row of a table: what runs, the bytes it must move, the ceiling's operation, and its name in
    /// the variant column (default: the configuration's ISA).
    struct Row {
        var family: any KernelFamily
        var workload: Workload
        var config: Configuration
        var bytes: Double
        var op: PeakBandwidth.Operation
        var label: String? = nil
        /// Also held against reading its working set in runs of this many bytes (its layout's ceiling;
        /// attention-decode), when not nil.
        var run: Int? = nil
    }

    /// Runs `rows` and the ceilings they are held against `rounds` times, all taking turns, and adds
    /// each row with its fastest round to `t`, against its ceilings' fastest rounds.
    func run(_ rows: [Row], into t: inout Table) -> [TrialResult] {
        let keys = rows.map { row in
            let threads = row.config.int("threads")
            return [CeilingKey(op: row.op, bytes: row.bytes, threads: threads)] + (row.run.map { [CeilingKey(op: .runs, bytes: row.bytes, threads: threads, run: $0)] } ?? [])
        }
        let measured = fastest(rows: rows.count, ceilingLists: keys) { i, _ in
            runner.run(rows[i].family, rows[i].workload, rows[i].config, seed: seed)
        }
        return zip(rows, measured).map { row, m in add(row, m.result, peak: m.peaks[0], runs: row.run == nil ? nil : m.peaks[1], into: &t) }
    }

    /// Runs `count` rows (`run(row, round)`) and the distinct ceilings among `ceilings` (row i's, nil for
    /// none) `rounds` times, all taking turns; each row's fastest result and its ceiling's fastest GB/s (a
    /// ceiling measured once, in a slow moment, made rows look faster than the machine).
    func fastest(rows count: Int, ceilings: [CeilingKey?], run: (Int, Int) -> TrialResult) -> [(result: TrialResult, peak: Double?)] {
        fastest(rows: count, ceilingLists: ceilings.map { $0.map { [$0] } ?? [] }, run: run).map { ($0.result, $0.peaks.first ?? nil) }
    }

    /// The same with any number of ceilings per row: each row's fastest result and its ceilings' fastest
    /// GB/s, in the order of its list.
    func fastest(rows count: Int, ceilingLists: [[CeilingKey]], run: (Int, Int) -> TrialResult) -> [(result: TrialResult, peaks: [Double?])] {
        var keys: [CeilingKey] = []
        for key in ceilingLists.joined() where !keys.contains(key) { keys.append(key) }
        let best = Self.fastest(of: rounds, rows: count + keys.count) { i, round in i < count ? run(i, round) : ceilingRun(keys[i - count]) }
        let peaks = Dictionary(uniqueKeysWithValues: zip(keys, best[count...].map(\.gops)))
        return (0..<count).map { i in (best[i], ceilingLists[i].map { peaks[$0] ?? nil }) }
    }

    /// Runs rows 0..<rows `rounds` times, taking turns (`run(row, round)`), and returns each row's fastest
    /// result by minimum time (its first, if none has a time).
    static func fastest(of rounds: Int, rows: Int, run: (Int, Int) -> TrialResult) -> [TrialResult] {
        var best: [TrialResult?] = Array(repeating: nil, count: rows)
        for round in 0..<max(1, rounds) {
            for i in 0..<rows {
                let r = run(i, round)
                if let kept = best[i], let t = kept.timing?.min, !((r.timing?.min).map { $0 < t } ?? false) { continue }
                best[i] = r
            }
        }
        return best.map { $0! }
    }

    /// Adds a measured row, held against `peak` (GB/s), its ceiling measured in the same rounds, and
    /// for a row with a layout ceiling against `runs` (GB/s) too.
    func add(_ row: Row, _ r: TrialResult, peak: Double?, runs: Double? = nil, into t: inout Table) -> TrialResult {
        let (f, w, c, bytes, label) = (row.family, row.workload, row.config, row.bytes, row.label)
        let gbs = r.timing.map { bytes / $0.min / 1e9 }
        func percent(_ ceiling: Double?) -> String { (gbs.flatMap { g in ceiling.map { String(format: "%.0f%%", 100 * g / $0) } }) ?? "-" }
        var cells = [
            w.description.replacingOccurrences(of: "\(f.name) ", with: ""), label ?? c["isa"]!.description,
            c["cache"]?.description ?? "-",
            r.timing.map { TrialReport.ms($0.min) } ?? "-", Format.bytes(UInt64(bytes)),
            gbs.map { String(format: "%.1f", $0) } ?? "-", peak.map { String(format: "%.1f", $0) } ?? "-", percent(peak),
        ]
        if let run = row.run {
            cells += [Format.bytes(UInt64(run)), runs.map { String(format: "%.1f", $0) } ?? "-", percent(runs)]
        }
        cells.append(r.succeeded ? "ok" : "\(r.status.rawValue): \(r.message ?? "")")
        t.add(cells)
        FileHandle.standardError.write(Data("  \(w) \(label ?? c["isa"]!.description): \(gbs.map { String(format: "%.1f GB/s", $0) } ?? r.status.rawValue)\n".utf8))
        return r
    }

    static let headers = ["shape", "variant", "cache", "min", "bytes", "GB/s", "peak GB/s", "% peak", "status"]
    static let alignments: [Table.Alignment] = [.left, .left, .left, .right, .right, .right, .right, .right, .left]
    /// attention-decode's table: the layout ceiling (reading in runs) after the read ceiling.
    static let layoutHeaders = Array(headers.dropLast()) + ["run", "runs GB/s", "% runs", "status"]
    static let layoutAlignments: [Table.Alignment] = Array(alignments.dropLast()) + [.right, .right, .right, .left]

    /// The tuned row of `w` (with `fixed` on top), when the database has one for the family, unless
    /// --param isa picks a single variant.
    mutating func tunedRow(_ f: any KernelFamily, _ w: Workload, fixed: [String: ParamValue] = [:]) -> Configuration? {
        guard overrides["isa"] == nil, var rows = tuned else { return nil }
        defer { tuned = rows }
        guard var c = rows.configuration(f, w, fixed: fixed) else { return nil }
        for (k, v) in overrides where f.parameter(k) != nil { c[k] = v }
        return c
    }

    mutating func quantize(_ f: AtomQuantize, ms: [Int]) {
        let k = f.op == .siluMulQuantize ? 11008 : 4096
        var t = Table(Self.headers, alignments: Self.alignments)
        for m in ms {
            let w = Workload(family: f.name, shape: ["m": m, "k": k, "outliers": 128])
            var rows = variants(f, fixed: [:]).map { Row(family: f, workload: w, config: $0, bytes: f.bytesMoved(w, $0), op: .copy, label: variation?.label(f, $0)) }
            if let c = tunedRow(f, w) { rows.append(Row(family: f, workload: w, config: c, bytes: f.bytesMoved(w, c), op: .copy, label: "tuned")) }
            _ = run(rows, into: &t)
        }
        print("\(f.name) on \(machine.cpu.name): bytes = inputs read once + outputs written once; peak = peak-bandwidth copy at that size, same threads, measured in this run; \(dataNote)")
        print(t.render())
        if rounds > 1 { print("each row: its fastest of \(rounds) rounds, the rows of a shape taking turns.") }
        tuned?.flushNotes()
    }

    mutating func attention(ctxs: [Int], batch: Int) {
        let f = AttentionDecode()
        var t = Table(Self.layoutHeaders, alignments: Self.layoutAlignments)
        // Minimum times of the best target's rows and of the tuned rows, per context, for the ratios.
        var int4: [Int: Double] = [:], int8: [Int: Double] = [:]
        var tunedInt4: [Int: Double] = [:], tunedInt8: [Int: Double] = [:]
        for ctx in ctxs {
            let w = Workload(family: f.name, shape: ["b": batch, "hq": 32, "hkv": 32, "d": 128, "ctx": ctx])
            var rows: [Row] = []
            for cache in overrides["cache"].map({ [$0.description] }) ?? ["int4", "int8", "fp32"] {
                rows += variants(f, fixed: ["cache": .name(cache)]).map {
                    Row(family: f, workload: w, config: $0, bytes: AttentionDecode.kvBytes(w, $0), op: .read, label: variation?.label(f, $0), run: AttentionDecode.contiguousRun(w, $0))
                }
                // The runtime's lookup for this cache format: the workload names it (kvbits).
                guard let format = KVCacheFormat(rawValue: cache) else { continue }
                let tw = Workload(family: f.name, shape: w.shape.merging(["kvbits": format.bits]) { _, bits in bits })
                if let c = tunedRow(f, tw) {
                    rows.append(Row(family: f, workload: w, config: c, bytes: AttentionDecode.kvBytes(w, c), op: .read, label: "tuned", run: AttentionDecode.contiguousRun(w, c)))
                }
            }
            for (row, r) in zip(rows, run(rows, into: &t)) {
                guard let time = r.timing?.min, row.config["isa"]!.description != "portable" else { continue }
                let cache = row.config["cache"]!.description
                if row.label == "tuned" {
                    if cache == "int4" { tunedInt4[ctx] = time }
                    if cache == "int8" { tunedInt8[ctx] = time }
                } else {
                    if cache == "int4" { int4[ctx] = time }
                    if cache == "int8" { int8[ctx] = time }
                }
            }
        }
        print("attention-decode (Llama-7B heads: hq = hkv = 32, d = 128, b = \(batch)) on \(machine.cpu.name): bytes = the KV cache read once; peak = peak-bandwidth read at that size, same threads, measured in this run; run = the longest stretch of the cache the variant reads in order (one head's K or V codes of a block; with one-page blocks, the unit's heads' K and V blocks of the page), runs = peak-bandwidth reading the same bytes in shuffled runs of that length (the layout's ceiling); \(dataNote)")
        print(t.render())
        for ctx in ctxs {
            let w = Workload(family: f.name, shape: ["b": batch, "hq": 32, "hkv": 32, "d": 128, "ctx": ctx])
            if let note = f.workloadNote(w) { print("ctx \(ctx): \(note)") }
        }
        for ctx in ctxs {
            if let a = int4[ctx], let b = int8[ctx] {
                let tunedRatio = tunedInt4[ctx].flatMap { a in tunedInt8[ctx].map { String(format: "; tuned rows: %.2fx", $0 / a) } } ?? ""
                print(String(format: "ctx %d: INT4 KV runs at %.2fx the speed of INT8 KV (INT8 time / INT4 time; best target's default rows)", ctx, b / a) + tunedRatio)
            }
        }
        if rounds > 1 { print("each row: its fastest of \(rounds) rounds, the rows of a context taking turns.") }
        tuned?.flushNotes()
    }
}

/// `lowbit bench --vary name=v1,v2,...`: every variant's row once per value of one parameter, so that the
/// values are compared side by side in one run (taking turns with --rounds). A combination the family's
/// rules refuse (gather=transpose on portable C) is left out rather than shown as a rejected row.
struct Variation {
    var name: String
    var values: [ParamValue]

    /// Parses `name=v1,v2,...` against `f`'s domain of `name`; nil for no --vary.
    init?(_ text: String?, for f: any KernelFamily, overrides: [String: String]) throws {
        guard let text else { return nil }
        let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
            throw ValidationError("--vary expects name=value1,value2,..., got '\(text)'")
        }
        guard let spec = f.parameter(parts[0]) else {
            throw ValidationError("--vary \(parts[0]): \(f.name) has no such parameter (see `lowbit kernels \(f.name)`)")
        }
        guard overrides[parts[0]] == nil else {
            throw ValidationError("--vary \(parts[0]) and --param \(parts[0]) both set \(parts[0]); give it once")
        }
        name = parts[0]
        values = try parts[1].split(separator: ",").map { item in
            let value = item.trimmingCharacters(in: .whitespaces)
            guard let parsed = spec.domain.parse(value), spec.domain.contains(parsed) else {
                throw ValidationError("--vary \(parts[0])=\(value) is not a valid \(f.name) value (see `lowbit kernels \(f.name)`)")
            }
            return parsed
        }
    }

    /// `configs`, each once per value that `f`'s rules let it take; unchanged when `f` has no such
    /// parameter (`bench quantize`: silu-mul-quantize has no gather).
    func expand(_ configs: [Configuration], _ f: any KernelFamily) -> [Configuration] {
        guard f.parameter(name) != nil else { return configs }
        return configs.flatMap { base in
            values.compactMap { value in
                var c = base
                c[name] = value
                return (try? f.check(c, machine: nil)) != nil ? c : nil
            }
        }
    }

    /// "avx2 gather=transpose": the ISA and the value a row runs (nil when `f` has no such parameter).
    func label(_ f: any KernelFamily, _ c: Configuration) -> String? {
        guard f.parameter(name) != nil, let value = c[name] else { return nil }
        return "\(c["isa"]?.description ?? f.name) \(name)=\(value)"
    }
}
