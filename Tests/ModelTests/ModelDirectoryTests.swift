import Foundation
import Testing
@testable import Model

@Suite("model directories and weights")
struct ModelDirectoryTests {
    /// A synthesized micro model (F32) in a fresh directory.
    static func synthesized(layers: Int = 1) throws -> (TemporaryDirectory, LlamaConfig) {
        let dir = try TemporaryDirectory()
        let config = microConfig(layers: layers)
        try ModelSynth.write(config: config, options: SynthOptions(dtype: .f32, seed: 3), to: dir.url)
        return (dir, config)
    }

    /// Rewrites model.safetensors with `edit` applied to its tensors.
    static func rewrite(_ dir: TemporaryDirectory, _ edit: (inout [String: SafetensorsTensor]) throws -> Void) throws {
        let url = dir.file("model.safetensors")
        let file = try SafetensorsFile(contentsOf: url)
        var tensors: [String: SafetensorsTensor] = [:]
        for name in file.names {
            let info = try file.info(name)
            tensors[name] = try SafetensorsTensor(dtype: info.dtype, shape: info.shape, bytes: file.rawBytes(name))
        }
        try edit(&tensors)
        try SafetensorsWriter.write(tensors, metadata: file.metadata, to: url)
    }

    @Test func loadsEveryTensorWithItsShape() throws {
        let (dir, config) = try Self.synthesized()
        defer { dir.cleanup() }
        let directory = try ModelDirectory(url: dir.url)
        #expect(directory.config.hiddenSize == 64 && directory.config.torchDtype == "float32")
        #expect(directory.tensorNames == LlamaTensorName.all(config).map(\.name))
        let w = try LlamaWeights.load(directory)
        #expect(w.layers.count == 1 && w.layers[0].k.rows == 32 && w.layers[0].k.cols == 64 && w.layers[0].down.cols == 128)
        #expect(w == (try ModelSynth.weights(config: config, options: SynthOptions(dtype: .f32, seed: 3))))
    }

    @Test func aMissingTensorIsNamed() throws {
        let (dir, _) = try Self.synthesized()
        defer { dir.cleanup() }
        let name = LlamaTensorName.layer(0, .up)
        try Self.rewrite(dir) { $0[name] = nil }
        let e = modelError { _ = try LlamaWeights.load(from: dir.url) }
        #expect(e == .missingTensor(tensor: name, location: dir.url.path))
        #expect(e?.description.contains("model.layers.0.mlp.up_proj.weight not found") == true)
    }

    @Test func aWrongShapedTensorIsNamedWithBothShapes() throws {
        let (dir, _) = try Self.synthesized()
        defer { dir.cleanup() }
        let name = LlamaTensorName.layer(0, .k)
        try Self.rewrite(dir) { $0[name] = try SafetensorsTensor(floats: [Float](repeating: 0, count: 64 * 64), shape: [64, 64]) }
        let e = modelError { _ = try LlamaWeights.load(from: dir.url) }
        #expect(e == .wrongShape(tensor: name, expected: [32, 64], found: [64, 64]))
        #expect(e?.description.contains("expected [32, 64]") == true)
    }

    @Test func shardedCheckpointWithIndex() throws {
        let (dir, config) = try Self.synthesized(layers: 2)
        defer { dir.cleanup() }
        let whole = try LlamaWeights.load(from: dir.url)
        let file = try SafetensorsFile(contentsOf: dir.file("model.safetensors"))
        var shards: [[String: SafetensorsTensor]] = [[:], [:]]
        var map: [String: String] = [:]
        for name in file.names {
            let info = try file.info(name)
            let shard = name.contains("layers.1.") || name == LlamaTensorName.lmHead ? 1 : 0
            shards[shard][name] = try SafetensorsTensor(dtype: info.dtype, shape: info.shape, bytes: file.rawBytes(name))
            map[name] = "model-0000\(shard + 1)-of-00002.safetensors"
        }
        try FileManager.default.removeItem(at: dir.file("model.safetensors"))
        for (i, shard) in shards.enumerated() {
            try SafetensorsWriter.write(shard, to: dir.file("model-0000\(i + 1)-of-00002.safetensors"))
        }
        let index = try JSONSerialization.data(withJSONObject: ["metadata": ["total_size": 0], "weight_map": map])
        try index.write(to: dir.file("model.safetensors.index.json"))
        let sharded = try LlamaWeights.load(from: dir.url)
        #expect(sharded == whole && sharded.config.hiddenSize == config.hiddenSize)
        #expect(try LlamaWeights.load(from: dir.url, layers: 1).layers.count == 1)

        // An index that sends a tensor to the wrong shard is refused.
        map[LlamaTensorName.embedding] = "model-00002-of-00002.safetensors"
        try JSONSerialization.data(withJSONObject: ["weight_map": map]).write(to: dir.file("model.safetensors.index.json"))
        #expect(errorCase { _ = try ModelDirectory(url: dir.url) } == "invalidModelDirectory")
    }

    @Test func aTensorInTwoShardsIsRefused() throws {
        let (dir, _) = try Self.synthesized()
        defer { dir.cleanup() }
        try SafetensorsWriter.write([LlamaTensorName.finalNorm: try SafetensorsTensor(floats: [Float](repeating: 1, count: 64), shape: [64])],
                                    to: dir.file("extra.safetensors"))
        #expect(errorCase { _ = try ModelDirectory(url: dir.url) } == "duplicateTensor")
    }

    @Test func aDirectoryWithoutWeightsOrConfigIsRefused() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        #expect(errorCase { _ = try ModelDirectory(url: dir.url) } == "invalidConfig")
        try microConfig().encoded().write(to: dir.file("config.json"))
        #expect(modelError { _ = try ModelDirectory(url: dir.url) }?.description.contains("no *.safetensors file") == true)
    }
}
