import Foundation

/// A Llama decoder's shape and constants, as in a Hugging Face `config.json`.
///
/// Decoding fills Hugging Face's defaults: `num_key_value_heads` = `num_attention_heads`,
/// `rope_theta` 10000, `tie_word_embeddings` false, `head_dim` = hidden / heads, `rms_norm_eps` 1e-6,
/// `max_position_embeddings` 2048. Keys lowbit does not implement (`rope_scaling`, biases, an
/// activation other than SiLU) are rejected by `validate()` rather than silently ignored.
public struct LlamaConfig: Sendable, Equatable, Codable {
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numAttentionHeads: Int
    public var numKeyValueHeads: Int
    public var numHiddenLayers: Int
    public var vocabSize: Int
    public var rmsNormEps: Float
    public var ropeTheta: Float
    public var maxPositionEmbeddings: Int
    public var tieWordEmbeddings: Bool
    /// Per-head dimension of queries, keys and values.
    public var headDim: Int
    /// The checkpoint's storage type as Hugging Face spells it ("float16", "bfloat16", "float32").
    public var torchDtype: String?
    public var architectures: [String]?
    public var modelType: String?
    /// Set when the file asks for something lowbit does not implement; `validate()` reports it.
    public var unsupported: [String] = []

    public init(hiddenSize: Int, intermediateSize: Int, numAttentionHeads: Int, numKeyValueHeads: Int? = nil,
                numHiddenLayers: Int, vocabSize: Int, rmsNormEps: Float = 1e-5, ropeTheta: Float = 10000,
                maxPositionEmbeddings: Int = 2048, tieWordEmbeddings: Bool = false, headDim: Int? = nil,
                torchDtype: String? = "float16", architectures: [String]? = ["LlamaForCausalLM"], modelType: String? = "llama") {
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.numAttentionHeads = numAttentionHeads
        self.numKeyValueHeads = numKeyValueHeads ?? numAttentionHeads
        self.numHiddenLayers = numHiddenLayers
        self.vocabSize = vocabSize
        self.rmsNormEps = rmsNormEps
        self.ropeTheta = ropeTheta
        self.maxPositionEmbeddings = maxPositionEmbeddings
        self.tieWordEmbeddings = tieWordEmbeddings
        self.headDim = headDim ?? (numAttentionHeads > 0 ? hiddenSize / numAttentionHeads : 0)
        self.torchDtype = torchDtype
        self.architectures = architectures
        self.modelType = modelType
    }

    // MARK: derived sizes

    /// Query heads per KV head.
    public var groupSize: Int { numAttentionHeads / numKeyValueHeads }
    /// Output width of q_proj (input width of o_proj).
    public var queryWidth: Int { numAttentionHeads * headDim }
    /// Output width of k_proj and v_proj.
    public var keyValueWidth: Int { numKeyValueHeads * headDim }

    /// Parameters of one decoder layer.
    public var parametersPerLayer: Int {
        2 * hiddenSize + hiddenSize * (queryWidth + 2 * keyValueWidth) + queryWidth * hiddenSize
            + 3 * hiddenSize * intermediateSize
    }

    /// All parameters (embedding, layers, final norm, and lm_head unless tied).
    public var parameterCount: Int {
        vocabSize * hiddenSize * (tieWordEmbeddings ? 1 : 2) + numHiddenLayers * parametersPerLayer + hiddenSize
    }

    // MARK: validation

    /// Checks sizes and divisibility; throws `ModelError.invalidConfig` naming the key and the fix.
    public func validate() throws {
        func fail(_ message: String) throws -> Never { throw ModelError.invalidConfig("config.json: \(message)") }
        let positive: [(String, Int)] = [
            ("hidden_size", hiddenSize), ("intermediate_size", intermediateSize),
            ("num_attention_heads", numAttentionHeads), ("num_key_value_heads", numKeyValueHeads),
            ("num_hidden_layers", numHiddenLayers), ("vocab_size", vocabSize),
            ("max_position_embeddings", maxPositionEmbeddings), ("head_dim", headDim),
        ]
        for (key, value) in positive where value <= 0 { try fail("\(key) is \(value); it must be at least 1") }
        if hiddenSize % numAttentionHeads != 0 {
            try fail("hidden_size \(hiddenSize) is not divisible by num_attention_heads \(numAttentionHeads)")
        }
        if numAttentionHeads % numKeyValueHeads != 0 {
            try fail("num_attention_heads \(numAttentionHeads) is not divisible by num_key_value_heads \(numKeyValueHeads) (grouped-query attention needs whole groups)")
        }
        if headDim % 2 != 0 { try fail("head_dim \(headDim) is odd; RoPE rotates pairs of dimensions") }
        if !(rmsNormEps > 0) || !rmsNormEps.isFinite { try fail("rms_norm_eps \(rmsNormEps) must be a positive number") }
        if !(ropeTheta > 1) || !ropeTheta.isFinite { try fail("rope_theta \(ropeTheta) must be a number above 1") }
        if let first = unsupported.first { try fail("\(first); lowbit implements the plain Llama decoder only") }
    }

    // MARK: JSON

    /// Decodes and validates a config.json.
    public static func decode(_ data: Data, location: String = "config.json") throws -> LlamaConfig {
        let config: LlamaConfig
        do {
            config = try JSONDecoder().decode(LlamaConfig.self, from: data)
        } catch let error as DecodingError {
            throw ModelError.invalidConfig("\(location): \(Self.explain(error))")
        } catch {
            throw ModelError.invalidConfig("\(location): \(error.localizedDescription)")
        }
        try config.validate()
        return config
    }

    /// Reads and validates `directory/config.json` (or the file itself if `url` is not a directory).
    public static func load(from url: URL) throws -> LlamaConfig {
        var isDirectory: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory)
        let file = exists && !isDirectory.boolValue ? url : url.appendingPathComponent("config.json")
        guard exists, let data = FileManager.default.contents(atPath: file.path) else {
            throw ModelError.invalidConfig("\(file.path): missing or unreadable; a model directory needs a Hugging Face config.json")
        }
        return try decode(data, location: file.path)
    }

    /// Pretty-printed JSON with sorted keys, in Hugging Face's spelling.
    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self)
    }

    private static func explain(_ error: DecodingError) -> String {
        func path(_ c: DecodingError.Context) -> String { c.codingPath.map(\.stringValue).joined(separator: ".") }
        switch error {
        case let .keyNotFound(key, _): return "required key \(key.stringValue) is missing"
        case let .typeMismatch(type, c): return "\(path(c)) is not a \(type) (\(c.debugDescription))"
        case let .valueNotFound(type, c): return "\(path(c)) is null; expected a \(type)"
        case let .dataCorrupted(c): return c.codingPath.isEmpty ? "not valid JSON (\(c.debugDescription))" : "\(path(c)): \(c.debugDescription)"
        @unknown default: return "\(error)"
        }
    }
}
