import Foundation
import Testing
@testable import Model

/// One-layer models small enough to compute by hand: the logits are derived in the comments and
/// recomputed here in Double from those formulas.
@Suite("hand-checked reference models")
struct HandModelTests {
    static let eps: Float = 1e-6

    static func identity(_ n: Int) -> Matrix {
        var m = Matrix(rows: n, cols: n)
        for i in 0..<n { m[i, i] = 1 }
        return m
    }

    static func model(hidden: Int, heads: Int, kvHeads: Int, vocab: Int, embedding: [Float], q: Matrix, k: Matrix,
                      v: Matrix, o: Matrix, lmHead: Matrix) throws -> LlamaReference {
        let config = LlamaConfig(hiddenSize: hidden, intermediateSize: 2, numAttentionHeads: heads, numKeyValueHeads: kvHeads,
                                 numHiddenLayers: 1, vocabSize: vocab, rmsNormEps: eps, headDim: 2)
        let ones = [Float](repeating: 1, count: hidden)
        // The MLP is zero: silu(0) * 0 = 0, so it adds nothing to the residual.
        let layer = LlamaLayerWeights(inputNorm: ones, q: q, k: k, v: v, o: o, postAttentionNorm: ones,
                                      gate: Matrix(rows: 2, cols: hidden), up: Matrix(rows: 2, cols: hidden),
                                      down: Matrix(rows: hidden, cols: 2))
        return try LlamaReference(weights: LlamaWeights(config: config, embedding: Matrix(rows: vocab, cols: hidden, values: embedding),
                                                        layers: [layer], finalNorm: ones, lmHead: lmHead))
    }

    static func close(_ a: [Float], _ b: [Double]) -> Bool {
        zip(a, b).allSatisfy { abs(Double($0) - $1) <= 1e-5 * max(1, abs($1)) }
    }

    /// hidden 4, two query heads of 2 sharing one KV head, q = k = 0 (uniform attention), v = the first two
    /// channels, o = identity, lm_head picks channel 0, channel 1 and channels 2 + 3.
    @Test func uniformAttentionWithSharedKVHead() throws {
        let model = try Self.model(
            hidden: 4, heads: 2, kvHeads: 1, vocab: 3,
            embedding: [1, 0, 0, 0, /**/ 0, 2, 0, 0, /**/ 1, 1, 1, 1],
            q: Matrix(rows: 4, cols: 4), k: Matrix(rows: 2, cols: 4),
            v: Matrix(rows: 2, cols: 4, values: [1, 0, 0, 0, 0, 1, 0, 0]),
            o: Self.identity(4), lmHead: Matrix(rows: 3, cols: 4, values: [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 1]))
        var capture = ActivationCapture(config: model.config, keepRows: true)
        let logits = try model.forward(tokens: [0, 1], capture: &capture)
        let eps = Double(Self.eps)

        // Position 0: h = [1,0,0,0], rmsnorm scale s0 = 1/sqrt(1/4 + eps), v0 = [s0, 0]; attending to itself
        // only, both heads output v0: h = [1 + s0, 0, s0, 0].
        let s0 = 1 / (0.25 + eps).squareRoot()
        let h0 = [1 + s0, 0, s0, 0]
        let f0 = 1 / (h0.map { $0 * $0 }.reduce(0, +) / 4 + eps).squareRoot()
        #expect(Self.close(logits.row(0), [h0[0] * f0, 0, (h0[2] + h0[3]) * f0]), "\(logits.row(0))")

        // Position 1: h = [0,2,0,0], s1 = 1/sqrt(1 + eps), v1 = [0, 2 s1]; scores are 0, so p = [1/2, 1/2]
        // and each head outputs [s0/2, s1]: h = [s0/2, 2 + s1, s0/2, s1].
        let s1 = 1 / (1 + eps).squareRoot()
        let h1 = [s0 / 2, 2 + s1, s0 / 2, s1]
        let f1 = 1 / (h1.map { $0 * $0 }.reduce(0, +) / 4 + eps).squareRoot()
        #expect(Self.close(logits.row(1), [h1[0] * f1, h1[1] * f1, (h1[2] + h1[3]) * f1]), "\(logits.row(1))")
        #expect(Self.close(capture.rows(layer: 0, at: .o).row(1), [s0 / 2, s1, s0 / 2, s1]))
    }

    /// hidden 2, one head of 2, q = k = v = o = identity, lm_head = identity. Position 1's query is
    /// rotated by angle 1 (inv_freq = 1 for d = 2): rotate-half gives q1 = [-a sin 1, a cos 1].
    @Test func ropeAndSoftmaxByHand() throws {
        let model = try Self.model(hidden: 2, heads: 1, kvHeads: 1, vocab: 2, embedding: [1, 0, 0, 1],
                                   q: Self.identity(2), k: Self.identity(2), v: Self.identity(2),
                                   o: Self.identity(2), lmHead: Self.identity(2))
        let logits = try model.forward(tokens: [0, 1])
        let eps = Double(Self.eps)
        let a = 1 / (0.5 + eps).squareRoot()             // rmsnorm of [1, 0] and of [0, 1]

        // Position 0: attends to itself, output n0 = [a, 0]; h = [1 + a, 0].
        let h0 = [1 + a, 0]
        let f0 = 1 / (h0.map { $0 * $0 }.reduce(0, +) / 2 + eps).squareRoot()
        #expect(Self.close(logits.row(0), h0.map { $0 * f0 }))

        // Position 1: k0 = [a, 0] (position 0: no rotation), q1 = k1 = [-a sin 1, a cos 1].
        // Scores / sqrt(2): q1.k0 = -a^2 sin 1, q1.k1 = a^2; output p0 * v0 + p1 * v1 = [p0 a, p1 a].
        let scores = [-a * a * sin(1.0), a * a].map { $0 / 2.0.squareRoot() }
        let m = scores.max() ?? 0
        let e = scores.map { exp($0 - m) }
        let p = e.map { $0 / e.reduce(0, +) }
        let h1 = [p[0] * a, 1 + p[1] * a]
        let f1 = 1 / (h1.map { $0 * $0 }.reduce(0, +) / 2 + eps).squareRoot()
        #expect(Self.close(logits.row(1), h1.map { $0 * f1 }), "\(logits.row(1)) vs \(h1.map { $0 * f1 })")
    }
}
