/// The plain FP32 Llama decoder, for testing faster and quantized engines against.
///
/// Per layer: `h += o_proj(attention(rope(q_proj(n)), rope(k_proj(n)), v_proj(n)))` with
/// `n = rmsnorm(h) * input_layernorm`, then `h += down_proj(silu(gate_proj(m)) * up_proj(m))` with
/// `m = rmsnorm(h) * post_attention_layernorm`; logits are `lm_head(rmsnorm(h) * norm)`. Attention is
/// causal and grouped (query head j reads KV head j / (heads / kv_heads)), scaled by 1/sqrt(head_dim);
/// RoPE uses Hugging Face's rotate-half pairs (i, i + d/2). Activations are Float; every reduction is
/// accumulated in Double (`LlamaMath`).
///
/// One code path serves both uses: `forward(tokens:)` runs a fresh sequence, `prefill`/`decode` extend a
/// `KVCache`, so any split of a sequence into prefill and decode steps gives the full forward's logits.
/// Positions past `max_position_embeddings` are not refused (RoPE is defined there); single-threaded
/// and unblocked on purpose: llama-7b runs at about 0.3 s per token per 2 layers.
///
/// ```swift
/// let model = try LlamaReference(weights: LlamaWeights.load(from: dir))
/// let logits = try model.forward(tokens: [1, 2, 3])            // [3, vocab]
/// var cache = model.makeCache()
/// _ = try model.prefill(tokens: [1, 2], cache: &cache)
/// let last = try model.decode(token: 3, cache: &cache)          // == logits.row(2)
/// ```
public struct LlamaReference: Sendable {
    public let weights: LlamaWeights
    public var config: LlamaConfig { weights.config }
    private let inverseFrequencies: [Double]

    /// Checks the weights' shapes against their config.
    public init(weights: LlamaWeights) throws {
        try weights.validate()
        self.weights = weights
        inverseFrequencies = LlamaMath.inverseFrequencies(headDim: weights.config.headDim, theta: weights.config.ropeTheta)
    }

    /// Logits [tokens, vocab] for every position of a new sequence.
    public func forward(tokens: [Int]) throws -> Matrix {
        var cache = makeCache()
        var capture: ActivationCapture?
        return try run(tokens, &cache, &capture)
    }

    /// Logits for every position, recording activations into `capture`.
    public func forward(tokens: [Int], capture: inout ActivationCapture) throws -> Matrix {
        var cache = makeCache()
        return try prefill(tokens: tokens, cache: &cache, capture: &capture)
    }

    /// An empty KV cache for one sequence of this model.
    public func makeCache() -> KVCache { KVCache(config: config) }

    /// The hidden states leaving the last decoder layer for one new sequence whose states enter the first
    /// layer as `hidden` (a row per token, positions from 0), recording activations into `capture`: the
    /// layers of `forward` without the embedding and lm_head, for a model run one layer at a time (a
    /// one-layer `LlamaReference` per layer, the states passed along).
    public func layers(hidden: [[Float]], capture: inout ActivationCapture) throws -> [[Float]] {
        try check(capture)
        guard !hidden.isEmpty, hidden.allSatisfy({ $0.count == config.hiddenSize }) else {
            throw ModelError.invalidInput("hidden states need at least one row of \(config.hiddenSize) values")
        }
        var cache = makeCache()
        var states = hidden
        var recording: ActivationCapture? = capture
        try decoderLayers(&states, start: 0, &cache, &recording)
        capture = recording!
        return states
    }

    /// Runs `tokens` at positions `cache.length...`, appending their keys and values to `cache`;
    /// returns their logits [tokens, vocab].
    public func prefill(tokens: [Int], cache: inout KVCache) throws -> Matrix {
        var capture: ActivationCapture?
        return try run(tokens, &cache, &capture)
    }

    /// `prefill`, recording activations into `capture`.
    public func prefill(tokens: [Int], cache: inout KVCache, capture: inout ActivationCapture) throws -> Matrix {
        var optional: ActivationCapture? = capture
        let logits = try run(tokens, &cache, &optional)
        if let optional { capture = optional }
        return logits
    }

    /// Runs one token at position `cache.length`; returns its logits [vocab].
    public func decode(token: Int, cache: inout KVCache) throws -> [Float] {
        try prefill(tokens: [token], cache: &cache).values
    }

    /// Greedy decoding: runs `prompt`, then appends the most likely token (lowest id on ties) `steps`
    /// times. Returns the generated tokens only.
    public func generate(prompt: [Int], steps: Int) throws -> [Int] {
        guard steps >= 0 else { throw ModelError.invalidInput("steps must be 0 or more, got \(steps)") }
        var cache = makeCache()
        var logits = try prefill(tokens: prompt, cache: &cache)
        var last = logits.row(logits.rows - 1)
        var out: [Int] = []
        for step in 0..<steps {
            let next = Self.argmax(last)
            out.append(next)
            if step + 1 < steps {
                logits = try prefill(tokens: [next], cache: &cache)
                last = logits.values
            }
        }
        return out
    }

    /// Index of the largest value (the first one on ties; NaN never wins).
    public static func argmax(_ x: [Float]) -> Int {
        var best = 0
        for i in x.indices where x[i] > x[best] || (x[best].isNaN && !x[i].isNaN) { best = i }
        return best
    }

    // MARK: the decoder

    private func run(_ tokens: [Int], _ cache: inout KVCache, _ capture: inout ActivationCapture?) throws -> Matrix {
        let c = config
        guard !tokens.isEmpty else { throw ModelError.invalidInput("no tokens to run") }
        if let bad = tokens.first(where: { !(0..<c.vocabSize).contains($0) }) {
            throw ModelError.invalidInput("token \(bad) is outside the vocabulary 0..<\(c.vocabSize)")
        }
        guard cache.layers == c.numHiddenLayers, cache.rowWidth == c.keyValueWidth else {
            throw ModelError.invalidInput("the KV cache was made for another model (\(cache.layers) layers, rows of \(cache.rowWidth))")
        }
        if let capture { try check(capture) }
        var hidden = tokens.map { weights.embedding.row($0) }
        try decoderLayers(&hidden, start: cache.length, &cache, &capture)
        for _ in tokens { cache.advance() }
        var logits = Matrix(rows: tokens.count, cols: c.vocabSize)
        let rows = LlamaMath.linear(rows: hidden.map { LlamaMath.rmsNorm($0, weight: weights.finalNorm, eps: c.rmsNormEps) }, weights.lmHead)
        for (t, row) in rows.enumerated() {
            logits.values.replaceSubrange((t * c.vocabSize)..<((t + 1) * c.vocabSize), with: row)
        }
        return logits
    }

    /// Every decoder layer over `hidden` (tokens at positions `start...`), appending to `cache`.
    private func decoderLayers(_ hidden: inout [[Float]], start: Int, _ cache: inout KVCache, _ capture: inout ActivationCapture?) throws {
        for (l, w) in weights.layers.enumerated() {
            try attentionBlock(l, w, start: start, &hidden, &cache, &capture)
            mlpBlock(l, w, &hidden, &capture)
        }
    }

    private func check(_ capture: ActivationCapture) throws {
        guard capture.config.numHiddenLayers == config.numHiddenLayers, capture.config.hiddenSize == config.hiddenSize else {
            throw ModelError.invalidInput("the activation capture was made for another model")
        }
    }

    /// `h += o_proj(attention(...))` for every token; appends the tokens' K and V to the cache.
    private func attentionBlock(_ l: Int, _ w: LlamaLayerWeights, start: Int, _ hidden: inout [[Float]],
                                _ cache: inout KVCache, _ capture: inout ActivationCapture?) throws {
        let c = config, d = c.headDim
        var normed: [[Float]] = []
        for h in hidden {
            capture?.record(layer: l, .residual, h)
            let n = LlamaMath.rmsNorm(h, weight: w.inputNorm, eps: c.rmsNormEps)
            capture?.record(layer: l, .qkv, n)
            normed.append(n)
        }
        let qs = LlamaMath.linear(rows: normed, w.q), ks = LlamaMath.linear(rows: normed, w.k), vs = LlamaMath.linear(rows: normed, w.v)
        var queries: [[Float]] = []
        for t in hidden.indices {
            var q = qs[t][...], k = ks[t][...]
            for head in 0..<c.numAttentionHeads { rotate(&q, head: head, position: start + t) }
            for head in 0..<c.numKeyValueHeads { rotate(&k, head: head, position: start + t) }
            cache.append(layer: l, key: Array(k), value: vs[t])
            queries.append(Array(q))
        }
        var attentions: [[Float]] = []
        for t in hidden.indices {
            var attention = [Float]()
            attention.reserveCapacity(c.queryWidth)
            for head in 0..<c.numAttentionHeads {
                let kvHead = head / c.groupSize
                attention += LlamaMath.attend(query: queries[t][(head * d)..<((head + 1) * d)], keys: cache.keys[l],
                                              values: cache.values[l], count: start + t + 1,
                                              rowWidth: c.keyValueWidth, offset: kvHead * d)
            }
            capture?.record(layer: l, .o, attention)
            attentions.append(attention)
        }
        for (t, o) in LlamaMath.linear(rows: attentions, w.o).enumerated() { Self.addInPlace(&hidden[t], o) }
    }

    /// `h += down_proj(silu(gate_proj(m)) * up_proj(m))` for every token.
    private func mlpBlock(_ l: Int, _ w: LlamaLayerWeights, _ hidden: inout [[Float]], _ capture: inout ActivationCapture?) {
        // Each capture point still sees the tokens in order (its statistics are its own).
        let ms = hidden.map { LlamaMath.rmsNorm($0, weight: w.postAttentionNorm, eps: config.rmsNormEps) }
        for m in ms { capture?.record(layer: l, .gateUp, m) }
        let gates = LlamaMath.linear(rows: ms, w.gate), ups = LlamaMath.linear(rows: ms, w.up)
        let activations = zip(gates, ups).map { LlamaMath.swiglu(gate: $0, up: $1) }
        for a in activations { capture?.record(layer: l, .down, a) }
        for (t, y) in LlamaMath.linear(rows: activations, w.down).enumerated() { Self.addInPlace(&hidden[t], y) }
    }

    private func rotate(_ x: inout ArraySlice<Float>, head: Int, position: Int) {
        let d = config.headDim
        var part = x[(head * d)..<((head + 1) * d)]
        LlamaMath.rope(&part, position: position, inverseFrequencies: inverseFrequencies)
        x[(head * d)..<((head + 1) * d)] = part
    }

    private static func addInPlace(_ x: inout [Float], _ y: [Float]) {
        for i in x.indices { x[i] += y[i] }
    }
}
