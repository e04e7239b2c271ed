import Kernels
import Model

/// A scheme of the accuracy study as the engine runs it: a mode, the quantization settings the
/// weights are quantized with at load, the permutations, and the KV cache format.
public struct EngineScheme: Sendable, Equatable {
    public var name: String
    public var mode: EngineMode
    /// For w4a4 and w8a8 (ignored in fp32).
    public var settings: QuantizationSettings
    /// Whether the calibrated permutations are used (else identity).
    public var reorders: Bool
    public var kvCache: KVCacheFormat
    /// How the engine run differs from the simulated scheme, or how it runs there, in words (empty: as
    /// simulated, on the fused kernels).
    public var notes: [String]

    /// The engine's form of a simulated scheme on a model of `config`: every setting the generated
    /// kernels allow is kept; where one is not (no outlier channels on an input whose width is not
    /// whole groups of 128), what runs instead is in `notes`.
    public init(_ scheme: SimulationScheme, config: LlamaConfig) throws {
        name = scheme.name
        reorders = scheme.reorders
        kvCache = scheme.kvCache
        notes = []
        guard let weights = scheme.weights, let activations = scheme.activations else {
            mode = .fp32
            settings = QuantizationSettings(method: .w8a8)
            if scheme.reorders { notes.append("engine FP32 mode runs the checkpoint's channel order") }
            reorders = false
            return
        }
        if weights.bits == 8 {
            mode = .w8a8
            settings = QuantizationSettings(method: .w8a8)
            return
        }
        mode = .w4a4
        guard weights.groupSize == activations.groupSize, weights.groupSize == nil || weights.groupSize == AtomQuantization.groupSize else {
            throw EngineError.invalidInput("\(scheme.name): gemm-w4a4 needs weights and activations in groups of \(AtomQuantization.groupSize) or one scale per row, alike")
        }
        var s = QuantizationSettings(method: .w4a4, outliers: scheme.outliers ?? 0)
        s.groupSize = weights.groupSize ?? 0
        s.weightClip = weights.clip
        s.activationClip = activations.clip
        settings = s
        if scheme.outliers == nil {
            let widths = [("q/k/v", config.hiddenSize), ("o", config.queryWidth), ("gate/up", config.hiddenSize), ("down", config.intermediateSize)]
            let kept = try widths.compactMap { name, k -> String? in
                let o = try s.outliers(width: k)
                return o > 0 ? "\(name) keeps \(o) INT8 channels (K = \(k) is not whole groups of 128)" : nil
            }
            notes += kept.uniqued()
        }
        if !s.isAtomKernelFormat {
            notes.append("activations quantized in Swift: the fused quantize kernels fix group 128 and clip 0.9")
        }
    }

    /// Engine options that make this scheme's engine (one sequence of up to `maxContext` tokens).
    public func options(permutations: [LayerPermutations], config: LlamaConfig, maxContext: Int) -> EngineOptions {
        var o = EngineOptions()
        o.maxSequences = 1
        o.maxContext = maxContext
        o.quantization = settings
        o.permutations = reorders ? permutations : Array(repeating: .identity(config), count: config.numHiddenLayers)
        o.kvCache = kvCache
        return o
    }
}

extension Array where Element: Hashable {
    fileprivate func uniqued() -> [Element] {
        var seen = Set<Element>()
        return filter { seen.insert($0).inserted }
    }
}

extension AccuracyStudy {
    /// Runs every sequence through `engine` (a fresh sequence each, prefilled in one step with the
    /// logits of every position) and compares with the reference.
    public func measure(_ engine: Engine, name: String) throws -> AccuracyMeasurement {
        let logits = try sequences.map { tokens -> Matrix in
            let id = try engine.makeSequence()
            defer { engine.release(id) }
            return try engine.step([(id, tokens)], logits: .all)[0]
        }
        return measure(name: name, logits: logits)
    }

    /// The engine's ablation: each scheme quantized at load with `permutations` (when it reorders),
    /// run on the kernels. One engine in memory at a time; `each` sees every result as it comes.
    @discardableResult
    public func engineAblation(weights: LlamaWeights, permutations: [LayerPermutations], schemes: [EngineScheme], runtime: EngineRuntime,
                               each: (EngineScheme, AccuracyMeasurement) -> Void = { _, _ in }) throws -> [AccuracyMeasurement] {
        let longest = sequences.map(\.count).max() ?? 1
        var out: [AccuracyMeasurement] = []
        for scheme in schemes {
            let engine = try Engine(model: weights, mode: scheme.mode,
                                    options: scheme.options(permutations: permutations, config: weights.config, maxContext: longest),
                                    runtime: runtime)
            let row = try measure(engine, name: scheme.name)
            each(scheme, row)
            out.append(row)
        }
        return out
    }
}
