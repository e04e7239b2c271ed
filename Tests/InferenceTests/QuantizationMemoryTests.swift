import Foundation
import Inference
import Model
import Testing

@Suite("Quantization: memory check")
struct QuantizationMemoryTests {
    let config = try! LlamaConfig.preset(named: "llama-7b")

    @Test func parametersFollowTheLayerCut() {
        #expect(QuantizationMemory.parameters(config) == config.parameterCount)
        #expect(QuantizationMemory.parameters(config, layers: 8) == config.parameterCount - 24 * config.parametersPerLayer)
        #expect(QuantizationMemory.parameters(config, layers: 99) == config.parameterCount)
    }

    @Test func estimateCountsOneFP32LayerAndTheQuantizedOnes() {
        let outside = QuantizationMemory.parameters(config, layers: 0), layer = config.parametersPerLayer
        for method in [QuantizationMethod.w8a8, .w4a4] {
            let each = QuantizationMemory.quantizedBytesPerParameter(method) * Double(layer)
            #expect(QuantizationMemory.peakBytes(config, layers: 8, method: method) == 4 * outside + 8 * layer + Int(each * 8))
            // Each further layer adds only its quantized bytes.
            let step = QuantizationMemory.peakBytes(config, layers: 9, method: method) - QuantizationMemory.peakBytes(config, layers: 8, method: method)
            #expect(abs(Double(step) - each) <= 1)
        }
        // The whole 7B model fits this 24 GB machine either way (about 9 GB for W8A8).
        #expect(QuantizationMemory.peakBytes(config, method: .w8a8) < 10_000_000_000)
        #expect(QuantizationMemory.peakBytes(config, method: .w4a4) < QuantizationMemory.peakBytes(config, method: .w8a8))
    }

    @Test func layersThatFitIsTheLargestThatFits() {
        for available in [3_500_000_000, 5_000_000_000, 7_000_000_000] {
            let fit = QuantizationMemory.layersThatFit(config, availableBytes: available, method: .w8a8)
            #expect(fit >= 1 && fit < config.numHiddenLayers, "\(available): \(fit)")
            #expect(QuantizationMemory.peakBytes(config, layers: fit, method: .w8a8) <= available)
            #expect(QuantizationMemory.peakBytes(config, layers: fit + 1, method: .w8a8) > available)
        }
        #expect(QuantizationMemory.layersThatFit(config, availableBytes: 1_000_000_000, method: .w4a4) == 0)
        #expect(QuantizationMemory.layersThatFit(config, availableBytes: 1 << 50, method: .w4a4) == config.numHiddenLayers)
    }

    @Test func checkRefusesWithWhatFits() throws {
        let fit = QuantizationMemory.layersThatFit(config, availableBytes: 5_000_000_000, method: .w8a8)
        do {
            try QuantizationMemory.check(config, layers: nil, method: .w8a8, availableBytes: 5_000_000_000, model: "M")
            Issue.record("the whole model does not fit in 5 GB")
        } catch {
            let message = "\(error)"
            #expect(message.contains("32 layers") && message.contains("--layers \(fit) or fewer") && message.contains("--skip-memory-check"),
                    "\(message)")
        }
        do {
            try QuantizationMemory.check(config, layers: nil, method: .w4a4, availableBytes: 500_000_000, model: "M")
            Issue.record("not even the embedding fits in 0.5 GB")
        } catch {
            #expect("\(error)".contains("not even one layer fits"))
        }
        try QuantizationMemory.check(config, layers: fit, method: .w8a8, availableBytes: 5_000_000_000, model: "M")
        try QuantizationMemory.check(config, layers: nil, method: .w8a8, availableBytes: nil, model: "M")
    }
}
