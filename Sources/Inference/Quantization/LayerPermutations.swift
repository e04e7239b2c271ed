import Model

/// The four reorder permutations of one decoder layer (KERNELS.md section 3). Each lists, for every
/// position j of the reordered input, the source channel: `y[j] = x[perm[j]]`; the largest channels
/// (by calibration sum of squares) end last, where the quantizers keep them in INT8.
///
/// | permutation | input of | applied |
/// |---|---|---|
/// | `qkv` | q/k/v_proj (input_layernorm's output) | at run time by rmsnorm-reorder-quantize; the input columns of q/k/v and the norm gains are permuted offline |
/// | `o` | o_proj (attention output) | at run time by reorder-quantize; o_proj's input columns permuted offline |
/// | `gateUp` | gate/up_proj (post_attention_layernorm's output) | as `qkv`, for gate and up |
/// | `down` | down_proj (silu(gate) * up) | offline only: folded into the output rows of gate and up, so silu-mul-quantize needs no reorder; down_proj's input columns permuted offline. Stored for reference. |
public struct LayerPermutations: Sendable, Equatable {
    public var qkv: [Int32]
    public var o: [Int32]
    public var gateUp: [Int32]
    public var down: [Int32]

    public init(qkv: [Int32], o: [Int32], gateUp: [Int32], down: [Int32]) {
        self.qkv = qkv
        self.o = o
        self.gateUp = gateUp
        self.down = down
    }

    /// Identity permutations for a layer of `config` (no reordering: W8A8 and the RTN baseline).
    public static func identity(_ config: LlamaConfig) -> LayerPermutations {
        func id(_ n: Int) -> [Int32] { (0..<n).map { Int32($0) } }
        return LayerPermutations(qkv: id(config.hiddenSize), o: id(config.queryWidth), gateUp: id(config.hiddenSize),
                                 down: id(config.intermediateSize))
    }

    /// The permutations with their names and required widths, in file order.
    public func named(_ config: LlamaConfig) -> [(name: String, values: [Int32], width: Int)] {
        [("qkv", qkv, config.hiddenSize), ("o", o, config.queryWidth), ("gate_up", gateUp, config.hiddenSize),
         ("down", down, config.intermediateSize)]
    }

    /// Whether every permutation is the identity.
    public var isIdentity: Bool {
        [qkv, o, gateUp, down].allSatisfy { p in p.indices.allSatisfy { p[$0] == Int32($0) } }
    }
}

/// Small helpers for applying permutations.
public enum Permutation {
    /// Whether `p` holds each of 0..<p.count exactly once.
    public static func isValid(_ p: [Int32]) -> Bool {
        var seen = [Bool](repeating: false, count: p.count)
        for v in p {
            guard v >= 0, Int(v) < p.count, !seen[Int(v)] else { return false }
            seen[Int(v)] = true
        }
        return true
    }

    /// `x[perm]`: element j is `x[perm[j]]`.
    public static func gather<T>(_ x: [T], _ perm: [Int32]) -> [T] {
        precondition(x.count == perm.count, "a permutation of \(perm.count) for \(x.count) values")
        return perm.map { x[Int($0)] }
    }

    /// W with its columns (input channels) reordered: column j of the result is column perm[j] of W.
    public static func columns(_ w: Matrix, _ perm: [Int32]) -> Matrix {
        precondition(w.cols == perm.count, "a permutation of \(perm.count) for \(w.cols) columns")
        var out = [Float](repeating: 0, count: w.rows * w.cols)
        w.values.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for r in 0..<w.rows {
                    let base = r * w.cols
                    for j in 0..<w.cols { dst[base + j] = src[base + Int(perm[j])] }
                }
            }
        }
        return Matrix(rows: w.rows, cols: w.cols, values: out)
    }

    /// W with its rows (output channels) reordered: row j of the result is row perm[j] of W.
    public static func rows(_ w: Matrix, _ perm: [Int32]) -> Matrix {
        precondition(w.rows == perm.count, "a permutation of \(perm.count) for \(w.rows) rows")
        var out: [Float] = []
        out.reserveCapacity(w.values.count)
        for j in 0..<w.rows {
            let r = Int(perm[j])
            out.append(contentsOf: w.values[(r * w.cols)..<((r + 1) * w.cols)])
        }
        return Matrix(rows: w.rows, cols: w.cols, values: out)
    }
}
