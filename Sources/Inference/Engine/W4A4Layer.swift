import KernelKit
import Kernels
import Model

/// A decoder layer the Atom way (KERNELS.md section 3): rmsnorm-reorder-quantize before q/k/v and
/// before gate/up, reorder-quantize before o_proj, silu-mul-quantize before down_proj, gemm-w4a4 for
/// every projection. The weights come quantized with the permutations folded in (`QuantizedLayer`,
/// see `ReorderedLayer`): q/k/v share the input order (their outputs are not permuted, RoPE needs the
/// heads as they are); gate/up share theirs; the down projection's input order is folded into the
/// output rows of gate and up, so silu(gate) * up comes out already reordered.
///
/// Settings the fused quantize kernels do not implement (the ablation's activation clip 1 or one
/// scale per token: the kernels fix group 128 and clip 0.9) quantize the activations in Swift with
/// the kernels' fp32 norm and SiLU arithmetic; gemm-w4a4 runs either way.
final class W4A4Layer: DecoderLayer {
    let eps: Float
    let hiddenOutliers: Int, queryOutliers: Int, intermediateOutliers: Int
    /// input_layernorm's weight in the q/k/v order (`w[perm]`, as the kernel takes it), and that order.
    private let inputNorm: AlignedBuffer, qkvOrder: AlignedBuffer
    private let oOrder: AlignedBuffer
    private let postNorm: AlignedBuffer, gateUpOrder: AlignedBuffer
    /// nil: the fused kernels; else the activation format (clip, grouping) quantized in Swift.
    private let swiftActivations: QuantizationSettings?
    private let inputGains: [Float], postGains: [Float], permutations: LayerPermutations
    let q, k, v, o, gate, up, down: W4A4Linear

    init(_ layer: QuantizedLayer, config: LlamaConfig, settings: QuantizationSettings) throws {
        eps = config.rmsNormEps
        hiddenOutliers = try Self.outliers(settings, config.hiddenSize)
        queryOutliers = try Self.outliers(settings, config.queryWidth)
        intermediateOutliers = try Self.outliers(settings, config.intermediateSize)
        func linear(_ w: QuantizedWeight, _ name: String, outliers: Int) throws -> W4A4Linear {
            guard case .atom(let q) = w else { throw EngineError.invalidInput("\(name) is not an Atom W4A4 weight") }
            guard q.outliers == outliers else {
                throw EngineError.invalidInput("\(name) has \(q.outliers) outlier channels; the settings give \(outliers) for its input width \(q.k)")
            }
            return W4A4Linear(q)
        }
        let p = layer.permutations
        inputNorm = AlignedBuffer(copying: layer.inputNorm)
        qkvOrder = AlignedBuffer(copying: p.qkv)
        oOrder = AlignedBuffer(copying: p.o)
        postNorm = AlignedBuffer(copying: layer.postAttentionNorm)
        gateUpOrder = AlignedBuffer(copying: p.gateUp)
        swiftActivations = settings.isAtomKernelFormat ? nil : settings
        inputGains = layer.inputNorm
        postGains = layer.postAttentionNorm
        permutations = p
        q = try linear(layer.q, "q_proj", outliers: hiddenOutliers)
        k = try linear(layer.k, "k_proj", outliers: hiddenOutliers)
        v = try linear(layer.v, "v_proj", outliers: hiddenOutliers)
        o = try linear(layer.o, "o_proj", outliers: queryOutliers)
        gate = try linear(layer.gate, "gate_proj", outliers: hiddenOutliers)
        up = try linear(layer.up, "up_proj", outliers: hiddenOutliers)
        down = try linear(layer.down, "down_proj", outliers: intermediateOutliers)
    }

    private static func outliers(_ s: QuantizationSettings, _ width: Int) throws -> Int {
        do { return try s.outliers(width: width) } catch { throw EngineError.unsupportedModel("\(error)") }
    }

    func projectQKV(_ x: UnsafePointer<Float>, m: Int, q qo: UnsafeMutablePointer<Float>, k ko: UnsafeMutablePointer<Float>,
                    v vo: UnsafeMutablePointer<Float>, _ ctx: LayerContext) throws {
        let a = try normReorder(x, m: m, k: q.k, outliers: hiddenOutliers, gains: inputGains, buffer: inputNorm, perm: qkvOrder,
                                role: "qkv-quantize", ctx)
        try q.apply(a, rows: m, into: qo, role: "q_proj", ctx)
        try k.apply(a, rows: m, into: ko, role: "k_proj", ctx)
        try v.apply(a, rows: m, into: vo, role: "v_proj", ctx)
    }

    func projectO(_ attention: UnsafePointer<Float>, m: Int, into out: UnsafeMutablePointer<Float>, _ ctx: LayerContext) throws {
        let a: W4Rows
        if let s = swiftActivations {
            let k = o.k, perm = permutations.o
            var values = [Float](repeating: 0, count: m * k)
            for r in 0..<m { for j in 0..<k { values[r * k + j] = attention[r * k + Int(perm[j])] } }
            a = AtomActivations.swift(values, m: m, k: k, format: s.integerFormat(clip: s.activationClip, outliers: queryOutliers),
                                      into: .quantized, ctx)
        } else {
            a = try AtomActivations.reorder(
                attention, m: m, k: o.k, outliers: queryOutliers, perm: oOrder.pointer.assumingMemoryBound(to: Int32.self),
                into: .quantized, role: "o-quantize", ctx)
        }
        try o.apply(a, rows: m, into: out, role: "o_proj", ctx)
    }

    func mlp(_ x: UnsafePointer<Float>, m: Int, into out: UnsafeMutablePointer<Float>, _ ctx: LayerContext) throws {
        let a = try normReorder(x, m: m, k: gate.k, outliers: hiddenOutliers, gains: postGains, buffer: postNorm, perm: gateUpOrder,
                                role: "gate/up-quantize", ctx)
        let g = ctx.scratch.buffer(.gate, m * gate.n, of: Float.self), u = ctx.scratch.buffer(.up, m * up.n, of: Float.self)
        try gate.apply(a, rows: m, into: g, role: "gate_proj", ctx)
        try up.apply(a, rows: m, into: u, role: "up_proj", ctx)
        let d: W4Rows
        if let s = swiftActivations {
            let count = m * down.k
            let values = (0..<count).map { AtomQuantizeReference.siluMul(g[$0], u[$0]) }
            d = AtomActivations.swift(values, m: m, k: down.k, format: s.integerFormat(clip: s.activationClip, outliers: intermediateOutliers),
                                      into: .quantized2, ctx)
        } else {
            d = try AtomActivations.siluMul(
                gate: g, up: u, m: m, k: down.k, outliers: intermediateOutliers, into: .quantized2, role: "down-quantize", ctx)
        }
        try down.apply(d, rows: m, into: out, role: "down_proj", ctx)
    }

    /// rmsnorm, reorder and quantize: the fused kernel, or the same arithmetic in Swift
    /// (`AtomQuantizeReference.rmsScale`; y[j] = x[perm[j]] * r * gains[j]).
    private func normReorder(_ x: UnsafePointer<Float>, m: Int, k: Int, outliers: Int, gains: [Float], buffer: AlignedBuffer,
                             perm: AlignedBuffer, role: String, _ ctx: LayerContext) throws -> W4Rows {
        let order = perm.pointer.assumingMemoryBound(to: Int32.self)
        guard let s = swiftActivations else {
            return try AtomActivations.rmsnormReorder(
                x, m: m, k: k, outliers: outliers, normWeight: buffer.pointer.assumingMemoryBound(to: Float.self), perm: order,
                eps: eps, into: .quantized, role: role, ctx)
        }
        var values = [Float](repeating: 0, count: m * k)
        for r in 0..<m {
            let row = UnsafeBufferPointer(start: x + r * k, count: k)
            let scale = AtomQuantizeReference.rmsScale(row, eps: eps)
            for j in 0..<k { values[r * k + j] = row[Int(order[j])] * scale * gains[j] }
        }
        return AtomActivations.swift(values, m: m, k: k, format: s.integerFormat(clip: s.activationClip, outliers: outliers),
                                     into: .quantized, ctx)
    }
}
