import Kernels
import Model

/// The simulated-quantization ("fake quant") Llama forward, for accuracy: the data flow of the
/// kernel-backed engine, computed in plain Swift.
///
/// Per layer, for every token of the sequence:
/// 1. `n = rmsnorm(h)[perm_qkv] * inputNorm` (gains stored permuted), quantized per token;
///    q, k, v = the integer products (`IntegerGemm`, the kernels' arithmetic);
/// 2. k and v quantized per (token, head) into the KV cache format (`KVQuantization`: asymmetric,
///    s = (max - min) / levels) and dequantized; keys before RoPE, which is applied after;
/// 3. causal grouped attention over the dequantized cache (Double, `LlamaMath.attend`);
/// 4. the attention output reordered by `perm_o`, quantized, times o_proj; added to h;
/// 5. `m = rmsnorm(h)[perm_gateUp] * postNorm`, quantized; gate and up (their rows are in down_proj's
///    order); `silu(gate) * up` quantized with no reorder; times down_proj; added to h.
/// Logits are `lm_head(rmsnorm(h) * norm)` in FP32, as in the reference.
///
/// With quantized activations, the norm and SiLU use the fused quantize kernels' fp32 arithmetic
/// (`AtomQuantizeReference.rmsScale`, `siluMul`) and activations go through `IntegerRows` with the
/// model's activation format, so codes and scales are those the kernels emit. With FP32 activations
/// they use `LlamaMath` (Double), as `LlamaReference` does, so a reordered FP32 model reproduces the
/// reference up to summation order.
public struct SimulatedDecoder: Sendable {
    public let model: SimulatedModel
    private let inverseFrequencies: [Double]

    public init(_ model: SimulatedModel) {
        self.model = model
        inverseFrequencies = LlamaMath.inverseFrequencies(headDim: model.config.headDim, theta: model.config.ropeTheta)
    }

    /// A quantized model with its method's activation and KV formats.
    public init(_ model: QuantizedModel, kvCache: KVCacheFormat? = nil) {
        self.init(SimulatedModel(model, kvCache: kvCache))
    }

    /// Logits [tokens, vocab] of a new sequence.
    public func logits(tokens: [Int]) throws -> Matrix {
        let c = model.config, h = c.hiddenSize
        guard !tokens.isEmpty else { throw ModelError.invalidInput("no tokens to run") }
        if let bad = tokens.first(where: { !(0..<c.vocabSize).contains($0) }) {
            throw ModelError.invalidInput("token \(bad) is outside the vocabulary 0..<\(c.vocabSize)")
        }
        var hidden: [Float] = tokens.flatMap { model.embedding.row($0) }
        for layer in model.layers {
            attention(layer, &hidden, count: tokens.count)
            mlp(layer, &hidden, count: tokens.count)
        }
        var logits = Matrix(rows: tokens.count, cols: c.vocabSize)
        let normed = (0..<tokens.count).map { t in
            LlamaMath.rmsNorm(Array(hidden[(t * h)..<((t + 1) * h)]), weight: model.finalNorm, eps: c.rmsNormEps)
        }
        for (t, row) in LlamaMath.linear(rows: normed, model.lmHead).enumerated() {
            logits.values.replaceSubrange((t * c.vocabSize)..<((t + 1) * c.vocabSize), with: row)
        }
        return logits
    }

    // MARK: blocks

    private func attention(_ layer: SimulatedLayer, _ hidden: inout [Float], count: Int) {
        let c = model.config, d = c.headDim, kvWidth = c.keyValueWidth
        let n = normReorder(hidden, gains: layer.inputNorm, perm: layer.permutations.qkv, count: count)
        var q = linear(n, layer.q, count: count), k = linear(n, layer.k, count: count), v = linear(n, layer.v, count: count)
        roundTripCache(&k)
        roundTripCache(&v)
        for t in 0..<count {
            for head in 0..<c.numAttentionHeads { rotate(&q, at: t * c.queryWidth + head * d, position: t) }
            for head in 0..<c.numKeyValueHeads { rotate(&k, at: t * kvWidth + head * d, position: t) }
        }
        var attended = [Float](repeating: 0, count: count * c.queryWidth)
        for t in 0..<count {
            for head in 0..<c.numAttentionHeads {
                let start = t * c.queryWidth + head * d
                let out = LlamaMath.attend(query: q[start..<(start + d)], keys: k, values: v, count: t + 1,
                                           rowWidth: kvWidth, offset: head / c.groupSize * d)
                attended.replaceSubrange(start..<(start + d), with: out)
            }
        }
        let reordered = Self.reorder(attended, perm: layer.permutations.o, count: count)
        Self.add(&hidden, linear(reordered, layer.o, count: count))
    }

    private func mlp(_ layer: SimulatedLayer, _ hidden: inout [Float], count: Int) {
        let m = normReorder(hidden, gains: layer.postAttentionNorm, perm: layer.permutations.gateUp, count: count)
        let gate = linear(m, layer.gate, count: count), up = linear(m, layer.up, count: count)
        var product = [Float](repeating: 0, count: gate.count)
        if model.activations != nil {
            for i in product.indices { product[i] = AtomQuantizeReference.siluMul(gate[i], up[i]) }
        } else {
            for i in product.indices { product[i] = Float(Double(LlamaMath.silu(gate[i])) * Double(up[i])) }
        }
        Self.add(&hidden, linear(product, layer.down, count: count))
    }

    // MARK: pieces

    /// Per token: `y[j] = x[perm[j]] * r * gains[j]` with r = 1 / sqrt(mean(x^2) + eps).
    func normReorder(_ x: [Float], gains: [Float], perm: [Int32], count: Int) -> [Float] {
        let k = gains.count, eps = model.config.rmsNormEps
        var y = [Float](repeating: 0, count: x.count)
        x.withUnsafeBufferPointer { xs in
            for t in 0..<count {
                let row = UnsafeBufferPointer(rebasing: xs[(t * k)..<((t + 1) * k)])
                if model.activations != nil {
                    let r = AtomQuantizeReference.rmsScale(row, eps: eps)
                    for j in 0..<k { y[t * k + j] = row[Int(perm[j])] * r * gains[j] }
                } else {
                    var sum = 0.0
                    for v in row { sum += Double(v) * Double(v) }
                    let r = 1 / (sum / Double(k) + Double(eps)).squareRoot()
                    for j in 0..<k { y[t * k + j] = Float(Double(row[Int(perm[j])]) * r * Double(gains[j])) }
                }
            }
        }
        return y
    }

    /// `count` rows of x (row-major) times W^T: FP32 in Double, or quantized activations times integer weights.
    private func linear(_ x: [Float], _ w: SimulatedLinear, count: Int) -> [Float] {
        switch w {
        case .float(let m):
            let k = m.cols
            return LlamaMath.linear(rows: (0..<count).map { t in Array(x[(t * k)..<((t + 1) * k)]) }, m).flatMap { $0 }
        case .integer(let rows):
            var format = model.activations ?? IntegerFormat(bits: 8, groupSize: nil, outliers: 0, clip: 1)
            // Activations share the weight's groups and outlier channels (the kernels need both to match).
            format.outliers = rows.format.outliers
            format.groupSize = rows.format.groupSize
            let a = IntegerRows(quantizing: x, rows: count, k: rows.k, format: format)
            return IntegerGemm.multiply(a, rows)
        }
    }

    /// Each (token, head) row of `x` quantized to the cache format and back.
    private func roundTripCache(_ x: inout [Float]) {
        let format = model.kvCache, d = model.config.headDim
        guard format.isQuantized else { return }
        for start in stride(from: 0, to: x.count, by: d) {
            let stored = KVQuantization.quantize(Array(x[start..<(start + d)]), format: format)
            x.replaceSubrange(start..<(start + d), with: KVQuantization.dequantize(stored, count: d, format: format))
        }
    }

    private func rotate(_ x: inout [Float], at start: Int, position: Int) {
        var part = x[start..<(start + model.config.headDim)]
        LlamaMath.rope(&part, position: position, inverseFrequencies: inverseFrequencies)
        x.replaceSubrange(start..<(start + model.config.headDim), with: part)
    }

    static func reorder(_ x: [Float], perm: [Int32], count: Int) -> [Float] {
        let k = perm.count
        var y = [Float](repeating: 0, count: x.count)
        for t in 0..<count {
            for j in 0..<k { y[t * k + j] = x[t * k + Int(perm[j])] }
        }
        return y
    }

    static func add(_ x: inout [Float], _ y: [Float]) {
        for i in x.indices { x[i] += y[i] }
    }
}
