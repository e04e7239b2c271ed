import KernelKit

/// `kv-append` (KERNELS.md section 4): appends new K (before RoPE) and V rows of a batch of sequences to
/// the paged cache of one layer, quantizing each (token, head) row on the way (`KVCacheFormat`).
///
/// Workload: `b` sequences, `hkv` KV heads, head dimension `d`, cache capacity `ctx` tokens per sequence,
/// and up to `new` tokens appended per sequence. The append plan is part of the workload (a fixed seed
/// made of its dimensions, `appendPlan`): sequence 0 appends exactly `new` tokens starting at position 63
/// (when `ctx` allows), so with new >= 2 it crosses a page boundary for every page size; sequence 1 starts
/// empty; the others start anywhere and append 1...new tokens. Codes and parameters are bit-exact against
/// `PagedKVCache.append`, and nothing else in the pool may change.
public struct KVAppend: KernelFamily {
    public init() {}

    public let name = "kv-append"
    public let summary = "append K (pre-RoPE) and V rows to a paged KV cache, quantized per (token, head): int4, int8 or fp32"
    public let templateVersion = 3
    public let dimensions = ["b", "hkv", "d", "ctx", "new"]
    /// The pool rule bounds the test harness's cache (32-bit offsets there); the kernels use 64-bit ones.
    public var harnessShapeRules: Set<String> { ["size"] }

    public let shapeRules = [
        "positive: b, hkv, d, ctx and new are at least 1",
        "even-dim: d is even (int4 packs two codes per byte; RoPE pairs the halves)",
        "fits: new <= ctx (appended tokens fit in the capacity)",
        AttentionShapes.kvbitsRule,
        "size: the pool and the new rows stay under 2^31 bytes",
    ]
    public let targets: [ISATarget] = [.portable, .avx2, .avx512vnni, .neonDotprod]

    /// The cache format is the runtime's choice, not the tuner's: a workload with `kvbits` fixes it.
    public var optionalDimensions: [String] { ["kvbits"] }
    public func workloadParameters(_ workload: Workload) -> [String: ParamValue] { AttentionShapes.cacheParameters(workload) }

    public let constraints = [
        "isa-runs (machine): the target's instructions are usable on this machine",
        "threads-pus (machine): threads <= processing units",
    ]

    public var parameters: [ParameterSpec] {
        [
            ParameterSpec("isa", .names(targets.map(\.rawValue)), default: .name("portable"), "instruction set the plain C is compiled for (the compiler vectorizes the row loops)"),
            ParameterSpec("cache", .names(KVCacheFormat.allCases.map(\.rawValue)), default: .name("int4"), "cache element format"),
            ParameterSpec("page", .ints([16, 32, 64]), default: .int(16), "tokens per cache page (must match the cache)"),
            ParameterSpec("threads", .ints([1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]), default: .int(1), "worker threads (each takes a range of new tokens)"),
            ParameterSpec("placement", .names(ThreadPlacement.allCases.map(\.rawValue)), default: .name("scatter"), "which PUs the threads use"),
        ]
    }

    public func checkShape(_ workload: Workload) throws {
        try AttentionShapes.checkPositive(workload, dimensions, family: name)
        try AttentionShapes.checkEven(workload["d"])
        try AttentionShapes.checkKVBits(workload)
        guard workload["new"] <= workload["ctx"] else {
            throw ConstraintViolation("fits", "new = \(workload["new"]) exceeds ctx = \(workload["ctx"])")
        }
        try AttentionShapes.checkPoolSize(workload)
    }

    public func check(_ config: Configuration, machine: MachineContext?) throws {
        try checkDomains(config)
        try AttentionShapes.checkMachine(config, machine: machine)
    }

    public func defaultConfiguration(isa: ISATarget, machine: MachineContext?) -> Configuration {
        var c = Configuration(Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, $0.defaultValue) }))
        c["isa"] = .name(isa.rawValue)
        return c
    }

    /// (start position, tokens appended) per sequence; depends on the workload only.
    public static func appendPlan(_ workload: Workload) -> [(start: Int, count: Int)] {
        plan(workload).runs.map { ($0.start, $0.count) }
    }

    /// Sequence 0 appends `new` tokens, sequence 1 (empty) half as many, the others 1...new each.
    static func plan(_ workload: Workload) -> KVAppendPlan {
        let new = workload["new"]
        return KVAppendPlan(sequences: workload["b"], ctx: workload["ctx"], seed: AttentionShapes.workloadSeed(workload)) { i, rng in
            switch i {
            case 0: new
            case 1: max(1, (new + 1) / 2)
            default: Int.random(in: 1...new, using: &rng)
            }
        }
    }

    /// Rows (K and V elements) written: 2 * new tokens * hkv * d.
    public func usefulOps(_ workload: Workload, _ config: Configuration) -> Double {
        let tokens = Self.appendPlan(workload).reduce(0) { $0 + $1.count }
        return 2 * Double(tokens) * Double(workload["hkv"]) * Double(workload["d"])
    }

    public func render(_ config: Configuration) throws -> KernelSource {
        try check(config, machine: nil)
        let format = KVCacheFormat(rawValue: config.name("cache"))!
        let page = config.int("page")
        let isa = ISATarget(rawValue: config.name("isa"))!
        let name = "kv_append__\(isa.rawValue.replacingOccurrences(of: "-", with: ""))_\(format.rawValue)_p\(page)"
        var c = CSource()
        c.comment(lines: [
            "kv-append, template version \(templateVersion): \(name)",
            "Parameters: isa=\(isa.rawValue) cache=\(format.rawValue) page=\(page)",
            "",
            "Appends rows of K (before RoPE) and V, [rows][hkv][d] fp32, to a paged cache. Row r belongs to",
            "sequence row_seq[r] at position row_pos[r]; the page table gives the physical page of",
            "(sequence, position / PAGE), and position % PAGE is the slot in it.",
            format.isQuantized
                ? "Each (token, head) row is quantized asymmetrically to \(format == .int4 ? "4" : "8") bits:\n  s = (max - min) / \(format.maxCode), z = rne(-min / s), q = clamp(rne(x / s) + z, 0, \(format.maxCode));\n  a constant row takes s = max(|max|, |min|) (dequantizes exactly), a row of zeros s = z = q = 0."
                : "Rows are stored as fp32, unchanged.",
            "",
            "Generated by lowbit. Threads are the caller's: each appends a range [row0, row1) of rows.",
        ])
        c.include("math.h")
        c.include("stddef.h")
        c.include("stdint.h")
        c.include("string.h")
        c.line()
        c.define("PAGE", page)
        if format.isQuantized { c.define("MAX_CODE", "\(format.maxCode).0f") }
        c.line()
        KVPageLayout.renderHelpers(&c, format: format)
        c.function("size_t \(name)_page_bytes(int hkv, int d)") { c in c.line("return page_bytes(hkv, d);") }
        KVQuantization.renderStoreRow(&c, format: format)
        c.function("""
            void \(name)(const float *k_new, const float *v_new, const int32_t *row_seq, const int32_t *row_pos,
                 const int32_t *page_table, int max_pages, void *pool, int hkv, int d, int row0, int row1)
            """) { c in
            c.declare("const size_t", "page_size", "page_bytes(hkv, d)")
            c.declare("const size_t", "block", "block_bytes(d)")
            c.forLoop("int r = row0", "r < row1", "r++") { c in
                KVPageLayout.renderSlotLookup(&c, row: "r")
                c.forLoop("int h = 0", "h < hkv", "h++") { c in
                    c.declare("const size_t", "src", "((size_t)r * hkv + h) * d")
                    c.declare("unsigned char *", "k_block", "base + (size_t)(2 * h) * block")
                    c.declare("unsigned char *", "v_block", "k_block + block")
                    c.line("store_row(k_new + src, d, k_block + slot * row_bytes(d), (float *)(k_block + params_offset(d)) + 2 * slot);")
                    c.line("store_row(v_new + src, d, v_block + slot * row_bytes(d), (float *)(v_block + params_offset(d)) + 2 * slot);")
                }
            }
        }
        return KernelSource(name: name, isa: isa, code: c.description, symbols: ["kernel": name, "page_bytes": "\(name)_page_bytes"])
    }

    public func makeInstance(workload: Workload, config: Configuration, symbols: SymbolTable, seed: UInt64) throws -> KernelInstance {
        try checkShape(workload)
        try check(config, machine: nil)
        return try KVAppendInstance(workload: workload, config: config, symbols: symbols, names: render(config).symbols, seed: seed)
    }
}

/// Shape and machine rules shared by the cache families.
enum AttentionShapes {
    static func checkPositive(_ workload: Workload, _ dims: [String], family: String) throws {
        for d in dims where workload[d] < 1 {
            throw ConstraintViolation("positive", "\(d) = \(workload[d]) for \(family); \(dims.joined(separator: ", ")) must be at least 1")
        }
    }

    static func checkEven(_ d: Int) throws {
        guard d % 2 == 0 else { throw ConstraintViolation("even-dim", "d = \(d) is odd; the head dimension must be even") }
    }

    static let kvbitsRule =
        "kvbits (optional): 4, 8 or 32 fixes the cache format (int4, int8, fp32) for tuning; absent or 0 leaves it to the configuration"

    /// The most bytes one (token, KV head) row of K or V takes in the workload's cache, with 8 for its
    /// parameters: in the format `kvbits` fixes (the runner refuses a configuration of another format),
    /// else fp32's, the largest. The harness's pool-size rule counts with it.
    static func rowBytesBound(_ workload: Workload) -> Int {
        (KVCacheFormat(bits: workload["kvbits"]) ?? .fp32).rowBytes(headDim: workload["d"]) + 8
    }

    /// The pool-size rule of kv-append and attention-decode: b sequences of ctx tokens (64 more for page
    /// rounding), K and V rows of every KV head, under 2^31 bytes (the harness's 32-bit offsets).
    static func checkPoolSize(_ workload: Workload) throws {
        let pool = workload["b"] * (workload["ctx"] + 64) * workload["hkv"] * 2 * rowBytesBound(workload)
        guard pool < Int(Int32.max) else { throw ConstraintViolation("size", "\(workload) needs a pool of about \(pool) bytes") }
    }

    static func checkKVBits(_ workload: Workload) throws {
        let bits = workload["kvbits"]
        guard bits == 0 || KVCacheFormat(bits: bits) != nil else {
            throw ConstraintViolation("kvbits", "kvbits = \(bits); use 4 (int4), 8 (int8) or 32 (fp32), or leave it out")
        }
    }

    /// The cache format is the runtime's choice, not the tuner's: a workload's `kvbits` fixes `cache`
    /// (every search holds it, the runner rejects a configuration that differs, the database keeps the
    /// formats apart).
    static func cacheParameters(_ workload: Workload) -> [String: ParamValue] {
        guard let format = KVCacheFormat(bits: workload["kvbits"]) else { return [:] }
        return ["cache": .name(format.rawValue)]
    }

    static func checkMachine(_ config: Configuration, machine: MachineContext?) throws {
        guard let machine else { return }
        let isa = ISATarget(rawValue: config.name("isa"))!
        if let why = isa.missingFeatures(on: machine.isa) { throw ConstraintViolation("isa-runs", why) }
        let threads = config.int("threads")
        guard threads <= machine.topology.pus.count else {
            throw ConstraintViolation("threads-pus", "threads=\(threads) but this machine has \(machine.topology.pus.count) processing units")
        }
    }

    /// A seed made of the workload's dimensions: what the workload's derived structure (sequence lengths,
    /// append plan) depends on, so every run and every seed of one workload does the same work.
    static func workloadSeed(_ workload: Workload) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for key in workload.shape.keys.sorted() {
            for byte in "\(key)=\(workload.shape[key]!);".utf8 {
                h = (h ^ UInt64(byte)) &* 0x0000_0100_0000_01B3
            }
        }
        return h
    }
}

/// kv-append bound to one workload: new rows, the page table, and the pool as the guarded output.
final class KVAppendInstance: KernelInstance {
    typealias PageBytes = @convention(c) (Int32, Int32) -> Int
    typealias Kernel = @convention(c) (
        UnsafePointer<Float>?, UnsafePointer<Float>?, UnsafePointer<Int32>?, UnsafePointer<Int32>?,
        UnsafePointer<Int32>?, Int32, UnsafeMutableRawPointer?, Int32, Int32, Int32, Int32
    ) -> Void

    let layout: KVPageLayout
    let rows: Int
    let kNew: [Float], vNew: [Float]
    let rowSeq: [Int32], rowPos: [Int32]
    let cache: PagedKVCache
    let kBuffer: AlignedBuffer, vBuffer: AlignedBuffer, seqBuffer: AlignedBuffer, posBuffer: AlignedBuffer, tableBuffer: AlignedBuffer
    let kernel: Kernel
    let threadCount: Int
    let ranges: [Range<Int>]
    private var output: UnsafeMutableRawPointer?

    var outputBytes: Int { cache.pool.count }
    var workspaceBytesPerThread: Int { 0 }
    var workingSetBytes: Int { kBuffer.byteCount + vBuffer.byteCount + 2 * rows * layout.kvHeads * layout.bytesPerRow }

    init(workload: Workload, config: Configuration, symbols: SymbolTable, names: [String: String], seed: UInt64) throws {
        let format = KVCacheFormat(rawValue: config.name("cache"))!
        let hkv = workload["hkv"], d = workload["d"]
        layout = KVPageLayout(format: format, pageTokens: config.int("page"), kvHeads: hkv, headDim: d)
        let plan = KVAppend.plan(workload)
        rows = plan.rows
        rowSeq = plan.sequences
        rowPos = plan.positions
        var gen = KVRowGenerator(kvHeads: hkv, headDim: d, seed: seed)
        var k: [Float] = [], v: [Float] = []
        for _ in 0..<rows {
            k += gen.keys()
            v += gen.values()
        }
        // Edge cases inside real appends: a constant positive K row, a zero V row, a constant negative K row.
        for i in 0..<d { k[i] = 0.3 }
        for i in 0..<d { v[i] = 0 }
        if rows > 1 { for i in 0..<d { k[hkv * d + i] = -2.5 } }
        // Zero extremes of both signs, whose order decides the zero point's sign: a positive V row whose
        // minimum is -0 then +0, and a negative one whose maximum is +0 then -0.
        if hkv > 1 {
            for i in 0..<d { v[d + i] = 0.5 + Float(i % 7) * 0.25 }
            v[d + min(3, d - 1)] = -0.0
            v[d + min(9, d - 1)] = 0.0
        }
        if rows > 1 {
            for i in 0..<d { v[hkv * d + i] = -0.5 - Float(i % 5) * 0.5 }
            v[hkv * d + min(2, d - 1)] = 0.0
            v[hkv * d + min(5, d - 1)] = -0.0
        }
        kNew = k
        vNew = v
        cache = PagedKVCache(
            layout: layout, allocated: plan.allocated, capacity: workload["ctx"], seed: seed)
        kBuffer = AlignedBuffer(copying: kNew)
        vBuffer = AlignedBuffer(copying: vNew)
        seqBuffer = AlignedBuffer(copying: rowSeq)
        posBuffer = AlignedBuffer(copying: rowPos)
        tableBuffer = AlignedBuffer(copying: cache.pageTable)
        let pageBytes = try symbols.function(names["page_bytes"]!, as: PageBytes.self)
        guard pageBytes(Int32(hkv), Int32(d)) == layout.pageBytes else {
            throw ConstraintViolation("layout", "the C page is \(pageBytes(Int32(hkv), Int32(d))) bytes, the Swift layout says \(layout.pageBytes)")
        }
        kernel = try symbols.function(names["kernel"]!, as: Kernel.self)
        threadCount = config.int("threads")
        ranges = balancedRanges(count: rows, parts: threadCount, unit: 1)
    }

    var dataRegions: [UnsafeRawBufferPointer] { [kBuffer, vBuffer, seqBuffer, posBuffer, tableBuffer].map(\.region) }

    func prepare() throws {}

    func bind(output: UnsafeMutableRawPointer, workspaces: [UnsafeMutableRawPointer]) { self.output = output }

    func run(thread index: Int) {
        let r = ranges[index]
        guard !r.isEmpty else { return }
        kernel(
            kBuffer.pointer.assumingMemoryBound(to: Float.self), vBuffer.pointer.assumingMemoryBound(to: Float.self),
            seqBuffer.pointer.assumingMemoryBound(to: Int32.self), posBuffer.pointer.assumingMemoryBound(to: Int32.self),
            tableBuffer.pointer.assumingMemoryBound(to: Int32.self), Int32(cache.maxPages), output,
            Int32(layout.kvHeads), Int32(layout.headDim), Int32(r.lowerBound), Int32(r.upperBound))
    }

    /// Bit-exact over the whole pool: the appended slots against the Swift reference append, everything
    /// else unchanged (the harness's fill pattern, read from a spare page).
    func verify() -> Verification {
        guard let output else { return .unbound }
        let stride = layout.kvHeads * layout.headDim
        return cache.verifyAppend(actual: output) { expected in
            kNew.withUnsafeBufferPointer { k in
                vNew.withUnsafeBufferPointer { v in
                    for r in 0..<rows {
                        expected.append(sequence: Int(rowSeq[r]), position: Int(rowPos[r]), k: k.baseAddress! + r * stride, v: v.baseAddress! + r * stride)
                    }
                }
            }
        }
    }
}
