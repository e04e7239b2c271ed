import ArgumentParser
import Foundation
import KernelKit
import Kernels
import Logging
import Machine
import Pipeline
import Tuner

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmark a family's variants against ceilings measured in the same run, or the tuner (`bench tuner`).",
        discussion: """
            GEMMs: M in --m-list, N = --n, K = --k. Each variant this machine runs is measured in the same \
            run, interleaved per shape (the best target with the analytical configuration for the shape, \
            the others with their defaults); every row is verified against the Swift reference before it \
            is timed. --param name=value sets a parameter in every row; --param isa=X runs that variant \
            only.

            Where the tuning database (--db) holds records of the family for this machine, each shape also \
            gets a "tuned" row: the configuration `lowbit lookup` gives the runtime (the exact record, else \
            the nearest stored shape's, fitted to the shape), measured in the same run. --against adds \
            another GEMM family's row per shape and the ratio; --rounds repeats a shape's rows in turn.
            """
    )

    @OptionGroup var global: GlobalOptions
    @Argument(help: "gemm-w8a8, gemm-w4a4, gemm-w4a4-kv (fused K/V projection vs gemm-w4a4 + kv-append), gemm-f16, rmsnorm-reorder-quantize, reorder-quantize, silu-mul-quantize, quantize (all three), attention-decode, or tuner.") var family: String
    static let defaultMList = "1,8,16,32,64,128,256"
    @Option(help: "Comma-separated M values (GEMMs: 1,8,...,256; quantize kernels: 1,16,64,256).") var mList: String = defaultMList
    @Option(help: "attention-decode: comma-separated context lengths.") var ctxList: String = "1024,4096"
    @Option(help: "attention-decode: sequences in the batch.") var batch: Int = 4
    @Option(help: "N (output channels).") var n: Int = 4096
    @Option(help: "K (input channels).") var k: Int = 4096
    @Option(name: .customLong("shape"), help: ArgumentHelp("Another dimension as name=value, e.g. outliers=128.", valueName: "name=value"))
    var shapeExtras: [String] = []
    @OptionGroup var params: ParamOptions
    @OptionGroup var measure: MeasureOptions
    @OptionGroup var database: DatabaseOptions
    @Option(help: ArgumentHelp(
        "GEMMs: also run another GEMM family on each shape in the same run (its tuned configuration, else its analytical one) and print this family's speed over it, e.g. --against gemm-w8a8.",
        valueName: "family"))
    var against: String?
    @Option(help: "Run every row of a shape this many times, the rows taking turns; each row shows its fastest round (a machine that drifts between runs then compares rows at their best). GEMMs, the quantize kernels and attention-decode.")
    var rounds: Int = 1
    @Option(help: ArgumentHelp(
        "Every variant's row once per value of one parameter, side by side in the same run, e.g. --vary gather=insert,transpose; combinations a variant cannot take are left out. GEMMs, the quantize kernels and attention-decode.",
        valueName: "name=v1,v2,..."))
    var vary: String?

    func run() throws {
        guard rounds >= 1 else { throw ValidationError("--rounds must be at least 1, got \(rounds)") }
        // The cores' speed before and after: absolute numbers move with it, ratios within the run do not.
        let watch = try SpeedWatch()
        try runBenchmark()
        print(watch.report())
    }

    private func runBenchmark() throws {
        let logger = global.logger("lowbit.bench")
        if family == "tuner" {
            guard vary == nil else { throw ValidationError("--vary applies to the GEMM, quantize and attention-decode benchmarks, not to bench tuner") }
            let machine = try MachineModel(logger: logger).description
            var m = measure
            if m.budgetWasDefault { m.budget = 0.25 }
            try TunerBenchmark().run(runner: try m.runner(machine: machine, logger: logger), machine: machine)
            return
        }
        if family == "quantize" {
            // The three fused quantize kernels, one table each.
            let machine = try MachineModel(logger: logger).description
            var bench = BandwidthBenchmark(runner: try measure.runner(machine: machine, logger: logger), machine: machine, seed: measure.seed)
            bench.overrides = try Self.checkedOverrides(try params.overrides(), for: AtomQuantize.families[0])
            bench.variation = try Variation(vary, for: AtomQuantize.families[0], overrides: try params.overrides())
            bench.tuned = try tunedRows(machine, logger: logger)
            bench.rounds = rounds
            for q in AtomQuantize.families {
                bench.quantize(q, ms: try Self.parseList(mList == Self.defaultMList ? "1,16,64,256" : mList))
                print("")
            }
            return
        }
        let f = try KernelRegistry.family(named: family)
        if f is GemmW4A4KV {
            guard vary == nil else { throw ValidationError("--vary applies to the GEMM, quantize and attention-decode benchmarks; bench gemm-w4a4-kv takes --param") }
            // The fused K/V projection against gemm-w4a4 + kv-append: Llama-7B's heads unless --shape says otherwise.
            var dims = ["hkv": 32, "d": 128, "outliers": AtomQuantization.defaultOutliers, "ctx": 256]
            for item in shapeExtras {
                guard let size = ShapeOptions.size(item), dims[size.name] != nil else {
                    throw ValidationError("--shape expects one of \(dims.keys.sorted().joined(separator: ", ")) as name=integer, got '\(item)'")
                }
                dims[size.name] = size.value
            }
            let machine = try MachineModel(logger: logger).description
            let bench = BandwidthBenchmark(runner: try measure.runner(machine: machine, logger: logger), machine: machine, seed: measure.seed)
            // --param values (checked against the family's domains) replace the analytical choice.
            let overrides = try Self.checkedOverrides(try params.overrides(), for: f)
            let cache = overrides["cache"]?.description ?? "int4"
            let page = overrides["page"].flatMap { Int($0.description) } ?? 16
            bench.kvProjection(
                ms: try Self.parseList(mList == Self.defaultMList ? "1,16,64,256" : mList), hkv: dims["hkv"]!, d: dims["d"]!, k: k,
                outliers: dims["outliers"]!, ctx: dims["ctx"]!, cache: cache, page: page, overrides: overrides)
            return
        }
        if f is AtomQuantize || f is AttentionDecode {
            let machine = try MachineModel(logger: logger).description
            var bench = BandwidthBenchmark(runner: try measure.runner(machine: machine, logger: logger), machine: machine, seed: measure.seed)
            bench.overrides = try Self.checkedOverrides(try params.overrides(), for: f)
            bench.variation = try Variation(vary, for: f, overrides: try params.overrides())
            bench.tuned = try tunedRows(machine, logger: logger)
            bench.rounds = rounds
            if let q = f as? AtomQuantize {
                bench.quantize(q, ms: try Self.parseList(mList == Self.defaultMList ? "1,16,64,256" : mList))
            } else {
                bench.attention(ctxs: try Self.parseList(ctxList), batch: batch)
            }
            return
        }
        guard ["m", "n", "k"].allSatisfy(f.dimensions.contains) else {
            let gemms = KernelRegistry.families.filter { ["m", "n", "k"].allSatisfy($0.dimensions.contains) }.map(\.name)
            throw ValidationError("no benchmark for \(family) yet; families with benchmarks: \((gemms + ["tuner"]).joined(separator: ", "))")
        }
        let extraDims = try shapeExtras.reduce(into: [String: Int]()) { dims, item in
            let known = f.dimensions + f.optionalDimensions
            guard let size = ShapeOptions.size(item), known.contains(size.name) else {
                throw ValidationError("--shape expects one of \(known.joined(separator: ", ")) as name=integer, got '\(item)'")
            }
            dims[size.name] = size.value
        }
        let ms = try Self.parseList(mList)
        let machine = try MachineModel(logger: logger).description
        let context = MachineContext(machine)
        let runner = try measure.runner(machine: machine, logger: logger)
        let overrides = try params.overrides()
        // `--param isa=X` benchmarks that one variant; otherwise every target this machine runs.
        let chosen = try overrides["isa"].map { name -> [ISATarget] in
            guard let isa = ISATarget(rawValue: name), f.targets.contains(isa) else {
                throw ValidationError("--param isa=\(name): \(f.name) has the variants \(f.targets.map(\.rawValue).joined(separator: ", "))")
            }
            return [isa]
        } ?? f.targets
        let skipped = chosen.filter { !$0.runs(on: machine.isa) }
        let variation = try Variation(vary, for: f, overrides: overrides)
        let perISA = try chosen.filter { $0.runs(on: machine.isa) }.map { isa -> Configuration in
            var o = overrides
            o["isa"] = isa.rawValue
            // The workload's own parameters (gemm-w4a4's out from --shape ybits), unless --param sets them.
            return try f.configuration(overrides: o, for: gemmWorkload(f, m: 1, extraDims: extraDims), machine: context)
        }
        let variants = variation?.expand(perISA, f) ?? perISA
        // The parameters the rows keep when the best target's row takes the shape's analytical configuration.
        let kept = Set(overrides.keys).union(variation.map { [$0.name] } ?? [])

        print("\(f.name) benchmark on \(machine.cpu.name) (\(machine.fingerprint.id)), N = \(n), K = \(k)\(extraDims.isEmpty ? "" : ", " + extraDims.map { "\($0.key) = \($0.value)" }.joined(separator: ", "))")
        for v in variants { print("  \(variation?.label(f, v) ?? v["isa"]!.description): \(v)") }
        for isa in skipped { print("  \(isa.rawValue): skipped, \(isa.missingFeatures(on: machine.isa) ?? "")") }
        print("")

        // The tuned configuration of each shape (the runtime's lookup), when the database has the family.
        var tuned = try tunedRows(machine, logger: logger)
        var tunedConfigs: [Int: Configuration] = [:]
        if overrides["isa"] == nil, tuned.store != nil {
            let typed = try Self.checkedOverrides(overrides, for: f)
            for m in ms {
                guard var c = tuned.configuration(f, gemmWorkload(f, m: m, extraDims: extraDims)) else { continue }
                for (name, value) in typed { c[name] = value }  // --param values apply to every row
                tunedConfigs[m] = c
            }
        }

        // --against: the other family's configuration of each shape, the runtime's lookup where it has one.
        var other: (family: any KernelFamily, rows: [Int: (label: String, workload: Workload, config: Configuration)])?
        if let against {
            let g = try KernelRegistry.family(named: against)
            guard ["m", "n", "k"].allSatisfy(g.dimensions.contains), g.name != f.name else {
                throw ValidationError("--against takes another GEMM family (m, n, k), got '\(against)'")
            }
            var lookup = TunedRows(store: tuned.store, machine: machine)
            var rows: [Int: (label: String, workload: Workload, config: Configuration)] = [:]
            for m in ms {
                let w = gemmWorkload(g, m: m, extraDims: extraDims)
                try g.checkShape(w)
                if let c = lookup.configuration(g, w) {
                    rows[m] = ("\(g.name) tuned", w, c)
                } else {
                    rows[m] = ("\(g.name) analytical", w, g.analyticalConfiguration(for: w, machine: context))
                }
            }
            other = (g, rows)
            tuned.notes += lookup.notes
        }

        // The int8 ceiling each variant is held against, measured with the same threads before the rows
        // and again after them; the higher counts (on a VM one measurement can land in a slow moment: a
        // 2-thread ceiling read 185 GOP/s once and 360 in the next run, and rows then exceeded it).
        let ceilingKeys = Set(
            (variants + Array(tunedConfigs.values)).map { Self.ceilingKey(f.name, $0) }
                + (other.map { o in o.rows.values.map { Self.ceilingKey(o.family.name, $0.config) } } ?? [])
        ).sorted()
        let measureCeilings = { () -> [String: (label: String, gops: Double?, failure: String?)] in
            var out: [String: (label: String, gops: Double?, failure: String?)] = [:]
            for key in ceilingKeys {
                let parts = key.split(separator: " ").map(String.init)
                guard let peak = Self.int8Ceiling(family: parts[0], isa: parts[1], threads: Int(parts[2])!, placement: parts[3]) else { continue }
                let r = runner.run(PeakCompute(), Workload(family: "peak-compute", shape: ["iterations": 1 << 20]), peak, seed: measure.seed)
                out[key] = ("\(parts[0]) \(parts[1]): \(peak.name("op")) with \(parts[2]) threads (\(parts[3]))", r.gops, r.gops == nil ? "\(r.status.rawValue): \(r.message ?? "")" : nil)
            }
            return out
        }
        let before = measureCeilings()
        let cold = measure.cold
        let bandwidth = BandwidthBenchmark(runner: runner, machine: machine, seed: measure.seed, rounds: rounds)
        var headers = ["M", "variant", "min", "median", "samples", "GOP/s", "x portable", "% ceiling"]
        if cold { headers += ["weights", "weight GB/s", "read GB/s", "% read"] }
        var table = Table(headers + ["status"], alignments: [.right, .left] + Array(repeating: .right, count: headers.count - 2) + [.left])
        // Per M, the fastest of this family's best-target and tuned rows, and the --against row (min times).
        var own: [Int: Double] = [:], others: [Int: Double] = [:]
        // Rows wait for the ceilings measured after them: the table's cells with the % ceiling left out.
        var pending: [(head: [String], gops: Double?, ceiling: String, tail: [String])] = []
        for m in ms {
            let workload = gemmWorkload(f, m: m, extraDims: extraDims)
            var portableGops: Double?
            var rows = variants.map {
                (label: variation?.label(f, $0) ?? $0["isa"]!.description, family: f, workload: workload, config: shapeConfiguration(f, workload, $0, keeping: kept, context: context))
            }
            if let c = tunedConfigs[m] { rows.append((label: "tuned", family: f, workload: workload, config: c)) }
            if let o = other, let row = o.rows[m] { rows.append((label: row.label, family: o.family, workload: row.workload, config: row.config)) }
            // Every round runs the rows in turn; a row keeps its fastest round. Cold, the read ceilings of
            // the rows' weight bytes take turns with them.
            let measured = bandwidth.fastest(rows: rows.count, ceilings: rows.map { row in
                cold ? BandwidthBenchmark.CeilingKey(op: .read, bytes: Self.weightBytes(row.family.name, row.workload), threads: row.config.int("threads")) : nil
            }) { index, round in
                let row = rows[index]
                let r = runner.run(row.family, row.workload, row.config, seed: measure.seed)
                if rounds > 1 {
                    FileHandle.standardError.write(Data("  M=\(m) \(row.label) round \(round + 1): \(r.timing.map { TrialReport.ms($0.min) } ?? r.status.rawValue)\n".utf8))
                }
                return r
            }
            for ((label, family, workload, config), (r, readCeiling)) in zip(rows, measured) {
                let mine = family.name == f.name
                if mine, label != "tuned", config["isa"]?.description == ISATarget.portable.rawValue, portableGops == nil { portableGops = r.gops }
                if let t = r.timing?.min {
                    if !mine {
                        others[m] = t
                    } else if label == "tuned" || config["isa"]?.description == f.bestTarget(on: context).rawValue {
                        own[m] = min(own[m] ?? .infinity, t)
                    }
                }
                let ratio = mine ? (r.gops.flatMap { g in portableGops.map { g / $0 } }).map { String(format: "%.2f", $0) } ?? "-" : "-"
                var head: [String] = ["\(m)", label]
                head.append(r.timing.map { TrialReport.ms($0.min) } ?? "-")
                head.append(r.timing.map { TrialReport.ms($0.median) } ?? "-")
                head.append(r.timing.map { "\($0.count)" } ?? "-")
                head += [r.gops.map { String(format: "%.1f", $0) } ?? "-", ratio]
                var row: [String] = []
                if cold {
                    // Weight bytes per run against one cold sweep over as many bytes, same threads.
                    let bytes = Self.weightBytes(family.name, workload)
                    let gbs: Double? = r.timing.map { bytes / $0.min / 1e9 }
                    let peak: Double? = readCeiling
                    row.append(Format.bytes(UInt64(bytes)))
                    row.append(gbs.map { String(format: "%.1f", $0) } ?? "-")
                    row.append(peak.map { String(format: "%.1f", $0) } ?? "-")
                    if let gbs, let peak { row.append(String(format: "%.0f%%", 100 * gbs / peak)) } else { row.append("-") }
                }
                pending.append((head, r.gops, Self.ceilingKey(family.name, config), row + [r.succeeded ? "ok" : "\(r.status.rawValue): \(r.message ?? "")"]))
                FileHandle.standardError.write(Data("  M=\(m) \(label) [\(config)]: \(r.gops.map { String(format: "%.1f GOP/s", $0) } ?? r.status.rawValue)\n".utf8))
            }
        }
        let after = measureCeilings()
        var ceilings: [String: Double] = [:]
        print("compute ceilings measured in this run (peak-compute; the higher of a run before the rows and one after them):")
        for key in ceilingKeys {
            guard let first = before[key] else { continue }
            let fmt = { (g: Double?) in g.map { String(format: "%.1f", $0) } ?? "failed" }
            if let best = [first.gops, after[key]?.gops].compactMap({ $0 }).max() {
                ceilings[key] = best
                print("  \(first.label): \(String(format: "%.1f GOP/s", best)) (before \(fmt(first.gops)), after \(fmt(after[key]?.gops)))")
            } else {
                print("  \(first.label): \(first.failure ?? "failed")")
            }
        }
        print("")
        for p in pending {
            let percent = p.gops.flatMap { g in ceilings[p.ceiling].map { String(format: "%.0f%%", 100 * g / $0) } } ?? "-"
            table.add(p.head + [percent] + p.tail)
        }
        print(table.render())
        print("")
        if cold {
            print("GOP/s counts 2*M*N*K useful operations (outlier channels included) at the minimum time; data are cold (the caches are evicted before every sample).")
            print("weight GB/s: the packed weights (codes and scales) per run over the minimum time; read GB/s: memory bandwidth, a cold peak-bandwidth sweep reading as many bytes, same threads, this run (with --rounds, its fastest round, taking turns with the rows).")
        } else {
            print("GOP/s counts 2*M*N*K useful operations (outlier channels included) at the minimum time; data are hot (inputs reused across samples).")
        }
        if rounds > 1 { print("each row: its fastest of \(rounds) rounds, the rows of a shape taking turns (min, median and samples are that round's).") }
        print("% ceiling: against the peak of the variant's own instruction set and accumulation (see above), same threads.")
        if let o = other {
            for m in ms {
                guard let a = own[m], let b = others[m] else { continue }
                print(String(format: "M = %d: %@ is %.2fx %@ (the faster of its best-target and tuned rows against the %@ row, minimum times, this run)",
                             m, f.name, b / a, o.family.name, o.rows[m]!.label))
            }
        }
        tuned.flushNotes()
    }

    /// The workload of one GEMM row: M, the --n and --k, and the --shape dimensions (outliers default 128).
    func gemmWorkload(_ f: any KernelFamily, m: Int, extraDims: [String: Int]) -> Workload {
        var shape = ["m": m, "n": n, "k": k]
        for d in f.dimensions where shape[d] == nil { shape[d] = extraDims[d] ?? (d == "outliers" ? AtomQuantization.defaultOutliers : 0) }
        for d in f.optionalDimensions { if let v = extraDims[d] { shape[d] = v } }
        return Workload(family: f.name, shape: shape)
    }

    /// The tuned-row source: the database when there is one (read only: none is created). One that
    /// cannot be opened costs the tuned rows, with a warning, not the benchmark.
    func tunedRows(_ machine: MachineDescription, logger: Logger) throws -> TunedRows {
        guard database.exists else { return TunedRows(store: nil, machine: machine) }
        do {
            return TunedRows(store: try database.open(logger: logger), machine: machine)
        } catch {
            FileHandle.standardError.write(Data("warning: no tuned rows: \(error)\n".utf8))
            return TunedRows(store: nil, machine: machine)
        }
    }

    /// The ceiling a row is held against: its family (which picks the accumulation), ISA, threads and placement.
    static func ceilingKey(_ family: String, _ c: Configuration) -> String {
        // gemm-w4a4's AVX2 int32 path is held against the int32 ceiling, as gemm-w8a8 is
        let accumulation = c["gsum"] == .name("int32") ? "/int32" : ""
        return "\(family)\(accumulation) \(c["isa"]!) \(c.int("threads")) \(c.name("placement"))"
    }

    /// The configuration a row runs: for the machine's best instruction set the family's analytical
    /// choice for this shape (with `base`'s values of the `kept` parameters, --param's and --vary's, on
    /// top), otherwise the hand-picked default.
    func shapeConfiguration(
        _ f: any KernelFamily, _ workload: Workload, _ base: Configuration, keeping kept: Set<String>, context: MachineContext
    ) -> Configuration {
        guard base.name("isa") == f.bestTarget(on: context).rawValue else { return base }
        var tuned = f.analyticalConfiguration(for: workload, machine: context)
        for name in kept { if let v = base[name] { tuned[name] = v } }
        return (try? f.check(tuned, machine: context)) != nil ? tuned : base
    }

    /// Bytes of a GEMM's prepacked weights: what a small-M run must stream from memory.
    static func weightBytes(_ family: String, _ workload: Workload) -> Double {
        if family == GemmW4A4().name { return GemmW4A4.weightBytes(workload) }
        if family == GemmF16().name { return 2 * Double(workload["n"]) * Double(workload["k"]) }  // fp16 weights
        return Double(workload["n"]) * (Double(workload["k"]) + 4)  // INT8 codes and one fp32 scale per row
    }

    /// --param values parsed and checked against `f`'s parameter domains.
    static func checkedOverrides(_ text: [String: String], for f: any KernelFamily) throws -> [String: ParamValue] {
        var overrides: [String: ParamValue] = [:]
        for (key, value) in text {
            guard let spec = f.parameter(key), let parsed = spec.domain.parse(value), spec.domain.contains(parsed) else {
                throw ValidationError("--param \(key)=\(value) is not a valid \(f.name) parameter (see `lowbit kernels \(f.name)`)")
            }
            overrides[key] = parsed
        }
        return overrides
    }

    static func parseList(_ text: String) throws -> [Int] {
        try text.split(separator: ",").map { item -> Int in
            guard let v = Int(item.trimmingCharacters(in: .whitespaces)), v > 0 else {
                throw ValidationError("expected positive integers separated by commas, got '\(item)'")
            }
            return v
        }
    }

    /// The peak-compute point that bounds a GEMM variant: fp32 FMA for gemm-f16; on AVX2
    /// vpmaddubsw+vpmaddwd+vpaddd for gemm-w8a8 and vpmaddubsw+vpaddw for gemm-w4a4 (its int16 group
    /// sums); the dot-product instruction where the target has one; none for portable C.
    static func int8Ceiling(family: String, isa: String, threads: Int, placement: String) -> Configuration? {
        let op: PeakCompute.Operation
        switch ISATarget(rawValue: isa) {
        case .avx2 where family == "gemm-f16", .avx512vnni where family == "gemm-f16", .neonDotprod where family == "gemm-f16":
            op = .fp32FMA
        case .avx2: op = family == "gemm-w4a4" ? .int8I16 : .int8I32  // "gemm-w4a4/int32": AVX2's int32 path
        case .avx512vnni, .avxvnni, .neonDotprod: op = .int8Dot
        default: return nil
        }
        return Configuration([
            "isa": .name(isa), "op": .name(op.rawValue), "threads": .int(threads), "placement": .name(placement),
        ])
    }
}
