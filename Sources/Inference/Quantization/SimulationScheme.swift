import Kernels
import Model

/// One quantization scheme of the accuracy study: how weights, activations and the KV cache are
/// quantized in the simulated forward (`SimulatedDecoder`).
///
/// Formats here carry no outlier count: with `outliers` set, each linear input of width K keeps
/// `OutlierRule.outliers(requested:width:)` channels (the last ones after reordering) in INT8, in both
/// its weight and its activations.
public struct SimulationScheme: Sendable, Equatable {
    public var name: String
    /// Weight format (nil: FP32 weights).
    public var weights: IntegerFormat?
    /// Activation format at every linear input (nil: FP32 activations).
    public var activations: IntegerFormat?
    /// Requested outlier channels (nil: none).
    public var outliers: Int?
    /// Whether the calibrated permutations are applied (else identity).
    public var reorders: Bool
    /// KV cache format; `.fp32` keeps keys and values as computed.
    public var kvCache: KVCacheFormat

    public init(name: String, weights: IntegerFormat?, activations: IntegerFormat?, outliers: Int?, reorders: Bool, kvCache: KVCacheFormat) {
        precondition((weights == nil) == (activations == nil), "a scheme quantizes both weights and activations, or neither")
        self.name = name
        self.weights = weights
        self.activations = activations
        self.outliers = outliers
        self.reorders = reorders
        self.kvCache = kvCache
    }

    /// Outlier channels of an input of width `width` under this scheme.
    public func outliers(width: Int) throws -> Int {
        guard let outliers else { return 0 }
        return try OutlierRule.outliers(requested: outliers, width: width)
    }

    /// FP32 everything, with the calibrated permutations folded in: must reproduce the reference.
    public static let fp32Reordered = SimulationScheme(
        name: "FP32, reordered weights (bookkeeping check)", weights: nil, activations: nil, outliers: nil, reorders: true, kvCache: .fp32)

    /// The steps of Atom's ablation study (without GPTQ) in order, then W8A8; `outliers` is the requested
    /// outlier count (Atom: 128).
    ///
    /// 1. W4A4 round-to-nearest: INT4 per output channel (weights) and per token (activations), scale
    ///    absmax / 7, no reordering, no outliers, no clip, FP32 KV.
    /// 2. + outliers: reordered, the last O channels in INT8.
    /// 3. + group-128 scales on the normal channels.
    /// 4. + clipping: 0.85 weights, 0.9 activations. This is Atom's W4A4 (`QuantizationMethod.w4a4`).
    /// 5. + INT4 KV cache (asymmetric per token and head): all of Atom.
    /// 6. W8A8 per channel / per token, FP32 KV; 7. the same with an INT8 KV cache.
    public static func ablation(outliers: Int = AtomQuantization.defaultOutliers) -> [SimulationScheme] {
        let g = AtomQuantization.groupSize
        func int4(_ group: Int?, _ clip: Float) -> IntegerFormat { IntegerFormat(bits: 4, groupSize: group, outliers: 0, clip: clip) }
        let int8 = IntegerFormat(bits: 8, groupSize: nil, outliers: 0, clip: 1)
        return [
            SimulationScheme(name: "W4A4 round-to-nearest (per channel / token)", weights: int4(nil, 1), activations: int4(nil, 1),
                             outliers: nil, reorders: false, kvCache: .fp32),
            SimulationScheme(name: "+ reorder, INT8 outliers (\(outliers) asked)", weights: int4(nil, 1), activations: int4(nil, 1),
                             outliers: outliers, reorders: true, kvCache: .fp32),
            SimulationScheme(name: "+ group-\(g) scales", weights: int4(g, 1), activations: int4(g, 1),
                             outliers: outliers, reorders: true, kvCache: .fp32),
            atom(outliers: outliers, kvCache: .fp32, name: "+ clipping 0.85 / 0.9 (Atom W4A4)"),
            atom(outliers: outliers, kvCache: .int4, name: "+ INT4 KV cache (Atom)"),
            SimulationScheme(name: "W8A8 (per channel / token)", weights: int8, activations: int8, outliers: nil, reorders: false, kvCache: .fp32),
            SimulationScheme(name: "W8A8 + INT8 KV cache", weights: int8, activations: int8, outliers: nil, reorders: false, kvCache: .int8),
        ]
    }

    /// Atom's W4A4 with `settings`-style defaults: group 128, clips 0.85 / 0.9, reordered outliers.
    public static func atom(outliers: Int = AtomQuantization.defaultOutliers, kvCache: KVCacheFormat = .int4,
                            name: String = "Atom W4A4") -> SimulationScheme {
        SimulationScheme(
            name: name,
            weights: IntegerFormat(bits: 4, groupSize: AtomQuantization.groupSize, outliers: 0, clip: AtomQuantization.weightClip),
            activations: IntegerFormat(bits: 4, groupSize: AtomQuantization.groupSize, outliers: 0, clip: AtomQuantization.activationClip),
            outliers: outliers, reorders: true, kvCache: kvCache)
    }
}
