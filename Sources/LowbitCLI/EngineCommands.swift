import ArgumentParser
import Foundation
import Inference
import Logging
import Machine
import Measure
import Model
import TuningStore

/// Options shared by the engine commands: the model, threads and the tuning database.
struct EngineModelOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "Model directory: an FP model (config.json and *.safetensors, e.g. from `lowbit model synth`), quantized at load for w8a8/w4a4, or a quantized model written by `lowbit quantize`, run as stored.",
        valueName: "dir"))
    var model: String
    @Option(help: "FP models: keep only the first N decoder layers (quantized models: pass --layers to `lowbit quantize`).") var layers: Int?
    @Option(help: "Worker threads (default: one per core); OpenBLAS runs single-threaded inside them.") var threads: Int?
    @Option(help: "Tuning database to dispatch from (default: $LOWBIT_DB or ./TuningDB/lowbit.sqlite when it exists).") var db: String?
    @Flag(help: "Ignore any tuning database: analytical configurations only (serve-bench then stores nothing either).") var noDb = false
    @Option(help: "W4A4 quantized at load: random tokens the Atom permutations are calibrated on (seed 0).") var calibrationTokens: Int = 16
    @Flag(help: "FP models: load even when their weights (FP32, and the modes quantized at load) exceed the memory Linux reports available.") var skipMemoryCheck = false
    @Option(help: "Packed copies of its weights each quantized layer keeps, one per packed layout its kernels use (least recently used dropped, packed again if needed).")
    var packedLayouts: Int = 2

    /// The database to use: --db (which must exist), else the default path if a database is there.
    func databasePath() throws -> String? {
        if noDb { return nil }
        if let db {
            guard FileManager.default.fileExists(atPath: db) else {
                throw ValidationError("--db \(db): no such file (run `lowbit tune` to make one, or leave --db out)")
            }
            return db
        }
        let path = TuningStore.defaultPath()
        return FileManager.default.fileExists(atPath: path) ? path : nil
    }

    /// --model's contents: FP32 weights, or a quantized model. An FP model is first checked against the
    /// memory available for its weights in `modes` (`EngineMemory`), unless --skip-memory-check.
    func loadModel(modes: [EngineMode]) throws -> EngineModelSource {
        try EngineModelSource.load(
            model, layers: layers, option: "--model", modes: modes, availableBytes: skipMemoryCheck ? nil : HostMemory.availableBytes())
    }

    func validate() throws {
        guard packedLayouts >= 1 else { throw ValidationError("--packed-layouts must be at least 1 (a layer keeps the packing it runs)") }
    }

    func engineOptions() -> EngineOptions {
        var o = EngineOptions()
        o.packedLayouts = packedLayouts
        o.quantization.calibration = CalibrationSettings(tokens: calibrationTokens, sequenceLength: calibrationTokens, seed: 0)
        return o
    }
}

/// What an engine command was pointed at.
enum EngineModelSource {
    case fp(LlamaWeights)
    case quantized(QuantizedModel)

    var config: LlamaConfig {
        switch self {
        case .fp(let w): w.config
        case .quantized(let q): q.config
        }
    }

    /// Whether `directory` holds a quantized model (a weights file with format lowbit-atom).
    static func isQuantized(_ directory: String) -> Bool {
        let url = URL(fileURLWithPath: directory).appendingPathComponent(QuantizedModelFile.weightsFile)
        guard let file = try? SafetensorsFile(contentsOf: url) else { return false }
        return file.metadata["format"] == QuantizedModelFile.format
    }

    /// - Parameter availableBytes: an FP model whose weights in `modes` exceed it is refused (`EngineMemory`); nil: not checked.
    static func load(_ directory: String, layers: Int?, option: String, modes: [EngineMode] = [],
                     availableBytes: Int? = nil) throws -> EngineModelSource {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ValidationError("\(option) \(directory): no such directory (make one with `lowbit model synth --preset tiny --out DIR`, quantize it with `lowbit quantize --model DIR --out QDIR`)")
        }
        let url = URL(fileURLWithPath: directory)
        guard isQuantized(directory) else {
            let opened = try ModelDirectory(url: url)
            try EngineMemory.check(opened.config, layers: layers, modes: modes, availableBytes: availableBytes, model: directory)
            return .fp(try LlamaWeights.load(opened, layers: layers))
        }
        if layers != nil {
            throw ValidationError("--layers cannot cut a quantized model (\(directory)); quantize with `lowbit quantize --layers N` instead")
        }
        return .quantized(try QuantizedModel.load(from: url))
    }

    /// The mode a command runs when none is asked for: the quantized model's method, else w4a4.
    var defaultMode: EngineMode {
        switch self {
        case .fp: .w4a4
        case .quantized(let q): q.settings.method == .w4a4 ? .w4a4 : .w8a8
        }
    }

    /// An engine in `mode`: FP weights quantized at load, or the quantized model as stored.
    func engine(_ mode: EngineMode, options: EngineOptions, runtime: EngineRuntime, directory: String) throws -> Engine {
        switch self {
        case .fp(let weights):
            return try Engine(model: weights, mode: mode, options: options, runtime: runtime)
        case .quantized(let model):
            guard mode == defaultMode else {
                let fix = mode == .fp32 ? "pass the FP model's directory for fp32"
                    : "quantize the FP model with `lowbit quantize --method \(mode.rawValue)`, or pass the FP model to quantize at load"
                throw ValidationError("\(directory) is a \(model.settings.method.rawValue) model written by `lowbit quantize` and runs only in \(model.settings.method.rawValue) mode, not \(mode.rawValue); \(fix)")
            }
            return try Engine(quantized: model, options: options, runtime: runtime)
        }
    }

    /// How the engine's weights came to be, for the output.
    func describe(_ mode: EngineMode, directory: String) -> String {
        switch self {
        case .fp: mode == .fp32 ? "FP32 weights of \(directory)" : "quantized at load from \(directory)"
        case .quantized: "quantized model \(directory) (written by `lowbit quantize`)"
        }
    }
}

/// Parses "1,2,3".
func parseIntegerList(_ text: String, option: String) throws -> [Int] {
    let parts = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    let values = parts.compactMap { Int($0) }
    guard !parts.isEmpty, values.count == parts.count else {
        throw ValidationError("\(option) needs comma-separated integers, got '\(text)'")
    }
    return values
}

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Greedy generation with the inference engine in FP32, W8A8 or Atom W4A4 mode.",
        discussion: """
            The prompt is prefilled in one batched step, then one token per step is decoded over the paged KV \
            cache (fp32, int8 or int4 by mode). --model takes an FP model (w8a8 and w4a4 quantize it at load, \
            calibrating W4A4 on --calibration-tokens random tokens) or a directory written by `lowbit quantize` \
            (run as stored, in its method's mode; no FP32 linear weights needed). Kernels come from the tuning database when it has them \
            (--explain shows, per layer and kernel, the configuration and whether it was an exact tuned \
            record, the nearest tuned shape or the analytical default).
            """
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var engine: EngineModelOptions
    @Option(help: "Prompt token ids, comma-separated.") var prompt: String
    @Option(help: "Tokens to generate.") var steps: Int = 8
    @Option(help: "fp32, w8a8 or w4a4 (default: w4a4, or the method of a quantized --model).") var mode: String?
    @Option(help: "Tokens per sequence the KV cache holds (default: prompt + steps).") var maxContext: Int?
    @Flag(help: "Print which kernel configuration each layer runs and where it came from.") var explain = false

    func run() throws {
        let logger = global.logger("lowbit.generate")
        let tokens = try parseIntegerList(prompt, option: "--prompt")
        guard steps >= 1 else { throw ValidationError("--steps must be at least 1") }
        var start = Date()
        let asked = try self.mode.map(EngineMode.parse)
        let source = try engine.loadModel(modes: [asked ?? .w4a4])
        let mode = asked ?? source.defaultMode
        let loadSeconds = Date().timeIntervalSince(start)
        let database = try engine.databasePath()
        let runtime = try EngineRuntime(databasePath: database, threads: engine.threads, logger: logger)
        var options = engine.engineOptions()
        options.maxSequences = 1
        options.maxContext = maxContext ?? (tokens.count + steps)
        start = Date()
        let e = try source.engine(mode, options: options, runtime: runtime, directory: engine.model)
        let prepareSeconds = Date().timeIntervalSince(start)
        start = Date()
        let generated = try e.generate(prompt: tokens, steps: steps)
        let runSeconds = Date().timeIntervalSince(start)
        print("mode       \(mode.rawValue) (KV cache \(e.kvCache.rawValue), pages of \(e.pageTokens) tokens, \(runtime.threads.threadCount) threads)")
        print("weights    \(source.describe(mode, directory: engine.model))")
        print(String(format: "timing     load %.2f s, prepare %.2f s, prefill + %d decode steps %.3f s", loadSeconds, prepareSeconds, steps - 1, runSeconds))
        print("generated  \(generated.map(String.init).joined(separator: ","))")
        if explain {
            print("")
            if mode == .fp32 { print("FP32 projections and lm_head run OpenBLAS cblas_sgemm (not dispatched); cache kernels:") } else {
                print("lm_head runs gemm-f16 (FP16 weights, as Atom keeps it; layer \"-\" below).")
            }
            print(DispatchExplain.text(e.dispatchRecords, machine: runtime.machine.description.fingerprint.id, database: database))
        }
    }
}

struct ServeBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve-bench",
        abstract: "Decode throughput of FP32, W8A8 (+INT8 KV) and W4A4 (+INT4 KV) at several batch sizes, interleaved in one run.",
        discussion: """
            Each batch size gets B sequences at --context tokens (KV caches filled with random valid entries by \
            the kv-append kernel, not by a prefill), one untimed decode step per mode, then --steps timed decode \
            steps with the modes taking turns (one round: every mode once). Ratios use median step times; \
            beside each, the lowest and highest ratio within one round show how much the machine drifted. \
            Benchmark model: `lowbit model synth --preset llama-7b --layers 2`. \
            w8a8 and w4a4 quantize --model at load, unless --quantized gives a model `lowbit quantize` wrote \
            for that method (or --model is itself one: then its mode runs, with those of the --quantized models, \
            e.g. `--model Q8 --quantized Q4` for W8A8 against W4A4 without the FP model's memory).
            """
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var engine: EngineModelOptions
    @Option(help: "Batch sizes, comma-separated.") var batch: String = "1,8,32,64,128"
    @Option(help: "Tokens already in each sequence's cache.") var context: Int = 1024
    @Option(help: "Timed decode steps per mode and batch size.") var steps: Int = 5
    @Option(help: "Modes, comma-separated (default: fp32,w8a8,w4a4; with a quantized --model, its method and those of the --quantized models).") var modes: String?
    @Option(help: ArgumentHelp(
        "A model written by `lowbit quantize` to run its method's mode from, instead of quantizing --model at load (repeatable).",
        valueName: "dir"))
    var quantized: [String] = []
    @Option(help: "Write the results as JSON to this file.") var jsonOut: String?

    func run() throws {
        let logger = global.logger("lowbit.serve-bench")
        let batches = try parseIntegerList(batch, option: "--batch")
        guard context >= 1, steps >= 1, batches.allSatisfy({ $0 >= 1 }) else {
            throw ValidationError("--context, --steps and every --batch must be at least 1")
        }
        // An FP --model's memory check counts the modes asked for, else all three (those a --quantized model
        // supplies are counted too: the check errs on the side of refusing; --skip-memory-check overrides it).
        let askedModes = try modes.map { try $0.split(separator: ",").map { try EngineMode.parse(String($0)) } }
        let source = try engine.loadModel(modes: askedModes ?? EngineMode.allCases)
        // Quantized models by mode: --quantized, and --model itself when it is one.
        var stored: [EngineMode: (EngineModelSource, String)] = [:]
        if case .quantized = source { stored[source.defaultMode] = (source, engine.model) }
        for directory in quantized {
            guard EngineModelSource.isQuantized(directory) else {
                throw ValidationError("--quantized \(directory) is not a model written by `lowbit quantize` (no \(QuantizedModelFile.weightsFile) of format \(QuantizedModelFile.format))")
            }
            let q = try EngineModelSource.load(directory, layers: nil, option: "--quantized")
            guard q.config == source.config else {
                throw ValidationError("--quantized \(directory) is another model than --model \(engine.model) (config.json differs; check --layers)")
            }
            guard stored[q.defaultMode] == nil else { throw ValidationError("two quantized models for \(q.defaultMode.rawValue)") }
            stored[q.defaultMode] = (q, directory)
        }
        let defaultModes: [EngineMode]
        // A quantized --model runs its own mode and those of the --quantized models; an FP one runs all three.
        if case .quantized = source { defaultModes = EngineMode.allCases.filter { stored[$0] != nil } } else { defaultModes = [.fp32, .w8a8, .w4a4] }
        let modeList = askedModes ?? defaultModes
        let database = try engine.databasePath()
        let runtime = try EngineRuntime(databasePath: database, threads: engine.threads, logger: logger)
        var engines: [Engine] = []
        for mode in modeList {
            let start = Date()
            var options = engine.engineOptions()
            options.maxSequences = 1
            options.maxContext = 1
            let (from, directory) = stored[mode] ?? (source, engine.model)
            engines.append(try from.engine(mode, options: options, runtime: runtime, directory: directory))
            FileHandle.standardError.write(Data(String(format: "prepared %@ in %.1f s: %@\n", mode.rawValue, Date().timeIntervalSince(start),
                                                       from.describe(mode, directory: directory)).utf8))
        }
        let options = ServeBench.Options(batches: batches, context: context, steps: steps)
        let report = try ServeBench.run(engines: engines, options: options, model: engine.model) { line in
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
        print(Self.render(report))
        // The run's points go into the tuning database (table `serving`) for `lowbit report`, unless
        // --no-db said to leave every database alone.
        let storePath = database ?? TuningStore.defaultPath()
        if engine.noDb {
            print("not stored: --no-db (without it, the points go into \(storePath) for `lowbit report`)")
        } else {
            store(report, at: storePath, logger: logger)
        }
        if let jsonOut {
            try Data(try JSONOutput.encode(report).utf8).write(to: URL(fileURLWithPath: jsonOut))
            print("wrote \(jsonOut)")
        }
    }

    /// Adds the run's points to the database at `path` (created if needed); a failure is reported and
    /// costs only the stored copy.
    func store(_ report: ServeBench.Report, at path: String, logger: Logger) {
        do {
            let store = try TuningStore(path: path, logger: logger)
            let session = UUID().uuidString
            try store.record(serving: report.results.map { r in
                ServingRecord(
                    machine: report.machine, model: "\(report.model), \(report.layers) layers", mode: r.mode.rawValue, batch: r.batch,
                    context: report.context, tokensPerSecond: r.tokensPerSecond, millisecondsPerToken: r.timePerOutputTokenMs,
                    session: session)
            })
            print("stored \(report.results.count) points in \(path) (table serving; `lowbit report` draws them)")
        } catch {
            FileHandle.standardError.write(Data("serve-bench: results not stored in \(path): \(error)\n".utf8))
        }
    }

    /// Mean ms per step of each projection's kernel calls, one row per (batch, mode), then the W4A4/W8A8
    /// speed-up per projection where both modes ran; nil when no result has the breakdown.
    static func projectionTable(_ r: ServeBench.Report) -> String? {
        let order = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"]
        let present = Set(r.results.flatMap { $0.projectionSeconds?.keys.map { $0 } ?? [] })
        guard !present.isEmpty else { return nil }
        let names = order.filter(present.contains) + present.subtracting(order).sorted()
        var t = Table(["batch", "mode"] + names, alignments: [.right, .left] + Array(repeating: .right, count: names.count))
        for x in r.results {
            guard let p = x.projectionSeconds else { continue }
            t.add(["\(x.batch)", x.mode.rawValue] + names.map { p[$0].map { String(format: "%.1f", $0 * 1e3) } ?? "-" })
            guard x.mode == .w4a4,
                  let base = r.results.first(where: { $0.batch == x.batch && $0.mode == .w8a8 })?.projectionSeconds else { continue }
            t.add(["\(x.batch)", "W4A4/W8A8"] + names.map { n in
                guard let a = base[n], let b = p[n], b > 0 else { return "-" }
                return String(format: "%.2fx", a / b)
            })
        }
        return t.render()
    }

    static func render(_ r: ServeBench.Report) -> String {
        var lines = [
            "serve-bench: \(r.model), \(r.layers) layers, context \(r.context), \(r.steps) timed steps, \(r.threads) threads, machine \(r.machine)",
            "database: \(r.database ?? "none (analytical configurations)"); load average at start: \(r.loadAverageAtStart)",
        ]
        if let start = r.coreSpeedAtStart, let end = r.coreSpeedAtEnd { lines.append(CoreSpeed.report(start: start, end: end)) }
        if let start = r.memoryAtStart, let end = r.memoryAtEnd { lines.append(MemorySpeed.report(start: start, end: end)) }
        if let steal = r.stealFraction { lines.append(CPUTimes.report(stealFraction: steal, cpus: r.stealCPUs)) }
        var t = Table(
            ["batch", "mode", "step ms (median)", "min", "p80", "tokens/s", "layers ms", "gemm ms", "attention ms", "head ms", "KV MiB", "packed MiB",
             "vector GOP/s"],
            alignments: [.right, .left] + Array(repeating: .right, count: 11))
        for x in r.results {
            func ms(_ s: Double) -> String { String(format: "%.1f", s * 1e3) }
            t.add([
                "\(x.batch)", x.mode.rawValue, ms(x.step.median), ms(x.step.min), ms(x.step.p80), String(format: "%.1f", x.tokensPerSecond),
                ms(x.layerSeconds), ms(x.partSeconds["gemm"] ?? 0), ms(x.partSeconds["attention"] ?? 0), ms(x.partSeconds["embed+lm_head"] ?? 0),
                "\(x.cacheBytes >> 20)", x.packedBytes.map { "\($0 >> 20)" } ?? "-",
                x.vectorMedian.map { String(format: "%.0f", $0) } ?? "-",
            ])
        }
        lines.append(t.render())
        var ratios = Table(
            [
                "batch", "W4A4/FP32", "rounds", "W4A4/W8A8", "rounds", "layers W4A4/FP32", "layers W4A4/W8A8", "32-layer proj. /FP32",
                "32-layer proj. /W8A8",
            ],
            alignments: Array(repeating: .right, count: 9))
        func f(_ v: Double?) -> String { v.map { String(format: "%.2fx", $0) } ?? "-" }
        func span(_ v: [Double]?) -> String { v.map { String(format: "%.2f-%.2fx", $0[0], $0[1]) } ?? "-" }
        for x in r.ratios {
            ratios.add([
                "\(x.batch)", f(x.w4a4OverFP32), span(x.w4a4OverFP32Rounds), f(x.w4a4OverW8A8), span(x.w4a4OverW8A8Rounds),
                f(x.layersW4A4OverFP32), f(x.layersW4A4OverW8A8), f(x.projected32W4A4OverFP32), f(x.projected32W4A4OverW8A8),
            ])
        }
        lines.append("speed-up (median step time; rounds: lowest and highest ratio of one round's steps; layers: time inside the decoder layers):")
        lines.append(ratios.render())
        if let table = projectionTable(r) {
            lines.append("kernel time per projection (ms per step, all layers; W4A4/W8A8 rows: the W8A8 time over W4A4's):")
            lines.append(table)
        }
        lines += r.notes.map { "note: \($0)" }
        return lines.joined(separator: "\n")
    }
}
