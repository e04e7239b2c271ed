import Foundation
import Testing
@testable import Model

@Suite("FP32 reference forward")
struct ReferenceForwardTests {
    static func microModel(layers: Int = 2, seed: UInt64 = 4) throws -> LlamaReference {
        try LlamaReference(weights: ModelSynth.weights(config: microConfig(layers: layers), options: SynthOptions(dtype: .f32, seed: seed)))
    }

    static let tokens = [5, 17, 3, 95, 0, 42, 42, 8, 61, 30, 77, 12]

    @Test func incrementalDecodeEqualsFullForward() throws {
        let model = try Self.microModel()
        let full = try model.forward(tokens: Self.tokens)
        #expect(full.isFinite)

        var cache = model.makeCache()
        var incremental = try model.prefill(tokens: Array(Self.tokens[0..<5]), cache: &cache).values
        for t in Self.tokens[5...] { incremental += try model.decode(token: t, cache: &cache) }
        #expect(cache.length == Self.tokens.count)
        #expect(maxDifference(incremental, full.values) <= 1e-5)

        var oneByOne = model.makeCache()
        var stepped: [Float] = []
        for t in Self.tokens { stepped += try model.decode(token: t, cache: &oneByOne) }
        #expect(maxDifference(stepped, full.values) <= 1e-5)
    }

    /// A prompt's rows go through each weight row together (`linear(rows:)`, split across the cores when
    /// large), yet every output is its row's own dot product, bit for bit: the full forward and the
    /// token-by-token decode agree exactly.
    @Test func batchedLinearIsThePerRowLinear() throws {
        var rng = SynthRandom(seed: 9)
        // 37 x 29 runs on one thread; 1031 x 1024 with 5 rows is large enough to split across the cores.
        for (n, k) in [(37, 29), (1031, 1024)] {
            let w = Matrix(rows: n, cols: k, values: (0..<(n * k)).map { _ in Float.random(in: -1...1, using: &rng) })
            let xs = (0..<5).map { _ in (0..<k).map { _ in Float.random(in: -3...3, using: &rng) } }
            let expected = xs.map { x in
                (0..<n).map { o in
                    x.withUnsafeBufferPointer { xp in
                        w.values.withUnsafeBufferPointer { Float(LlamaMath.dot(xp, UnsafeBufferPointer(rebasing: $0[(o * k)..<((o + 1) * k)]))) }
                    }
                }
            }
            #expect(LlamaMath.linear(rows: xs, w) == expected)
            #expect(xs.map { LlamaMath.linear($0, w) } == expected)
            #expect(LlamaMath.linear(rows: [], w).isEmpty)
        }

        let model = try Self.microModel()
        let full = try model.forward(tokens: Self.tokens)
        var cache = model.makeCache()
        var stepped: [Float] = []
        for t in Self.tokens { stepped += try model.decode(token: t, cache: &cache) }
        #expect(stepped == full.values)
    }

    @Test func positionsMatter() throws {
        let model = try Self.microModel()
        let a = try model.forward(tokens: [5, 17, 3]).row(2)
        let b = try model.forward(tokens: [17, 5, 3]).row(2)
        #expect(maxDifference(a, b) > 1e-3, "attention sees order through RoPE and causality")
    }

    @Test func greedyGenerationFollowsTheArgmaxOfTheFullForward() throws {
        let model = try Self.microModel()
        let prompt = [5, 17, 3]
        let generated = try model.generate(prompt: prompt, steps: 5)
        #expect(generated.count == 5)
        let logits = try model.forward(tokens: prompt + generated.dropLast())
        for (i, token) in generated.enumerated() {
            #expect(LlamaReference.argmax(logits.row(prompt.count - 1 + i)) == token)
        }
        #expect(try model.generate(prompt: prompt, steps: 0).isEmpty)
    }

    @Test func captureSumsMatchTheNormedInputs() throws {
        let model = try Self.microModel(layers: 1)
        var capture = ActivationCapture(config: model.config, keepRows: true)
        _ = try model.forward(tokens: [1, 2, 3], capture: &capture)
        let w = model.weights
        var expected = [Double](repeating: 0, count: 64)
        for t in [1, 2, 3] {
            let n = LlamaMath.rmsNorm(w.embedding.row(t), weight: w.layers[0].inputNorm, eps: model.config.rmsNormEps)
            for c in 0..<64 { expected[c] += Double(n[c]) * Double(n[c]) }
        }
        let stats = capture.statistics(layer: 0, at: .qkv)
        #expect(stats.tokens == 3 && zip(stats.sumsOfSquares, expected).allSatisfy { abs($0 - $1) <= 1e-9 * max(1, $1) })
        #expect(capture.rows(layer: 0, at: .down).rows == 3 && capture.rows(layer: 0, at: .down).cols == 128)
        #expect(capture.rows(layer: 0, at: .residual).row(1) == w.embedding.row(2))
    }

    @Test func badInputsAreRefused() throws {
        let model = try Self.microModel()
        #expect(errorCase { _ = try model.forward(tokens: [96]) } == "invalidInput")
        #expect(errorCase { _ = try model.forward(tokens: []) } == "invalidInput")
        var foreign = KVCache(config: microConfig(layers: 1))
        #expect(errorCase { _ = try model.decode(token: 1, cache: &foreign) } == "invalidInput")
    }

    // MARK: hand-checked pieces

    @Test func rmsNormRopeSoftmaxSiluByHand() {
        let n = LlamaMath.rmsNorm([1, 2, 3, 4], weight: [1, 1, 2, 0.5], eps: 0)
        let r = (7.5 as Double).squareRoot()   // mean of squares (1 + 4 + 9 + 16) / 4
        #expect(maxDifference(n, [Float(1 / r), Float(2 / r), Float(6 / r), Float(2 / r)]) <= 1e-7)

        // d = 4, theta 10000: inverse frequencies 1 and 10000^(-1/2) = 0.01; pairs (0, 2) and (1, 3).
        let inv = LlamaMath.inverseFrequencies(headDim: 4, theta: 10000)
        #expect(abs(inv[0] - 1) < 1e-15 && abs(inv[1] - 0.01) < 1e-15)
        var x: ArraySlice<Float> = [1, 2, 3, 4]
        LlamaMath.rope(&x, position: 1, inverseFrequencies: inv)
        let expected: [Double] = [1 * cos(1) - 3 * sin(1), 2 * cos(0.01) - 4 * sin(0.01), 3 * cos(1) + 1 * sin(1), 4 * cos(0.01) + 2 * sin(0.01)]
        #expect(maxDifference(Array(x), expected.map(Float.init)) <= 1e-6)
        var zero: ArraySlice<Float> = [1, 2, 3, 4]
        LlamaMath.rope(&zero, position: 0, inverseFrequencies: inv)
        #expect(Array(zero) == [1, 2, 3, 4], "position 0 is the identity")

        let p = LlamaMath.softmax([0, log(3.0)])
        #expect(abs(p[0] - 0.25) < 1e-15 && abs(p[1] - 0.75) < 1e-15)
        #expect(LlamaMath.softmax([1000, 1000]) == [0.5, 0.5], "max subtracted: no overflow")
        #expect(abs(LlamaMath.silu(1) - Float(1 / (1 + exp(-1.0)))) < 1e-7 && LlamaMath.silu(0) == 0)
    }
}
