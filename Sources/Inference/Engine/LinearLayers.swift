import COpenBLAS
import KernelKit
import Model

/// What a layer needs to run its kernels: dispatch, threads, scratch memory and the step's profile.
final class LayerContext {
    let kernels: EngineKernels
    let threads: KernelThreads
    let scratch: Scratch
    let packing: PackingPolicy
    var profile = StepProfile()
    /// The layer being run (for the dispatch log), nil outside the layers.
    var layer: Int?

    init(kernels: EngineKernels, threads: KernelThreads, scratch: Scratch, packing: PackingPolicy) {
        self.kernels = kernels
        self.threads = threads
        self.scratch = scratch
        self.packing = packing
    }

    /// Runs `body`, adding its wall time to `part`.
    @inline(__always)
    func timed<T>(_ part: StepProfile.Part, _ body: () throws -> T) rethrows -> T {
        let start = StepProfile.now()
        defer { profile.add(part, StepProfile.now() - start) }
        return try body()
    }

    /// Runs the kernel call of projection `name` (q_proj, ..., lm_head), adding its wall time to the
    /// projection's total and, unless `part` is nil (a call inside a part already timed), to `part`.
    @inline(__always)
    func projection<T>(_ name: String, part: StepProfile.Part? = .gemm, _ body: () throws -> T) rethrows -> T {
        let start = StepProfile.now()
        defer {
            let s = StepProfile.now() - start
            profile.add(projection: name, s)
            if let part { profile.add(part, s) }
        }
        return try body()
    }
}

/// An FP32 linear layer `y = x W^T` through OpenBLAS, with W row-major [out][in] (the checkpoint's
/// layout, shared with the loaded weights: no copy).
///
/// OpenBLAS runs single-threaded (`EngineRuntime` sets it); the engine's own threads split the output
/// channels, each calling `cblas_sgemm` (or `cblas_sgemv` for one row, which streams W at close to
/// memory bandwidth where sgemm with M = 1 reaches about a third of it) on its block. One set of
/// threads for every mode: OpenBLAS's own threads keep spinning for a while after each call, which
/// would slow the next kernels on a 2-core machine (measured: 2.5 ms per small quantize kernel).
struct FP32Linear {
    let n: Int
    let k: Int
    let weight: [Float]

    init(_ w: Matrix) {
        n = w.rows
        k = w.cols
        weight = w.values
    }

    /// y [m][n] = x [m][k] W^T.
    func apply(_ x: UnsafePointer<Float>, rows m: Int, into y: UnsafeMutablePointer<Float>, _ threads: KernelThreads) {
        let blocks = balancedRanges(count: n, parts: threads.threadCount, unit: 16)
        let n = Int32(n), k = Int32(k), m = Int32(m)
        weight.withUnsafeBufferPointer { w in
            let base = w.baseAddress!
            threads.run(shares: blocks.count) { s in
                let b = blocks[s]
                guard !b.isEmpty else { return }
                let rows = Int32(b.count), wb = base + b.lowerBound * Int(k)
                if m == 1 {
                    cblas_sgemv(CblasRowMajor, CblasNoTrans, rows, k, 1, wb, k, x, 1, 0, y + b.lowerBound, 1)
                } else {
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, rows, k, 1, x, k, wb, k, 0, y + b.lowerBound, n)
                }
            }
        }
    }
}

/// How many packed copies each linear layer of an engine keeps (`EngineOptions.packedLayouts`), and the
/// packing done so far over all of them. One per engine, shared by its layers.
final class PackingPolicy {
    /// Packed layouts a layer keeps at once; packing another drops the least recently used.
    let layoutsPerLayer: Int
    /// Packings made, packings dropped, and the bytes the kept ones hold now.
    private(set) var packings = 0
    private(set) var dropped = 0
    private(set) var bytesHeld = 0

    init(layoutsPerLayer: Int) {
        precondition(layoutsPerLayer >= 1, "a layer keeps at least the packing it runs")
        self.layoutsPerLayer = layoutsPerLayer
    }

    fileprivate func made(_ bytes: Int) {
        packings += 1
        bytesHeld += bytes
    }

    fileprivate func released(_ bytes: Int) {
        dropped += 1
        bytesHeld -= bytes
    }
}

/// Weights prepacked for a GEMM family, one packing per packed layout (`PackedGemm.packing`: the panel
/// width NR, and what else the family's packing depends on), made the first time a configuration with
/// that layout runs. At most `PackingPolicy.layoutsPerLayer` are kept: each configuration the dispatch
/// picks for another batch size may want another layout, and without a bound every one of them stayed
/// (serve-bench over batches 1, 32 and 64 on 8 layers of the llama-7b preset went from 3.8 to 8.9 GB).
/// The least recently used packing is dropped before a new one is made; running its layout again packs
/// it again from the layer's codes.
final class PackedWeights {
    /// Most recently used last.
    private var kept: [(layout: String, buffer: AlignedBuffer)] = []

    /// The packing of layout `key`, made by `pack(bytes)` into a new buffer of `bytes` bytes when missing.
    /// The pointer stays valid until the next call.
    func packing(_ key: String, bytes: Int, policy: PackingPolicy, pack: (UnsafeMutableRawPointer) -> Void) -> UnsafeRawPointer {
        if let i = kept.firstIndex(where: { $0.layout == key }) {
            let entry = kept.remove(at: i)
            kept.append(entry)
            return UnsafeRawPointer(entry.buffer.pointer)
        }
        while kept.count >= policy.layoutsPerLayer {
            policy.released(kept.removeFirst().buffer.byteCount)
        }
        let buffer = AlignedBuffer(byteCount: bytes)
        pack(buffer.pointer)
        kept.append((key, buffer))
        policy.made(bytes)
        return UnsafeRawPointer(buffer.pointer)
    }

    /// The layouts kept, least recently used first.
    var layouts: [String] { kept.map(\.layout) }
}

/// A W8A8 linear layer: INT8 weights with one scale per output channel (`Int8Weight`, quantized
/// offline by `AtomModelQuantizer`), run by gemm-w8a8 on per-token INT8 activations.
final class W8A8Linear {
    let n: Int
    let k: Int
    private let codes: [Int8]
    private let scales: [Float]
    private let packed = PackedWeights()

    init(_ w: Int8Weight) {
        n = w.rows
        k = w.cols
        codes = w.codes
        scales = w.scales
    }

    /// y [m][n] from activations `a` ([m][k] codes, [m] scales).
    func apply(_ a: Int8Rows, rows m: Int, into y: UnsafeMutablePointer<Float>, role: String, _ ctx: LayerContext) throws {
        let g = try ctx.kernels.gemmW8A8(m: m, n: n, k: k, layer: ctx.layer, role: role)
        let panels = packed.packing(g.packing, bytes: g.packedBytes(Int32(n), Int32(k)), policy: ctx.packing) { out in
            codes.withUnsafeBufferPointer { c in
                scales.withUnsafeBufferPointer { s in g.pack(c.baseAddress, s.baseAddress, Int32(n), Int32(k), out) }
            }
        }
        let blocks = g.blocks(m: m, n: n)
        let ws = ctx.scratch.workspaces(.workspace, shares: blocks.count, bytes: g.workspaceBytes)
        let n32 = Int32(n), k32 = Int32(k)
        ctx.projection(role) {
            ctx.threads.run(shares: blocks.count) { s in
                let b = blocks[s]
                guard !b.rows.isEmpty, !b.cols.isEmpty else { return }
                g.kernel(
                    a.codes, a.scales, panels, y, n32, k32, Int32(b.rows.lowerBound), Int32(b.rows.upperBound),
                    Int32(b.cols.lowerBound), Int32(b.cols.upperBound), ws.base + s * ws.stride)
            }
        }
    }
}

/// Per-token symmetric INT8 rows (KERNELS.md section 1): s = max|x| / 127, q = rne(x / s) in
/// [-127, 127]; a row of zeros gets s = 0 and codes 0.
struct Int8Rows {
    let codes: UnsafeMutablePointer<Int8>
    let scales: UnsafeMutablePointer<Float>

    /// Quantizes `m` rows of `k` floats into scratch (rows shared among `threads`).
    static func quantize(_ x: UnsafePointer<Float>, rows m: Int, k: Int, _ scratch: Scratch, threads: KernelThreads? = nil) -> Int8Rows {
        let rows = Int8Rows(codes: scratch.buffer(.codes8, m * k), scales: scratch.buffer(.scales8, m))
        let body = { (range: Range<Int>) in
            for r in range { rows.scales[r] = quantizeRow(x + r * k, count: k, into: rows.codes + r * k) }
        }
        if let threads { threads.forEachRange(m, body) } else { body(0..<m) }
        return rows
    }

    /// One row; returns its scale. The maximum eight lanes at a time (exact); each code is x * (1 / s)
    /// clamped to [-127, 127] and rounded to nearest even by adding 1.5 * 2^23, whose low byte is then
    /// the code (the same value as `Int8(rne(...))`, in a loop the compiler vectorizes; a NaN gives 0).
    static func quantizeRow(_ x: UnsafePointer<Float>, count k: Int, into q: UnsafeMutablePointer<Int8>) -> Float {
        typealias Lanes = SIMD8<Float>
        let raw = UnsafeRawPointer(x)
        var most = Lanes(repeating: 0)
        var i = 0
        while i + Lanes.scalarCount <= k {
            let v = raw.loadUnaligned(fromByteOffset: i * 4, as: Lanes.self)
            most = most.replacing(with: v, where: v .> most)
            most = most.replacing(with: -v, where: -v .> most)
            i += Lanes.scalarCount
        }
        var absmax = most.max()
        while i < k {
            let a = abs(x[i])
            absmax = a > absmax ? a : absmax
            i += 1
        }
        let s = absmax / 127
        guard s > 0 else {
            q.update(repeating: 0, count: k)
            return 0
        }
        // x * (1 / s) may differ from x / s in the last bit; either is a valid INT8 code of x.
        let inverse = 1 / s
        for i in 0..<k {
            var y = x[i] * inverse
            y = y < -127 ? -127 : y
            y = y > 127 ? 127 : y
            q[i] = Int8(truncatingIfNeeded: (y + 12_582_912).bitPattern)
        }
        return s
    }
}
