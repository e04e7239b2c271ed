import Foundation
import Inference
import Kernels
import Model
import Testing

/// The W4A4 engine against a plain-Swift simulation of Atom on the same model: every linear layer's
/// input reordered by the engine's calibrated permutation and fake-quantized (quantized, then
/// dequantized) with `AtomQuantization` at the activation clip, every weight reordered the same way
/// and fake-quantized at the weight clip, the down projection's order folded into gate/up rows, K and
/// V fake-quantized to INT4 per (token, head) before RoPE, everything else in Double as the reference.
/// Agreement within 1e-3 (measured: 3e-7; simulated Atom is 0.4 away from FP32) shows the engine wires
/// permutations, norms, outliers and the cache the way the method says.
@Suite("Engine Atom simulation")
struct EngineAtomSimulationTests {
    @Test func w4a4MatchesSimulatedAtom() throws {
        let weights = try tinyWeights(layers: 2)
        var options = EngineOptions()
        options.maxContext = 32
        let engine = try Engine(model: weights, mode: .w4a4, options: options, runtime: testRuntime())
        let permutations = try #require(engine.permutations), settings = try #require(engine.quantization)
        let tokens = try AtomCalibrator.randomSequences(tokens: 12, length: 12, vocabSize: weights.config.vocabSize, seed: 5)[0]
        let actual = try engine.step([(engine.makeSequence(), tokens)], logits: .all)[0]
        let expected = try AtomSimulation(weights: weights, permutations: permutations, settings: settings).logits(tokens)
        let fp32 = try LlamaReference(weights: weights).forward(tokens: tokens)
        var worst = 0.0, distance = 0.0
        for t in tokens.indices {
            worst = max(worst, relativeError(actual.row(t), expected.row(t)))
            distance = max(distance, relativeError(expected.row(t), fp32.row(t)))
        }
        print("W4A4 engine vs simulated Atom: \(worst); simulated Atom vs FP32: \(distance)")
        #expect(worst < 1e-3)
        #expect(distance > 0.05, "the simulation should differ from FP32 by quantization error")
    }
}

/// Atom's W4A4 with an INT4 KV cache, simulated with fake quantization.
struct AtomSimulation {
    let weights: LlamaWeights
    let permutations: [LayerPermutations]
    let settings: QuantizationSettings
    var config: LlamaConfig { weights.config }

    /// Reorders the columns of `x` ([rows][k]) by `perm` and fake-quantizes them.
    func activations(_ x: [Float], rows: Int, perm: [Int32]) throws -> [Float] {
        let k = perm.count
        var y = [Float](repeating: 0, count: x.count)
        for r in 0..<rows { for j in 0..<k { y[r * k + j] = x[r * k + Int(perm[j])] } }
        return dequantize(AtomQuantization.quantize(y, rows: rows, k: k, outliers: try settings.outliers(width: k), clip: AtomQuantization.activationClip))
    }

    /// The weight with columns reordered by `perm` (rows by `rowOrder`), fake-quantized.
    func weight(_ w: Matrix, perm: [Int32], rowOrder: [Int32]? = nil) throws -> Matrix {
        var y = [Float](repeating: 0, count: w.rows * w.cols)
        for r in 0..<w.rows {
            let src = Int(rowOrder?[r] ?? Int32(r))
            for j in 0..<w.cols { y[r * w.cols + j] = w[src, Int(perm[j])] }
        }
        let q = AtomQuantization.quantize(y, rows: w.rows, k: w.cols, outliers: try settings.outliers(width: w.cols), clip: AtomQuantization.weightClip)
        return Matrix(rows: w.rows, cols: w.cols, values: dequantize(q))
    }

    func dequantize(_ q: AtomQuantization.Quantized) -> [Float] {
        var y = [Float](repeating: 0, count: q.rows * q.k)
        for r in 0..<q.rows {
            for j in 0..<q.normal { y[r * q.k + j] = Float(q.code(r, j)) * q.scales[r * q.groups + j / AtomQuantization.groupSize] }
            for j in 0..<q.outliers { y[r * q.k + q.normal + j] = Float(q.outlierCodes[r * q.outliers + j]) * q.outlierScales[r] }
        }
        return y
    }

    func linear(_ x: [Float], rows: Int, _ w: Matrix) -> [Float] {
        (0..<rows).flatMap { LlamaMath.linear(Array(x[($0 * w.cols)..<(($0 + 1) * w.cols)]), w) }
    }

    func norm(_ h: [[Float]], _ w: [Float]) -> [Float] { h.flatMap { LlamaMath.rmsNorm($0, weight: w, eps: config.rmsNormEps) } }

    /// A row of one KV head fake-quantized to the INT4 cache format.
    func cacheRow(_ x: ArraySlice<Float>) -> [Float] {
        KVQuantization.dequantize(KVQuantization.quantize(Array(x), format: .int4), count: x.count, format: .int4)
    }

    func logits(_ tokens: [Int]) throws -> Matrix {
        let c = config, t = tokens.count, d = c.headDim
        let frequencies = LlamaMath.inverseFrequencies(headDim: d, theta: c.ropeTheta)
        var h = tokens.map { weights.embedding.row($0) }
        for (l, w) in weights.layers.enumerated() {
            let p = permutations[l]
            let x = try activations(norm(h, w.inputNorm), rows: t, perm: p.qkv)
            var q = linear(x, rows: t, try weight(w.q, perm: p.qkv))
            let k = linear(x, rows: t, try weight(w.k, perm: p.qkv)), v = linear(x, rows: t, try weight(w.v, perm: p.qkv))
            var keys = [Float](repeating: 0, count: t * c.keyValueWidth), values = keys
            for r in 0..<t {
                for head in 0..<c.numKeyValueHeads {
                    let range = (r * c.keyValueWidth + head * d)..<(r * c.keyValueWidth + (head + 1) * d)
                    var kr = cacheRow(k[range])[...]
                    LlamaMath.rope(&kr, position: r, inverseFrequencies: frequencies)
                    keys.replaceSubrange(range, with: kr)
                    values.replaceSubrange(range, with: cacheRow(v[range]))
                }
                for head in 0..<c.numAttentionHeads {
                    var part = q[(r * c.queryWidth + head * d)..<(r * c.queryWidth + (head + 1) * d)]
                    LlamaMath.rope(&part, position: r, inverseFrequencies: frequencies)
                    q.replaceSubrange((r * c.queryWidth + head * d)..<(r * c.queryWidth + (head + 1) * d), with: part)
                }
            }
            var attention: [Float] = []
            for r in 0..<t {
                for head in 0..<c.numAttentionHeads {
                    attention += LlamaMath.attend(
                        query: q[(r * c.queryWidth + head * d)..<(r * c.queryWidth + (head + 1) * d)], keys: keys, values: values,
                        count: r + 1, rowWidth: c.keyValueWidth, offset: (head / c.groupSize) * d)
                }
            }
            let o = linear(try activations(attention, rows: t, perm: p.o), rows: t, try weight(w.o, perm: p.o))
            for r in 0..<t { for i in 0..<c.hiddenSize { h[r][i] += o[r * c.hiddenSize + i] } }
            let m = try activations(norm(h, w.postAttentionNorm), rows: t, perm: p.gateUp)
            let g = linear(m, rows: t, try weight(w.gate, perm: p.gateUp, rowOrder: p.down))
            let u = linear(m, rows: t, try weight(w.up, perm: p.gateUp, rowOrder: p.down))
            let a = LlamaMath.swiglu(gate: g, up: u)
            let identity = (0..<Int32(c.intermediateSize)).map { $0 }
            let y = linear(try activations(a, rows: t, perm: identity), rows: t, try weight(w.down, perm: p.down))
            for r in 0..<t { for i in 0..<c.hiddenSize { h[r][i] += y[r * c.hiddenSize + i] } }
        }
        return Matrix(rows: t, cols: c.vocabSize, values: linear(norm(h, weights.finalNorm), rows: t, weights.lmHead))
    }
}
