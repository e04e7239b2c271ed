import ArgumentParser
import Foundation
import Inference
import Model
import TuningStore

/// Options shared by the engine commands: the model, threads and the tuning database.
struct EngineModelOptions: ParsableArguments {
    @Option(help: "Model directory (config.json and *.safetensors), e.g. from `lowbit model synth`.") var model: String
    @Option(help: "Keep only the first N decoder layers.") var layers: Int?
    @Option(help: "Worker threads (default: one per core); OpenBLAS runs single-threaded inside them.") var threads: Int?
    @Option(help: "Tuning database to dispatch from (default: $LOWBIT_DB or ./TuningDB/lowbit.sqlite when it exists).") var db: String?
    @Flag(help: "Ignore any tuning database: analytical configurations only.") var noDb = false
    @Option(help: "W4A4: random tokens the Atom permutations are calibrated on.") var calibrationTokens: Int = 16

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

    func loadWeights() throws -> LlamaWeights {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: model, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ValidationError("--model \(model): no such directory (make one with `lowbit model synth --preset tiny --out DIR`)")
        }
        return try LlamaWeights.load(from: URL(fileURLWithPath: model), layers: layers)
    }

    func engineOptions() -> EngineOptions {
        var o = EngineOptions()
        o.calibrationTokens = calibrationTokens
        return o
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
            The prompt is prefilled in one batched step, then one token per step is decoded over the paged KV
            cache (fp32, int8 or int4 by mode). Kernels come from the tuning database when it has them
            (--explain shows, per layer and kernel, the configuration and whether it was an exact tuned
            record, the nearest tuned shape or the analytical default).
            """
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var engine: EngineModelOptions
    @Option(help: "Prompt token ids, comma-separated.") var prompt: String
    @Option(help: "Tokens to generate.") var steps: Int = 8
    @Option(help: "fp32, w8a8 or w4a4.") var mode: String = "w4a4"
    @Option(help: "Tokens per sequence the KV cache holds (default: prompt + steps).") var maxContext: Int?
    @Flag(help: "Print which kernel configuration each layer runs and where it came from.") var explain = false

    func run() throws {
        let logger = global.logger("lowbit.generate")
        let mode = try EngineMode.parse(self.mode)
        let tokens = try parseIntegerList(prompt, option: "--prompt")
        guard steps >= 1 else { throw ValidationError("--steps must be at least 1") }
        var start = Date()
        let weights = try engine.loadWeights()
        let loadSeconds = Date().timeIntervalSince(start)
        let database = try engine.databasePath()
        let runtime = try EngineRuntime(databasePath: database, threads: engine.threads, logger: logger)
        var options = engine.engineOptions()
        options.maxSequences = 1
        options.maxContext = maxContext ?? (tokens.count + steps)
        start = Date()
        let e = try Engine(model: weights, mode: mode, options: options, runtime: runtime)
        let prepareSeconds = Date().timeIntervalSince(start)
        start = Date()
        let generated = try e.generate(prompt: tokens, steps: steps)
        let runSeconds = Date().timeIntervalSince(start)
        print("mode       \(mode.rawValue) (KV cache \(mode.cacheFormat), pages of \(e.pageTokens) tokens, \(runtime.threads.threadCount) threads)")
        print(String(format: "timing     load %.2f s, prepare %.2f s, prefill + %d decode steps %.3f s", loadSeconds, prepareSeconds, steps - 1, runSeconds))
        print("generated  \(generated.map(String.init).joined(separator: ","))")
        if explain {
            print("")
            if mode == .fp32 { print("FP32 projections and lm_head run OpenBLAS cblas_sgemm (not dispatched); cache kernels:") } else {
                print("lm_head runs OpenBLAS cblas_sgemm in every mode.")
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
            Each batch size gets B sequences at --context tokens (KV caches filled with random valid entries by
            the kv-append kernel, not by a prefill), one untimed decode step per mode, then --steps timed decode
            steps with the modes taking turns. Benchmark model: `lowbit model synth --preset llama-7b --layers 2`.
            """
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var engine: EngineModelOptions
    @Option(help: "Batch sizes, comma-separated.") var batch: String = "1,8,32,64,128"
    @Option(help: "Tokens already in each sequence's cache.") var context: Int = 1024
    @Option(help: "Timed decode steps per mode and batch size.") var steps: Int = 5
    @Option(help: "Modes, comma-separated.") var modes: String = "fp32,w8a8,w4a4"
    @Option(help: "Write the results as JSON to this file.") var jsonOut: String?

    func run() throws {
        let logger = global.logger("lowbit.serve-bench")
        let batches = try parseIntegerList(batch, option: "--batch")
        let modeList = try modes.split(separator: ",").map { try EngineMode.parse(String($0)) }
        guard context >= 1, steps >= 1, batches.allSatisfy({ $0 >= 1 }) else {
            throw ValidationError("--context, --steps and every --batch must be at least 1")
        }
        let weights = try engine.loadWeights()
        let database = try engine.databasePath()
        let runtime = try EngineRuntime(databasePath: database, threads: engine.threads, logger: logger)
        var engines: [Engine] = []
        for mode in modeList {
            let start = Date()
            var options = engine.engineOptions()
            options.maxSequences = 1
            options.maxContext = 1
            engines.append(try Engine(model: weights, mode: mode, options: options, runtime: runtime))
            FileHandle.standardError.write(Data(String(format: "prepared %@ in %.1f s\n", mode.rawValue, Date().timeIntervalSince(start)).utf8))
        }
        let options = ServeBench.Options(batches: batches, context: context, steps: steps)
        let report = try ServeBench.run(engines: engines, options: options, model: engine.model) { line in
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
        print(Self.render(report))
        // The run's points go into the tuning database (table `serving`) for `lowbit report`.
        let storePath = database ?? TuningStore.defaultPath()
        do {
            let store = try TuningStore(path: storePath, logger: logger)
            let session = UUID().uuidString
            try store.record(serving: report.results.map { r in
                ServingRecord(
                    machine: report.machine, model: "\(report.model), \(report.layers) layers", mode: r.mode.rawValue, batch: r.batch,
                    context: report.context, tokensPerSecond: r.tokensPerSecond, millisecondsPerToken: r.timePerOutputTokenMs,
                    session: session)
            })
            print("stored \(report.results.count) points in \(storePath) (table serving; `lowbit report` draws them)")
        } catch {
            FileHandle.standardError.write(Data("serve-bench: results not stored in \(storePath): \(error)\n".utf8))
        }
        if let jsonOut {
            try Data(try JSONOutput.encode(report).utf8).write(to: URL(fileURLWithPath: jsonOut))
            print("wrote \(jsonOut)")
        }
    }

    static func render(_ r: ServeBench.Report) -> String {
        var lines = [
            "serve-bench: \(r.model), \(r.layers) layers, context \(r.context), \(r.steps) timed steps, \(r.threads) threads, machine \(r.machine)",
            "database: \(r.database ?? "none (analytical configurations)"); load average at start: \(r.loadAverageAtStart)",
        ]
        var t = Table(
            ["batch", "mode", "step ms (median)", "min", "p80", "tokens/s", "layers ms", "gemm ms", "attention ms", "head ms", "KV MiB"],
            alignments: [.right, .left] + Array(repeating: .right, count: 9))
        for x in r.results {
            func ms(_ s: Double) -> String { String(format: "%.1f", s * 1e3) }
            t.add([
                "\(x.batch)", x.mode.rawValue, ms(x.step.median), ms(x.step.min), ms(x.step.p80), String(format: "%.1f", x.tokensPerSecond),
                ms(x.layerSeconds), ms(x.partSeconds["gemm"] ?? 0), ms(x.partSeconds["attention"] ?? 0), ms(x.partSeconds["embed+lm_head"] ?? 0),
                "\(x.cacheBytes >> 20)",
            ])
        }
        lines.append(t.render())
        var ratios = Table(
            ["batch", "W4A4/FP32", "W4A4/W8A8", "layers W4A4/FP32", "layers W4A4/W8A8", "32-layer proj. /FP32", "32-layer proj. /W8A8"],
            alignments: Array(repeating: .right, count: 7))
        func f(_ v: Double?) -> String { v.map { String(format: "%.2fx", $0) } ?? "-" }
        for x in r.ratios {
            ratios.add([
                "\(x.batch)", f(x.w4a4OverFP32), f(x.w4a4OverW8A8), f(x.layersW4A4OverFP32), f(x.layersW4A4OverW8A8),
                f(x.projected32W4A4OverFP32), f(x.projected32W4A4OverW8A8),
            ])
        }
        lines.append("speed-up (median step time; layers: time inside the decoder layers):")
        lines.append(ratios.render())
        lines += r.notes.map { "note: \($0)" }
        return lines.joined(separator: "\n")
    }
}
