import Foundation
import Model

/// The three matrix-heavy parts of one decoder layer, as each mode runs them. The engine does the
/// rest (RoPE on queries, the KV cache, attention, residual adds) the same way for every mode.
protocol DecoderLayer: AnyObject {
    /// q [m][hq*d], k and v [m][hkv*d] (before RoPE) from the residual stream x [m][hidden].
    func projectQKV(_ x: UnsafePointer<Float>, m: Int, q: UnsafeMutablePointer<Float>, k: UnsafeMutablePointer<Float>,
                    v: UnsafeMutablePointer<Float>, _ ctx: LayerContext) throws
    /// out [m][hidden] = o_proj(attention [m][hq*d]).
    func projectO(_ attention: UnsafePointer<Float>, m: Int, into out: UnsafeMutablePointer<Float>, _ ctx: LayerContext) throws
    /// out [m][hidden] = down(silu(gate(n)) * up(n)) with n = post_attention_layernorm(x).
    func mlp(_ x: UnsafePointer<Float>, m: Int, into out: UnsafeMutablePointer<Float>, _ ctx: LayerContext) throws
}

/// Row-wise helpers of the FP32 and W8A8 paths, shared among the engine's threads (rows, or elements
/// for SiLU), so the baselines' norms, SiLU and activation quantization run on every core as the
/// W4A4 path's fused kernels do.
enum RowMath {
    /// out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w, the sum of squares in Double (as the reference).
    static func rmsNorm(_ x: UnsafePointer<Float>, rows m: Int, k: Int, weight: [Float], eps: Float, into out: UnsafeMutablePointer<Float>,
                        threads: KernelThreads? = nil) {
        weight.withUnsafeBufferPointer { w in
            let body = { (rows: Range<Int>) in
                for r in rows { rmsNormRow(x + r * k, k: k, weight: w, eps: eps, into: out + r * k) }
            }
            if let threads { threads.forEachRange(m, body) } else { body(0..<m) }
        }
    }

    private static func rmsNormRow(_ row: UnsafePointer<Float>, k: Int, weight w: UnsafeBufferPointer<Float>, eps: Float,
                                   into dst: UnsafeMutablePointer<Float>) {
        var s0 = 0.0, s1 = 0.0
        var i = 0
        while i + 1 < k {
            s0 += Double(row[i]) * Double(row[i])
            s1 += Double(row[i + 1]) * Double(row[i + 1])
            i += 2
        }
        if i < k { s0 += Double(row[i]) * Double(row[i]) }
        let scale = Float(1 / ((s0 + s1) / Double(k) + Double(eps)).squareRoot())
        for j in 0..<k { dst[j] = row[j] * scale * w[j] }
    }

    /// gate[i] = silu(gate[i]) * up[i] = gate[i] / (1 + e^-gate[i]) * up[i], in place over `count`
    /// values, eight lanes at a time with `exp8` (the tail with `expf`).
    static func siluMul(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count: Int, threads: KernelThreads? = nil) {
        let body = { (range: Range<Int>) in
            let g8 = UnsafeMutableRawPointer(gate), u8 = UnsafeRawPointer(up)
            var i = range.lowerBound
            while i + Lanes.scalarCount <= range.upperBound {
                let g = g8.loadUnaligned(fromByteOffset: i * 4, as: Lanes.self), u = u8.loadUnaligned(fromByteOffset: i * 4, as: Lanes.self)
                g8.storeBytes(of: g / (1 + exp8(-g)) * u, toByteOffset: i * 4, as: Lanes.self)
                i += Lanes.scalarCount
            }
            while i < range.upperBound {
                let g = gate[i]
                gate[i] = g / (1 + Foundation.exp(-g)) * up[i]
                i += 1
            }
        }
        // Shares start at multiples of the lane count, so each value takes the same path (vector or
        // tail) whatever the number of threads.
        let lanes = Lanes.scalarCount
        if let threads {
            threads.forEachRange((count + lanes - 1) / lanes, grain: 512) { body($0.lowerBound * lanes..<min($0.upperBound * lanes, count)) }
        } else {
            body(0..<count)
        }
    }

    typealias Lanes = SIMD8<Float>

    /// e^x in eight lanes (within 1e-7 relative of e^x; expf's own error is about half that): x clamped
    /// to [-87.3, 88.7], x = n ln2 + r with n = rne(x / ln2) (by the 1.5 * 2^23 addition) and ln2 in two
    /// parts, e^r by its degree-7 Taylor polynomial, times 2^n built in the exponent field. NaN passes.
    /// The comparisons are written with `replacing(with:where:)`, which Swift compiles to vector code
    /// (`clamped` and `rounded` on SIMD types do not inline here).
    static func exp8(_ value: Lanes) -> Lanes {
        let low = Lanes(repeating: -87.3), high = Lanes(repeating: 88.7)
        var x = value.replacing(with: low, where: value .< low)
        x = x.replacing(with: high, where: x .> high)
        let magic = Lanes(repeating: 12_582_912)
        let t = x * 1.442_695_040_888_963_4 + magic
        let n = t - magic
        var r = x - n * 0.693_145_751_953_125
        r = r - n * 1.428_606_765_330_187e-06
        var p = Lanes(repeating: 1.0 / 5040)
        p = p * r + 1.0 / 720
        p = p * r + 1.0 / 120
        p = p * r + 1.0 / 24
        p = p * r + 1.0 / 6
        p = p * r + 0.5
        p = p * r + 1
        p = p * r + 1
        let exponent = unsafeBitCast(t, to: SIMD8<Int32>.self) &- unsafeBitCast(magic, to: SIMD8<Int32>.self)
        return p * unsafeBitCast((exponent &+ 127) &<< 23, to: Lanes.self)
    }
}

/// The FP32 baseline: OpenBLAS sgemm for every projection, norms and SiLU in Swift.
final class FP32Layer: DecoderLayer {
    let w: LlamaLayerWeights
    let eps: Float
    let q, k, v, o, gate, up, down: FP32Linear

    init(_ w: LlamaLayerWeights, eps: Float) {
        self.w = w
        self.eps = eps
        q = FP32Linear(w.q)
        k = FP32Linear(w.k)
        v = FP32Linear(w.v)
        o = FP32Linear(w.o)
        gate = FP32Linear(w.gate)
        up = FP32Linear(w.up)
        down = FP32Linear(w.down)
    }

    func projectQKV(_ x: UnsafePointer<Float>, m: Int, q qo: UnsafeMutablePointer<Float>, k ko: UnsafeMutablePointer<Float>,
                    v vo: UnsafeMutablePointer<Float>, _ ctx: LayerContext) throws {
        let n = ctx.scratch.buffer(.normed, m * q.k, of: Float.self)
        ctx.timed(.prepare) { RowMath.rmsNorm(x, rows: m, k: q.k, weight: w.inputNorm, eps: eps, into: n, threads: ctx.threads) }
        ctx.projection("q_proj") { q.apply(n, rows: m, into: qo, ctx.threads) }
        ctx.projection("k_proj") { k.apply(n, rows: m, into: ko, ctx.threads) }
        ctx.projection("v_proj") { v.apply(n, rows: m, into: vo, ctx.threads) }
    }

    func projectO(_ attention: UnsafePointer<Float>, m: Int, into out: UnsafeMutablePointer<Float>, _ ctx: LayerContext) throws {
        ctx.projection("o_proj") { o.apply(attention, rows: m, into: out, ctx.threads) }
    }

    func mlp(_ x: UnsafePointer<Float>, m: Int, into out: UnsafeMutablePointer<Float>, _ ctx: LayerContext) throws {
        let n = ctx.scratch.buffer(.normed, m * gate.k, of: Float.self)
        let g = ctx.scratch.buffer(.gate, m * gate.n, of: Float.self), u = ctx.scratch.buffer(.up, m * up.n, of: Float.self)
        ctx.timed(.prepare) { RowMath.rmsNorm(x, rows: m, k: gate.k, weight: w.postAttentionNorm, eps: eps, into: n, threads: ctx.threads) }
        ctx.projection("gate_proj") { gate.apply(n, rows: m, into: g, ctx.threads) }
        ctx.projection("up_proj") { up.apply(n, rows: m, into: u, ctx.threads) }
        ctx.timed(.prepare) { RowMath.siluMul(g, u, count: m * gate.n, threads: ctx.threads) }
        ctx.projection("down_proj") { down.apply(g, rows: m, into: out, ctx.threads) }
    }
}

/// The W8A8 baseline: per-output-channel INT8 weights, per-token INT8 activations (Swift), gemm-w8a8;
/// norms and SiLU in fp32 as in the FP32 path.
final class W8A8Layer: DecoderLayer {
    let inputNorm: [Float], postNorm: [Float]
    let eps: Float
    let q, k, v, o, gate, up, down: W8A8Linear

    /// A layer of a W8A8 `QuantizedModel` (identity permutations, so the norm gains are the model's).
    init(_ w: QuantizedLayer, eps: Float) throws {
        func linear(_ q: QuantizedWeight, _ name: String) throws -> W8A8Linear {
            guard case .int8(let weight) = q else { throw EngineError.invalidInput("\(name) is not a W8A8 weight") }
            return W8A8Linear(weight)
        }
        guard w.permutations.isIdentity else { throw EngineError.invalidInput("a W8A8 layer with reordered channels") }
        inputNorm = w.inputNorm
        postNorm = w.postAttentionNorm
        self.eps = eps
        q = try linear(w.q, "q_proj")
        k = try linear(w.k, "k_proj")
        v = try linear(w.v, "v_proj")
        o = try linear(w.o, "o_proj")
        gate = try linear(w.gate, "gate_proj")
        up = try linear(w.up, "up_proj")
        down = try linear(w.down, "down_proj")
    }

    private func quantize(_ x: UnsafePointer<Float>, m: Int, k: Int, _ ctx: LayerContext) -> Int8Rows {
        ctx.timed(.prepare) { Int8Rows.quantize(x, rows: m, k: k, ctx.scratch, threads: ctx.threads) }
    }

    func projectQKV(_ x: UnsafePointer<Float>, m: Int, q qo: UnsafeMutablePointer<Float>, k ko: UnsafeMutablePointer<Float>,
                    v vo: UnsafeMutablePointer<Float>, _ ctx: LayerContext) throws {
        let n = ctx.scratch.buffer(.normed, m * q.k, of: Float.self)
        ctx.timed(.prepare) { RowMath.rmsNorm(x, rows: m, k: q.k, weight: inputNorm, eps: eps, into: n, threads: ctx.threads) }
        let a = quantize(n, m: m, k: q.k, ctx)
        try q.apply(a, rows: m, into: qo, role: "q_proj", ctx)
        try k.apply(a, rows: m, into: ko, role: "k_proj", ctx)
        try v.apply(a, rows: m, into: vo, role: "v_proj", ctx)
    }

    func projectO(_ attention: UnsafePointer<Float>, m: Int, into out: UnsafeMutablePointer<Float>, _ ctx: LayerContext) throws {
        try o.apply(quantize(attention, m: m, k: o.k, ctx), rows: m, into: out, role: "o_proj", ctx)
    }

    func mlp(_ x: UnsafePointer<Float>, m: Int, into out: UnsafeMutablePointer<Float>, _ ctx: LayerContext) throws {
        let n = ctx.scratch.buffer(.normed, m * gate.k, of: Float.self)
        let g = ctx.scratch.buffer(.gate, m * gate.n, of: Float.self), u = ctx.scratch.buffer(.up, m * up.n, of: Float.self)
        ctx.timed(.prepare) { RowMath.rmsNorm(x, rows: m, k: gate.k, weight: postNorm, eps: eps, into: n, threads: ctx.threads) }
        let a = quantize(n, m: m, k: gate.k, ctx)
        try gate.apply(a, rows: m, into: g, role: "gate_proj", ctx)
        try up.apply(a, rows: m, into: u, role: "up_proj", ctx)
        ctx.timed(.prepare) { RowMath.siluMul(g, u, count: m * gate.n, threads: ctx.threads) }
        try down.apply(quantize(g, m: m, k: down.k, ctx), rows: m, into: out, role: "down_proj", ctx)
    }
}
