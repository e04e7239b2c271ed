import Foundation
import Inference
import Model

/// The tiny preset (hidden 256, 4 heads of 64, 2 KV heads, intermediate 688, vocabulary 512) with
/// synthesized weights and outlier channels, in FP32.
func tinyWeights(layers: Int = 2) throws -> LlamaWeights {
    try ModelSynth.weights(config: .tiny(layers: layers), options: SynthOptions(dtype: .f32, seed: 3))
}

/// A runtime on this machine without a database; one thread unless asked (tests run side by side).
func testRuntime(threads: Int = 1, database: String? = nil) throws -> EngineRuntime {
    try EngineRuntime(databasePath: database, threads: threads)
}

/// ||a - b|| / ||b||.
func relativeError(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count)
    var diff = 0.0, norm = 0.0
    for i in a.indices {
        let d = Double(a[i]) - Double(b[i])
        diff += d * d
        norm += Double(b[i]) * Double(b[i])
    }
    return (diff / max(norm, 1e-300)).squareRoot()
}

/// A fresh directory under the system temporary directory, removed when released.
final class EngineTempDir {
    let url: URL

    init(_ name: String = #function) {
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("lowbit-engine-\(name.filter { $0.isLetter })-\(UUID().uuidString.prefix(8))")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> String { url.appendingPathComponent(name).path }

    deinit { try? FileManager.default.removeItem(at: url) }
}
