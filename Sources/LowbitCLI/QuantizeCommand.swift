import ArgumentParser
import Foundation
import Inference
import Kernels
import Machine
import Model

/// `lowbit quantize`: Atom (W4A4) or W8A8 quantization of a whole model, written once; and
/// `lowbit quantize accuracy`: the model-level accuracy study.
struct QuantizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quantize",
        abstract: "Quantize a Llama model (Atom W4A4 or W8A8) into a model directory, or measure model-level accuracy.",
        subcommands: [Write.self, Accuracy.self],
        defaultSubcommand: Write.self
    )

    /// Options both subcommands share.
    struct Common: ParsableArguments {
        @Option(help: "FP model directory (config.json and *.safetensors).") var model: String
        @Option(help: "Calibration tokens (uniform random ids, run through the FP32 reference).") var calibrationTokens: Int = 256
        @Option(help: "Tokens per calibration sequence.") var calibrationLength: Int = 64
        @Option(help: "Outlier channels asked for (Atom: 128). An input of width K keeps O = K - 128 * floor((K - N) / 128), so that K - O is whole groups of 128.")
        var outliers: Int = AtomQuantization.defaultOutliers
        @Option(help: "Keep only the first N decoder layers.") var layers: Int?

        func calibration(seed: UInt64) -> CalibrationSettings {
            CalibrationSettings(tokens: calibrationTokens, sequenceLength: calibrationLength, seed: seed)
        }

        func validate() throws {
            guard calibrationTokens > 0, calibrationLength > 0 else { throw ValidationError("--calibration-tokens and --calibration-length must be at least 1") }
            guard outliers >= 0 else { throw ValidationError("--outliers must be 0 or more") }
        }

        /// The FP model directory, refused when it is a quantized one.
        func open() throws -> ModelDirectory {
            let directory = try ModelDirectory(url: URL(fileURLWithPath: model))
            if directory.files.values.contains(where: { $0.metadata["format"] == QuantizedModelFile.format }) {
                throw ValidationError("\(model) is already a quantized model; --model takes the FP model it came from")
            }
            return directory
        }

        func load() throws -> LlamaWeights {
            let start = Date()
            let directory = try open()
            let weights = try LlamaWeights.load(directory, layers: layers)
            let c = weights.config
            print(String(format: "loaded %@: %d layers, hidden %d, intermediate %d, vocab %d (%.1f s)", model, c.numHiddenLayers,
                         c.hiddenSize, c.intermediateSize, c.vocabSize, Date().timeIntervalSince(start)))
            return weights
        }
    }

    /// Writes a quantized model directory.
    struct Write: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "write",
            abstract: "Calibrate, reorder and quantize a model; write config.json and model.safetensors (the default subcommand).",
            discussion: """
                w4a4 (Atom): calibration sorts each linear input's channels by sum of squares over the calibration \
                tokens; the permutations are folded into the weights (q/k/v and gate/up input columns, o_proj and \
                down_proj input columns, gate/up output rows by down_proj's order, norm gains permuted); weights are \
                INT4 group-128 (clip 0.85) with INT8 outlier channels last. w8a8: INT8 per output channel, no \
                reordering. Embedding, norms and lm_head stay FP32. Read back with QuantizedModel.load(from:).
                """
        )
        @OptionGroup var global: GlobalOptions
        @OptionGroup var common: Common
        @Option(help: "Output directory.") var out: String
        @Option(help: "w4a4 (Atom) or w8a8.") var method: QuantizationMethod = .w4a4
        @Option(help: "Seed of the calibration tokens.") var seed: UInt64 = 0
        @Flag(help: "Quantize even when the estimated peak memory exceeds what the machine has available.")
        var skipMemoryCheck = false

        func run() throws {
            _ = global.logger("lowbit.quantize")
            let directory = try common.open()
            if !skipMemoryCheck {
                try QuantizationMemory.check(
                    directory.config, layers: common.layers, method: method, availableBytes: HostMemory.availableBytes(), model: common.model)
            }
            let settings = QuantizationSettings(method: method, outliers: common.outliers, calibration: common.calibration(seed: seed))
            var start = Date()
            let model = try AtomModelQuantizer.quantize(directory, layers: common.layers, settings: settings) { done, total in
                print(String(format: "  layer %d of %d quantized (%.1f s)", done, total, Date().timeIntervalSince(start)))
            }
            let quantizeSeconds = Date().timeIntervalSince(start)
            start = Date()
            let url = URL(fileURLWithPath: out)
            try model.save(to: url)
            let saveSeconds = Date().timeIntervalSince(start)
            let c = model.config
            let fp32Bytes = 4 * c.numHiddenLayers * (c.parametersPerLayer - 2 * c.hiddenSize)
            print(String(format: "quantized %@ in %.1f s (calibration included), wrote %@ in %.1f s", method.rawValue, quantizeSeconds, out, saveSeconds))
            if method == .w4a4 {
                let widths = [("q/k/v", c.hiddenSize), ("o", c.queryWidth), ("gate/up", c.hiddenSize), ("down", c.intermediateSize)]
                let counts = try widths.map { "\($0.0) \(try settings.outliers(width: $0.1))" }.joined(separator: ", ")
                print("  outlier channels per input: \(counts) (asked for \(common.outliers))")
                print("  calibration: \(common.calibrationTokens) uniform random tokens in sequences of \(common.calibrationLength), seed \(seed)")
            }
            print(String(format: "  linear weights: %.2f MB (FP32: %.2f MB, %.2fx smaller); embedding, norms, lm_head kept FP32",
                         Double(model.linearWeightBytes) / 1e6, Double(fp32Bytes) / 1e6, Double(fp32Bytes) / Double(max(model.linearWeightBytes, 1))))
        }
    }

    /// The accuracy study.
    struct Accuracy: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "accuracy",
            abstract: "Logit error and top-1 agreement against FP32 of Atom's ablation steps and W8A8, on the same random tokens.",
            discussion: """
                The FP32 reference (LlamaReference) and each scheme's simulated-quantization forward (the kernels' \
                integer arithmetic in Swift: activations quantized per token as the fused quantize kernels do, INT4 \
                group-128 clip 0.9 plus INT8 outliers; KV cache INT4/INT8 asymmetric per token and head) run the same \
                uniform random token sequences (--seed; calibration uses --calibration-seed). Relative error is \
                ||L_q - L|| / ||L|| over all logits; top-1 agreement is the share of positions whose greedy next token \
                matches FP32's. --quantized adds rows for saved quantized models (with their method's KV cache).

                --engine runs every scheme through the inference engine as well (the generated kernels: \
                gemm-w4a4, gemm-w8a8, the fused quantize kernels, kv-append and attention-decode over the paged \
                cache) and prints its error beside the simulation's. Settings the kernels fix are kept where an \
                equivalent exists (per-channel weight scales are stored in every group of 128; activations the \
                fused kernels cannot quantize, clip 1 or one scale per token, are quantized in Swift before \
                gemm-w4a4) and stated in the notes where not (an input whose width is not whole groups of 128 \
                keeps its remainder channels in INT8).
                """
        )
        @OptionGroup var global: GlobalOptions
        @OptionGroup var common: Common
        @Option(help: "Evaluation tokens.") var tokens: Int = 64
        @Option(help: "Tokens per evaluation sequence.") var length: Int = 32
        @Option(help: "Seed of the evaluation tokens.") var seed: UInt64 = 1
        @Option(help: "Seed of the calibration tokens.") var calibrationSeed: UInt64 = 0
        @Option(help: "A quantized model directory to evaluate as well (repeatable).") var quantized: [String] = []
        @Flag(help: "Run each scheme through the engine's kernels too, beside the simulation.") var engine = false
        @Option(help: "--engine: worker threads (default: one per core).") var threads: Int?

        func validate() throws {
            guard tokens > 0, length > 0 else { throw ValidationError("--tokens and --length must be at least 1") }
        }

        /// One row of the table: the simulation's measurement and, with --engine, the engine's.
        struct Row {
            var name: String
            var simulated: AccuracyMeasurement?
            var engine: AccuracyMeasurement?
            var seconds: Double
            var notes: [String] = []
        }

        func run() throws {
            let logger = global.logger("lowbit.quantize")
            let weights = try common.load()
            var start = Date()
            let sequences = try AccuracyStudy.sequences(tokens: tokens, length: length, vocabSize: weights.config.vocabSize, seed: seed)
            let study = try AccuracyStudy(weights: weights, sequences: sequences)
            print(String(format: "FP32 reference over %d tokens (%d sequences of up to %d, seed %llu): %.1f s", tokens, sequences.count,
                         length, seed, Date().timeIntervalSince(start)))
            start = Date()
            let permutations = try AtomCalibrator.calibrate(weights, common.calibration(seed: calibrationSeed))
            print(String(format: "calibration over %d tokens (seed %llu): %.1f s", common.calibrationTokens, calibrationSeed, Date().timeIntervalSince(start)))
            let c = weights.config
            let widths = [("q/k/v", c.hiddenSize), ("o", c.queryWidth), ("gate/up", c.hiddenSize), ("down", c.intermediateSize)]
            let counts = try widths.map { "\($0.0) \(try OutlierRule.outliers(requested: common.outliers, width: $0.1))" }
            print("outlier channels per input: \(counts.joined(separator: ", "))")
            let schemes = [SimulationScheme.fp32Reordered] + SimulationScheme.ablation(outliers: common.outliers)
            var rows: [Row] = []
            start = Date()
            try study.ablation(weights: weights, permutations: permutations, schemes: schemes) { m in
                rows.append(Row(name: m.name, simulated: m, seconds: Date().timeIntervalSince(start)))
                start = Date()
            }
            let runtime = engine ? try EngineRuntime(threads: threads, logger: logger) : nil
            if let runtime {
                let engineSchemes = try schemes.map { try EngineScheme($0, config: c) }
                start = Date()
                try study.engineAblation(weights: weights, permutations: permutations, schemes: engineSchemes, runtime: runtime) { scheme, m in
                    if let i = rows.firstIndex(where: { $0.name == scheme.name }) {
                        rows[i].engine = m
                        rows[i].notes = scheme.notes
                        rows[i].seconds += Date().timeIntervalSince(start)
                    }
                    start = Date()
                }
            }
            for directory in quantized {
                start = Date()
                let model = try QuantizedModel.load(from: URL(fileURLWithPath: directory))
                guard model.config.hiddenSize == c.hiddenSize, model.config.numHiddenLayers == c.numHiddenLayers,
                      model.config.vocabSize == c.vocabSize else {
                    throw ValidationError("\(directory) holds another model shape than --model (check --layers)")
                }
                let name = "saved \(model.settings.method.rawValue): \(directory)"
                var row = Row(name: name, simulated: try study.measure(SimulatedModel(model, name: name)), seconds: 0)
                if let runtime {
                    var options = EngineOptions()
                    options.maxSequences = 1
                    options.maxContext = length
                    row.engine = try study.measure(Engine(quantized: model, options: options, runtime: runtime), name: name)
                }
                row.seconds = Date().timeIntervalSince(start)
                rows.append(row)
            }
            print("Model-level error against FP32, \(study.reference.reduce(0) { $0 + $1.rows }) positions:")
            print(Self.render(rows, engine: engine))
        }

        static func render(_ rows: [Row], engine: Bool) -> String {
            func error(_ m: AccuracyMeasurement?) -> String { m.map { String(format: "%.5f", $0.relativeError) } ?? "-" }
            func top1(_ m: AccuracyMeasurement?) -> String { m.map { String(format: "%.1f%%", 100 * $0.topOneAgreement) } ?? "-" }
            let baseline = rows.first { $0.name.hasPrefix("W4A4 round") }
            func ratio(_ m: AccuracyMeasurement?, _ base: AccuracyMeasurement?) -> String {
                guard let m, let base else { return "" }
                return String(format: "%.3fx", m.relativeError / max(base.relativeError, .leastNormalMagnitude))
            }
            var headers = ["scheme", "logit rel. error", "top-1 agreement", "vs W4A4 RTN"]
            if engine { headers += ["engine rel. error", "engine top-1", "engine vs RTN"] }
            headers.append("seconds")
            var table = Table(headers, alignments: [.left] + Array(repeating: .right, count: headers.count - 1))
            var notes: [String] = []
            for r in rows {
                var name = r.name
                if engine, !r.notes.isEmpty {
                    notes.append("[\(notes.count + 1)] \(r.name): \(r.notes.joined(separator: "; "))")
                    name += " [\(notes.count)]"
                }
                var cells = [name, error(r.simulated), top1(r.simulated), ratio(r.simulated, baseline?.simulated)]
                if engine { cells += [error(r.engine), top1(r.engine), ratio(r.engine, baseline?.engine)] }
                cells.append(String(format: "%.1f", r.seconds))
                table.add(cells)
            }
            var lines = [table.render()]
            if engine {
                lines.append("engine: the generated kernels, quantized at load with the same permutations; notes:")
                lines += notes
            }
            return lines.joined(separator: "\n")
        }
    }
}

extension QuantizationMethod: ExpressibleByArgument {}
