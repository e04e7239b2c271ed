import Foundation
import Testing
@testable import Model

@Suite("synthesized models")
struct SynthTests {
    static let prompt = [1, 17, 300, 42, 511, 7, 99, 256, 3, 128, 64, 200]

    @Test func tinyWritesLoadsAndRunsToFiniteLogits() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let plan = try ModelSynth.write(config: .tiny(), options: SynthOptions(dtype: .f16, seed: 1), to: dir.url)
        let directory = try ModelDirectory(url: dir.url)
        #expect(directory.tensorNames.count == 3 + 2 * 9)
        #expect(try directory.info(LlamaTensorName.embedding).dtype == .f16)
        let meta = try directory.file(holding: LlamaTensorName.embedding).metadata
        #expect(meta["lowbit.outlier_channels"] == plan.outlierChannels.map(String.init).joined(separator: ","))
        #expect(plan.outlierChannels.count == 4, "hidden / 64")

        let model = try LlamaReference(weights: LlamaWeights.load(directory))
        let logits = try model.forward(tokens: Self.prompt)
        #expect(logits.rows == Self.prompt.count && logits.cols == 512)
        #expect(logits.isFinite)
        let std = (logits.values.map { Double($0 * $0) }.reduce(0, +) / Double(logits.values.count)).squareRoot()
        #expect(logits.maxMagnitude < 50 && std > 0.05, "logits of a sane scale: max \(logits.maxMagnitude), rms \(std)")
        #expect(try LlamaWeights.load(directory) == ModelSynth.weights(config: .tiny(), options: SynthOptions(dtype: .f16, seed: 1)),
                "the in-memory weights are what the files hold")
    }

    @Test func sameSeedSameBytesOtherSeedOtherBytes() throws {
        let a = try TemporaryDirectory(), b = try TemporaryDirectory(), c = try TemporaryDirectory()
        defer { a.cleanup(); b.cleanup(); c.cleanup() }
        for (dir, seed) in [(a, UInt64(5)), (b, 5), (c, 6)] {
            try ModelSynth.write(config: .tiny(), options: SynthOptions(dtype: .bf16, seed: seed), to: dir.url)
        }
        let bytes = { (d: TemporaryDirectory) in FileManager.default.contents(atPath: d.file("model.safetensors").path) }
        #expect(bytes(a) == bytes(b) && bytes(a) != nil)
        #expect(bytes(a) != bytes(c))
        #expect(FileManager.default.contents(atPath: a.file("config.json").path) == FileManager.default.contents(atPath: b.file("config.json").path))
    }

    @Test func moreLayersKeepTheFirstLayers() throws {
        let one = try ModelSynth.weights(config: microConfig(layers: 1), options: SynthOptions(seed: 9))
        let three = try ModelSynth.weights(config: microConfig(layers: 3), options: SynthOptions(seed: 9))
        #expect(three.layers[0] == one.layers[0] && three.embedding == one.embedding && three.lmHead == one.lmHead)
        #expect(three.layers[1] != three.layers[0])
    }

    @Test func outlierChannelsAreOutliersInTheLayerInputs() throws {
        let options = SynthOptions(dtype: .f16, seed: 2)
        let plan = try SynthPlan(config: .tiny(), options: options)
        let model = try LlamaReference(weights: ModelSynth.weights(config: .tiny(), options: options))
        var capture = ActivationCapture(config: model.config)
        _ = try model.forward(tokens: Self.prompt, capture: &capture)

        func median(_ x: [Float]) -> Float { x.sorted()[x.count / 2] }
        for layer in 0..<2 {
            for point in [CapturePoint.qkv, .gateUp] {
                let stats = capture.statistics(layer: layer, at: point)
                #expect(stats.tokens == Self.prompt.count)
                let typical = median(stats.maxMagnitudes)
                for channel in plan.outlierChannels {
                    #expect(stats.maxMagnitudes[channel] >= 10 * typical, "layer \(layer) \(point) channel \(channel): \(stats.maxMagnitudes[channel]) vs median \(typical)")
                }
                // Atom's calibration order (ascending sum of squares) puts exactly these channels last.
                let order = stats.sumsOfSquares.indices.sorted { stats.sumsOfSquares[$0] < stats.sumsOfSquares[$1] }
                #expect(Set(order.suffix(plan.outlierChannels.count)) == Set(plan.outlierChannels))
            }
            let residual = capture.statistics(layer: layer, at: .residual)
            for channel in plan.outlierChannels {
                #expect(residual.maxMagnitudes[channel] >= 5 * median(residual.maxMagnitudes), "massive residual channel \(channel)")
            }
            let down = capture.statistics(layer: layer, at: .down)
            for row in plan.upRows[layer] {
                #expect(down.maxMagnitudes[row.row] >= 10 * median(down.maxMagnitudes), "down_proj input channel \(row.row)")
            }
            let o = capture.statistics(layer: layer, at: .o)
            let d = model.config.headDim, group = model.config.groupSize
            for row in plan.valueRows[layer] {
                let channel = (row.row / d * group) * d + row.row % d
                #expect(o.maxMagnitudes[channel] >= 4 * median(o.maxMagnitudes), "o_proj input channel \(channel)")
            }
        }
    }

    @Test func optionsAreChecked() throws {
        #expect(errorCase { _ = try SynthPlan(config: .tiny(), options: SynthOptions(dtype: .i8)) } == "invalidInput")
        #expect(errorCase { _ = try SynthPlan(config: .tiny(), options: SynthOptions(outlierChannels: 1000)) } == "invalidInput")
        #expect(try SynthPlan(config: .tiny(), options: SynthOptions(outlierChannels: 0)).outlierChannels.isEmpty)
    }
}
