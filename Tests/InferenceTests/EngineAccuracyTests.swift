import Foundation
import Inference
import Kernels
import Model
import Testing

@Suite("Engine accuracy", .serialized)
struct EngineAccuracyTests {
    /// FP32 engine = the reference forward within 1e-5 (normwise on each row of logits), for a
    /// batched prefill of five tokens and then six decode steps, and the same greedy tokens.
    @Test func fp32MatchesReference() throws {
        let weights = try tinyWeights()
        let reference = try LlamaReference(weights: weights)
        let prompt = [1, 7, 42, 300, 5], decoded = [11, 250, 3, 499, 64, 128]
        let expected = try reference.forward(tokens: prompt + decoded)
        var options = EngineOptions()
        options.maxContext = 64
        let engine = try Engine(model: weights, mode: .fp32, options: options, runtime: testRuntime())
        let sequence = try engine.makeSequence()
        let prefill = try engine.step([(sequence, prompt)], logits: .all)[0]
        var worst = 0.0
        for r in 0..<prompt.count { worst = max(worst, relativeError(prefill.row(r), expected.row(r))) }
        for (i, token) in decoded.enumerated() {
            let logits = try engine.step([(sequence, [token])])[0]
            worst = max(worst, relativeError(logits.values, expected.row(prompt.count + i)))
        }
        #expect(worst <= 1e-5, "largest normwise relative error \(worst)")
        #expect(try engine.length(of: sequence) == prompt.count + decoded.count)
        engine.release(sequence)
        #expect(try engine.generate(prompt: prompt, steps: 6) == reference.generate(prompt: prompt, steps: 6))
    }

    /// Mean normwise relative error of a mode's logits against FP32 over a 24-token prefill.
    func error(_ mode: EngineMode, _ weights: LlamaWeights, outliers: Int = AtomQuantization.defaultOutliers, runtime: EngineRuntime) throws -> Double {
        let tokens = try AtomCalibrator.randomSequences(tokens: 24, length: 24, vocabSize: weights.config.vocabSize, seed: 99)[0]
        func logits(_ mode: EngineMode) throws -> Matrix {
            var options = EngineOptions()
            options.maxContext = 32
            options.quantization.requestedOutliers = outliers
            let engine = try Engine(model: weights, mode: mode, options: options, runtime: runtime)
            return try engine.step([(engine.makeSequence(), tokens)], logits: .all)[0]
        }
        let base = try logits(.fp32), other = try logits(mode)
        return (0..<tokens.count).map { relativeError(other.row($0), base.row($0)) }.reduce(0, +) / Double(tokens.count)
    }

    /// W8A8 and Atom W4A4 against FP32 on the tiny synthesized model, whose activations carry outlier
    /// channels 45-65x the median channel at the q/k/v and gate/up inputs (`lowbit model run`):
    /// measured mean logit errors are W8A8 0.079 and W4A4 0.082 (Atom close to W8A8, as in the paper);
    /// W4A4 with the minimal outlier split (K = 256 allows 0 or 128 outlier channels; 688 allows 48 or
    /// 176) is worse. The bounds leave room for other seeds and compilers.
    @Test func quantizedModesTrackFP32() throws {
        let weights = try tinyWeights()
        let runtime = try testRuntime()
        let w8 = try error(.w8a8, weights, runtime: runtime)
        let w4 = try error(.w4a4, weights, runtime: runtime)
        let w4Minimal = try error(.w4a4, weights, outliers: 0, runtime: runtime)
        print("logit error vs FP32: W8A8 \(w8), W4A4 \(w4), W4A4 with minimal outliers \(w4Minimal)")
        #expect(w8 < 0.15)
        #expect(w4 < 0.15)
        #expect(w4 < 1.3 * w8, "Atom W4A4 stays close to W8A8")
        #expect(w4 < w4Minimal, "the INT8 outlier channels help")
    }

    /// `OutlierRule` (the one rule of quantizer and engine) at the widths of Llama-7B and the tiny preset.
    @Test func outlierCounts() throws {
        #expect(try OutlierRule.outliers(requested: 128, width: 256) == 128)
        #expect(try OutlierRule.outliers(requested: 128, width: 688) == 176)
        #expect(try OutlierRule.outliers(requested: 128, width: 4096) == 128)
        #expect(try OutlierRule.outliers(requested: 128, width: 11008) == 128)
        #expect(try OutlierRule.outliers(requested: 0, width: 688) == 48)
        #expect(try OutlierRule.outliers(requested: 0, width: 4096) == 0)
        #expect(throws: ModelError.self) { try OutlierRule.outliers(requested: 128, width: 130) }
    }
}
