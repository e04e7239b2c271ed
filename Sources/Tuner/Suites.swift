import KernelKit

/// A named set of workloads to tune together, with a budget per workload.
public struct Suite: Sendable {
    public var name: String
    public var summary: String
    public var workloads: [Workload]
    public var budget: Budget
    /// GEMM workloads (those with an `n`) with `m` up to this are measured cold: at decode batch sizes a
    /// model's weights stream from memory, and a configuration tuned on weights sitting in the cache
    /// (prefetch distance, K block) can lose when they do not. nil: as the command line says.
    public var coldUpToM: Int?

    /// Whether `workload` is measured cold in this suite.
    public func measuresCold(_ workload: Workload) -> Bool {
        guard let limit = coldUpToM, let m = workload.shape["m"], workload.shape["n"] != nil else { return false }
        return m <= limit
    }

    /// Linear layers of Llama-7B (hidden 4096, intermediate 11008): q/k/v/o are 4096 x 4096, gate and
    /// up 11008 x 4096, down 4096 x 11008 (N x K, weights [N][K]).
    public static let llamaLinearShapes: [(n: Int, k: Int)] = [(4096, 4096), (11008, 4096), (4096, 11008)]

    /// Every GEMM family on Llama-7B's linear layers at the given batch sizes (W4A4 with 128 outliers).
    public static func llama7b(batches: [Int] = [1, 2, 4, 8, 16, 32, 64, 128, 256], families: [String] = ["gemm-w8a8", "gemm-w4a4"]) -> Suite {
        Suite(
            name: "llama-7b",
            summary: "\(families.joined(separator: " and ")) on Llama-7B's linear layers (4096x4096, 11008x4096, 4096x11008) at batch \(batches.map(String.init).joined(separator: ", "))",
            workloads: families.flatMap { family in
                batches.flatMap { m in
                    llamaLinearShapes.map { shape -> Workload in
                        var dims = ["m": m, "n": shape.n, "k": shape.k]
                        if family == "gemm-w4a4" { dims["outliers"] = 128 }
                        return Workload(family: family, shape: dims)
                    }
                }
            },
            budget: Budget(maxTrials: 24, maxTime: .seconds(120), patience: 10),
            coldUpToM: 16)
    }

    public static let all: [Suite] = [
        Suite(
            name: "smoke",
            summary: "small gemm-w8a8 and gemm-w4a4 shapes, a handful of trials each (about a minute)",
            workloads: [[1, 512, 512], [16, 512, 512], [64, 1024, 512]].map {
                Workload(family: "gemm-w8a8", shape: ["m": $0[0], "n": $0[1], "k": $0[2]])
            } + [[1, 512, 640], [64, 1024, 640]].map {
                Workload(family: "gemm-w4a4", shape: ["m": $0[0], "n": $0[1], "k": $0[2], "outliers": 128])
            },
            budget: Budget(maxTrials: 6, maxTime: .seconds(20), patience: 4)),
        {
            var s = llama7b(batches: [1, 16, 64, 256])
            s.name = "default"
            s.summary = "the main job's suite: gemm-w8a8 and gemm-w4a4 on Llama-7B's linear layers at batch 1, 16, 64 and 256 (fits 10 minutes on 2 cores)"
            s.budget = Budget(maxTrials: 12, maxTime: .seconds(20), patience: 5)
            return s
        }(),
        {
            // The fused quantize kernels feeding those layers: RMSNorm before q/k/v and gate/up (K = 4096),
            // the o_proj input reorder (K = 4096), SiLU * up before down_proj (K = 11008).
            var s = llama7b()
            s.workloads += [("rmsnorm-reorder-quantize", 4096), ("reorder-quantize", 4096), ("silu-mul-quantize", 11008)].flatMap { family, k in
                [1, 16, 64, 256].map { Workload(family: family, shape: ["m": $0, "k": k, "outliers": 128]) }
            }
            // Decode attention over Llama-7B's heads (32 query and KV heads of 128) on INT4 and INT8
            // caches; batch x context kept to what one pool holds.
            let attention: [(b: Int, ctx: Int)] = [(1, 4096), (1, 8192), (4, 1024), (4, 4096), (16, 1024)]
            s.workloads += [4, 8].flatMap { bits in
                attention.map { Workload(family: "attention-decode", shape: ["b": $0.b, "hq": 32, "hkv": 32, "d": 128, "ctx": $0.ctx, "kvbits": bits]) }
            }
            // The K and V projections with the cache epilogue (32 KV heads of 128: N = 8192) into an INT4
            // cache of 256 tokens a sequence (enough for the append plan's prefill chunk at m = 256).
            s.workloads += [1, 16, 64, 256].map {
                Workload(family: "gemm-w4a4-kv", shape: ["m": $0, "hkv": 32, "d": 128, "k": 4096, "outliers": 128, "ctx": 256, "kvbits": 4])
            }
            // Appends to those caches: one token per sequence at decode batch 1, 16 and 32, and a prefill
            // chunk of 256 tokens into one sequence.
            let appends: [(b: Int, new: Int)] = [(1, 1), (16, 1), (32, 1), (1, 256)]
            s.workloads += [4, 8].flatMap { bits in
                appends.map { Workload(family: "kv-append", shape: ["b": $0.b, "hkv": 32, "d": 128, "ctx": 1024, "new": $0.new, "kvbits": bits]) }
            }
            // The FP16 lm_head of the quantized engines (vocabulary 32000 x hidden 4096).
            s.workloads += [1, 16, 64, 256].map { Workload(family: "gemm-f16", shape: ["m": $0, "n": 32000, "k": 4096]) }
            s.summary += ", the fused quantize kernels that feed them, the K/V projections writing an INT4 KV cache, decode attention over INT4 and INT8 KV caches and the appends to them, and the FP16 lm_head"
            return s
        }(),
    ]

    public static func named(_ name: String) -> Suite? { all.first { $0.name == name } }
}
