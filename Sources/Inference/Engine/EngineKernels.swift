import KernelKit
import Kernels

/// One use of a kernel by the engine: which layer, which step of the layer, and the choice made.
public struct DispatchRecord: Sendable, Equatable {
    /// The decoder layer (nil for work outside the layers).
    public var layer: Int?
    /// What the kernel does there: "q_proj", "qkv-quantize", "attention", ...
    public var role: String
    public var choice: KernelChoice
}

/// The engine's side of dispatch: turns each kernel use into a lookup workload, asks the
/// `KernelProvider`, binds the typed entry points (memoized per workload) and records every distinct
/// (layer, role, workload) for `--explain`.
///
/// Lookup workloads: GEMM and quantize kernels at M rounded up to a power of two (a configuration for
/// M rows runs any smaller M; the tuning suites use powers of two); kv-append at the step's sequence
/// count and longest append rounded up to powers of two, with the cache capacity as `ctx` and `kvbits`;
/// attention-decode at the step's entry count and longest context rounded to the nearest power of two
/// (tuned contexts are powers of two), with `kvbits` fixing the cache format. The cache families'
/// page size is fixed to the cache's.
final class EngineKernels {
    let provider: KernelProvider
    let layout: KVPageLayout
    let capacity: Int
    private(set) var records: [DispatchRecord] = []
    private var seen: Set<String> = []
    private var w8: [Workload: W8A8Gemm] = [:]
    private var w4: [Workload: W4A4Gemm] = [:]
    private var f16: [Workload: F16Gemm] = [:]
    private var quantizers: [Workload: AtomQuantizeKernel] = [:]
    private var appends: [Workload: KVAppendKernel] = [:]
    private var attentions: [Workload: AttentionKernel] = [:]

    init(provider: KernelProvider, layout: KVPageLayout, capacity: Int) {
        self.provider = provider
        self.layout = layout
        self.capacity = capacity
    }

    static func roundUpPowerOfTwo(_ x: Int) -> Int {
        var p = 1
        while p < x { p *= 2 }
        return p
    }

    static func roundNearestPowerOfTwo(_ x: Int) -> Int {
        let up = roundUpPowerOfTwo(x)
        return up / 2 >= 1 && x - up / 2 < up - x ? up / 2 : up
    }

    private func note(_ layer: Int?, _ role: String, _ choice: KernelChoice) {
        let key = "\(layer ?? -1) \(role) \(choice.workload)"
        if seen.insert(key).inserted { records.append(DispatchRecord(layer: layer, role: role, choice: choice)) }
    }

    func gemmW8A8(m: Int, n: Int, k: Int, layer: Int?, role: String) throws -> W8A8Gemm {
        let w = Workload(family: "gemm-w8a8", shape: ["m": Self.roundUpPowerOfTwo(m), "n": n, "k": k])
        let bound = try w8[w] ?? {
            let b = try W8A8Gemm(provider.kernel(GemmW8A8(), for: w), workspace: true)
            w8[w] = b
            return b
        }()
        note(layer, role, bound.loaded.choice)
        return bound
    }

    func gemmW4A4(m: Int, n: Int, k: Int, outliers: Int, layer: Int?, role: String) throws -> W4A4Gemm {
        let w = Workload(family: "gemm-w4a4", shape: ["m": Self.roundUpPowerOfTwo(m), "n": n, "k": k, "outliers": outliers])
        let bound = try w4[w] ?? {
            let b = try W4A4Gemm(provider.kernel(GemmW4A4(), for: w), workspace: true, packing: GemmW4A4.packingKey)
            w4[w] = b
            return b
        }()
        note(layer, role, bound.loaded.choice)
        return bound
    }

    func gemmF16(m: Int, n: Int, k: Int, role: String) throws -> F16Gemm {
        let w = Workload(family: "gemm-f16", shape: ["m": Self.roundUpPowerOfTwo(m), "n": n, "k": k])
        let bound = try f16[w] ?? {
            let b = try F16Gemm(provider.kernel(GemmF16(), for: w), workspace: false)
            f16[w] = b
            return b
        }()
        note(nil, role, bound.loaded.choice)
        return bound
    }

    func quantize(_ op: AtomQuantize.Op, m: Int, k: Int, outliers: Int, layer: Int?, role: String) throws -> AtomQuantizeKernel {
        let w = Workload(family: op.rawValue, shape: ["m": Self.roundUpPowerOfTwo(m), "k": k, "outliers": outliers])
        let bound = try quantizers[w] ?? {
            let b = try AtomQuantizeKernel(provider.kernel(AtomQuantize(op), for: w), op: op)
            quantizers[w] = b
            return b
        }()
        note(layer, role, bound.loaded.choice)
        return bound
    }

    func append(sequences: Int, longest: Int, layer: Int?, role: String = "kv-append") throws -> KVAppendKernel {
        let w = Workload(family: "kv-append", shape: [
            "b": Self.roundUpPowerOfTwo(sequences), "hkv": layout.kvHeads, "d": layout.headDim, "ctx": capacity,
            "new": min(capacity, Self.roundUpPowerOfTwo(longest)), "kvbits": layout.format.bits,
        ])
        let bound = try appends[w] ?? {
            let loaded = try provider.kernel(KVAppend(), for: w, fixing: ["page": .int(layout.pageTokens)])
            let b = try KVAppendKernel(loaded, layout: layout)
            appends[w] = b
            return b
        }()
        note(layer, role, bound.loaded.choice)
        return bound
    }

    func attention(entries: Int, longest: Int, queryHeads: Int, layer: Int?) throws -> AttentionKernel {
        let w = Workload(family: "attention-decode", shape: [
            "b": Self.roundNearestPowerOfTwo(entries), "hq": queryHeads, "hkv": layout.kvHeads, "d": layout.headDim,
            "ctx": Self.roundNearestPowerOfTwo(longest), "kvbits": layout.format.bits,
        ])
        let bound = try attentions[w] ?? {
            let loaded = try provider.kernel(AttentionDecode(), for: w, fixing: ["page": .int(layout.pageTokens)])
            let b = try AttentionKernel(loaded, queryHeads: queryHeads, layout: layout)
            attentions[w] = b
            return b
        }()
        note(layer, "attention", bound.loaded.choice)
        return bound
    }
}
