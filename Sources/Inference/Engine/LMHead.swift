import KernelKit
import Kernels
import Model

/// The output projection. The FP32 engine runs it in FP32 (OpenBLAS); the quantized engines keep it in
/// FP16, as Atom does (embedding and lm_head stay in half precision), on gemm-f16: at decode batch sizes
/// lm_head is a stream over vocab x hidden weights, so half the bytes is about half the time.
enum LMHead {
    case fp32(FP32Linear)
    case fp16(FP16Linear)

    init(_ w: Matrix, halfPrecision: Bool) throws {
        self = halfPrecision ? .fp16(try FP16Linear(w)) : .fp32(FP32Linear(w))
    }

    /// logits [m][vocab] = x [m][hidden] W^T.
    func apply(_ x: UnsafePointer<Float>, rows m: Int, into y: UnsafeMutablePointer<Float>, _ ctx: LayerContext) throws {
        switch self {
        case .fp32(let l): ctx.projection("lm_head", part: nil) { l.apply(x, rows: m, into: y, ctx.threads) }
        case .fp16(let l): try l.apply(x, rows: m, into: y, ctx)
        }
    }
}

/// A linear layer with FP16 weights (gemm-f16: fp32 activations and sums).
final class FP16Linear {
    let n: Int
    let k: Int
    private let bits: [UInt16]
    private let packed = PackedWeights()

    /// Throws when a weight does not fit in fp16 (|x| > 65504).
    init(_ w: Matrix) throws {
        n = w.rows
        k = w.cols
        var bits = [UInt16](repeating: 0, count: w.values.count)
        for (i, x) in w.values.enumerated() {
            let h = Float16(x)
            guard h.isFinite else {
                throw EngineError.unsupportedModel("lm_head weight \(i) = \(x) does not fit in fp16 (largest 65504); run the model in fp32")
            }
            bits[i] = h.bitPattern
        }
        self.bits = bits
    }

    func apply(_ x: UnsafePointer<Float>, rows m: Int, into y: UnsafeMutablePointer<Float>, _ ctx: LayerContext) throws {
        let g = try ctx.kernels.gemmF16(m: m, n: n, k: k, role: "lm_head")
        let panels = packed.packing(g.packing, bytes: g.packedBytes(Int32(n), Int32(k)), policy: ctx.packing) { out in
            bits.withUnsafeBufferPointer { g.pack($0.baseAddress, Int32(n), Int32(k), out) }
        }
        let blocks = g.blocks(m: m, n: n)
        let n32 = Int32(n), k32 = Int32(k)
        ctx.projection("lm_head", part: nil) {
            ctx.threads.run(shares: blocks.count) { s in
                let b = blocks[s]
                guard !b.rows.isEmpty, !b.cols.isEmpty else { return }
                g.kernel(x, panels, y, n32, k32, Int32(b.rows.lowerBound), Int32(b.rows.upperBound), Int32(b.cols.lowerBound), Int32(b.cols.upperBound))
            }
        }
    }
}
