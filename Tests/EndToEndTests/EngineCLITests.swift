import Foundation
import Testing

/// `lowbit quantize` once, then `lowbit generate` / `serve-bench` from the written model.
@Suite("lowbit engine on a quantized model", .serialized)
struct EngineCLITests {
    /// A tiny FP model and its W4A4 quantization (calibrated on 16 tokens, as `generate
    /// --calibration-tokens 16` calibrates at load) in a temporary directory.
    struct Models {
        let root: URL
        var fp: String { root.appendingPathComponent("fp").path }
        var w4: String { root.appendingPathComponent("w4").path }

        init(_ lowbit: LowbitBinary) throws {
            root = FileManager.default.temporaryDirectory.appendingPathComponent("lowbit-engine-cli-\(UUID().uuidString.prefix(8))")
            let synth = try lowbit.run(["model", "synth", "--preset", "tiny", "--out", root.appendingPathComponent("fp").path])
            try #require(synth.status == 0, "\(synth.stderr)")
            let q = try lowbit.run(["quantize", "--model", fp, "--out", w4, "--calibration-tokens", "16", "--calibration-length", "16"])
            try #require(q.status == 0, "\(q.stderr)")
        }

        func remove() { try? FileManager.default.removeItem(at: root) }
    }

    static func generated(_ stdout: String) -> String? {
        stdout.split(separator: "\n").first { $0.hasPrefix("generated") }.map(String.init)
    }

    @Test func generateFromTheFileEqualsQuantizingAtLoad() throws {
        let lowbit = try LowbitBinary()
        let models = try Models(lowbit)
        defer { models.remove() }
        let prompt = ["--prompt", "1,2,3", "--steps", "6", "--no-db"]
        let fromFile = try lowbit.run(["generate", "--model", models.w4] + prompt)
        let atLoad = try lowbit.run(["generate", "--model", models.fp, "--calibration-tokens", "16"] + prompt)
        #expect(fromFile.status == 0 && atLoad.status == 0, "\(fromFile.stderr)\(atLoad.stderr)")
        #expect(fromFile.stdout.contains("quantized model \(models.w4)"))
        #expect(atLoad.stdout.contains("quantized at load"))
        #expect(Self.generated(fromFile.stdout) != nil && Self.generated(fromFile.stdout) == Self.generated(atLoad.stdout))
    }

    /// W8A8 against W4A4 from two written models, no FP model: both modes run by default.
    @Test func serveBenchFromTwoQuantizedModels() throws {
        let lowbit = try LowbitBinary()
        let models = try Models(lowbit)
        defer { models.remove() }
        let w8 = models.root.appendingPathComponent("w8").path
        let q = try lowbit.run(["quantize", "--model", models.fp, "--method", "w8a8", "--out", w8])
        #expect(q.status == 0 && q.stdout.contains("layer 2 of 2 quantized"), "\(q.stdout)\(q.stderr)")
        let bench = try lowbit.run([
            "serve-bench", "--model", w8, "--quantized", models.w4, "--batch", "2", "--context", "8", "--steps", "1", "--no-db", "--packed-layouts", "1",
        ])
        #expect(bench.status == 0, "\(bench.stderr)")
        let rows = bench.stdout.split(separator: "\n").filter { $0.hasPrefix("      2  w") }
        #expect(rows.contains { $0.contains("w8a8") } && rows.contains { $0.contains("w4a4") }, "\(bench.stdout)")
        #expect(!bench.stdout.contains("      2  fp32"), "\(bench.stdout)")
        // The packed weights each mode holds after the batch: a last column in MiB (the tiny model's are < 1).
        let results = bench.stdout.split(separator: "\n").prefix { !$0.hasPrefix("speed-up") }.filter { $0.hasPrefix("      2  w") }
        #expect(bench.stdout.contains("KV MiB  packed MiB") && results.count == 2
                    && results.allSatisfy { $0.split(separator: " ").last.flatMap { Int($0) } != nil }, "\(bench.stdout)")
        let none = try lowbit.run(["serve-bench", "--model", w8, "--packed-layouts", "0", "--no-db"])
        #expect(none.status != 0 && none.stderr.contains("--packed-layouts must be at least 1"), "\(none.stderr)")
    }

    @Test func quantizedModelMisuseIsExplained() throws {
        let lowbit = try LowbitBinary()
        let models = try Models(lowbit)
        defer { models.remove() }
        let fp32 = try lowbit.run(["generate", "--model", models.w4, "--mode", "fp32", "--prompt", "1", "--no-db"])
        #expect(fp32.status != 0 && fp32.stderr.contains("runs only in w4a4 mode") && fp32.stderr.contains("FP model"))
        let layers = try lowbit.run(["generate", "--model", models.w4, "--layers", "1", "--prompt", "1", "--no-db"])
        #expect(layers.status != 0 && layers.stderr.contains("lowbit quantize --layers"))
        // --no-db leaves every database alone: the run is printed, nothing is stored or created.
        let db = models.root.appendingPathComponent("serving.sqlite").path
        let quick = try lowbit.run(
            ["serve-bench", "--model", models.fp, "--batch", "1", "--context", "8", "--steps", "1", "--no-db"], environment: ["LOWBIT_DB": db])
        #expect(quick.status == 0 && quick.stdout.contains("not stored: --no-db"), "\(quick.stderr)")
        // The per-projection table: a row per mode and the W4A4/W8A8 speed-up per projection.
        let projections = quick.stdout.split(separator: "\n").drop { !$0.hasPrefix("kernel time per projection") }
        #expect(projections.dropFirst().first?.contains("q_proj") == true && projections.dropFirst().first?.contains("lm_head") == true,
                "\(quick.stdout)")
        #expect(projections.contains { $0.contains("W4A4/W8A8") })
        #expect(!FileManager.default.fileExists(atPath: db))
        let notQuantized = try lowbit.run(["serve-bench", "--model", models.fp, "--quantized", models.fp, "--no-db"])
        #expect(notQuantized.status != 0 && notQuantized.stderr.contains("is not a model written by `lowbit quantize`"))
        let truncated = models.root.appendingPathComponent("bad")
        try FileManager.default.createDirectory(at: truncated, withIntermediateDirectories: true)
        for name in ["config.json", "model.safetensors"] {
            let data = try Data(contentsOf: URL(fileURLWithPath: models.w4).appendingPathComponent(name))
            try (name == "config.json" ? data : data.prefix(1000)).write(to: truncated.appendingPathComponent(name))
        }
        let bad = try lowbit.run(["generate", "--model", truncated.path, "--prompt", "1", "--no-db"])
        #expect(bad.status != 0 && bad.stderr.contains("truncated"))
        // An FP model past the machine's memory (the tiny model's file under a config of a million layers)
        // is refused before it is read, with the --layers that fit; the first layer alone loads and runs.
        let huge = models.root.appendingPathComponent("huge")
        try FileManager.default.createDirectory(at: huge, withIntermediateDirectories: true)
        let fpURL = URL(fileURLWithPath: models.fp)
        var config = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: fpURL.appendingPathComponent("config.json"))) as? [String: Any])
        config["num_hidden_layers"] = 1_000_000
        try JSONSerialization.data(withJSONObject: config).write(to: huge.appendingPathComponent("config.json"))
        try FileManager.default.createSymbolicLink(
            at: huge.appendingPathComponent("model.safetensors"), withDestinationURL: fpURL.appendingPathComponent("model.safetensors"))
        let refused = try lowbit.run(["generate", "--model", huge.path, "--prompt", "1", "--no-db"])
        #expect(refused.status != 0 && refused.stderr.contains("(1000000 layers) needs at least") && refused.stderr.contains("or fewer")
                    && refused.stderr.contains("--skip-memory-check"), "\(refused.stderr)")
        let cut = try lowbit.run(["generate", "--model", huge.path, "--layers", "1", "--prompt", "1", "--steps", "1", "--no-db"])
        #expect(cut.status == 0 && Self.generated(cut.stdout) != nil, "\(cut.stderr)")
    }
}
