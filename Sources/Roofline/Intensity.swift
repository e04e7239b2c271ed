import KernelKit
import Kernels

/// Each family's roofline model: the fewest bytes a run must move, which compute ceiling bounds it on
/// an ISA, and which bandwidth operation its traffic looks like. Useful operations come from the
/// family itself (`KernelFamily.usefulOps`).
public enum IntensityModel {
    /// The fewest bytes one run moves (every input read once, the output written once), or nil for
    /// families without a model (the ceiling microbenchmarks themselves).
    public static func bytes(family: String, workload w: Workload, config: Configuration) -> Double? {
        let m = Double(w["m"]), n = Double(w["n"]), k = Double(w["k"])
        switch family {
        case "gemm-w8a8":
            // int8 A and W with one fp32 scale per row and per output channel; fp32 Y.
            return m * (k + 4) + n * (k + 4) + m * n * 4
        case "gemm-w4a4":
            return w4a4Inputs(w) + m * n * 4
        case "gemm-w4a4-kv":
            // The same GEMM's inputs; out, only the cache rows (codes and parameters), never Y.
            return w4a4Inputs(GemmW4A4KV.gemmWorkload(w)) + GemmW4A4KV.cacheBytes(w, config)
        case "gemm-f16":
            // fp32 X, fp16 W, fp32 Y.
            return m * k * 4 + n * k * 2 + m * n * 4
        case "rmsnorm-reorder-quantize", "reorder-quantize", "silu-mul-quantize":
            guard let op = AtomQuantize.Op(rawValue: family) else { return nil }
            return AtomQuantize.bytesMoved(op: op, m: w["m"], k: w["k"], outliers: w["outliers"])
        case "attention-decode":
            guard config["cache"] != nil else { return nil }
            // The KV cache once, q in and the output out.
            return AttentionDecode.kvBytes(w, config) + 2 * Double(w["b"] * w["hq"] * w["d"]) * 4
        default:
            return nil
        }
    }

    /// A as the quantize kernels emit it (packed codes, scales and group sums, INT8 outliers and a scale)
    /// and the packed weights of a gemm-w4a4 workload.
    static func w4a4Inputs(_ w: Workload) -> Double {
        let o = w.shape["outliers"] ?? AtomQuantization.defaultOutliers
        let normal = Double(w["k"] - o), groups = normal / Double(AtomQuantization.groupSize)
        return Double(w["m"]) * (normal / 2 + groups * 8 + Double(o) + 4) + GemmW4A4.weightBytes(w)
    }

    /// The `peak-compute` operation that bounds the family's arithmetic on `isa`, or nil when the
    /// family is bounded by bandwidth alone (the quantize kernels count elements) or has no
    /// measured ceiling for that ISA (portable C).
    public static func computeOp(family: String, isa: String) -> String? {
        guard isa != ISATarget.portable.rawValue else { return nil }
        switch family {
        case "gemm-w8a8":
            return isa == ISATarget.avx2.rawValue ? "int8-i32" : "int8-dot"
        case "gemm-w4a4", "gemm-w4a4-kv":
            // The dot products without the unpack: the kernel unpacks a weight vector once for MR rows,
            // so int4-dot (one unpack per dot) is no upper bound for it.
            return isa == ISATarget.avx2.rawValue ? "int8-i16" : "int8-dot"
        case "attention-decode", "gemm-f16":
            return "fp32-fma"
        default:
            return nil
        }
    }

    /// The `peak-bandwidth` operation whose traffic the family's resembles.
    public static func bandwidthOp(family: String) -> String {
        switch family {
        case "rmsnorm-reorder-quantize", "reorder-quantize", "silu-mul-quantize", "kv-append": return "copy"
        default: return "read"
        }
    }
}
