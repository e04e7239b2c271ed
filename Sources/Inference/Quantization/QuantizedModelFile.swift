import Foundation
import Kernels
import Model

/// The on-disk form of a `QuantizedModel`: a directory with `config.json` and one `model.safetensors`.
///
/// Tensors (layer i, linear `P` = `self_attn.q_proj`, ..., `mlp.down_proj`; N out, K in, O outliers,
/// K' = K - O):
///
/// | name | dtype | shape | method |
/// |---|---|---|---|
/// | `model.layers.i.P.codes` | U8 | [N, K'/2] packed INT4, element 2j in the low nibble | w4a4 |
/// | `model.layers.i.P.scales` | F32 | [N, K'/128] | w4a4 |
/// | `model.layers.i.P.outlier_codes` | I8 | [N, O] | w4a4 |
/// | `model.layers.i.P.outlier_scales` | F32 | [N] | w4a4 |
/// | `model.layers.i.P.codes` | I8 | [N, K] | w8a8 |
/// | `model.layers.i.P.scales` | F32 | [N] | w8a8 |
/// | `model.layers.i.{input_layernorm,post_attention_layernorm}.permuted_weight` | F32 | [hidden] | both |
/// | `model.layers.i.{qkv,o,gate_up,down}_permutation` | I32 | [K] | both (identity for w8a8) |
/// | `model.embed_tokens.weight`, `model.norm.weight`, `lm_head.weight` (unless tied) | F32 | as usual | both |
///
/// `__metadata__`: `format` = "lowbit-atom", `version` = "1", `method`, `group_size`, `activation_clip`,
/// `weight_clip`, `outliers` (requested), `outliers_by_input` (what `OutlierRule` gave each input),
/// `kv_cache`, `calibration_tokens`, `calibration_sequence_length`, `calibration_seed`,
/// `calibration_source`, `fp32`.
public enum QuantizedModelFile {
    public static let format = "lowbit-atom"
    public static let version = "1"
    public static let weightsFile = "model.safetensors"

    /// The name of one tensor of linear `t` in layer `layer`, e.g. "model.layers.0.self_attn.q_proj.codes".
    public static func linear(_ layer: Int, _ t: LlamaTensorName.Layer, _ part: String) -> String {
        "model.layers.\(layer).\(t.rawValue).\(part)"
    }

    /// The permuted norm gains of layer `layer`.
    public static func norm(_ layer: Int, _ t: LlamaTensorName.Layer) -> String {
        "model.layers.\(layer).\(t.rawValue).permuted_weight"
    }

    /// A permutation of layer `layer`: `kind` is qkv, o, gate_up or down.
    public static func permutation(_ layer: Int, _ kind: String) -> String {
        "model.layers.\(layer).\(kind)_permutation"
    }

    /// The metadata written for `model`.
    static func metadata(_ model: QuantizedModel) throws -> [String: String] {
        let s = model.settings, c = model.config
        let widths = [("qkv", c.hiddenSize), ("o", c.queryWidth), ("gate_up", c.hiddenSize), ("down", c.intermediateSize)]
        let byInput = try widths.map { "\($0.0)=\(try s.outliers(width: $0.1))" }.joined(separator: ",")
        return [
            "format": format, "version": version, "method": s.method.rawValue,
            "group_size": String(s.groupSize), "activation_clip": String(s.activationClip), "weight_clip": String(s.weightClip),
            "outliers": String(s.requestedOutliers), "outliers_by_input": byInput, "kv_cache": s.method.kvCache.rawValue,
            "calibration_tokens": String(s.calibration.tokens),
            "calibration_sequence_length": String(s.calibration.sequenceLength),
            "calibration_seed": String(s.calibration.seed),
            "calibration_source": s.method == .w4a4 ? "uniform random token ids through the FP32 reference" : "none (no reordering)",
            "fp32": "embedding, norms, lm_head",
        ]
    }
}

extension QuantizedModel {
    /// Writes `config.json` and `model.safetensors` into `directory` (created if needed). The weights
    /// file is written to a temporary name and renamed when complete.
    public func save(to directory: URL) throws {
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw ModelError.writeFailed("cannot create \(directory.path): \(error.localizedDescription)")
        }
        let configURL = directory.appendingPathComponent("config.json")
        do {
            try config.encoded().write(to: configURL, options: .atomic)
        } catch {
            throw ModelError.writeFailed("\(configURL.path): cannot write config.json (\(error.localizedDescription))")
        }
        let tensors = try self.tensors()
        let specs = tensors.map { SafetensorsTensorSpec(name: $0.key, dtype: $0.value.dtype, shape: $0.value.shape) }
        try SafetensorsWriter.write(specs: specs, metadata: QuantizedModelFile.metadata(self),
                                    to: directory.appendingPathComponent(QuantizedModelFile.weightsFile)) { spec, sink in
            guard let t = tensors[spec.name] else { return }
            try t.write(&sink)
        }
    }

    /// Every tensor of the file, by name, with a writer of its bytes.
    func tensors() throws -> [String: TensorData] {
        var out: [String: TensorData] = [
            LlamaTensorName.embedding: .floats(embedding.values, [embedding.rows, embedding.cols]),
            LlamaTensorName.finalNorm: .floats(finalNorm, [finalNorm.count]),
        ]
        if !config.tieWordEmbeddings { out[LlamaTensorName.lmHead] = .floats(lmHead.values, [lmHead.rows, lmHead.cols]) }
        for (i, layer) in layers.enumerated() {
            out[QuantizedModelFile.norm(i, .inputNorm)] = .floats(layer.inputNorm, [layer.inputNorm.count])
            out[QuantizedModelFile.norm(i, .postAttentionNorm)] = .floats(layer.postAttentionNorm, [layer.postAttentionNorm.count])
            for (name, values, _) in layer.permutations.named(config) {
                out[QuantizedModelFile.permutation(i, name)] = .int32s(values, [values.count])
            }
            for (t, weight) in layer.linears {
                let name = { (part: String) in QuantizedModelFile.linear(i, t, part) }
                switch weight {
                case .atom(let q):
                    out[name("codes")] = .uint8s(q.codes, [q.rows, q.normal / 2])
                    out[name("scales")] = .floats(q.scales, [q.rows, q.groups])
                    out[name("outlier_codes")] = .int8s(q.outlierCodes, [q.rows, q.outliers])
                    out[name("outlier_scales")] = .floats(q.outlierScales, [q.rows])
                case .int8(let w):
                    out[name("codes")] = .int8s(w.codes, [w.rows, w.cols])
                    out[name("scales")] = .floats(w.scales, [w.rows])
                }
            }
        }
        return out
    }
}

/// A tensor's values before they are written.
enum TensorData {
    case floats([Float], [Int])
    case int8s([Int8], [Int])
    case uint8s([UInt8], [Int])
    case int32s([Int32], [Int])

    var dtype: SafetensorsDType {
        switch self {
        case .floats: return .f32
        case .int8s: return .i8
        case .uint8s: return .u8
        case .int32s: return .i32
        }
    }

    var shape: [Int] {
        switch self {
        case .floats(_, let s), .int8s(_, let s), .uint8s(_, let s), .int32s(_, let s): return s
        }
    }

    func write(_ sink: inout SafetensorsSink) throws {
        switch self {
        case .floats(let v, _): try sink.append(floats: v)
        case .int8s(let v, _): try v.withUnsafeBytes { try sink.append(bytes: $0) }
        case .uint8s(let v, _): try v.withUnsafeBytes { try sink.append(bytes: $0) }
        case .int32s(let v, _):
            let bytes = try SafetensorsTensor(int32s: v, shape: [v.count]).bytes
            try bytes.withUnsafeBytes { try sink.append(bytes: $0) }
        }
    }
}
