import Foundation

/// Hugging Face tensor names of a Llama checkpoint.
public enum LlamaTensorName {
    public static let embedding = "model.embed_tokens.weight"
    public static let finalNorm = "model.norm.weight"
    public static let lmHead = "lm_head.weight"

    /// The tensors of one decoder layer.
    public enum Layer: String, CaseIterable, Sendable {
        case inputNorm = "input_layernorm"
        case q = "self_attn.q_proj"
        case k = "self_attn.k_proj"
        case v = "self_attn.v_proj"
        case o = "self_attn.o_proj"
        case postAttentionNorm = "post_attention_layernorm"
        case gate = "mlp.gate_proj"
        case up = "mlp.up_proj"
        case down = "mlp.down_proj"

        /// Whether this is an RMSNorm gain vector (else a linear weight).
        public var isNorm: Bool { self == .inputNorm || self == .postAttentionNorm }

        /// The tensor's shape under `config`: [hidden] for norms, [out, in] for linears.
        public func shape(_ config: LlamaConfig) -> [Int] {
            let h = config.hiddenSize
            switch self {
            case .inputNorm, .postAttentionNorm: return [h]
            case .q: return [config.queryWidth, h]
            case .k, .v: return [config.keyValueWidth, h]
            case .o: return [h, config.queryWidth]
            case .gate, .up: return [config.intermediateSize, h]
            case .down: return [h, config.intermediateSize]
            }
        }
    }

    /// The name of `tensor` in layer `layer`, e.g. "model.layers.3.self_attn.q_proj.weight".
    public static func layer(_ layer: Int, _ tensor: Layer) -> String { "model.layers.\(layer).\(tensor.rawValue).weight" }

    /// Every tensor of a model with `config`, with its shape, in file order (sorted by name).
    public static func all(_ config: LlamaConfig) -> [(name: String, shape: [Int])] {
        var out: [(String, [Int])] = [(embedding, [config.vocabSize, config.hiddenSize]), (finalNorm, [config.hiddenSize])]
        if !config.tieWordEmbeddings { out.append((lmHead, [config.vocabSize, config.hiddenSize])) }
        for i in 0..<config.numHiddenLayers {
            for t in Layer.allCases { out.append((layer(i, t), t.shape(config))) }
        }
        return out.sorted { $0.0 < $1.0 }
    }
}

/// One decoder layer's weights in FP32.
public struct LlamaLayerWeights: Sendable, Equatable {
    public var inputNorm: [Float]
    public var q: Matrix
    public var k: Matrix
    public var v: Matrix
    public var o: Matrix
    public var postAttentionNorm: [Float]
    public var gate: Matrix
    public var up: Matrix
    public var down: Matrix

    public init(inputNorm: [Float], q: Matrix, k: Matrix, v: Matrix, o: Matrix, postAttentionNorm: [Float],
                gate: Matrix, up: Matrix, down: Matrix) {
        self.inputNorm = inputNorm
        self.q = q
        self.k = k
        self.v = v
        self.o = o
        self.postAttentionNorm = postAttentionNorm
        self.gate = gate
        self.up = up
        self.down = down
    }
}

/// A whole Llama model's weights in FP32 (converted from F16/BF16 on load), for the reference forward.
public struct LlamaWeights: Sendable, Equatable {
    public var config: LlamaConfig
    /// [vocab, hidden].
    public var embedding: Matrix
    public var layers: [LlamaLayerWeights]
    /// [hidden].
    public var finalNorm: [Float]
    /// [vocab, hidden]; the embedding when `tie_word_embeddings` is set.
    public var lmHead: Matrix

    public init(config: LlamaConfig, embedding: Matrix, layers: [LlamaLayerWeights], finalNorm: [Float], lmHead: Matrix) {
        self.config = config
        self.embedding = embedding
        self.layers = layers
        self.finalNorm = finalNorm
        self.lmHead = lmHead
    }

    /// Loads a model directory (see `ModelDirectory`). `layers` keeps only the first N decoder layers
    /// (the config is changed to match), which makes a big checkpoint usable for layer-level tests.
    /// Every tensor's shape is checked against config.json; a missing or wrong-shaped tensor throws
    /// an error naming it.
    public static func load(from url: URL, layers: Int? = nil) throws -> LlamaWeights {
        try load(ModelDirectory(url: url), layers: layers)
    }

    /// Loads from an opened model directory.
    public static func load(_ directory: ModelDirectory, layers: Int? = nil) throws -> LlamaWeights {
        var weights = try outer(directory, layers: layers)
        weights.layers = try (0..<weights.config.numHiddenLayers).map { try layer($0, from: directory, config: weights.config) }
        return weights
    }

    /// Everything but the decoder layers (embedding, final norm, lm_head) with the config cut to `layers`
    /// and `layers` left empty: with `layer(_:from:config:)`, a model read one layer at a time.
    public static func outer(_ directory: ModelDirectory, layers: Int? = nil) throws -> LlamaWeights {
        var config = directory.config
        if let layers {
            guard (1...config.numHiddenLayers).contains(layers) else {
                throw ModelError.invalidInput("cannot keep \(layers) layers of a \(config.numHiddenLayers)-layer model")
            }
            config.numHiddenLayers = layers
        }
        let h = config.hiddenSize, vocab = config.vocabSize
        let embedding = try matrix(directory, LlamaTensorName.embedding, [vocab, h])
        let finalNorm = try directory.floats(LlamaTensorName.finalNorm, shape: [h])
        let lmHead = config.tieWordEmbeddings ? embedding : try matrix(directory, LlamaTensorName.lmHead, [vocab, h])
        return LlamaWeights(config: config, embedding: embedding, layers: [], finalNorm: finalNorm, lmHead: lmHead)
    }

    /// Decoder layer `i` of the model in `directory`, shaped by `config`.
    public static func layer(_ i: Int, from directory: ModelDirectory, config: LlamaConfig) throws -> LlamaLayerWeights {
        func m(_ t: LlamaTensorName.Layer) throws -> Matrix { try matrix(directory, LlamaTensorName.layer(i, t), t.shape(config)) }
        func v(_ t: LlamaTensorName.Layer) throws -> [Float] { try directory.floats(LlamaTensorName.layer(i, t), shape: t.shape(config)) }
        return LlamaLayerWeights(
            inputNorm: try v(.inputNorm), q: try m(.q), k: try m(.k), v: try m(.v), o: try m(.o),
            postAttentionNorm: try v(.postAttentionNorm), gate: try m(.gate), up: try m(.up), down: try m(.down))
    }

    private static func matrix(_ directory: ModelDirectory, _ name: String, _ shape: [Int]) throws -> Matrix {
        Matrix(rows: shape[0], cols: shape[1], values: try directory.floats(name, shape: shape))
    }

    /// Checks that every array has the size `config` gives it (for weights built in code).
    public func validate() throws {
        try config.validate()
        let c = config
        func check(_ name: String, _ found: [Int], _ expected: [Int]) throws {
            if found != expected { throw ModelError.wrongShape(tensor: name, expected: expected, found: found) }
        }
        try check(LlamaTensorName.embedding, [embedding.rows, embedding.cols], [c.vocabSize, c.hiddenSize])
        try check(LlamaTensorName.lmHead, [lmHead.rows, lmHead.cols], [c.vocabSize, c.hiddenSize])
        try check(LlamaTensorName.finalNorm, [finalNorm.count], [c.hiddenSize])
        guard layers.count == c.numHiddenLayers else {
            throw ModelError.invalidInput("\(layers.count) layers of weights for a config with num_hidden_layers \(c.numHiddenLayers)")
        }
        for (i, l) in layers.enumerated() {
            let found: [(LlamaTensorName.Layer, [Int])] = [
                (.inputNorm, [l.inputNorm.count]), (.q, [l.q.rows, l.q.cols]), (.k, [l.k.rows, l.k.cols]),
                (.v, [l.v.rows, l.v.cols]), (.o, [l.o.rows, l.o.cols]), (.postAttentionNorm, [l.postAttentionNorm.count]),
                (.gate, [l.gate.rows, l.gate.cols]), (.up, [l.up.rows, l.up.cols]), (.down, [l.down.rows, l.down.cols]),
            ]
            for (t, shape) in found { try check(LlamaTensorName.layer(i, t), shape, t.shape(c)) }
        }
    }
}
