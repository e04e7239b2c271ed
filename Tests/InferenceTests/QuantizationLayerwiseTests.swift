import Foundation
import Model
import Testing

@testable import Inference

@Suite("Quantization: one layer at a time")
struct QuantizationLayerwiseTests {
    /// The layer-at-a-time quantizer reads the model from its directory; the whole-model one from the
    /// loaded weights: the same model, bit for bit, for both methods and with a layer cut.
    @Test(arguments: [QuantizationMethod.w4a4, .w8a8])
    func equalsTheWholeModelQuantizer(method: QuantizationMethod) throws {
        let dir = try ScratchDirectory()
        defer { dir.cleanup() }
        let url = dir.url.appendingPathComponent("model")
        _ = try ModelSynth.write(config: .tiny(layers: 3), options: SynthOptions(dtype: .f16, seed: 5), to: url)
        let directory = try ModelDirectory(url: url)
        let settings = QuantizationSettings(
            method: method, outliers: 32, calibration: CalibrationSettings(tokens: 40, sequenceLength: 16, seed: 3))
        for layers in [nil, 2] as [Int?] {
            var reported: [Int] = []
            let layerwise = try AtomModelQuantizer.quantize(directory, layers: layers, settings: settings) { done, total in
                #expect(total == (layers ?? 3))
                reported.append(done)
            }
            let whole = try AtomModelQuantizer.quantize(LlamaWeights.load(directory, layers: layers), settings: settings)
            #expect(reported == Array(1...(layers ?? 3)))
            #expect(layerwise.config.numHiddenLayers == (layers ?? 3))
            #expect(layerwise == whole, "\(method), layers \(layers.map(String.init) ?? "all")")
            if method == .w4a4 {
                // Calibration did reorder (the synthetic model's outlier channels move to the end).
                #expect(layerwise.layers.contains { !$0.permutations.isIdentity })
            }
        }
        #expect(throws: ModelError.self) { try AtomModelQuantizer.quantize(directory, layers: 4, settings: settings) }
    }

    /// In memory, the permutations folded in one layer at a time give what a whole `ReorderedWeights` gives.
    @Test func foldingLayerByLayerEqualsReorderedWeights() throws {
        let fixture = QuantizationFixture.self
        let folded = try AtomModelQuantizer.quantize(fixture.weights, permutations: fixture.permutations, settings: fixture.atomSettings)
        #expect(folded == fixture.atomModel)
        let short = Array(fixture.permutations.dropLast())
        #expect(throws: ModelError.self) { try AtomModelQuantizer.quantize(fixture.weights, permutations: short, settings: fixture.atomSettings) }
        #expect(throws: ModelError.self) {
            try AtomModelQuantizer.quantize(fixture.weights, permutations: fixture.permutations, settings: QuantizationSettings(method: .w8a8))
        }
    }
}
