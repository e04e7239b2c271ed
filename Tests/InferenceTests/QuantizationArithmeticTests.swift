import Foundation
import KernelKit
import Kernels
import Model
import Testing

@testable import Inference

/// The simulation computes what the kernels compute: the same codes and scales as the Atom format and
/// the fused quantize kernels' reference, and the GEMM references' outputs bit for bit.
@Suite("Quantization: simulation arithmetic")
struct QuantizationArithmeticTests {
    static func rows(_ count: Int, k: Int, outliers: Int, seed: UInt64) -> [Float] {
        var rng = SeededGenerator(seed: seed)
        return GemmW4A4Reference.rows(count, k: k, outliers: outliers, rng: &rng)
    }

    @Test(arguments: [0, 48, 128]) func integerRowsAreTheAtomFormat(outliers: Int) {
        let k = 256 + outliers, x = Self.rows(5, k: k, outliers: outliers, seed: 1)
        let format = IntegerFormat(bits: 4, groupSize: 128, outliers: outliers, clip: 0.9)
        let atom = AtomQuantization.quantize(x, rows: 5, k: k, outliers: outliers, clip: 0.9)
        #expect(IntegerRows(quantizing: x, rows: 5, k: k, format: format) == IntegerRows(atom: atom, clip: 0.9))
    }

    @Test func integerGemmIsTheW4A4KernelReference() {
        let k = 384, o = 128
        let a = AtomQuantization.quantize(Self.rows(3, k: k, outliers: o, seed: 2), rows: 3, k: k, outliers: o, clip: 0.9)
        let w = AtomQuantization.quantize(Self.rows(17, k: k, outliers: o, seed: 3), rows: 17, k: k, outliers: o, clip: 0.85)
        let y = IntegerGemm.multiply(IntegerRows(atom: a, clip: 0.9), IntegerRows(atom: w, clip: 0.85))
        #expect(y == GemmW4A4Reference.compute(a: a, w: w))
    }

    @Test func integerGemmIsTheW8A8KernelReference() {
        let (m, n, k) = (3, 17, 200)
        let inputs = GemmW8A8Reference.inputs(m: m, n: n, k: k, seed: 4)
        let y = IntegerGemm.multiply(IntegerRows(int8: inputs.a, scales: inputs.aScale, rows: m, k: k),
                                     IntegerRows(int8: inputs.w, scales: inputs.wScale, rows: n, k: k))
        let expected = inputs.a.withUnsafeBufferPointer { a in
            inputs.aScale.withUnsafeBufferPointer { sa in
                inputs.w.withUnsafeBufferPointer { w in
                    inputs.wScale.withUnsafeBufferPointer { sw in
                        GemmW8A8Reference.compute(a: a.baseAddress!, aScale: sa.baseAddress!, w: w.baseAddress!, wScale: sw.baseAddress!, m: m, n: n, k: k)
                    }
                }
            }
        }
        #expect(y == expected)
    }

    /// rmsnorm + reorder with permuted gains, then the activation format: the codes
    /// rmsnorm-reorder-quantize emits (which takes the original gains and the permutation).
    @Test func normReorderQuantizeIsTheFusedKernel() throws {
        let inputs = AtomQuantizeInputs.random(op: .rmsnormReorderQuantize, m: 4, k: 256, outliers: 128, seed: 5)
        let expected = AtomQuantizeReference.rmsnormReorderQuantize(
            x: inputs.x, weight: inputs.weight, perm: inputs.perm, eps: inputs.eps, rows: 4, k: 256, outliers: 128)
        let decoder = SimulatedDecoder(QuantizationFixture.atomModel)
        #expect(decoder.model.config.rmsNormEps == inputs.eps)
        let y = decoder.normReorder(inputs.x, gains: Permutation.gather(inputs.weight, inputs.perm), perm: inputs.perm, count: 4)
        let format = IntegerFormat(bits: 4, groupSize: 128, outliers: 128, clip: AtomQuantization.activationClip)
        #expect(IntegerRows(quantizing: y, rows: 4, k: 256, format: format) == IntegerRows(atom: expected, clip: 0.9))
    }

    /// The quantized model's weights are the Atom ablation scheme's, and its simulated logits are
    /// the scheme's, bit for bit.
    @Test func quantizedModelIsTheAtomScheme() throws {
        let fixture = QuantizationFixture.self
        let reordered = try ReorderedWeights(fixture.weights, permutations: fixture.permutations)
        let scheme = SimulationScheme.atom(outliers: 32, kvCache: .int4)
        let fromScheme = try SimulatedModel(reordered, scheme: scheme)
        let fromModel = SimulatedModel(fixture.atomModel)
        #expect(fromScheme.layers == fromModel.layers)
        #expect(fromModel.kvCache == .int4 && fromModel.activations == fromScheme.activations)
        let tokens = fixture.study.sequences[0]
        #expect(try SimulatedDecoder(fromScheme).logits(tokens: tokens) == SimulatedDecoder(fixture.atomModel).logits(tokens: tokens))
        // Every linear: INT4 group-128 codes with the input's outliers in INT8.
        let c = fixture.weights.config
        for layer in fixture.atomModel.layers {
            for (t, w) in layer.linears {
                guard case .atom(let q) = w else { Issue.record("\(t) is not in the Atom format"); continue }
                #expect(q.outliers == (t == .down ? 48 : 128) && q.k == t.shape(c)[1] && q.rows == t.shape(c)[0])
            }
        }
    }

    @Test func w8a8ModelIsPerChannelInt8WithoutReordering() throws {
        let w = QuantizationFixture.weights
        let model = try AtomModelQuantizer.quantize(w, settings: QuantizationSettings(method: .w8a8))
        for (l, layer) in model.layers.enumerated() {
            #expect(layer.permutations.isIdentity && layer.inputNorm == w.layers[l].inputNorm)
            guard case .int8(let down) = layer.down else { Issue.record("down_proj is not INT8"); continue }
            let row = w.layers[l].down.row(5)
            let s = row.map(abs).max()! / 127
            #expect(down.scales[5] == s)
            #expect(Array(down.codes[(5 * down.cols)..<(6 * down.cols)]) == row.map { AtomQuantization.int8Code($0, scale: s) })
        }
        #expect(quantizationError {
            _ = try AtomModelQuantizer.quantize(ReorderedWeights(w, permutations: QuantizationFixture.permutations),
                                                settings: QuantizationSettings(method: .w8a8))
        } != nil)
    }
}
