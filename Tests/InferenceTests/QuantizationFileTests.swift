import Foundation
import Kernels
import Model
import Testing

@testable import Inference

@Suite("Quantization: saved models")
struct QuantizationFileTests {
    static let w8a8: QuantizedModel = {
        do {
            return try AtomModelQuantizer.quantize(QuantizationFixture.weights, settings: QuantizationSettings(method: .w8a8))
        } catch {
            fatalError("quantizing failed: \(error)")
        }
    }()

    @Test func roundTripIsBitExact() throws {
        let dir = try ScratchDirectory()
        defer { dir.cleanup() }
        for model in [QuantizationFixture.atomModel, Self.w8a8] {
            let url = dir.url.appendingPathComponent(model.settings.method.rawValue)
            try model.save(to: url)
            let loaded = try QuantizedModel.load(from: url)
            #expect(loaded == model)
            // Saving what was loaded gives the same bytes.
            let again = dir.url.appendingPathComponent("again-\(model.settings.method.rawValue)")
            try loaded.save(to: again)
            let file = { (u: URL) in FileManager.default.contents(atPath: u.appendingPathComponent("model.safetensors").path) }
            #expect(file(url) != nil && file(url) == file(again))
            let metadata = try SafetensorsFile(contentsOf: url.appendingPathComponent("model.safetensors")).metadata
            #expect(metadata["format"] == "lowbit-atom" && metadata["version"] == "1" && metadata["method"] == model.settings.method.rawValue)
        }
        let atom = QuantizationFixture.atomModel
        #expect(try QuantizedModel.load(from: dir.url.appendingPathComponent("w4a4")).settings == atom.settings)
    }

    /// Writes the good w4a4 file with `edit` applied to its tensors and metadata, and returns the
    /// loader's error.
    static func loadError(_ edit: (inout [String: SafetensorsTensor], inout [String: String]) throws -> Void) throws -> ModelError? {
        let dir = try ScratchDirectory()
        defer { dir.cleanup() }
        try QuantizationFixture.atomModel.save(to: dir.url)
        let url = dir.url.appendingPathComponent("model.safetensors")
        let file = try SafetensorsFile(contentsOf: url)
        var tensors: [String: SafetensorsTensor] = [:]
        for name in file.names {
            let info = try file.info(name)
            tensors[name] = try SafetensorsTensor(dtype: info.dtype, shape: info.shape, bytes: file.rawBytes(name))
        }
        var metadata = file.metadata
        try edit(&tensors, &metadata)
        try SafetensorsWriter.write(tensors, metadata: metadata, to: url)
        return quantizationError { _ = try QuantizedModel.load(from: dir.url) }
    }

    static let codes = "model.layers.1.mlp.down_proj.codes"

    @Test func untouchedCopyLoads() throws {
        #expect(try Self.loadError { _, _ in } == nil)
    }

    @Test func rejectsAFloatingPointModel() throws {
        let dir = try ScratchDirectory()
        defer { dir.cleanup() }
        try ModelSynth.write(config: .tiny(), options: SynthOptions(seed: 7), to: dir.url)
        let error = quantizationError { _ = try QuantizedModel.load(from: dir.url) }
        #expect(error?.description.contains("is a floating-point model") == true)
        #expect(error?.description.contains("lowbit quantize") == true)
    }

    @Test func rejectsAMissingDirectoryOrWeightsFile() throws {
        let dir = try ScratchDirectory()
        defer { dir.cleanup() }
        #expect(quantizationError { _ = try QuantizedModel.load(from: dir.url.appendingPathComponent("none")) } != nil)
        try QuantizationFixture.atomModel.save(to: dir.url)
        try FileManager.default.removeItem(at: dir.url.appendingPathComponent("model.safetensors"))
        let error = quantizationError { _ = try QuantizedModel.load(from: dir.url) }
        #expect(error?.description.contains("has no model.safetensors") == true)
    }

    @Test func rejectsWrongFormatVersionAndSettings() throws {
        func message(_ key: String, _ value: String?) throws -> String {
            try Self.loadError { _, m in m[key] = value }?.description ?? "loaded"
        }
        #expect(try message("version", "2").contains("version 2; this lowbit reads version 1"))
        #expect(try message("version", nil).contains("version not given"))
        #expect(try message("format", "gguf").contains("format gguf is not lowbit-atom"))
        #expect(try message("method", "w3a3").contains("method w3a3 is not one of w4a4, w8a8"))
        #expect(try message("group_size", "64").contains("group_size 64"))
        #expect(try message("weight_clip", "1.5").contains("weight_clip 1.5 must be in (0, 1]"))
        #expect(try message("outliers", "lots").contains("outliers = lots is not a Int"))
        #expect(try message("calibration_seed", nil).contains("calibration_seed is missing"))
        // A different requested count changes the expected tensor shapes.
        #expect(try message("outliers", "0").contains("has shape"))
    }

    @Test func rejectsMissingWrongAndCorruptTensors() throws {
        let missing = try Self.loadError { t, _ in t[Self.codes] = nil }
        #expect(errorCase(missing) == "missingTensor" && missing?.description.contains(Self.codes) == true)

        let shape = try Self.loadError { t, _ in
            t[Self.codes] = try SafetensorsTensor(uint8s: [UInt8](repeating: 0, count: 256 * 321), shape: [256, 321])
        }
        #expect(shape == .wrongShape(tensor: Self.codes, expected: [256, 320], found: [256, 321]))

        let dtype = try Self.loadError { t, _ in
            t["model.layers.0.qkv_permutation"] = try SafetensorsTensor(floats: [Float](repeating: 0, count: 256), shape: [256])
        }
        #expect(dtype == .wrongDType(tensor: "model.layers.0.qkv_permutation", expected: "I32", found: "F32"))

        let perm = try Self.loadError { t, _ in
            t["model.layers.0.o_permutation"] = try SafetensorsTensor(int32s: [Int32](repeating: 3, count: 256), shape: [256])
        }
        #expect(perm?.description.contains("model.layers.0.o_permutation is not a permutation of 0..<256") == true)

        let scale = try Self.loadError { t, _ in
            var s = [Float](repeating: 0.01, count: 256 * 5)
            s[7] = .nan
            t["model.layers.1.mlp.down_proj.scales"] = try SafetensorsTensor(floats: s, shape: [256, 5])
        }
        #expect(scale?.description.contains("down_proj.scales[7] = nan is not a finite, non-negative scale") == true)

        let extra = try Self.loadError { t, _ in t["model.layers.2.self_attn.q_proj.codes"] = try SafetensorsTensor(uint8s: [1], shape: [1]) }
        #expect(extra?.description.contains("unexpected tensor model.layers.2.self_attn.q_proj.codes") == true)
    }

    @Test func rejectsATruncatedFile() throws {
        let dir = try ScratchDirectory()
        defer { dir.cleanup() }
        try QuantizationFixture.atomModel.save(to: dir.url)
        let url = dir.url.appendingPathComponent("model.safetensors")
        let data = try Data(contentsOf: url)
        try data.prefix(data.count - 100).write(to: url)
        let error = quantizationError { _ = try QuantizedModel.load(from: dir.url) }
        #expect(errorCase(error) == "truncatedFile")
    }
}
