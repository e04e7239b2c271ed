import Foundation
import Kernels
import Model
import Testing

@testable import Inference

/// The accuracy study through the engine's kernels (`lowbit quantize accuracy --engine`) on the tiny
/// preset, and the engine on a quantized model file.
@Suite("Engine ablation", .serialized)
struct EngineAblationTests {
    /// Every ablation step on the kernels, beside the simulation of the same scheme. Measured (tiny,
    /// seed 7, 64 tokens; engine and simulation agree to 1e-8): RTN 0.2532 (top-1 61%), + outliers
    /// 0.0742, + groups 0.0726, + clipping 0.0704 (92%), + INT4 KV 0.1154; W8A8 0.0927.
    @Test func engineErrorsOrderAsAtomsAblation() throws {
        let weights = QuantizationFixture.weights, study = QuantizationFixture.study
        let schemes = SimulationScheme.ablation()
        let engineSchemes = try schemes.map { try EngineScheme($0, config: weights.config) }
        let engine = try study.engineAblation(weights: weights, permutations: QuantizationFixture.permutations, schemes: engineSchemes,
                                              runtime: testRuntime())
        let simulated = try study.ablation(weights: weights, permutations: QuantizationFixture.permutations, schemes: schemes)
        for (e, s) in zip(engine, simulated) {
            print("\(e.name): engine \(e.relativeError) (top-1 \(e.topOneAgreement)), simulation \(s.relativeError) (top-1 \(s.topOneAgreement))")
        }
        let rtn = engine[0].relativeError, outliers = engine[1].relativeError, groups = engine[2].relativeError
        let clip = engine[3].relativeError, kv4 = engine[4].relativeError, w8 = engine[5].relativeError
        #expect(engine.prefix(5).allSatisfy { $0.relativeError <= rtn }, "round-to-nearest is the worst W4A4 step")
        #expect(outliers < 0.5 * rtn, "the INT8 outlier channels help the most")
        #expect(groups <= 1.01 * outliers)
        #expect(clip < groups, "clipping helps")
        #expect(kv4 > clip, "an INT4 KV cache adds error")
        #expect(w8 < rtn)
        #expect(engine[0].topOneAgreement < engine[3].topOneAgreement)
        // Engine and simulation are the same arithmetic for the W4A4 rows (down_proj's 48 INT8 channels
        // in the engine's RTN row carry zeros here: RTN quantizes every small gate/up weight to 0).
        for (e, s) in zip(engine.prefix(5), simulated) {
            #expect(abs(e.relativeError - s.relativeError) <= 1e-5 * s.relativeError + 1e-9, "\(e.name)")
        }
        #expect(engineSchemes[0].notes.contains { $0.contains("down keeps 48 INT8 channels") })
        #expect(engineSchemes[3].notes.isEmpty && engineSchemes[4].notes.isEmpty, "Atom runs on the fused kernels as simulated")
    }

    /// Full Atom (W4A4 + INT4 KV) from a quantized model: engine logits against the simulation of the
    /// same `QuantizedModel`, position by position (measured: 3e-7).
    @Test func engineMatchesSimulationForAtom() throws {
        let model = QuantizationFixture.atomModel, tokens = QuantizationFixture.study.sequences[0]
        var options = EngineOptions()
        options.maxContext = tokens.count
        let engine = try Engine(quantized: model, options: options, runtime: testRuntime())
        let actual = try engine.step([(engine.makeSequence(), tokens)], logits: .all)[0]
        let expected = try SimulatedDecoder(model).logits(tokens: tokens)
        let worst = tokens.indices.map { relativeError(actual.row($0), expected.row($0)) }.max() ?? 0
        print("Atom engine vs simulation of the same quantized model: \(worst)")
        #expect(worst < 1e-5)
        #expect(engine.kvCache == .int4 && engine.mode == .w4a4)
    }

    /// `lowbit quantize`'s file, loaded, gives the engine the weights quantizing at load gives it:
    /// the logits are bit for bit the same, for W4A4 and W8A8. The file holds no FP32 linear weight.
    @Test(arguments: [QuantizationMethod.w4a4, .w8a8])
    func savedFileEqualsQuantizeAtLoad(method: QuantizationMethod) throws {
        let weights = try tinyWeights()
        let settings = QuantizationSettings(method: method, calibration: CalibrationSettings(tokens: 24, sequenceLength: 12, seed: 4))
        let dir = EngineTempDir()
        try AtomModelQuantizer.quantize(weights, settings: settings).save(to: dir.url)
        let file = try SafetensorsFile(contentsOf: dir.url.appendingPathComponent(QuantizedModelFile.weightsFile))
        #expect(!file.tensors.keys.contains { $0.hasSuffix("_proj.weight") }, "no FP32 linear weight in the file")
        let loaded = try QuantizedModel.load(from: dir.url)
        let runtime = try testRuntime()
        var options = EngineOptions()
        options.maxContext = 16
        options.quantization = settings
        let mode: EngineMode = method == .w4a4 ? .w4a4 : .w8a8
        let atLoad = try Engine(model: weights, mode: mode, options: options, runtime: runtime)
        let fromFile = try Engine(quantized: loaded, options: options, runtime: runtime)
        #expect(fromFile.mode == mode && fromFile.permutations == atLoad.permutations)
        let tokens = [3, 17, 400, 9, 250, 77, 1, 64]
        let a = try atLoad.step([(atLoad.makeSequence(), tokens)], logits: .all)[0]
        let b = try fromFile.step([(fromFile.makeSequence(), tokens)], logits: .all)[0]
        #expect(a.values == b.values, "largest difference \(largestDifference(a.values, b.values))")
        #expect(try atLoad.generate(prompt: [5, 6], steps: 4) == fromFile.generate(prompt: [5, 6], steps: 4))
    }

    /// A W4A4 model whose outlier counts do not match its settings is refused with the layer named.
    @Test func mismatchedQuantizedModelIsRefused() throws {
        var model = QuantizationFixture.atomModel
        model.settings.requestedOutliers = 0  // the weights keep 128 outlier channels on q/k/v
        #expect {
            _ = try Engine(quantized: model, options: EngineOptions(), runtime: testRuntime())
        } throws: { error in
            "\(error)".contains("q_proj has 128 outlier channels")
        }
    }
}
