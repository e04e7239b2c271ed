import Foundation
import Kernels
import Model

/// INT8 weights per output channel, symmetric (W8A8, KERNELS.md section 1): s[n] = max|w[n,:]| / 127,
/// q = clamp(rne(w / s), -127, 127).
public struct Int8Weight: Sendable, Equatable {
    public let rows: Int
    public let cols: Int
    /// [rows][cols] codes.
    public var codes: [Int8]
    /// [rows] scales.
    public var scales: [Float]

    public init(rows: Int, cols: Int, codes: [Int8], scales: [Float]) {
        precondition(codes.count == rows * cols && scales.count == rows, "an INT8 weight of \(rows)x\(cols) needs \(rows * cols) codes and \(rows) scales")
        self.rows = rows
        self.cols = cols
        self.codes = codes
        self.scales = scales
    }

    /// Quantizes an FP32 weight [out, in].
    public init(quantizing w: Matrix) {
        let q = IntegerRows(quantizing: w.values, rows: w.rows, k: w.cols, format: IntegerFormat(bits: 8, groupSize: nil, outliers: 0, clip: 1))
        self.init(rows: w.rows, cols: w.cols, codes: q.codes, scales: q.scales)
    }
}

/// One quantized linear weight [out, in] (input columns already reordered).
public enum QuantizedWeight: Sendable, Equatable {
    /// W4A4: `AtomQuantization.Quantized` with rows = output channels (INT4 group-128 codes with clip
    /// 0.85 on the first K - O input channels, INT8 per row on the last O).
    case atom(AtomQuantization.Quantized)
    /// W8A8: INT8 per output channel.
    case int8(Int8Weight)

    public var rows: Int {
        switch self {
        case .atom(let q): return q.rows
        case .int8(let w): return w.rows
        }
    }

    public var cols: Int {
        switch self {
        case .atom(let q): return q.k
        case .int8(let w): return w.cols
        }
    }

    /// The codes unpacked for `IntegerGemm` (the simulation's form).
    /// `settings` gives the clip (not stored with the codes) and whether the scales are per row
    /// (group size 0: the row's scale repeated in every group of 128).
    public func integerRows(_ settings: QuantizationSettings) -> IntegerRows {
        switch self {
        case .atom(let q):
            var rows = IntegerRows(atom: q, clip: settings.weightClip)
            if settings.groupSize == 0 { rows.collapseToRowScales() }
            return rows
        case .int8(let w): return IntegerRows(int8: w.codes, scales: w.scales, rows: w.rows, k: w.cols)
        }
    }
}

/// One decoder layer of a quantized model.
public struct QuantizedLayer: Sendable, Equatable {
    /// The reorder permutations (identity for W8A8). `o` is applied at run time (reorder-quantize);
    /// `qkv` and `gateUp` at run time by rmsnorm-reorder-quantize, whose gains below are already
    /// permuted; `down` is folded into gate/up's output rows and down_proj's input columns.
    public var permutations: LayerPermutations
    /// input_layernorm's gains, permuted: `w[permutations.qkv]`.
    public var inputNorm: [Float]
    /// post_attention_layernorm's gains, permuted: `w[permutations.gateUp]`.
    public var postAttentionNorm: [Float]
    public var q: QuantizedWeight
    public var k: QuantizedWeight
    public var v: QuantizedWeight
    public var o: QuantizedWeight
    public var gate: QuantizedWeight
    public var up: QuantizedWeight
    public var down: QuantizedWeight

    public init(permutations: LayerPermutations, inputNorm: [Float], postAttentionNorm: [Float], q: QuantizedWeight,
                k: QuantizedWeight, v: QuantizedWeight, o: QuantizedWeight, gate: QuantizedWeight, up: QuantizedWeight,
                down: QuantizedWeight) {
        self.permutations = permutations
        self.inputNorm = inputNorm
        self.postAttentionNorm = postAttentionNorm
        self.q = q
        self.k = k
        self.v = v
        self.o = o
        self.gate = gate
        self.up = up
        self.down = down
    }

    /// The linear weights with their names, in `LlamaTensorName.Layer` order.
    public var linears: [(LlamaTensorName.Layer, QuantizedWeight)] {
        [(.q, q), (.k, k), (.v, v), (.o, o), (.gate, gate), (.up, up), (.down, down)]
    }
}

/// A quantized Llama model: what `lowbit quantize` writes and an engine loads.
///
/// ```swift
/// let fp = try LlamaWeights.load(from: modelDir)
/// let model = try AtomModelQuantizer.quantize(fp, settings: QuantizationSettings(method: .w4a4))
/// try model.save(to: outDir)                               // once
/// let loaded = try QuantizedModel.load(from: outDir)       // many times; == model
/// let logits = try SimulatedDecoder(loaded).logits(tokens: [1, 2, 3])
/// ```
///
/// Kept in FP32: the token embedding, the final norm, lm_head (and the per-layer norm gains).
public struct QuantizedModel: Sendable, Equatable {
    public var config: LlamaConfig
    public var settings: QuantizationSettings
    /// [vocab, hidden], FP32.
    public var embedding: Matrix
    public var layers: [QuantizedLayer]
    /// [hidden], FP32.
    public var finalNorm: [Float]
    /// [vocab, hidden], FP32 (the embedding when tied).
    public var lmHead: Matrix

    public init(config: LlamaConfig, settings: QuantizationSettings, embedding: Matrix, layers: [QuantizedLayer],
                finalNorm: [Float], lmHead: Matrix) {
        self.config = config
        self.settings = settings
        self.embedding = embedding
        self.layers = layers
        self.finalNorm = finalNorm
        self.lmHead = lmHead
    }

    /// Bytes of the quantized linear weights (codes and scales), for comparison with FP32's 4 per weight.
    public var linearWeightBytes: Int {
        layers.reduce(0) { total, layer in
            total + layer.linears.reduce(0) { sum, item in
                switch item.1 {
                case .atom(let q): return sum + q.codes.count + 4 * q.scales.count + q.outlierCodes.count + 4 * q.outlierScales.count
                case .int8(let w): return sum + w.codes.count + 4 * w.scales.count
                }
            }
        }
    }
}
