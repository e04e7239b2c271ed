import KernelKit
import Kernels
import Model

/// How many input channels of each linear layer Atom keeps in INT8.
///
/// Atom's rule needs K - O to be a whole number of 128-channel groups, so O is K mod 128 plus a
/// multiple of 128. `.atom(target:)` takes the candidate closest to `target` (128 by default; ties go
/// to the larger): Llama-7B gets 128 everywhere (K = 4096 and 11008); the tiny preset (hidden 256,
/// intermediate 688) gets 128 of 256 channels for q/k/v, o and gate/up, and 176 of 688 for down.
/// `.minimal` takes K mod 128 (0 where K is a multiple of 128, 48 for K = 688): the ablation without
/// outlier channels, as far as the group rule allows.
public enum AtomOutliers: Sendable, Equatable {
    case atom(target: Int)
    case minimal

    public static let standard = AtomOutliers.atom(target: AtomQuantization.defaultOutliers)

    /// O for an input width K, or an error when no Atom split of K exists.
    public func count(forK k: Int) throws -> Int {
        let g = AtomQuantization.groupSize
        let r = k % g
        guard r % 4 == 0, k > r else {
            throw EngineError.unsupportedModel(
                "an input width of \(k) has no Atom layout: K - O must be a positive multiple of \(g) with O a multiple of 4")
        }
        switch self {
        case .minimal:
            return r
        case .atom(let target):
            var best = r
            var o = r
            while o < k {
                if abs(o - target) <= abs(best - target) { best = o }
                o += g
            }
            return best
        }
    }
}

/// The Atom reorder permutations of one decoder layer (source channel of each position, ascending
/// calibration score, so the largest channels end last where they stay INT8).
public struct AtomLayerPermutations: Sendable, Equatable {
    /// Input of q/k/v (input_layernorm's output), [hidden].
    public var qkv: [Int32]
    /// Input of o_proj (the attention output), [heads * head_dim].
    public var o: [Int32]
    /// Input of gate/up (post_attention_layernorm's output), [hidden].
    public var gateUp: [Int32]
    /// Input of down_proj, [intermediate]; folded offline into the output rows of gate and up.
    public var down: [Int32]

    public init(qkv: [Int32], o: [Int32], gateUp: [Int32], down: [Int32]) {
        self.qkv = qkv
        self.o = o
        self.gateUp = gateUp
        self.down = down
    }
}

/// Everything the W4A4 engine needs besides the weights: per-layer permutations and outlier counts.
public struct AtomPlan: Sendable, Equatable {
    public var layers: [AtomLayerPermutations]
    public var outliers: AtomOutliers

    public init(layers: [AtomLayerPermutations], outliers: AtomOutliers) {
        self.layers = layers
        self.outliers = outliers
    }

    /// Calibrates on `tokens` with the FP32 reference forward: each channel's sum of squares over the
    /// tokens at each linear layer's input (`ActivationCapture`), sorted by `AtomCalibration`.
    public static func calibrate(_ weights: LlamaWeights, tokens: [Int], outliers: AtomOutliers = .standard) throws -> AtomPlan {
        guard !tokens.isEmpty else { throw EngineError.invalidInput("calibration needs at least one token") }
        let reference = try LlamaReference(weights: weights)
        var capture = ActivationCapture(config: weights.config)
        _ = try reference.forward(tokens: tokens, capture: &capture)
        let layers = (0..<weights.config.numHiddenLayers).map { l in
            func perm(_ point: CapturePoint) -> [Int32] {
                AtomCalibration.permutation(sumsOfSquares: capture.statistics(layer: l, at: point).sumsOfSquares)
            }
            return AtomLayerPermutations(qkv: perm(.qkv), o: perm(.o), gateUp: perm(.gateUp), down: perm(.down))
        }
        return AtomPlan(layers: layers, outliers: outliers)
    }

    /// Deterministic calibration tokens: `count` tokens drawn uniformly from the vocabulary.
    public static func calibrationTokens(count: Int, vocabulary: Int, seed: UInt64 = 0xA70A) -> [Int] {
        var rng = SeededGenerator(seed: seed)
        return (0..<count).map { _ in Int.random(in: 0..<vocabulary, using: &rng) }
    }

    /// Checks the plan against a model's shape.
    func validate(_ config: LlamaConfig) throws {
        guard layers.count == config.numHiddenLayers else {
            throw EngineError.invalidInput("the Atom plan has \(layers.count) layers; the model has \(config.numHiddenLayers)")
        }
        for (i, l) in layers.enumerated() {
            let expected = [(l.qkv, config.hiddenSize, "qkv"), (l.o, config.queryWidth, "o"), (l.gateUp, config.hiddenSize, "gate/up"),
                            (l.down, config.intermediateSize, "down")]
            for (perm, width, name) in expected where perm.count != width || Set(perm).count != width
                || perm.contains(where: { $0 < 0 || Int($0) >= width }) {
                throw EngineError.invalidInput("layer \(i): the \(name) permutation is not a permutation of \(width) channels")
            }
        }
    }
}
