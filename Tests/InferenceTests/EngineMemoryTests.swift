import Foundation
import Inference
import Model
import Testing

@Suite("Engine: memory check of an FP model")
struct EngineMemoryTests {
    let config = try! LlamaConfig.preset(named: "llama-7b")

    @Test func loadBytesCountFP32WeightsAndEachQuantizedMode() {
        let fp32 = EngineMemory.loadBytes(config, layers: 8, modes: [.fp32])
        #expect(fp32 == 4 * (config.parameterCount - 24 * config.parametersPerLayer))
        let head = 2 * config.vocabSize * config.hiddenSize, layers = Double(8 * config.parametersPerLayer)
        // Each quantized mode twice: as loaded and packed by the first step.
        #expect(EngineMemory.loadBytes(config, layers: 8, modes: [.w8a8]) == fp32 + 2 * (Int(1.0 * layers) + head))
        #expect(EngineMemory.loadBytes(config, layers: 8, modes: [.w4a4]) == fp32 + 2 * (Int(0.6 * layers) + head))
        #expect(EngineMemory.loadBytes(config, layers: 8, modes: EngineMode.allCases)
                    == fp32 + 2 * (Int(1.0 * layers) + head) + 2 * (Int(0.6 * layers) + head))
        // A mode named twice is held once.
        #expect(EngineMemory.loadBytes(config, layers: 8, modes: [.w4a4, .w4a4]) == EngineMemory.loadBytes(config, layers: 8, modes: [.w4a4]))
        // 8 layers in all three modes: the 13.5 GB the README compares with the process's resident memory
        // after its first steps; the whole 7B does not fit 24 GB.
        #expect(abs(EngineMemory.loadBytes(config, layers: 8, modes: EngineMode.allCases) - 13_500_000_000) < 300_000_000, "\(EngineMemory.loadBytes(config, layers: 8, modes: EngineMode.allCases))")
        #expect(EngineMemory.loadBytes(config, modes: [.w4a4]) > 24_000_000_000)
    }

    @Test func layersThatFitIsTheLargestThatFits() {
        for available in [3_000_000_000, 10_000_000_000, 20_000_000_000] {
            let fit = EngineMemory.layersThatFit(config, modes: [.w4a4], availableBytes: available)
            #expect(fit >= 1 && fit < config.numHiddenLayers, "\(available): \(fit)")
            #expect(EngineMemory.loadBytes(config, layers: fit, modes: [.w4a4]) <= available)
            #expect(EngineMemory.loadBytes(config, layers: fit + 1, modes: [.w4a4]) > available)
        }
        #expect(EngineMemory.layersThatFit(config, modes: [.w4a4], availableBytes: 1_000_000_000) == 0)
        #expect(EngineMemory.layersThatFit(config, modes: [.w4a4], availableBytes: 1 << 50) == config.numHiddenLayers)
    }

    @Test func checkRefusesWithWhatFits() throws {
        let modes: [EngineMode] = [.fp32, .w4a4]
        let fit = EngineMemory.layersThatFit(config, modes: modes, availableBytes: 20_000_000_000)
        do {
            try EngineMemory.check(config, layers: nil, modes: modes, availableBytes: 20_000_000_000, model: "M")
            Issue.record("the whole model does not fit in 20 GB")
        } catch {
            let message = "\(error)"
            #expect(message.contains("M (32 layers)") && message.contains("in fp32, w4a4") && message.contains("--layers \(fit) or fewer")
                        && message.contains("lowbit quantize --model M") && message.contains("--skip-memory-check"), "\(message)")
        }
        // What fits passes; an unknown amount of memory is not checked.
        try EngineMemory.check(config, layers: fit, modes: modes, availableBytes: 20_000_000_000, model: "M")
        try EngineMemory.check(config, layers: nil, modes: modes, availableBytes: nil, model: "M")
        // Not even one layer: no --layers advice.
        #expect { try EngineMemory.check(config, layers: nil, modes: modes, availableBytes: 1_000_000_000, model: "M") } throws: { error in
            !"\(error)".contains("--layers") && "\(error)".contains("lowbit quantize")
        }
    }
}
