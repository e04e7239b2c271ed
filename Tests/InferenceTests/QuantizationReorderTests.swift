import Foundation
import Kernels
import Model
import Testing

@testable import Inference

@Suite("Quantization: calibration and reorder bookkeeping")
struct QuantizationReorderTests {
    /// The key invariant: with the calibrated permutations folded into the weights (input columns,
    /// gate/up output rows, norm gains) and applied to the norm and attention outputs at run time, the
    /// FP32 model computes the reference's logits.
    @Test func reorderedFP32ModelReproducesTheReference() throws {
        let fixture = QuantizationFixture.self
        let moved = fixture.permutations.contains { !$0.isIdentity }
        #expect(moved, "calibration should move the outlier channels")
        let model = try SimulatedModel(fixture.weights, permutations: fixture.permutations, scheme: .fp32Reordered)
        let decoder = SimulatedDecoder(model)
        for (tokens, reference) in zip(fixture.study.sequences, fixture.study.reference) {
            let logits = try decoder.logits(tokens: tokens)
            #expect(largestDifference(logits.values, reference.values) <= 1e-5)
        }
        #expect(try fixture.study.measure(model).relativeError <= 1e-6)
    }

    /// A wrong fold (here: gate/up rows not permuted by down_proj's order) breaks the invariant.
    @Test func aMissingFoldIsCaught() throws {
        let fixture = QuantizationFixture.self
        var reordered = try ReorderedWeights(fixture.weights, permutations: fixture.permutations)
        let layer = fixture.weights.layers[0], p = fixture.permutations[0]
        reordered.layers[0].gate = Permutation.columns(layer.gate, p.gateUp)
        reordered.layers[0].up = Permutation.columns(layer.up, p.gateUp)
        let model = try SimulatedModel(reordered, scheme: .fp32Reordered)
        #expect(try fixture.study.measure(model).relativeError > 1e-2)
    }

    /// The synthesized outlier channels are the largest by sum of squares, so they end last.
    @Test func calibrationPutsTheOutlierChannelsLast() throws {
        let plan = try SynthPlan(config: .tiny(), options: SynthOptions(dtype: .f32, seed: 7))
        for (l, p) in QuantizationFixture.permutations.enumerated() {
            let count = plan.outlierChannels.count
            for perm in [p.qkv, p.gateUp] {
                #expect(Set(perm.suffix(count).map(Int.init)) == Set(plan.outlierChannels), "layer \(l)")
            }
            let upRows = Set(plan.upRows[l].map(\.row))
            #expect(upRows.isSubset(of: Set(p.down.suffix(48).map(Int.init))), "layer \(l): scaled up_proj rows are down_proj input outliers")
            for perm in [p.qkv, p.o, p.gateUp, p.down] { #expect(Permutation.isValid(perm)) }
        }
    }

    @Test func calibrationIsSeededAndTokenSplitsAreWhole() throws {
        let a = try AtomCalibrator.randomSequences(tokens: 70, length: 32, vocabSize: 512, seed: 3)
        #expect(a.map(\.count) == [32, 32, 6])
        #expect(a == (try AtomCalibrator.randomSequences(tokens: 70, length: 32, vocabSize: 512, seed: 3)))
        #expect(a != (try AtomCalibrator.randomSequences(tokens: 70, length: 32, vocabSize: 512, seed: 4)))
        #expect(a.joined().allSatisfy { (0..<512).contains($0) })
        #expect(quantizationError { _ = try AtomCalibrator.randomSequences(tokens: 0, length: 32, vocabSize: 512, seed: 3) } != nil)
    }

    @Test func permutationHelpers() {
        let w = Matrix(rows: 2, cols: 3, values: [1, 2, 3, 4, 5, 6])
        #expect(Permutation.columns(w, [2, 0, 1]).values == [3, 1, 2, 6, 4, 5])
        #expect(Permutation.rows(w, [1, 0]).values == [4, 5, 6, 1, 2, 3])
        #expect(Permutation.gather([10, 20, 30], [2, 0, 1]) == [30, 10, 20])
        #expect(Permutation.isValid([2, 0, 1]))
        #expect(!Permutation.isValid([0, 0, 1]))
        #expect(!Permutation.isValid([0, 3, 1]))
        #expect(!Permutation.isValid([0, -1, 1]))
    }

    @Test func outlierRule() throws {
        let cases: [(requested: Int, width: Int, outliers: Int)] = [
            (128, 4096, 128), (128, 11008, 128), (0, 4096, 0), (32, 4096, 128), (129, 4096, 256),
            (128, 256, 128), (32, 256, 128), (0, 256, 0), (128, 688, 176), (32, 688, 48), (0, 688, 48),
        ]
        for c in cases {
            let o = try OutlierRule.outliers(requested: c.requested, width: c.width)
            #expect(o == c.outliers, "requested \(c.requested) of \(c.width)")
            #expect(o >= c.requested && (c.width - o) % 128 == 0 && c.width - o >= 128 && o % 4 == 0)
        }
        #expect(quantizationError { _ = try OutlierRule.outliers(requested: 129, width: 256) } != nil)
        #expect(quantizationError { _ = try OutlierRule.outliers(requested: -1, width: 256) } != nil)
        #expect(quantizationError { _ = try OutlierRule.outliers(requested: 2, width: 258) } != nil)
        #expect(try QuantizationSettings(method: .w8a8).outliers(width: 4096) == 0)
    }

    @Test func reorderingRejectsWhatIsNotAPermutation() throws {
        var bad = QuantizationFixture.permutations
        bad[1].o[3] = bad[1].o[4]
        let error = quantizationError { _ = try ReorderedWeights(QuantizationFixture.weights, permutations: bad) }
        #expect(error?.description.contains("layer 1: the o permutation") == true)
        let short = Array(QuantizationFixture.permutations.prefix(1))
        #expect(quantizationError { _ = try ReorderedWeights(QuantizationFixture.weights, permutations: short) } != nil)
    }
}
