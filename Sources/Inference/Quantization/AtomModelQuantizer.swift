import Kernels
import Model

/// Quantizes a whole FP32 Llama model (issue 7):
///
/// - **W4A4 (Atom)**: calibrate (`AtomCalibrator`), fold the permutations into the weights
///   (`ReorderedWeights`), then quantize every linear weight with `AtomQuantization.quantize` (INT4
///   group-128, clip 0.85, on the first K - O input channels; INT8 per output row on the last O, where
///   O follows `OutlierRule` for the layer's input width).
/// - **W8A8**: no calibration or reordering (identity permutations); INT8 per output channel.
///
/// Embedding, norms (permuted) and lm_head stay FP32.
public enum AtomModelQuantizer {
    /// Calibrates (W4A4) and quantizes `weights`.
    public static func quantize(_ weights: LlamaWeights, settings: QuantizationSettings) throws -> QuantizedModel {
        let permutations = settings.method == .w4a4
            ? try AtomCalibrator.calibrate(weights, settings.calibration)
            : Array(repeating: LayerPermutations.identity(weights.config), count: weights.config.numHiddenLayers)
        return try quantize(weights, permutations: permutations, settings: settings)
    }

    /// Folds `permutations` into `weights` and quantizes them, one layer's reordered copy at a time (not
    /// a whole `ReorderedWeights` beside the FP32 model): the same result as
    /// `quantize(ReorderedWeights(weights, permutations:), settings:)`.
    public static func quantize(_ weights: LlamaWeights, permutations: [LayerPermutations], settings: QuantizationSettings) throws -> QuantizedModel {
        try ReorderedWeights.check(weights, permutations: permutations)
        let c = weights.config
        try checkMethod(settings, c, identity: permutations.allSatisfy(\.isIdentity))
        let layers = try zip(weights.layers, permutations).map { try quantize(ReorderedLayer($0, $1), settings: settings) }
        return QuantizedModel(config: c, settings: settings, embedding: weights.embedding, layers: layers,
                              finalNorm: weights.finalNorm, lmHead: weights.lmHead)
    }

    /// Quantizes already-reordered weights (the permutations of a calibration done elsewhere).
    public static func quantize(_ reordered: ReorderedWeights, settings: QuantizationSettings) throws -> QuantizedModel {
        let c = reordered.config
        try checkMethod(settings, c, identity: reordered.layers.allSatisfy(\.permutations.isIdentity))
        let layers = try reordered.layers.map { try quantize($0, settings: settings) }
        return QuantizedModel(config: c, settings: settings, embedding: reordered.embedding, layers: layers,
                              finalNorm: reordered.finalNorm, lmHead: reordered.lmHead)
    }

    /// Quantizes the model in `directory` (cut to its first `layers` decoder layers) one layer at a time:
    /// only one layer's FP32 weights (and their reordered copy) are held at once, beside the embedding,
    /// lm_head and the layers quantized so far, so a model several times the host's memory in FP32 fits.
    /// W4A4 calibrates layer by layer: the calibration tokens' hidden states enter layer l's FP32
    /// reference (a fresh KV cache per sequence, as in `AtomCalibrator.calibrate`), its activations give
    /// layer l's permutations, and its outputs go on to layer l + 1. The result is bit for bit
    /// `quantize(LlamaWeights.load(directory, layers: layers), settings:)`.
    public static func quantize(_ directory: ModelDirectory, layers: Int? = nil, settings: QuantizationSettings,
                                progress: (Int, Int) -> Void = { _, _ in }) throws -> QuantizedModel {
        try checkMethod(settings, directory.config, identity: true)
        let outer = try LlamaWeights.outer(directory, layers: layers)
        let c = outer.config
        var single = c
        single.numHiddenLayers = 1
        // W4A4: the calibration sequences' hidden states, one [tokens][hidden] per sequence, layer by layer.
        var states = settings.method == .w4a4
            ? try AtomCalibrator.sequences(settings.calibration, vocabSize: c.vocabSize).map { $0.map { outer.embedding.row($0) } }
            : []
        var quantized: [QuantizedLayer] = []
        for l in 0..<c.numHiddenLayers {
            let weights = try LlamaWeights.layer(l, from: directory, config: c)
            var permutations = LayerPermutations.identity(c)
            if settings.method == .w4a4 {
                let reference = try LlamaReference(weights: LlamaWeights(
                    config: single, embedding: outer.embedding, layers: [weights], finalNorm: outer.finalNorm, lmHead: outer.lmHead))
                var capture = ActivationCapture(config: single)
                for s in states.indices { states[s] = try reference.layers(hidden: states[s], capture: &capture) }
                permutations = AtomCalibrator.permutations(capture)[0]
            }
            quantized.append(try quantize(ReorderedLayer(weights, permutations), settings: settings))
            progress(l + 1, c.numHiddenLayers)
        }
        return QuantizedModel(config: c, settings: settings, embedding: outer.embedding, layers: quantized,
                              finalNorm: outer.finalNorm, lmHead: outer.lmHead)
    }

    /// Throws before anything is quantized: invalid settings, W8A8 with reordered channels, an input width
    /// whose outlier count the settings cannot give.
    private static func checkMethod(_ settings: QuantizationSettings, _ c: LlamaConfig, identity: Bool) throws {
        try settings.validate()
        if settings.method == .w8a8, !identity {
            throw ModelError.invalidInput("W8A8 does not reorder channels; quantize the weights with identity permutations")
        }
        for width in Set([c.hiddenSize, c.queryWidth, c.intermediateSize]) { _ = try settings.outliers(width: width) }
    }

    /// One reordered layer's linear weights in the method's format, its permutations and norm gains kept.
    /// The seven weights are quantized concurrently (each alone, so the result does not depend on it).
    public static func quantize(_ layer: ReorderedLayer, settings: QuantizationSettings) throws -> QuantizedLayer {
        let weights = [layer.q, layer.k, layer.v, layer.o, layer.gate, layer.up, layer.down]
        let q = try Parallel.map(weights.count) { try quantize(weights[$0], settings: settings) }
        return QuantizedLayer(
            permutations: layer.permutations, inputNorm: layer.inputNorm, postAttentionNorm: layer.postAttentionNorm,
            q: q[0], k: q[1], v: q[2], o: q[3], gate: q[4], up: q[5], down: q[6])
    }

    /// One linear weight [out, in] (input columns already reordered) in the method's format.
    public static func quantize(_ w: Matrix, settings: QuantizationSettings) throws -> QuantizedWeight {
        switch settings.method {
        case .w4a4:
            let outliers = try settings.outliers(width: w.cols)
            guard settings.groupSize == AtomQuantization.groupSize else {
                // The per-row ablation: one scale per output channel, stored in every group.
                let format = settings.integerFormat(clip: settings.weightClip, outliers: outliers)
                return .atom(IntegerRows(quantizing: w.values, rows: w.rows, k: w.cols, format: format).atomLayout())
            }
            return .atom(AtomQuantization.quantize(w.values, rows: w.rows, k: w.cols, outliers: outliers, clip: settings.weightClip))
        case .w8a8:
            return .int8(Int8Weight(quantizing: w))
        }
    }
}
