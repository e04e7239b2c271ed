import Foundation
@testable import Model

/// The case name of the `ModelError` that `body` throws ("truncatedFile", ...), nil if it throws none,
/// "other: ..." for another error type.
func errorCase(_ body: () throws -> Void) -> String? {
    do {
        try body()
        return nil
    } catch let error as ModelError {
        return Mirror(reflecting: error).children.first?.label ?? "\(error)"
    } catch {
        return "other: \(error)"
    }
}

/// The `ModelError` that `body` throws, if any.
func modelError(_ body: () throws -> Void) -> ModelError? {
    do {
        try body()
        return nil
    } catch {
        return error as? ModelError
    }
}

/// A fresh empty directory under the temporary directory, removed by `cleanup()`.
struct TemporaryDirectory {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("lowbit-model-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func cleanup() { try? FileManager.default.removeItem(at: url) }

    func file(_ name: String) -> URL { url.appendingPathComponent(name) }
}

/// A small GQA config for fast tests: hidden 64, 4 heads of 16, 2 KV heads, intermediate 128, vocab 96.
func microConfig(layers: Int = 2) -> LlamaConfig {
    LlamaConfig(hiddenSize: 64, intermediateSize: 128, numAttentionHeads: 4, numKeyValueHeads: 2,
                numHiddenLayers: layers, vocabSize: 96, rmsNormEps: 1e-5, maxPositionEmbeddings: 128)
}

/// A safetensors file from a hand-written header and data section (the header is padded to 8 bytes).
func rawSafetensors(header: String, data: [UInt8], headerLength: UInt64? = nil) -> Data {
    var json = Array(header.utf8)
    while json.count % 8 != 0 { json.append(0x20) }
    var out = Data()
    withUnsafeBytes(of: (headerLength ?? UInt64(json.count)).littleEndian) { out.append(contentsOf: $0) }
    out.append(contentsOf: json)
    out.append(contentsOf: data)
    return out
}

/// Largest |a - b| over two equally long arrays.
func maxDifference(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count)
    return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
}
