import ArgumentParser
import Foundation
import Model

struct ModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Llama model directories: synthesize random-weight models, describe them, run the FP32 reference.",
        subcommands: [Synth.self, Info.self, Run.self]
    )

    /// Writes a random-weight model with outlier channels.
    struct Synth: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a random-weight Llama model (config.json + model.safetensors) with realistic outlier channels.",
            discussion: """
                A few hidden channels (1/64 by default) are large in the residual stream and get RMSNorm gains of \
                20-100x; a few rows of v_proj and up_proj are scaled so the o_proj and down_proj inputs carry \
                outlier channels too. Weights are seeded: the same options give the same bytes.
                """
        )
        @OptionGroup var global: GlobalOptions
        @Option(help: "Model shape: \(LlamaConfig.presetNames.joined(separator: ", ")).") var preset: String = "tiny"
        @Option(help: "Decoder layers (default: the preset's).") var layers: Int?
        @Option(help: "Storage type: f32, f16 or bf16.") var dtype: String = "f16"
        @Option(help: "Random seed.") var seed: UInt64 = 0
        @Option(help: "Outlier channels of the hidden state (default: hidden / 64).") var outlierChannels: Int?
        @Option(help: "Output directory.") var out: String

        func run() throws {
            _ = global.logger("lowbit.model")
            guard let type = SafetensorsDType(name: dtype), type.isFloatingPoint else {
                throw ValidationError("--dtype must be f32, f16 or bf16, not \(dtype)")
            }
            let config = try LlamaConfig.preset(named: preset, layers: layers)
            let options = SynthOptions(dtype: type, seed: seed, outlierChannels: outlierChannels)
            let start = Date()
            let plan = try ModelSynth.write(config: config, options: options, to: URL(fileURLWithPath: out))
            let seconds = Date().timeIntervalSince(start)
            let bytes = Double(config.parameterCount * type.byteSize)
            print("wrote \(out): \(preset), \(config.numHiddenLayers) layers, \(config.parameterCount) parameters, \(type.rawValue)")
            print(String(format: "  %.1f MB in %.1f s (%.0f MB/s)", bytes / 1e6, seconds, bytes / 1e6 / max(seconds, 1e-9)))
            print("  outlier channels (\(plan.outlierChannels.count)): \(plan.outlierChannels.map(String.init).joined(separator: ","))")
        }
    }

    /// Describes a model directory.
    struct Info: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Config summary, tensor count, bytes and dtypes of a model directory.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Model directory (config.json and *.safetensors).") var directory: String

        func run() throws {
            _ = global.logger("lowbit.model")
            let dir = try ModelDirectory(url: URL(fileURLWithPath: directory))
            let c = dir.config
            print("model      \(directory)")
            print("shape      hidden \(c.hiddenSize), intermediate \(c.intermediateSize), \(c.numHiddenLayers) layers, vocab \(c.vocabSize)")
            print("attention  \(c.numAttentionHeads) heads of \(c.headDim), \(c.numKeyValueHeads) KV heads, RoPE theta \(c.ropeTheta), eps \(c.rmsNormEps)")
            print("params     \(c.parameterCount)\(c.tieWordEmbeddings ? " (tied embeddings)" : "")")
            var dtypes: [String: Int] = [:]
            for name in dir.tensorNames { dtypes[try dir.info(name).dtype.rawValue, default: 0] += 1 }
            let kinds = dtypes.keys.sorted().map { "\($0) x\(dtypes[$0] ?? 0)" }.joined(separator: ", ")
            print("tensors    \(dir.tensorNames.count) in \(dir.files.count) file(s), \(dir.dataByteCount) bytes, \(kinds)")
            for (name, file) in dir.files.sorted(by: { $0.key < $1.key }) where !file.metadata.isEmpty {
                let pairs = file.metadata.keys.sorted().map { "\($0)=\(file.metadata[$0] ?? "")" }
                print("metadata   \(name): \(pairs.joined(separator: " "))")
            }
        }
    }

    /// Runs the FP32 reference forward.
    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the FP32 reference forward over a prompt: logit statistics, outlier ratios per layer, greedy tokens.",
            discussion: "Loads the weights as FP32 (4 bytes per parameter): use --layers to keep the first layers of a big model."
        )
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Model directory.") var directory: String
        @Option(help: "Prompt token ids, comma-separated.") var prompt: String = "1,15043,29892,590,1024,338"
        @Option(help: "Greedy tokens to generate after the prompt.") var steps: Int = 4
        @Option(help: "Keep only the first N layers.") var layers: Int?

        func run() throws {
            _ = global.logger("lowbit.model")
            let tokens = prompt.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !tokens.isEmpty else { throw ValidationError("--prompt needs comma-separated token ids") }
            var start = Date()
            let weights = try LlamaWeights.load(from: URL(fileURLWithPath: directory), layers: layers)
            let model = try LlamaReference(weights: weights)
            print(String(format: "loaded %d layers in %.1f s", weights.layers.count, Date().timeIntervalSince(start)))
            start = Date()
            var capture = ActivationCapture(config: model.config)
            let logits = try model.forward(tokens: tokens.map { $0 % model.config.vocabSize }, capture: &capture)
            let seconds = Date().timeIntervalSince(start)
            let values = logits.values.map(Double.init)
            let mean = values.reduce(0, +) / Double(values.count)
            let std = (values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count)).squareRoot()
            print(String(format: "forward    %d tokens in %.2f s; logits finite: %@, max |logit| %.3f, mean %.3f, std %.3f",
                         tokens.count, seconds, logits.isFinite ? "yes" : "NO", logits.maxMagnitude, mean, std))
            var t = Table(["layer"] + CapturePoint.allCases.map(\.rawValue), alignments: [.right] + CapturePoint.allCases.map { _ in .right })
            for l in 0..<model.config.numHiddenLayers {
                t.add(["\(l)"] + CapturePoint.allCases.map { String(format: "%.1fx", Self.outlierRatio(capture.statistics(layer: l, at: $0))) })
            }
            print("largest channel max |x| / median channel max |x|, per linear-layer input:")
            print(t.render())
            let generated = try model.generate(prompt: tokens.map { $0 % model.config.vocabSize }, steps: steps)
            print("greedy     \(generated.map(String.init).joined(separator: ","))")
        }

        static func outlierRatio(_ s: ChannelStatistics) -> Double {
            let sorted = s.maxMagnitudes.sorted()
            guard let top = sorted.last, !sorted.isEmpty else { return 0 }
            let median = sorted[sorted.count / 2]
            return median > 0 ? Double(top / median) : .infinity
        }
    }
}
