import KernelKit
import Kernels
import Model

/// Offline calibration of a whole model (Atom's reorder, KERNELS.md section 3): calibration sequences
/// run through the FP32 reference with an `ActivationCapture`; each linear input's channels are sorted
/// ascending by their sum of squares over every calibration token (`AtomCalibration`), so the largest
/// end last.
///
/// Calibration tokens are uniform random ids from a seeded generator (lowbit has no text corpus); each
/// sequence starts from an empty KV cache. Evaluation should use another seed.
public enum AtomCalibrator {
    /// The calibration token sequences for `settings` in a vocabulary of `vocabSize`.
    public static func sequences(_ settings: CalibrationSettings, vocabSize: Int) throws -> [[Int]] {
        try randomSequences(tokens: settings.tokens, length: settings.sequenceLength, vocabSize: vocabSize, seed: settings.seed)
    }

    /// `tokens` uniform random token ids in sequences of `length` (the last may be shorter).
    public static func randomSequences(tokens: Int, length: Int, vocabSize: Int, seed: UInt64) throws -> [[Int]] {
        guard tokens > 0, length > 0 else {
            throw ModelError.invalidInput("need at least one token and a sequence length of at least 1 (got \(tokens) tokens, length \(length))")
        }
        var rng = SeededGenerator(seed: seed)
        var out: [[Int]] = []
        var left = tokens
        while left > 0 {
            let n = min(length, left)
            out.append((0..<n).map { _ in Int.random(in: 0..<vocabSize, using: &rng) })
            left -= n
        }
        return out
    }

    /// Runs the calibration sequences through `model` and returns the activation capture.
    public static func capture(_ model: LlamaReference, sequences: [[Int]]) throws -> ActivationCapture {
        var capture = ActivationCapture(config: model.config)
        for tokens in sequences { _ = try model.forward(tokens: tokens, capture: &capture) }
        return capture
    }

    /// The permutations of every layer from a capture.
    public static func permutations(_ capture: ActivationCapture) -> [LayerPermutations] {
        (0..<capture.config.numHiddenLayers).map { l in
            func perm(_ point: CapturePoint) -> [Int32] {
                AtomCalibration.permutation(sumsOfSquares: capture.statistics(layer: l, at: point).sumsOfSquares)
            }
            return LayerPermutations(qkv: perm(.qkv), o: perm(.o), gateUp: perm(.gateUp), down: perm(.down))
        }
    }

    /// Calibrates `weights` with `settings`: the permutations of every layer.
    public static func calibrate(_ weights: LlamaWeights, _ settings: CalibrationSettings) throws -> [LayerPermutations] {
        let model = try LlamaReference(weights: weights)
        return permutations(try capture(model, sequences: sequences(settings, vocabSize: weights.config.vocabSize)))
    }
}
