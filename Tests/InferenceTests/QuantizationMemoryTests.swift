import Foundation
import Inference
import Model
import Testing

@Suite("Quantization: memory check")
struct QuantizationMemoryTests {
    let config = try! LlamaConfig.preset(named: "llama-7b")

    @Test func parametersFollowTheLayerCut() {
        #expect(QuantizationMemory.parameters(config) == config.parameterCount)
        let perLayer = config.parametersPerLayer
        #expect(QuantizationMemory.parameters(config, layers: 8) == config.parameterCount - 24 * perLayer)
        #expect(QuantizationMemory.peakBytes(config, layers: 8) == QuantizationMemory.bytesPerParameter * QuantizationMemory.parameters(config, layers: 8))
        // A cut past the model keeps every layer.
        #expect(QuantizationMemory.parameters(config, layers: 99) == config.parameterCount)
    }

    @Test func layersThatFitIsTheLargestThatFits() {
        for available in [5_000_000_000, 24_600_000_000, 30_000_000_000] {
            let fit = QuantizationMemory.layersThatFit(config, availableBytes: available)
            #expect(fit >= 1 && fit < config.numHiddenLayers)
            #expect(QuantizationMemory.peakBytes(config, layers: fit) <= available)
            #expect(QuantizationMemory.peakBytes(config, layers: fit + 1) > available)
        }
        #expect(QuantizationMemory.layersThatFit(config, availableBytes: 1_000_000_000) == 0)
        #expect(QuantizationMemory.layersThatFit(config, availableBytes: 1 << 50) == config.numHiddenLayers)
    }

    @Test func checkRefusesWithWhatFits() throws {
        // 16 layers of llama-7b (3.5 billion parameters) on a 24.6 GB host: refused, 13 layers suggested.
        do {
            try QuantizationMemory.check(config, layers: 16, availableBytes: 24_600_000_000, model: "M")
            Issue.record("16 layers at 8 bytes per parameter do not fit in 24.6 GB")
        } catch {
            let message = "\(error)"
            #expect(message.contains("16 layers") && message.contains("--layers 13 or fewer") && message.contains("--skip-memory-check"), "\(message)")
        }
        do {
            try QuantizationMemory.check(config, layers: nil, availableBytes: 500_000_000, model: "M")
            Issue.record("not even the embedding fits in 0.5 GB")
        } catch {
            #expect("\(error)".contains("not even one layer fits"))
        }
        try QuantizationMemory.check(config, layers: 8, availableBytes: 24_600_000_000, model: "M")
        try QuantizationMemory.check(config, layers: nil, availableBytes: nil, model: "M")
    }
}
