import Model

/// One decoder layer's FP32 weights with the reorder permutations folded in (KERNELS.md section 3):
///
/// - input columns of q/k/v by `qkv`, of gate/up by `gateUp`, of o_proj by `o`, of down_proj by `down`;
/// - output rows of gate and up by `down`, so silu(gate) * up comes out already in down_proj's order;
/// - the RMSNorm gains as `w[perm]` (the fused kernel multiplies the reordered row by them);
/// - q/k/v outputs are not permuted (RoPE pairs dimensions i and i + d/2), nor are o_proj's and
///   down_proj's (the residual stream keeps the model's channel order).
///
/// Running this layer with the permutations applied to the norm outputs and the attention output
/// computes exactly what the original layer computes (up to summation order): the invariant the tests
/// check with `SimulatedDecoder`.
public struct ReorderedLayer: Sendable, Equatable {
    public var permutations: LayerPermutations
    /// input_layernorm's gains in the q/k/v input order.
    public var inputNorm: [Float]
    /// post_attention_layernorm's gains in the gate/up input order.
    public var postAttentionNorm: [Float]
    public var q: Matrix
    public var k: Matrix
    public var v: Matrix
    public var o: Matrix
    public var gate: Matrix
    public var up: Matrix
    public var down: Matrix

    /// Folds `p` into `w`.
    public init(_ w: LlamaLayerWeights, _ p: LayerPermutations) {
        permutations = p
        inputNorm = Permutation.gather(w.inputNorm, p.qkv)
        postAttentionNorm = Permutation.gather(w.postAttentionNorm, p.gateUp)
        q = Permutation.columns(w.q, p.qkv)
        k = Permutation.columns(w.k, p.qkv)
        v = Permutation.columns(w.v, p.qkv)
        o = Permutation.columns(w.o, p.o)
        gate = Permutation.rows(Permutation.columns(w.gate, p.gateUp), p.down)
        up = Permutation.rows(Permutation.columns(w.up, p.gateUp), p.down)
        down = Permutation.columns(w.down, p.down)
    }

    /// The linear weights with their names, in `LlamaTensorName.Layer` order.
    public var linears: [(LlamaTensorName.Layer, Matrix)] {
        [(.q, q), (.k, k), (.v, v), (.o, o), (.gate, gate), (.up, up), (.down, down)]
    }
}

/// A whole model with every layer reordered; embedding, final norm and lm_head unchanged.
public struct ReorderedWeights: Sendable, Equatable {
    public var config: LlamaConfig
    public var embedding: Matrix
    public var layers: [ReorderedLayer]
    public var finalNorm: [Float]
    public var lmHead: Matrix

    /// Folds one `LayerPermutations` per layer into `weights`.
    public init(_ weights: LlamaWeights, permutations: [LayerPermutations]) throws {
        try Self.check(weights, permutations: permutations)
        let c = weights.config
        config = c
        embedding = weights.embedding
        layers = zip(weights.layers, permutations).map { ReorderedLayer($0, $1) }
        finalNorm = weights.finalNorm
        lmHead = weights.lmHead
    }

    /// Throws unless `weights` are valid and `permutations` has one valid `LayerPermutations` per layer.
    public static func check(_ weights: LlamaWeights, permutations: [LayerPermutations]) throws {
        try weights.validate()
        let c = weights.config
        guard permutations.count == c.numHiddenLayers else {
            throw ModelError.invalidInput("\(permutations.count) layers of permutations for a \(c.numHiddenLayers)-layer model")
        }
        for (l, p) in permutations.enumerated() {
            for (name, values, width) in p.named(c) where values.count != width || !Permutation.isValid(values) {
                throw ModelError.invalidInput("layer \(l): the \(name) permutation is not a permutation of 0..<\(width)")
            }
        }
    }
}
