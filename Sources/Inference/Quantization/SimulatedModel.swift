import Kernels
import Model

/// A linear layer of the simulated forward: FP32, or integer codes multiplied by `IntegerGemm`.
public enum SimulatedLinear: Sendable, Equatable {
    case float(Matrix)
    case integer(IntegerRows)

    /// Output channels.
    public var rows: Int {
        switch self {
        case .float(let w): return w.rows
        case .integer(let w): return w.rows
        }
    }
}

/// One decoder layer of a simulated model (weights reordered as in `ReorderedLayer`).
public struct SimulatedLayer: Sendable, Equatable {
    public var permutations: LayerPermutations
    public var inputNorm: [Float]
    public var postAttentionNorm: [Float]
    public var q, k, v, o, gate, up, down: SimulatedLinear
}

/// A model ready for `SimulatedDecoder`: FP32 or fake-quantized weights, the activation format every
/// quantized linear input gets, and the KV cache format.
public struct SimulatedModel: Sendable {
    public let name: String
    public let config: LlamaConfig
    public let embedding: Matrix
    public let layers: [SimulatedLayer]
    public let finalNorm: [Float]
    public let lmHead: Matrix
    /// Activation format at quantized linear inputs (its outlier count is each weight's); nil: FP32.
    public let activations: IntegerFormat?
    public let kvCache: KVCacheFormat

    /// `scheme` applied to FP32 weights; `permutations` (from calibration) are used when the scheme
    /// reorders, identity otherwise.
    public init(_ weights: LlamaWeights, permutations: [LayerPermutations], scheme: SimulationScheme) throws {
        let c = weights.config
        let used = scheme.reorders ? permutations : Array(repeating: LayerPermutations.identity(c), count: c.numHiddenLayers)
        try self.init(ReorderedWeights(weights, permutations: used), scheme: scheme)
    }

    /// `scheme` applied to weights already reordered (the scheme's `reorders` is not consulted).
    public init(_ reordered: ReorderedWeights, scheme: SimulationScheme) throws {
        func linear(_ w: Matrix) throws -> SimulatedLinear {
            guard var format = scheme.weights else { return .float(w) }
            format.outliers = try scheme.outliers(width: w.cols)
            return .integer(IntegerRows(quantizing: w.values, rows: w.rows, k: w.cols, format: format))
        }
        var layers: [SimulatedLayer] = []
        for l in reordered.layers {
            layers.append(SimulatedLayer(
                permutations: l.permutations, inputNorm: l.inputNorm, postAttentionNorm: l.postAttentionNorm,
                q: try linear(l.q), k: try linear(l.k), v: try linear(l.v), o: try linear(l.o),
                gate: try linear(l.gate), up: try linear(l.up), down: try linear(l.down)))
        }
        name = scheme.name
        config = reordered.config
        embedding = reordered.embedding
        self.layers = layers
        finalNorm = reordered.finalNorm
        // Quantized schemes keep lm_head in FP16, as Atom and the quantized engines do.
        lmHead = scheme.weights == nil ? reordered.lmHead : reordered.lmHead.halfRounded
        activations = scheme.activations
        kvCache = scheme.kvCache
    }

    /// A quantized model as the kernels would run it: its stored weights, activations quantized the
    /// method's way (Atom: INT4 group-128 clip 0.9 plus INT8 outliers; W8A8: INT8 per token), and its
    /// method's KV cache unless `kvCache` says otherwise.
    public init(_ model: QuantizedModel, kvCache: KVCacheFormat? = nil, name: String? = nil) {
        let s = model.settings
        func linear(_ w: QuantizedWeight) -> SimulatedLinear { .integer(w.integerRows(s)) }
        layers = model.layers.map { l in
            SimulatedLayer(
                permutations: l.permutations, inputNorm: l.inputNorm, postAttentionNorm: l.postAttentionNorm,
                q: linear(l.q), k: linear(l.k), v: linear(l.v), o: linear(l.o), gate: linear(l.gate), up: linear(l.up),
                down: linear(l.down))
        }
        self.name = name ?? "\(s.method.rawValue) model"
        config = model.config
        embedding = model.embedding
        finalNorm = model.finalNorm
        lmHead = model.lmHead.halfRounded
        activations = s.integerFormat(clip: s.activationClip, outliers: 0)
        self.kvCache = kvCache ?? s.method.kvCache
    }
}
