import KernelKit
import Model

/// A decoder layer the Atom way (KERNELS.md section 3): rmsnorm-reorder-quantize before q/k/v and
/// before gate/up, reorder-quantize before o_proj, silu-mul-quantize before down_proj, gemm-w4a4 for
/// every projection. Permutations: q/k/v share the input order (their outputs are not permuted, RoPE
/// needs the heads as they are); gate/up share theirs; the down projection's input order is folded
/// offline into the output rows of gate and up, so silu(gate) * up comes out already reordered.
final class W4A4Layer: DecoderLayer {
    let eps: Float
    let hiddenOutliers: Int, queryOutliers: Int, intermediateOutliers: Int
    /// input_layernorm's weight in the q/k/v order (`w[perm]`, as the kernel takes it), and that order.
    private let inputNorm: AlignedBuffer, qkvOrder: AlignedBuffer
    private let oOrder: AlignedBuffer
    private let postNorm: AlignedBuffer, gateUpOrder: AlignedBuffer
    let q, k, v, o, gate, up, down: W4A4Linear

    init(_ w: LlamaLayerWeights, permutations p: AtomLayerPermutations, config: LlamaConfig, outliers: AtomOutliers) throws {
        eps = config.rmsNormEps
        hiddenOutliers = try outliers.count(forK: config.hiddenSize)
        queryOutliers = try outliers.count(forK: config.queryWidth)
        intermediateOutliers = try outliers.count(forK: config.intermediateSize)
        inputNorm = AlignedBuffer(copying: p.qkv.map { w.inputNorm[Int($0)] })
        qkvOrder = AlignedBuffer(copying: p.qkv)
        oOrder = AlignedBuffer(copying: p.o)
        postNorm = AlignedBuffer(copying: p.gateUp.map { w.postAttentionNorm[Int($0)] })
        gateUpOrder = AlignedBuffer(copying: p.gateUp)
        q = W4A4Linear(w.q, columnOrder: p.qkv, rowOrder: nil, outliers: hiddenOutliers)
        k = W4A4Linear(w.k, columnOrder: p.qkv, rowOrder: nil, outliers: hiddenOutliers)
        v = W4A4Linear(w.v, columnOrder: p.qkv, rowOrder: nil, outliers: hiddenOutliers)
        o = W4A4Linear(w.o, columnOrder: p.o, rowOrder: nil, outliers: queryOutliers)
        gate = W4A4Linear(w.gate, columnOrder: p.gateUp, rowOrder: p.down, outliers: hiddenOutliers)
        up = W4A4Linear(w.up, columnOrder: p.gateUp, rowOrder: p.down, outliers: hiddenOutliers)
        down = W4A4Linear(w.down, columnOrder: p.down, rowOrder: nil, outliers: intermediateOutliers)
    }

    func projectQKV(_ x: UnsafePointer<Float>, m: Int, q qo: UnsafeMutablePointer<Float>, k ko: UnsafeMutablePointer<Float>,
                    v vo: UnsafeMutablePointer<Float>, _ ctx: LayerContext) throws {
        let a = try AtomActivations.rmsnormReorder(
            x, m: m, k: q.k, outliers: hiddenOutliers, normWeight: inputNorm.pointer.assumingMemoryBound(to: Float.self),
            perm: qkvOrder.pointer.assumingMemoryBound(to: Int32.self), eps: eps, into: .quantized, role: "qkv-quantize", ctx)
        try q.apply(a, rows: m, into: qo, role: "q_proj", ctx)
        try k.apply(a, rows: m, into: ko, role: "k_proj", ctx)
        try v.apply(a, rows: m, into: vo, role: "v_proj", ctx)
    }

    func projectO(_ attention: UnsafePointer<Float>, m: Int, into out: UnsafeMutablePointer<Float>, _ ctx: LayerContext) throws {
        let a = try AtomActivations.reorder(
            attention, m: m, k: o.k, outliers: queryOutliers, perm: oOrder.pointer.assumingMemoryBound(to: Int32.self),
            into: .quantized, role: "o-quantize", ctx)
        try o.apply(a, rows: m, into: out, role: "o_proj", ctx)
    }

    func mlp(_ x: UnsafePointer<Float>, m: Int, into out: UnsafeMutablePointer<Float>, _ ctx: LayerContext) throws {
        let a = try AtomActivations.rmsnormReorder(
            x, m: m, k: gate.k, outliers: hiddenOutliers, normWeight: postNorm.pointer.assumingMemoryBound(to: Float.self),
            perm: gateUpOrder.pointer.assumingMemoryBound(to: Int32.self), eps: eps, into: .quantized, role: "gate/up-quantize", ctx)
        let g = ctx.scratch.buffer(.gate, m * gate.n, of: Float.self), u = ctx.scratch.buffer(.up, m * up.n, of: Float.self)
        try gate.apply(a, rows: m, into: g, role: "gate_proj", ctx)
        try up.apply(a, rows: m, into: u, role: "up_proj", ctx)
        let d = try AtomActivations.siluMul(
            gate: g, up: u, m: m, k: down.k, outliers: intermediateOutliers, into: .quantized2, role: "down-quantize", ctx)
        try down.apply(d, rows: m, into: out, role: "down_proj", ctx)
    }
}
