import Model

/// How far one model's logits are from the FP32 reference's, over every position of the study's
/// sequences.
public struct AccuracyMeasurement: Sendable, Equatable {
    public var name: String
    /// Normwise relative error of the logits: ||L_q - L|| / ||L|| over all positions (Frobenius, Double).
    public var relativeError: Double
    /// Fraction of positions whose greedy next token (argmax, lowest id on ties) equals the reference's.
    public var topOneAgreement: Double
    /// Positions compared.
    public var positions: Int
}

/// The model-level accuracy study: the same token sequences through the FP32 reference
/// (`LlamaReference`, computed once) and through simulated models (`SimulatedDecoder`).
///
/// ```swift
/// let study = try AccuracyStudy(weights: fp, sequences: AccuracyStudy.sequences(tokens: 64, length: 32, vocabSize: v, seed: 1))
/// let rows = try study.ablation(weights: fp, permutations: perms)   // SimulationScheme.ablation()
/// ```
public struct AccuracyStudy: Sendable {
    public let sequences: [[Int]]
    /// FP32 reference logits, one matrix per sequence.
    public let reference: [Matrix]

    /// Runs the reference over `sequences`.
    public init(weights: LlamaWeights, sequences: [[Int]]) throws {
        let model = try LlamaReference(weights: weights)
        self.sequences = sequences
        reference = try sequences.map { try model.forward(tokens: $0) }
    }

    /// Evaluation tokens: uniform random ids, `tokens` in all, in sequences of `length`. Use a seed other
    /// than the calibration's.
    public static func sequences(tokens: Int, length: Int, vocabSize: Int, seed: UInt64) throws -> [[Int]] {
        try AtomCalibrator.randomSequences(tokens: tokens, length: length, vocabSize: vocabSize, seed: seed)
    }

    /// Runs `model` over the sequences and compares it with the reference.
    public func measure(_ model: SimulatedModel) throws -> AccuracyMeasurement {
        let decoder = SimulatedDecoder(model)
        return measure(name: model.name, logits: try sequences.map { try decoder.logits(tokens: $0) })
    }

    /// Compares logits (one matrix per sequence, as `reference`) with the reference.
    public func measure(name: String, logits: [Matrix]) -> AccuracyMeasurement {
        precondition(logits.count == reference.count, "\(logits.count) logit matrices for \(reference.count) sequences")
        var difference = 0.0, norm = 0.0, agree = 0, positions = 0
        for (q, r) in zip(logits, reference) {
            precondition(q.rows == r.rows && q.cols == r.cols, "logits of another shape than the reference's")
            for (a, b) in zip(q.values, r.values) {
                let d = Double(a) - Double(b)
                difference += d * d
                norm += Double(b) * Double(b)
            }
            for t in 0..<r.rows where LlamaReference.argmax(q.row(t)) == LlamaReference.argmax(r.row(t)) { agree += 1 }
            positions += r.rows
        }
        return AccuracyMeasurement(name: name, relativeError: (difference / max(norm, .leastNormalMagnitude)).squareRoot(),
                                   topOneAgreement: Double(agree) / Double(max(positions, 1)), positions: positions)
    }

    /// Measures each scheme in turn (one simulated model in memory at a time), calling `each` with every
    /// result as it comes; the reordered and the identity-ordered weights are made once.
    @discardableResult
    public func ablation(weights: LlamaWeights, permutations: [LayerPermutations],
                         schemes: [SimulationScheme] = SimulationScheme.ablation(),
                         each: (AccuracyMeasurement) -> Void = { _ in }) throws -> [AccuracyMeasurement] {
        let identity = Array(repeating: LayerPermutations.identity(weights.config), count: weights.config.numHiddenLayers)
        var reordered: ReorderedWeights?, plain: ReorderedWeights?
        var out: [AccuracyMeasurement] = []
        for scheme in schemes {
            let source: ReorderedWeights
            if scheme.reorders {
                if reordered == nil { reordered = try ReorderedWeights(weights, permutations: permutations) }
                source = try reordered ?? ReorderedWeights(weights, permutations: permutations)
            } else {
                if plain == nil { plain = try ReorderedWeights(weights, permutations: identity) }
                source = try plain ?? ReorderedWeights(weights, permutations: identity)
            }
            let row = try measure(SimulatedModel(source, scheme: scheme))
            each(row)
            out.append(row)
        }
        return out
    }
}
