import KernelKit
import Kernels
import Model

/// Atom activations of `m` rows in one scratch region laid out as `AtomQuantize.OutputLayout` (what the
/// fused quantize kernels write and gemm-w4a4 reads): packed INT4 codes, group scales, group code sums,
/// INT8 outlier codes, outlier scales.
struct W4Rows {
    let layout: AtomQuantize.OutputLayout
    let base: UnsafeMutableRawPointer

    init(_ slot: Scratch.Slot, m: Int, k: Int, outliers: Int, _ scratch: Scratch) {
        layout = AtomQuantize.OutputLayout(m: m, k: k, outliers: outliers)
        base = scratch.raw(slot, bytes: layout.bytes)
    }

    var codes: UnsafeMutablePointer<UInt8> { (base + layout.codes).assumingMemoryBound(to: UInt8.self) }
    var scales: UnsafeMutablePointer<Float> { (base + layout.scales).assumingMemoryBound(to: Float.self) }
    var sums: UnsafeMutablePointer<Int32> { (base + layout.groupSums).assumingMemoryBound(to: Int32.self) }
    var outlierCodes: UnsafeMutablePointer<Int8> { (base + layout.outlierCodes).assumingMemoryBound(to: Int8.self) }
    var outlierScales: UnsafeMutablePointer<Float> { (base + layout.outlierScales).assumingMemoryBound(to: Float.self) }
}

/// The fused Atom quantize kernels run over row shares.
enum AtomActivations {
    /// rmsnorm-reorder-quantize: y = x[perm] * w[perm] / rms(x), then Atom quantization.
    static func rmsnormReorder(
        _ x: UnsafePointer<Float>, m: Int, k: Int, outliers: Int, normWeight: UnsafePointer<Float>, perm: UnsafePointer<Int32>,
        eps: Float, into slot: Scratch.Slot, role: String, _ ctx: LayerContext
    ) throws -> W4Rows {
        let q = try ctx.kernels.quantize(.rmsnormReorderQuantize, m: m, k: k, outliers: outliers, layer: ctx.layer, role: role)
        let out = W4Rows(slot, m: m, k: k, outliers: outliers, ctx.scratch)
        run(q, m: m, k: k, outliers: outliers, ctx) { parts, u0, u1, stage in
            q.rmsNorm(x, normWeight, perm, eps, Int32(k), Int32(outliers), parts, u0, u1,
                      out.codes, out.scales, out.sums, out.outlierCodes, out.outlierScales, stage)
        }
        return out
    }

    /// reorder-quantize: y = x[perm], then Atom quantization.
    static func reorder(
        _ x: UnsafePointer<Float>, m: Int, k: Int, outliers: Int, perm: UnsafePointer<Int32>, into slot: Scratch.Slot,
        role: String, _ ctx: LayerContext
    ) throws -> W4Rows {
        let q = try ctx.kernels.quantize(.reorderQuantize, m: m, k: k, outliers: outliers, layer: ctx.layer, role: role)
        let out = W4Rows(slot, m: m, k: k, outliers: outliers, ctx.scratch)
        run(q, m: m, k: k, outliers: outliers, ctx) { parts, u0, u1, stage in
            q.reorder(x, perm, Int32(k), Int32(outliers), parts, u0, u1,
                      out.codes, out.scales, out.sums, out.outlierCodes, out.outlierScales, stage)
        }
        return out
    }

    /// silu-mul-quantize: y = silu(gate) * up, then Atom quantization.
    static func siluMul(
        gate: UnsafePointer<Float>, up: UnsafePointer<Float>, m: Int, k: Int, outliers: Int, into slot: Scratch.Slot,
        role: String, _ ctx: LayerContext
    ) throws -> W4Rows {
        let q = try ctx.kernels.quantize(.siluMulQuantize, m: m, k: k, outliers: outliers, layer: ctx.layer, role: role)
        let out = W4Rows(slot, m: m, k: k, outliers: outliers, ctx.scratch)
        run(q, m: m, k: k, outliers: outliers, ctx) { parts, u0, u1, stage in
            q.siluMul(gate, up, Int32(k), Int32(outliers), parts, u0, u1,
                      out.codes, out.scales, out.sums, out.outlierCodes, out.outlierScales, stage)
        }
        return out
    }

    /// Activations quantized in Swift into the layout the fused kernels write: for W4A4 settings the
    /// generated quantize kernels do not implement (the ablation's clip 1 or one scale per token; they
    /// fix group 128 and clip 0.9). `values` are the m x k inputs already reordered.
    static func swift(_ values: [Float], m: Int, k: Int, format: IntegerFormat, into slot: Scratch.Slot, _ ctx: LayerContext) -> W4Rows {
        ctx.timed(.prepare) {
            let q = IntegerRows(quantizing: values, rows: m, k: k, format: format).atomLayout()
            let out = W4Rows(slot, m: m, k: k, outliers: format.outliers, ctx.scratch)
            q.codes.withUnsafeBufferPointer { out.codes.update(from: $0.baseAddress!, count: $0.count) }
            q.scales.withUnsafeBufferPointer { out.scales.update(from: $0.baseAddress!, count: $0.count) }
            q.groupSums.withUnsafeBufferPointer { out.sums.update(from: $0.baseAddress!, count: $0.count) }
            q.outlierCodes.withUnsafeBufferPointer { if let b = $0.baseAddress { out.outlierCodes.update(from: b, count: $0.count) } }
            q.outlierScales.withUnsafeBufferPointer { out.outlierScales.update(from: $0.baseAddress!, count: $0.count) }
            return out
        }
    }

    private static func run(
        _ q: AtomQuantizeKernel, m: Int, k: Int, outliers: Int, _ ctx: LayerContext,
        _ body: (_ parts: Int32, _ u0: Int32, _ u1: Int32, UnsafeMutablePointer<Float>) -> Void
    ) {
        let (parts, units) = q.shares(m: m, k: k, outliers: outliers)
        let stages = ctx.scratch.workspaces(.stage, shares: units.count, bytes: q.stageBytes(k: k, outliers: outliers))
        ctx.timed(.prepare) {
            ctx.threads.run(shares: units.count) { s in
                guard !units[s].isEmpty else { return }
                body(Int32(parts), Int32(units[s].lowerBound), Int32(units[s].upperBound), (stages.base + s * stages.stride).assumingMemoryBound(to: Float.self))
            }
        }
    }
}

/// An Atom W4A4 linear layer: a weight quantized offline (`AtomModelQuantizer`: input channels
/// already reordered, INT4 in groups of 128 on the first K - O, the last O channels INT8 per row), run
/// by gemm-w4a4 after its first use packs it for the variant's panel width.
final class W4A4Linear {
    let n: Int
    let k: Int
    let outliers: Int
    private let weights: AtomQuantization.Quantized
    private let packed = PackedWeights()

    init(_ weights: AtomQuantization.Quantized) {
        n = weights.rows
        k = weights.k
        outliers = weights.outliers
        self.weights = weights
    }

    /// y [m][n] from quantized activations.
    func apply(_ a: W4Rows, rows m: Int, into y: UnsafeMutablePointer<Float>, role: String, _ ctx: LayerContext) throws {
        let g = try ctx.kernels.gemmW4A4(m: m, n: n, k: k, outliers: outliers, layer: ctx.layer, role: role)
        let w = weights
        let panels = packed.packing(g.packing, bytes: g.packedBytes(Int32(n), Int32(k), Int32(outliers)), policy: ctx.packing) { out in
            w.codes.withUnsafeBufferPointer { codes in
                w.scales.withUnsafeBufferPointer { scales in
                    w.outlierCodes.withUnsafeBufferPointer { oc in
                        w.outlierScales.withUnsafeBufferPointer { os in
                            g.pack(codes.baseAddress, scales.baseAddress, oc.baseAddress, os.baseAddress, Int32(n), Int32(k), Int32(outliers), out)
                        }
                    }
                }
            }
        }
        let blocks = g.blocks(m: m, n: n)
        let ws = ctx.scratch.workspaces(.workspace, shares: blocks.count, bytes: g.workspaceBytes)
        let n32 = Int32(n), k32 = Int32(k), o32 = Int32(outliers)
        ctx.projection(role) {
            ctx.threads.run(shares: blocks.count) { s in
                let b = blocks[s]
                guard !b.rows.isEmpty, !b.cols.isEmpty else { return }
                g.kernel(
                    a.codes, a.scales, a.sums, a.outlierCodes, a.outlierScales, panels, y, n32, k32, o32,
                    Int32(b.rows.lowerBound), Int32(b.rows.upperBound), Int32(b.cols.lowerBound), Int32(b.cols.upperBound),
                    ws.base + s * ws.stride)
            }
        }
    }
}
