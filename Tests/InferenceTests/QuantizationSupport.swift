import Foundation
import Model

@testable import Inference

/// Shared fixtures of the quantization tests: the tiny preset synthesized in FP32 (outlier channels
/// included), its calibration, and a few evaluation sequences; built once per process.
enum QuantizationFixture {
    static let weights: LlamaWeights = {
        do {
            return try ModelSynth.weights(config: .tiny(), options: SynthOptions(dtype: .f32, seed: 7))
        } catch {
            fatalError("synthesizing the tiny model failed: \(error)")
        }
    }()

    /// The tiny model's calibration (uniform random tokens, seed 0).
    static let calibration = CalibrationSettings(tokens: 128, sequenceLength: 32, seed: 0)

    static let permutations: [LayerPermutations] = {
        do {
            return try AtomCalibrator.calibrate(weights, calibration)
        } catch {
            fatalError("calibration failed: \(error)")
        }
    }()

    /// Evaluation sequences (another seed than calibration's).
    static let study: AccuracyStudy = {
        do {
            let sequences = try AccuracyStudy.sequences(tokens: 64, length: 32, vocabSize: weights.config.vocabSize, seed: 1)
            return try AccuracyStudy(weights: weights, sequences: sequences)
        } catch {
            fatalError("the reference run failed: \(error)")
        }
    }()

    /// Atom W4A4 settings for the tiny model (32 requested outliers: 128 on hidden inputs, 48 on down_proj's).
    static let atomSettings = QuantizationSettings(method: .w4a4, outliers: 32, calibration: calibration)

    static let atomModel: QuantizedModel = {
        do {
            return try AtomModelQuantizer.quantize(ReorderedWeights(weights, permutations: permutations), settings: atomSettings)
        } catch {
            fatalError("quantizing failed: \(error)")
        }
    }()
}

/// The `ModelError` that `body` throws, if any.
func quantizationError(_ body: () throws -> Void) -> ModelError? {
    do {
        try body()
        return nil
    } catch {
        return error as? ModelError
    }
}

/// The case name of a `ModelError` ("missingTensor", ...).
func errorCase(_ error: ModelError?) -> String? {
    error.map { Mirror(reflecting: $0).children.first?.label ?? "\($0)" }
}

/// A fresh empty directory under the temporary directory.
struct ScratchDirectory {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("lowbit-quant-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func cleanup() { try? FileManager.default.removeItem(at: url) }
}

/// Largest |a - b|.
func largestDifference(_ a: [Float], _ b: [Float]) -> Float {
    zip(a, b).reduce(Float(0)) { max($0, abs($1.0 - $1.1)) }
}
