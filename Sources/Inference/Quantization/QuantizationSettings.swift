import Kernels
import Model

/// How a whole model's linear layers are quantized.
public enum QuantizationMethod: String, Sendable, CaseIterable, Codable {
    /// Atom: INT4 weights and activations, symmetric, group-128 scales (clip 0.85 weights, 0.9
    /// activations) on the normal channels; INT8 on the outlier channels, which calibration moves to the
    /// end of K. KV cache INT4 asymmetric per (token, head).
    case w4a4
    /// INT8 weights per output channel and activations per token, symmetric, no reordering, no clip.
    /// KV cache INT8 asymmetric per (token, head). The reference point.
    case w8a8

    /// The KV cache format that goes with the method.
    public var kvCache: KVCacheFormat { self == .w4a4 ? .int4 : .int8 }
}

/// Everything that decides a quantized model's numbers besides the weights themselves: stored in
/// the file's `__metadata__` and checked on load.
///
/// Kept in FP32 by every method: the token embedding, the RMSNorm gains (permuted for W4A4), the final
/// norm and lm_head. Quantized: the seven linear layers of every decoder layer.
public struct QuantizationSettings: Sendable, Equatable {
    public var method: QuantizationMethod
    /// Group size along K of the INT4 scales (W4A4); the kernels fix it at 128. 0 (W4A4 ablation
    /// only, not a file format): one scale per row over the K - O normal channels, weights and
    /// activations; the engine stores such a weight with its row scale in every group.
    public var groupSize: Int
    /// Clip of the INT4 group scales: s = absmax * clip / 7.
    public var activationClip: Float
    public var weightClip: Float
    /// Outlier channels asked for; the count used for an input of width K follows `OutlierRule`.
    public var requestedOutliers: Int
    /// How the reorder permutations were calibrated.
    public var calibration: CalibrationSettings

    /// Atom's settings (group 128, clips 0.9 / 0.85) for `.w4a4`; per-channel INT8 without clip or
    /// outliers for `.w8a8`.
    public init(method: QuantizationMethod, outliers: Int = AtomQuantization.defaultOutliers,
                calibration: CalibrationSettings = CalibrationSettings()) {
        self.method = method
        self.calibration = calibration
        switch method {
        case .w4a4:
            groupSize = AtomQuantization.groupSize
            activationClip = AtomQuantization.activationClip
            weightClip = AtomQuantization.weightClip
            requestedOutliers = outliers
        case .w8a8:
            groupSize = 0
            activationClip = 1
            weightClip = 1
            requestedOutliers = 0
        }
    }

    /// Outlier channels of a linear layer with `width` input channels (0 for W8A8).
    public func outliers(width: Int) throws -> Int {
        method == .w4a4 ? try OutlierRule.outliers(requested: requestedOutliers, width: width) : 0
    }

    /// Whether these are the settings the fused quantize kernels implement (W4A4, group 128,
    /// activation clip 0.9: both fixed in their generated C). Other W4A4 settings (the ablation's)
    /// quantize activations in Swift before gemm-w4a4.
    public var isAtomKernelFormat: Bool {
        method == .w4a4 && groupSize == AtomQuantization.groupSize && activationClip == AtomQuantization.activationClip
    }

    /// The format of the normal channels of weights (`clip` = weightClip) or activations
    /// (`clip` = activationClip) with `outliers` INT8 channels at the end.
    public func integerFormat(clip: Float, outliers: Int) -> IntegerFormat {
        switch method {
        case .w4a4: IntegerFormat(bits: 4, groupSize: groupSize == 0 ? nil : groupSize, outliers: outliers, clip: clip)
        case .w8a8: IntegerFormat(bits: 8, groupSize: nil, outliers: 0, clip: 1)
        }
    }

    /// Checks the W4A4 group size (128, or 0 for the per-row ablation) and the clips.
    public func validate() throws {
        if method == .w4a4, groupSize != AtomQuantization.groupSize, groupSize != 0 {
            throw ModelError.invalidInput("W4A4 groups are \(AtomQuantization.groupSize) channels (gemm-w4a4 fixes them) or 0 for one scale per row; got \(groupSize)")
        }
        for (name, clip) in [("activation clip", activationClip), ("weight clip", weightClip)] where !(clip > 0 && clip <= 1) {
            throw ModelError.invalidInput("the \(name) \(clip) must be in (0, 1]")
        }
    }
}

/// How calibration tokens are made: seeded uniform random token ids, run as independent sequences
/// through the FP32 reference (`AtomCalibrator`).
public struct CalibrationSettings: Sendable, Equatable {
    /// Tokens in all (the last sequence may be shorter).
    public var tokens: Int
    /// Tokens per sequence.
    public var sequenceLength: Int
    public var seed: UInt64

    public init(tokens: Int = 256, sequenceLength: Int = 64, seed: UInt64 = 0) {
        self.tokens = tokens
        self.sequenceLength = sequenceLength
        self.seed = seed
    }
}

/// How many outlier channels a linear input of width K keeps in INT8.
///
/// The W4A4 kernels need K' = K - O to be a positive multiple of the group size G = 128 (and O a
/// multiple of 4). The rule: O = K - 128 * floor((K - requested) / 128), the smallest count of at least
/// `requested` that leaves whole groups. Channels of what would be a partial last group join the
/// outliers, so a layer keeps at least the requested channels in 8 bits, never fewer.
///
/// | K | requested 128 | requested 32 | requested 0 |
/// |---|---|---|---|
/// | 4096 (Llama-7B hidden) | 128 | 128 | 0 |
/// | 11008 (Llama-7B intermediate) | 128 | 128 | 0 |
/// | 256 (tiny hidden) | 128 | 128 | 0 |
/// | 688 (tiny intermediate) | 176 | 48 | 48 |
public enum OutlierRule {
    public static func outliers(requested: Int, width k: Int) throws -> Int {
        let g = AtomQuantization.groupSize
        guard requested >= 0 else { throw ModelError.invalidInput("outliers must be 0 or more, got \(requested)") }
        guard k % 4 == 0 else {
            throw ModelError.invalidInput("an input width of \(k) is not a multiple of 4; the W4A4 kernels need one")
        }
        guard requested <= k - g else {
            throw ModelError.invalidInput("\(requested) outlier channels leave no whole group of \(g) in an input of width \(k); ask for at most \(k - g)")
        }
        return k - g * ((k - requested) / g)
    }
}
