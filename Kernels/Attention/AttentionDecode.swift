import Foundation
import KernelKit

/// `attention-decode` (KERNELS.md section 5): batched decode attention over the paged, quantized KV cache
/// that `kv-append` writes, with RoPE on the dequantized keys, GQA, online softmax and an optional
/// flash-decoding split.
///
/// Workload: `b` sequences, `hq` query heads, `hkv` KV heads, head dimension `d`, and `ctx`, the longest
/// context. Sequence lengths are part of the workload (`sequenceLengths`: a fixed seed made of the
/// dimensions, so every seed and every variant does the same work): sequence 0 has exactly `ctx` tokens,
/// sequence 1 an odd length (not a multiple of any page size), the others between ctx / 2 and ctx.
///
/// Verification: fp32 output within a normwise relative error of `tolerance` per (sequence, head) of
/// `AttentionReference`, which reads the same cache bytes (quantization error is not kernel error) and
/// computes RoPE, scores and a plain (not online) softmax in Double. For `dot=i8` the reference takes q
/// and the RoPE tables rounded as that variant rounds them (int8 per 64 elements, Q14): those roundings
/// are the variant's arithmetic, stated and measured apart (AttentionTests), not kernel error.
public struct AttentionDecode: KernelFamily {
    public init() {}

    /// Normwise relative error allowed per output row ||o - o_ref|| / ||o_ref||. fp32 rounding of RoPE,
    /// of dot products over d terms with large (20-100x) K channels, of expf and of the running sums gave
    /// 0.5e-6 to 1.5e-6 for the SIMD targets and up to 3.6e-6 for portable (sequential sums) at d = 128,
    /// ctx 300 to 8000, every cache and split (each trial reports its largest). 5e-5 leaves over 10x
    /// margin for longer contexts and peaked softmaxes while still catching a wrong token, page,
    /// position, head or scale, which move the result by 1e-2 or more.
    public static let tolerance = 5e-5
    /// The same for `dot=i8`, whose V weights are rounded to 16 bits per group of 16 tokens (not modelled
    /// by the reference): 1.3e-5 to 2.4e-5 measured at d = 64 to 192, tb = 8 to 64, splits 1 to 16; 2e-4
    /// leaves 8x margin and still catches a wrong token, page, position, head or scale.
    public static let integerTolerance = 2e-4

    public let name = "attention-decode"
    public let summary = "decode attention over a paged int4/int8/fp32 KV cache: RoPE on dequantized K, GQA, online softmax, split-K merge"
    public let templateVersion = 11
    public let dimensions = ["b", "hq", "hkv", "d", "ctx"]
    /// The pool rule bounds the test harness's cache (32-bit offsets there); the kernels use 64-bit ones.
    public var harnessShapeRules: Set<String> { ["size"] }

    public let shapeRules = [
        "positive: b, hq, hkv, d and ctx are at least 1",
        "gqa: hq is a multiple of hkv (query head h reads KV head h / (hq / hkv))",
        "even-dim: d is even (int4 packs two codes per byte; RoPE pairs the halves)",
        "size: the pool stays under 2^31 bytes",
        AttentionShapes.kvbitsRule,
    ]
    public let targets: [ISATarget] = [.portable, .avx2, .avx512vnni, .neonDotprod]

    /// The cache format is the runtime's choice, not the tuner's: a workload with `kvbits` fixes it.
    public var optionalDimensions: [String] { ["kvbits"] }

    /// The cache format from kvbits; with an INT8 or fp32 cache the arithmetic is fp32 (`dot=i8` reads
    /// 4-bit codes only).
    public func workloadParameters(_ workload: Workload) -> [String: ParamValue] {
        var fixed = AttentionShapes.cacheParameters(workload)
        if let cache = fixed["cache"], cache != .name(KVCacheFormat.int4.rawValue) { fixed["dot"] = .name("f32") }
        return fixed
    }

    public var parameters: [ParameterSpec] {
        [
            ParameterSpec("isa", .names(targets.map(\.rawValue)), default: .name("portable"), "instruction set (avx512-vnni: AVX-512F code)"),
            ParameterSpec("cache", .names(KVCacheFormat.allCases.map(\.rawValue)), default: .name("int4"), "cache element format"),
            ParameterSpec("page", .ints([16, 32, 64]), default: .int(16), "tokens per cache page (must match the cache)"),
            ParameterSpec("tb", .ints([4, 8, 16, 32, 64]), default: .int(16), "tokens per block (dequantized together, one softmax rescale per block)"),
            ParameterSpec("split", .ints([1, 2, 4, 8, 16]), default: .int(1), "splits of each sequence's tokens, merged by log-sum-exp"),
            ParameterSpec("unroll", .ints([1, 2, 4, 8]), default: .int(2), "tokens whose scores are computed together"),
            ParameterSpec("heads", .ints([1, 2, 4, 8, 16, 32, 64]), default: .int(8), "KV heads per unit (a block's RoPE rows are reused across them; fewer heads make more units)"),
            ParameterSpec(
                "prefetch", .ints([0, 1, 2]), default: .int(1),
                "software prefetch of K and V rows: 0 none, 1 the next block's of the same head, 2 the same tokens' of the unit's next KV head"),
            ParameterSpec(
                "dot", .names(["f32", "i8"]), default: .name("f32"),
                "score and V arithmetic: fp32, or integer multiply-adds (i8: INT4 cache, AVX2; q rounded to int8 per 64 elements, RoPE tables to Q14, V weights to 16 bits)"),
            ParameterSpec("threads", .ints([1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]), default: .int(1), "worker threads (each takes a range of (KV-head chunk, split, sequence) units)"),
            ParameterSpec("placement", .names(ThreadPlacement.allCases.map(\.rawValue)), default: .name("scatter"), "which PUs the threads use"),
        ]
    }

    public let constraints = [
        "unroll-block: tb is a multiple of unroll",
        "dot-int4: dot=i8 needs cache=int4 and isa=avx2 (the integer path reads 4-bit codes with AVX2's vpmaddubsw)",
        "dot-dim (workload): dot=i8 needs d to be a multiple of 64 (32 RoPE pairs per 32-byte load)",
        "split-tokens (workload): split <= ceil(ctx / tb), so a split of the longest sequence is never empty",
        "isa-runs (machine): the target's instructions are usable on this machine",
        "threads-pus (machine): threads <= processing units",
    ]

    public func checkShape(_ workload: Workload) throws {
        try AttentionShapes.checkPositive(workload, dimensions, family: name)
        guard workload["hq"] % workload["hkv"] == 0 else {
            throw ConstraintViolation("gqa", "hq = \(workload["hq"]) is not a multiple of hkv = \(workload["hkv"])")
        }
        try AttentionShapes.checkEven(workload["d"])
        try AttentionShapes.checkKVBits(workload)
        try AttentionShapes.checkPoolSize(workload)
    }

    public func check(_ config: Configuration, machine: MachineContext?) throws {
        try checkDomains(config)
        let tb = config.int("tb"), unroll = config.int("unroll")
        guard tb % unroll == 0 else { throw ConstraintViolation("unroll-block", "tb=\(tb) is not a multiple of unroll=\(unroll)") }
        if config.name("dot") == "i8" {
            guard config.name("cache") == KVCacheFormat.int4.rawValue, config.name("isa") == ISATarget.avx2.rawValue else {
                throw ConstraintViolation(
                    "dot-int4", "dot=i8 runs on cache=int4 with isa=avx2, not cache=\(config.name("cache")) isa=\(config.name("isa")); use dot=f32")
            }
        }
        try AttentionShapes.checkMachine(config, machine: machine)
    }

    /// The rules that need both the workload and the configuration (checked when the instance is made).
    public func checkFit(_ workload: Workload, _ config: Configuration) throws {
        if config.name("dot") == "i8" && workload["d"] % 64 != 0 {
            throw ConstraintViolation("dot-dim", "dot=i8 needs d to be a multiple of 64, and d = \(workload["d"]); use dot=f32")
        }
        let blocks = (workload["ctx"] + config.int("tb") - 1) / config.int("tb")
        guard config.int("split") <= blocks else {
            throw ConstraintViolation(
                "split-tokens", "split=\(config.int("split")) exceeds the \(blocks) blocks of \(config.int("tb")) tokens in ctx = \(workload["ctx"])")
        }
    }

    public func defaultConfiguration(isa: ISATarget, machine: MachineContext?) -> Configuration {
        var c = Configuration(Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, $0.defaultValue) }))
        c["isa"] = .name(isa.rawValue)
        if let machine {
            c["threads"] = .int(threadsPerCore(machine))
        }
        return c
    }

    /// The analytical configuration; with an INT4 cache on AVX2 the same with integer arithmetic; then a
    /// "stream" layout: a unit takes every KV head of its sequence (at most 64) over 64-token pages in
    /// 32-token blocks, prefetching the next head's rows, so each unit reads one page after another in
    /// one stream (in the one-thread harness from DRAM 1.2-1.5x faster than 8 heads over 16-token pages,
    /// 2 threads within the noise to 1.2x; kept as a seed, not as the default). Left out when there are
    /// fewer sequences than threads (one unit per sequence would idle a thread).
    public func searchSeeds(for workload: Workload, machine: MachineContext) -> [Configuration] {
        let analytical = analyticalConfiguration(for: workload, machine: machine)
        var seeds = [analytical]
        func add(_ c: Configuration) {
            guard !seeds.contains(c), (try? check(c, machine: machine)) != nil, (try? checkFit(workload, c)) != nil else { return }
            seeds.append(c)
        }
        var integer = analytical
        integer["dot"] = .name("i8")
        add(integer)
        if workload["b"] >= analytical.int("threads"), let heads = intValues("heads").first(where: { $0 >= min(workload["hkv"], 64) }) {
            var stream = seeds.last!
            stream["heads"] = .int(heads)
            stream["page"] = .int(64)
            stream["tb"] = .int(32)
            stream["unroll"] = .int(1)
            stream["prefetch"] = .int(2)
            add(stream)
        }
        return seeds
    }

    /// Tokens of each sequence; depends on the workload only.
    public static func sequenceLengths(_ workload: Workload) -> [Int] {
        let b = workload["b"], ctx = workload["ctx"]
        var rng = SeededGenerator(seed: AttentionShapes.workloadSeed(workload))
        return (0..<b).map { i in
            switch i {
            case 0: return ctx
            case 1: return min(ctx, (ctx / 2) | 1)
            default: return Int.random(in: max(1, ctx / 2)...ctx, using: &rng)
            }
        }
    }

    /// The sequence lengths in a line: a timing of this workload covers their sum, not b * ctx tokens (an
    /// engine whose sequences all hold ctx tokens reads about a third more at ctx / 2 ... ctx).
    public func workloadNote(_ workload: Workload) -> String? {
        let lengths = Self.sequenceLengths(workload)
        guard let lo = lengths.min(), let hi = lengths.max() else { return nil }
        let total = lengths.reduce(0, +)
        let mean = Double(total) / Double(lengths.count)
        return String(
            format: "%d sequences of %d to %d tokens (mean %.0f, %.2f x ctx; %d tokens in all): the workload's own lengths, not b x ctx",
            lengths.count, lo, hi, mean, mean / Double(max(1, workload["ctx"])), total)
    }

    /// 4 * hq * D per token of each sequence (two dot products of length D: q . k and p * v), i.e.
    /// 4 * b * hq * mean_len * D. RoPE, dequantization and the softmax are not counted.
    public func usefulOps(_ workload: Workload, _ config: Configuration) -> Double {
        let tokens = Self.sequenceLengths(workload).reduce(0, +)
        return 4 * Double(tokens) * Double(workload["hq"]) * Double(workload["d"])
    }

    /// The fewest bytes the kernel must read from the cache: the codes and parameters of every token's K
    /// and V rows of every KV head, once (GQA heads share them; page padding and q excluded). For the
    /// bandwidth tables (MEASURE.md: bandwidth = the fewest bytes the kernel must move).
    public static func kvBytes(_ workload: Workload, _ config: Configuration) -> Double {
        let format = KVCacheFormat(rawValue: config.name("cache"))!
        let tokens = sequenceLengths(workload).reduce(0, +)
        return Double(tokens) * Double(workload["hkv"]) * 2 * Double(format.rowBytes(headDim: workload["d"]) + format.paramBytes)
    }

    /// The longest stretch of the cache the variant reads in order before it jumps, rounded down to a run
    /// length `peak-bandwidth op=runs` takes. A block shorter than a page reads min(tb, page) rows of one
    /// KV head's K (then V) codes and jumps to the next head's rows; a block of exactly one page reads each
    /// of the unit's KV heads' whole K and V blocks (codes and parameters), which lie one after another
    /// in the page, so the stretch is all of them; a block of several pages reads one head's rows page by
    /// page, a page's rows at a time. The bandwidth tables hold each row against reading its working set
    /// in runs of this length, the ceiling of its layout.
    public static func contiguousRun(_ workload: Workload, _ config: Configuration) -> Int {
        let format = KVCacheFormat(rawValue: config.name("cache"))!
        let tb = config.int("tb"), page = config.int("page")
        let layout = KVPageLayout(format: format, pageTokens: page, kvHeads: workload["hkv"], headDim: workload["d"])
        let bytes =
            tb == page
            ? min(config.int("heads"), workload["hkv"]) * 2 * layout.blockBytes
            : min(tb, page) * layout.rowBytes
        return PeakBandwidth.runLengths.last { $0 <= bytes } ?? PeakBandwidth.runLengths[0]
    }

    /// The kernel's units for `batch` sequences: ceil(hkv / heads) chunks x split x batch, numbered
    /// u = (chunk * split + s) * batch + sequence.
    public static func unitCount(batch: Int, kvHeads: Int, config: Configuration) -> Int {
        let heads = config.int("heads")
        return (kvHeads + heads - 1) / heads * config.int("split") * batch
    }

    public func render(_ config: Configuration) throws -> KernelSource {
        try check(config, machine: nil)
        return AttentionTemplate(config: config, templateVersion: templateVersion).render()
    }

    public func makeInstance(workload: Workload, config: Configuration, symbols: SymbolTable, seed: UInt64) throws -> KernelInstance {
        try checkShape(workload)
        try check(config, machine: nil)
        try checkFit(workload, config)
        return try AttentionDecodeInstance(workload: workload, config: config, symbols: symbols, names: render(config).symbols, seed: seed)
    }
}

/// The inputs of one attention-decode workload: q, a cache filled through the reference append, the RoPE
/// tables. Public so tests and the inference path can build the same thing.
public struct AttentionInputs {
    public let batch: Int, queryHeads: Int, headDim: Int
    public let lengths: [Int]
    /// [b][hq][d], after RoPE.
    public let q: [Float]
    public let cache: PagedKVCache
    /// [ctx][d / 2].
    public let cos: [Float], sin: [Float]

    /// K and V rows come from `KVRowGenerator` (a few large K channels per head), quantized by
    /// `PagedKVCache.append` into shuffled physical pages (plus spares) filled with a NaN pattern first.
    /// The first token of sequence 0 has a constant K row and a zero V row in head 0 (the edge cases).
    public init(workload: Workload, format: KVCacheFormat, page: Int, seed: UInt64) {
        batch = workload["b"]
        queryHeads = workload["hq"]
        headDim = workload["d"]
        let hkv = workload["hkv"], d = headDim, ctx = workload["ctx"]
        lengths = AttentionDecode.sequenceLengths(workload)
        var rng = SeededGenerator(seed: seed ^ 0x9E37_79B9)
        q = (0..<batch * queryHeads * d).map { _ in Float.random(in: -1...1, using: &rng) }
        let layout = KVPageLayout(format: format, pageTokens: page, kvHeads: hkv, headDim: d)
        var cache = PagedKVCache(layout: layout, allocated: lengths, capacity: ctx, seed: seed)
        var gen = KVRowGenerator(kvHeads: hkv, headDim: d, seed: seed)
        for b in 0..<batch {
            for t in 0..<lengths[b] {
                var k = gen.keys(), v = gen.values()
                if b == 0 && t == 0 {
                    for i in 0..<d { k[i] = 0.75 }
                    for i in 0..<d { v[i] = 0 }
                }
                k.withUnsafeBufferPointer { kp in
                    v.withUnsafeBufferPointer { vp in cache.append(sequence: b, position: t, k: kp.baseAddress!, v: vp.baseAddress!) }
                }
            }
        }
        self.cache = cache
        (cos, sin) = RoPE.table(positions: ctx, headDim: d)
    }
}

/// The plain reference: dequantize the same cache bytes (x' = (q - z) * s in fp32, as the kernels do),
/// then RoPE, scores, a two-pass softmax and the weighted sum of V, all in Double.
///
/// `integerDot`: the inputs as the `dot=i8` variants round them, the rest as above: q times 1/sqrt(d) in
/// fp32, then per chunk of 32 RoPE pairs (elements i and i + d/2, i in [32c, 32c + 32)) rounded to
/// int8 steps of max|q| / 127 (ties to even); cos and sin rounded to multiples of 2^-14.
public enum AttentionReference {
    public static func compute(_ x: AttentionInputs, integerDot: Bool = false) -> [Float] {
        let d = x.headDim, hq = x.queryHeads, hkv = x.cache.layout.kvHeads, group = hq / hkv
        let (cos, sin) = integerDot ? (x.cos.map(q14), x.sin.map(q14)) : (x.cos, x.sin)
        var out = [Float](repeating: 0, count: x.batch * hq * d)
        for b in 0..<x.batch {
            let len = x.lengths[b]
            for kvh in 0..<hkv {
                let keys = (0..<len).map { t in
                    RoPE.apply(x.cache.row(sequence: b, position: t, head: kvh, value: false).map(Double.init), position: t, cos: cos, sin: sin)
                }
                let values = (0..<len).map { t in x.cache.row(sequence: b, position: t, head: kvh, value: true).map(Double.init) }
                for g in 0..<group {
                    let h = kvh * group + g
                    let head = Array(x.q[(b * hq + h) * d..<(b * hq + h + 1) * d])
                    let qv = integerDot ? integerQuery(head) : head.map(Double.init)
                    let scale = integerDot ? 1 : 1 / Double(d).squareRoot()
                    let scores = keys.map { k in zip(qv, k).reduce(0) { $0 + $1.0 * $1.1 } * scale }
                    let m = scores.max()!
                    let w = scores.map { Foundation.exp($0 - m) }
                    let sum = w.reduce(0, +)
                    for i in 0..<d {
                        var o = 0.0
                        for t in 0..<len { o += w[t] * values[t][i] }
                        out[(b * hq + h) * d + i] = Float(o / sum)
                    }
                }
            }
        }
        return out
    }

    /// x rounded to a multiple of 2^-14 (the integer path's RoPE tables: fp32 x * 16384 to the nearest
    /// integer, ties to even).
    static func q14(_ x: Float) -> Float { (x * 16384).rounded(.toNearestOrEven) / 16384 }

    /// One head's q as the integer path uses it: q * (1/sqrt(d)) in fp32, then each chunk (the 64 elements
    /// of 32 RoPE pairs) as int8 codes rint(q * (127 / m)) times m / 127, m its largest magnitude.
    static func integerQuery(_ q: [Float]) -> [Double] {
        let d = q.count, half = d / 2
        let scale: Float = 1 / Float(d).squareRoot()
        let scaled = q.map { $0 * scale }
        var out = [Double](repeating: 0, count: d)
        for c in 0..<d / 64 {
            let elements = (32 * c..<32 * c + 32).flatMap { [$0, half + $0] }
            let m = elements.map { abs(scaled[$0]) }.max() ?? 0
            let inv: Float = m > 0 ? 127 / m : 0
            let step = m / 127
            for i in elements { out[i] = Double((scaled[i] * inv).rounded(.toNearestOrEven)) * Double(step) }
        }
        return out
    }

    /// Normwise relative error of each output row (one per sequence and query head) against the reference.
    public static func compare(expected: [Float], actual: UnsafeBufferPointer<Float>, rowLength d: Int, tolerance: Double) -> Verification {
        var failing = 0, worst = 0.0, worstAbs = 0.0
        var first: String?
        for r in 0..<expected.count / d {
            var diff = 0.0, norm = 0.0
            for i in 0..<d {
                let e = Double(expected[r * d + i]), a = Double(actual[r * d + i])
                diff += (a - e) * (a - e)
                norm += e * e
                worstAbs = max(worstAbs, a.isNaN ? .infinity : abs(a - e))
            }
            let err = diff.squareRoot() / max(norm.squareRoot(), 1e-30)
            worst = err.isNaN ? .infinity : max(worst, err)
            if !(err <= tolerance) {
                failing += 1
                if first == nil { first = "row \(r) (sequence * hq + head): relative error \(err)" }
            }
        }
        return Verification(
            passed: failing == 0, checked: expected.count, mismatches: failing, maxAbsError: worstAbs, maxRelError: worst,
            tolerance: "normwise relative error per (sequence, head) <= \(tolerance)", firstMismatch: first)
    }
}

/// attention-decode bound to one workload's inputs and a loaded variant.
final class AttentionDecodeInstance: KernelInstance {
    typealias Bytes = @convention(c) (Int32, Int32) -> Int
    typealias Kernel = @convention(c) (
        UnsafePointer<Float>?, UnsafeRawPointer?, UnsafePointer<Int32>?, Int32, UnsafePointer<Int32>?, Int32,
        UnsafePointer<Float>?, UnsafePointer<Float>?, UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Float>?,
        UnsafeMutablePointer<Int32>?, Int32, Int32, Int32, Int32, Int32, UnsafeMutableRawPointer?
    ) -> Void

    let workload: Workload
    let format: KVCacheFormat
    let seed: UInt64
    let inputs: AttentionInputs
    let hq: Int, hkv: Int, d: Int, split: Int
    let integerDot: Bool
    let q: AlignedBuffer, pool: AlignedBuffer, pageTable: AlignedBuffer, lengths: AlignedBuffer
    let cos: AlignedBuffer, sin: AlignedBuffer, partials: AlignedBuffer, arrivals: AlignedBuffer
    let kernel: Kernel
    let threadCount: Int
    let workspaceBytesPerThread: Int
    let ranges: [Range<Int>]
    private var output: UnsafeMutablePointer<Float>?
    private var workspaces: [UnsafeMutableRawPointer] = []

    var outputBytes: Int { inputs.batch * hq * d * MemoryLayout<Float>.size }
    var workingSetBytes: Int {
        Int(AttentionDecode.kvBytes(workload, Configuration(["cache": .name(format.rawValue)]))) + q.byteCount + outputBytes
    }

    init(workload: Workload, config: Configuration, symbols: SymbolTable, names: [String: String], seed: UInt64) throws {
        self.workload = workload
        self.seed = seed
        format = KVCacheFormat(rawValue: config.name("cache"))!
        hq = workload["hq"]
        hkv = workload["hkv"]
        d = workload["d"]
        split = config.int("split")
        integerDot = config.name("dot") == "i8"
        inputs = AttentionInputs(workload: workload, format: format, page: config.int("page"), seed: seed)
        q = AlignedBuffer(copying: inputs.q)
        pool = AlignedBuffer(copying: inputs.cache.pool)
        pageTable = AlignedBuffer(copying: inputs.cache.pageTable)
        lengths = AlignedBuffer(copying: inputs.lengths.map(Int32.init))
        cos = AlignedBuffer(copying: inputs.cos)
        sin = AlignedBuffer(copying: inputs.sin)
        partials = AlignedBuffer(byteCount: inputs.batch * hq * split * (d + 2) * MemoryLayout<Float>.size)
        arrivals = AlignedBuffer(byteCount: inputs.batch * hkv * MemoryLayout<Int32>.size)
        let pageBytes = try symbols.function(names["page_bytes"]!, as: Bytes.self)
        guard pageBytes(Int32(hkv), Int32(d)) == inputs.cache.layout.pageBytes else {
            throw ConstraintViolation("layout", "the C page is \(pageBytes(Int32(hkv), Int32(d))) bytes, the Swift layout says \(inputs.cache.layout.pageBytes)")
        }
        let workspaceBytes = try symbols.function(names["workspace_bytes"]!, as: Bytes.self)
        workspaceBytesPerThread = workspaceBytes(Int32(hq / hkv), Int32(d))
        kernel = try symbols.function(names["kernel"]!, as: Kernel.self)
        threadCount = config.int("threads")
        ranges = balancedRanges(count: AttentionDecode.unitCount(batch: inputs.batch, kvHeads: hkv, config: config), parts: threadCount, unit: 1)
    }

    var dataRegions: [UnsafeRawBufferPointer] { [q, pool, pageTable, lengths, cos, sin, partials, arrivals].map(\.region) }

    func prepare() throws {}

    func bind(output: UnsafeMutableRawPointer, workspaces: [UnsafeMutableRawPointer]) {
        self.output = output.assumingMemoryBound(to: Float.self)
        self.workspaces = workspaces
    }

    func run(thread index: Int) {
        let r = ranges[index]
        guard !r.isEmpty else { return }
        kernel(
            q.pointer.assumingMemoryBound(to: Float.self), UnsafeRawPointer(pool.pointer),
            pageTable.pointer.assumingMemoryBound(to: Int32.self), Int32(inputs.cache.maxPages),
            lengths.pointer.assumingMemoryBound(to: Int32.self), Int32(inputs.batch),
            cos.pointer.assumingMemoryBound(to: Float.self), sin.pointer.assumingMemoryBound(to: Float.self),
            output, partials.pointer.assumingMemoryBound(to: Float.self), arrivals.pointer.assumingMemoryBound(to: Int32.self),
            Int32(hq), Int32(hkv), Int32(d), Int32(r.lowerBound), Int32(r.upperBound), workspaces[index])
    }

    func verify() -> Verification {
        let tolerance = integerDot ? AttentionDecode.integerTolerance : AttentionDecode.tolerance
        let expected = ReferenceCache.shared.value(for: "attention-decode \(workload) \(format.rawValue) \(seed)\(integerDot ? " i8" : "")") {
            AttentionReference.compute(inputs, integerDot: integerDot)
        }
        guard let output else {
            return Verification(passed: false, checked: 0, mismatches: 0, maxAbsError: .nan, maxRelError: .nan, tolerance: "\(tolerance)", firstMismatch: "no output bound")
        }
        return AttentionReference.compare(expected: expected, actual: UnsafeBufferPointer(start: output, count: expected.count), rowLength: d, tolerance: tolerance)
    }
}
