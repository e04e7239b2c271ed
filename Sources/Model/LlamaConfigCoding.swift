import Foundation

extension LlamaConfig {
    private enum Key: String, CodingKey {
        case hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
        case numAttentionHeads = "num_attention_heads", numKeyValueHeads = "num_key_value_heads"
        case numHiddenLayers = "num_hidden_layers", vocabSize = "vocab_size"
        case rmsNormEps = "rms_norm_eps", ropeTheta = "rope_theta"
        case maxPositionEmbeddings = "max_position_embeddings", tieWordEmbeddings = "tie_word_embeddings"
        case headDim = "head_dim", torchDtype = "torch_dtype", architectures, modelType = "model_type"
        case hiddenAct = "hidden_act", ropeScaling = "rope_scaling"
        case attentionBias = "attention_bias", mlpBias = "mlp_bias"
    }

    /// The part of `rope_scaling` that names it.
    private struct RopeScaling: Decodable {
        var type: String?
        var rope_type: String?
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Key.self)
        let heads = try c.decode(Int.self, forKey: .numAttentionHeads)
        let hidden = try c.decode(Int.self, forKey: .hiddenSize)
        self.init(
            hiddenSize: hidden,
            intermediateSize: try c.decode(Int.self, forKey: .intermediateSize),
            numAttentionHeads: heads,
            numKeyValueHeads: try c.decodeIfPresent(Int.self, forKey: .numKeyValueHeads),
            numHiddenLayers: try c.decode(Int.self, forKey: .numHiddenLayers),
            vocabSize: try c.decode(Int.self, forKey: .vocabSize),
            rmsNormEps: try c.decodeIfPresent(Float.self, forKey: .rmsNormEps) ?? 1e-6,
            ropeTheta: try c.decodeIfPresent(Float.self, forKey: .ropeTheta) ?? 10000,
            maxPositionEmbeddings: try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? 2048,
            tieWordEmbeddings: try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? false,
            headDim: try c.decodeIfPresent(Int.self, forKey: .headDim),
            torchDtype: try c.decodeIfPresent(String.self, forKey: .torchDtype),
            architectures: try c.decodeIfPresent([String].self, forKey: .architectures),
            modelType: try c.decodeIfPresent(String.self, forKey: .modelType)
        )
        if let act = try c.decodeIfPresent(String.self, forKey: .hiddenAct), act != "silu" {
            unsupported.append("hidden_act is \(act); only silu (SwiGLU) is implemented")
        }
        if let scaling = try c.decodeIfPresent(RopeScaling.self, forKey: .ropeScaling) {
            unsupported.append("rope_scaling (\(scaling.rope_type ?? scaling.type ?? "unnamed")) is set; only plain RoPE is implemented")
        }
        if try c.decodeIfPresent(Bool.self, forKey: .attentionBias) == true {
            unsupported.append("attention_bias is true; projections without bias only")
        }
        if try c.decodeIfPresent(Bool.self, forKey: .mlpBias) == true {
            unsupported.append("mlp_bias is true; projections without bias only")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        try c.encode(hiddenSize, forKey: .hiddenSize)
        try c.encode(intermediateSize, forKey: .intermediateSize)
        try c.encode(numAttentionHeads, forKey: .numAttentionHeads)
        try c.encode(numKeyValueHeads, forKey: .numKeyValueHeads)
        try c.encode(numHiddenLayers, forKey: .numHiddenLayers)
        try c.encode(vocabSize, forKey: .vocabSize)
        try c.encode(rmsNormEps, forKey: .rmsNormEps)
        try c.encode(ropeTheta, forKey: .ropeTheta)
        try c.encode(maxPositionEmbeddings, forKey: .maxPositionEmbeddings)
        try c.encode(tieWordEmbeddings, forKey: .tieWordEmbeddings)
        try c.encode(headDim, forKey: .headDim)
        try c.encode("silu", forKey: .hiddenAct)
        try c.encodeIfPresent(torchDtype, forKey: .torchDtype)
        try c.encodeIfPresent(architectures, forKey: .architectures)
        try c.encodeIfPresent(modelType, forKey: .modelType)
    }
}

extension LlamaConfig {
    /// Names accepted by `preset(named:layers:)`.
    public static let presetNames = ["tiny", "llama-7b"]

    /// A small GQA model for tests: 2 layers, hidden 256, 4 query heads of 64, 2 KV heads,
    /// intermediate 688, vocabulary 512.
    public static func tiny(layers: Int = 2) -> LlamaConfig {
        LlamaConfig(hiddenSize: 256, intermediateSize: 688, numAttentionHeads: 4, numKeyValueHeads: 2,
                    numHiddenLayers: layers, vocabSize: 512, rmsNormEps: 1e-5, ropeTheta: 10000,
                    maxPositionEmbeddings: 512, headDim: 64)
    }

    /// Llama-2-7B's shape: hidden 4096, intermediate 11008, 32 heads of 128 (no GQA), 32 layers,
    /// vocabulary 32000, eps 1e-5, RoPE theta 10000, 4096 positions. `layers` keeps the first N.
    public static func llama7B(layers: Int = 32) -> LlamaConfig {
        LlamaConfig(hiddenSize: 4096, intermediateSize: 11008, numAttentionHeads: 32, numKeyValueHeads: 32,
                    numHiddenLayers: layers, vocabSize: 32000, rmsNormEps: 1e-5, ropeTheta: 10000,
                    maxPositionEmbeddings: 4096, headDim: 128)
    }

    /// The preset called `name` ("tiny" or "llama-7b"), with `layers` layers if given.
    public static func preset(named name: String, layers: Int? = nil) throws -> LlamaConfig {
        let config: LlamaConfig
        switch name.lowercased() {
        case "tiny": config = tiny(layers: layers ?? 2)
        case "llama-7b", "llama7b", "7b": config = llama7B(layers: layers ?? 32)
        default:
            throw ModelError.invalidConfig("unknown preset \(name); presets are \(presetNames.joined(separator: ", "))")
        }
        try config.validate()
        return config
    }
}
