import KernelKit
import Machine

/// `gemm-w4a4-kv` (KERNELS.md section 2, last variant, and section 4): the K and V projections of a
/// layer as one Atom W4A4 GEMM whose epilogue writes straight into the paged KV cache.
///
/// Y = gemm-w4a4 (INT4 group-128 codes + O INT8 outlier channels, exactly that family's packing,
/// micro-kernels and fp32 accumulation order) of `m` token rows against the concatenated K and V
/// projection weights: N = 2 * hkv * d output channels, the hkv K heads first, then the hkv V heads.
/// For each token row and head, the d fp32 values of Y are one cache row, quantized with the cache's rule
/// (`KVCacheFormat`, `KVQuantization.quantize`: s = (max - min) / 15 with the SIGNED minimum and maximum,
/// not Atom's min/max of |x|, z = rne(-min / s), q = clamp(rne(x / s) + z, 0, 15), and the constant-row
/// and zero-row rules) and stored in the token's slot: exactly the bytes `PagedKVCache.append` writes
/// (codes of element j and j + d/2 share a byte; K is stored before RoPE, so there is no RoPE here).
/// The int8 and fp32 cache formats come from the same code (`cache`); int4 is the default.
///
/// Workload: `m` tokens, `hkv` KV heads of dimension `d`, input channels `k` with `outliers` INT8
/// channels, cache capacity `ctx` tokens per sequence, and optionally `kvbits` (4, 8 or 32) fixing the
/// cache format. Which sequence and position each row belongs to is part of the workload
/// (`KVAppendPlan.batch`): a prefill chunk of ceil(m / 2) tokens from position 63 (it crosses a page
/// boundary for every page size when m >= 3), half the rest as a new sequence, one decode token in each
/// further sequence. The page size is the configuration's `page` and must match the cache.
///
/// Threads split M in multiples of `mr` and N in multiples of lcm(nr, d), and the kernel blocks N by NC
/// rounded to whole heads, so every head row of a block is final when the block is. The last K block
/// of each register tile leaves its Y where its fp32 partial sums were (the thread's workspace), and the
/// epilogue gathers each row from there while it is still in cache: Y never goes to memory.
///
/// Verification, and why it is sound: every gemm-w4a4 variant computes Y bit for bit like
/// `GemmW4A4Reference` (exact integer group sums, the same fp32 multiplies and adds in the same order,
/// compiled with -ffp-contract=off), and that family's own check is bit-exact. So the fp32 rows the
/// epilogue quantizes are exactly the reference rows, and the cache bytes are a function of them: the
/// whole pool is compared bit for bit with `PagedKVCache.append` of the reference Y (codes and
/// (scale, zero)), and every byte outside the appended slots must still hold the harness's NaN fill
/// pattern. This is stronger than a tolerance on Y followed by re-quantizing the kernel's own Y. If the
/// pool differs, verification runs the kernel once more with its debugging copy of Y (the `y` argument)
/// and reports whether the GEMM or the quantization went wrong.
///
/// The inputs plant the quantizer's edge cases inside the GEMM (`GemmW4A4KVInputs`): head 0 of K is
/// negative in every column of every token (the rows Atom's |x| rule gets wrong), head 0 of V is
/// constant across its d columns, and head 1 of K (when hkv > 1) is exactly zero.
public struct GemmW4A4KV: KernelFamily {
    public init() {}

    private static let gemm = GemmW4A4()

    public let name = "gemm-w4a4-kv"
    public let summary = "gemm-w4a4 for the K and V projections, its epilogue quantizing each (token, head) row into the paged KV cache (int4, int8 or fp32)"
    public let templateVersion = 8
    public let dimensions = ["m", "hkv", "d", "k", "outliers", "ctx"]
    /// The pool rule bounds the test harness's cache (32-bit offsets there); the kernels use 64-bit ones.
    public var harnessShapeRules: Set<String> { ["size"] }

    public let shapeRules = [
        "positive: m, hkv, d, k and ctx are at least 1",
        "even-dim: d is even (int4 packs element j with its RoPE partner j + d/2)",
        "outliers: 0 <= outliers < k, a multiple of 4",
        "groups: k - outliers is a positive multiple of 128",
        AttentionShapes.kvbitsRule,
        "fits: ceil(m / 2) <= ctx (the prefill chunk of the append plan fits a sequence)",
        "size: m * n and n * k each fit in 2^31 elements (n = 2 * hkv * d), and the pool stays under 2^31 bytes",
    ]
    public var targets: [ISATarget] { Self.gemm.targets }

    public var optionalDimensions: [String] { ["kvbits"] }

    /// The cache format is the runtime's choice, not the tuner's: a workload with `kvbits` fixes it.
    public func workloadParameters(_ workload: Workload) -> [String: ParamValue] { AttentionShapes.cacheParameters(workload) }

    public var parameters: [ParameterSpec] {
        Self.gemm.parameters.map { spec in
            guard spec.name == "nc" else { return spec }
            return ParameterSpec("nc", spec.domain, default: spec.defaultValue, "N block, rounded down to whole heads and panels (a multiple of lcm(nr, d), at least one)")
        } + [
            ParameterSpec("cache", .names(KVCacheFormat.allCases.map(\.rawValue)), default: .name("int4"), "cache element format"),
            ParameterSpec("page", .ints([16, 32, 64]), default: .int(16), "tokens per cache page (must match the cache)"),
        ]
    }

    /// gemm-w4a4's rules: the cache adds none (the N blocks round to whole heads at run time).
    public var constraints: [String] { Self.gemm.constraints }

    /// Output channels: the K heads, then the V heads.
    public static func outputs(_ workload: Workload) -> Int { 2 * workload["hkv"] * workload["d"] }

    /// The gemm-w4a4 workload of the same GEMM (N = 2 * hkv * d).
    public static func gemmWorkload(_ workload: Workload) -> Workload {
        Workload(
            family: gemm.name,
            shape: ["m": workload["m"], "n": outputs(workload), "k": workload["k"], "outliers": outliers(workload)])
    }

    static func outliers(_ workload: Workload) -> Int { workload.shape["outliers"] ?? AtomQuantization.defaultOutliers }

    /// Which sequence and position each token row appends to; depends on the workload only.
    public static func plan(_ workload: Workload) -> KVAppendPlan {
        KVAppendPlan.batch(rows: workload["m"], ctx: workload["ctx"], seed: AttentionShapes.workloadSeed(workload))
    }

    public func checkShape(_ workload: Workload) throws {
        try AttentionShapes.checkPositive(workload, ["m", "hkv", "d", "k", "ctx"], family: name)
        try AttentionShapes.checkEven(workload["d"])
        try Self.gemm.checkShape(Self.gemmWorkload(workload))
        try AttentionShapes.checkKVBits(workload)
        guard (workload["m"] + 1) / 2 <= workload["ctx"] else {
            throw ConstraintViolation("fits", "the append plan's prefill chunk of \((workload["m"] + 1) / 2) tokens exceeds ctx = \(workload["ctx"])")
        }
        // Pages round each sequence up and the cache keeps two spare pages; a row of the format kvbits
        // fixes (else fp32's) and 56 more bytes of padding per row are the most a token can take.
        let tokens = Self.plan(workload).allocated.reduce(0) { $0 + $1 + 63 } + 128
        let pool = tokens * 2 * workload["hkv"] * (AttentionShapes.rowBytesBound(workload) + 56)
        guard pool < Int(Int32.max) else { throw ConstraintViolation("size", "\(workload) needs a pool of up to \(pool) bytes") }
    }

    public func check(_ config: Configuration, machine: MachineContext?) throws {
        try checkDomains(config)
        try GemmW4A4.checkBlocking(config, machine: machine)
    }

    public func defaultConfiguration(isa: ISATarget, machine: MachineContext?) -> Configuration {
        completing(Self.gemm.defaultConfiguration(isa: isa, machine: machine))
    }

    /// gemm-w4a4's analytical blocking for the same GEMM, with panels that divide the head dimension
    /// when some register tile allows it (threads then split N in whole heads, d columns, rather than
    /// lcm(nr, d)), the cache format the workload fixes (if any) and the default page.
    public func analyticalConfiguration(for workload: Workload, machine: MachineContext) -> Configuration {
        let (blocking, base) = analyticalBlocking(workload, machine: machine)
        return GemmW4A4.analytical(self, blocking: blocking, base: base, workload: Self.gemmWorkload(workload), machine: machine)
    }

    /// gemm-w4a4's seeds for the same GEMM, with the panels and base of `analyticalConfiguration`.
    public func searchSeeds(for workload: Workload, machine: MachineContext) -> [Configuration] {
        let (blocking, base) = analyticalBlocking(workload, machine: machine)
        return GemmW4A4.seeds(self, blocking: blocking, base: base, workload: Self.gemmWorkload(workload), machine: machine)
    }

    private func analyticalBlocking(_ workload: Workload, machine: MachineContext) -> (GemmBlocking, Configuration) {
        let isa = bestTarget(on: machine)
        var base = defaultConfiguration(isa: isa, machine: machine)
        for (key, value) in workloadParameters(workload) { base[key] = value }
        var blocking = GemmW4A4.blocking(isa)
        let d = workload["d"], lanes = blocking.lanes
        if parameter("nr")!.domain.values.contains(where: { if case .int(let nr) = $0 { nr % lanes == 0 && d % nr == 0 } else { false } }) {
            blocking.panelWidths = { d % $0 == 0 }
        }
        return (blocking, base)
    }

    func template(_ config: Configuration) -> GemmW4A4Template {
        GemmW4A4Template(
            config: config, templateVersion: templateVersion,
            epilogue: .kvCache(KVCacheFormat(rawValue: config.name("cache"))!, page: config.int("page")))
    }

    public func render(_ config: Configuration) throws -> KernelSource {
        try check(config, machine: nil)
        return template(config).render()
    }

    /// 2 * M * N * K, as gemm-w4a4 counts it: the quantization epilogue is not counted.
    public func usefulOps(_ workload: Workload, _ config: Configuration) -> Double {
        2 * Double(workload["m"]) * Double(Self.outputs(workload)) * Double(workload["k"])
    }

    /// Bytes the cache rows of one run take: m tokens x 2 hkv rows of codes and parameters.
    public static func cacheBytes(_ workload: Workload, _ config: Configuration) -> Double {
        guard config["cache"] != nil, let format = KVCacheFormat(rawValue: config.name("cache")) else { return 0 }
        return Double(workload["m"] * 2 * workload["hkv"] * (format.rowBytes(headDim: workload["d"]) + format.paramBytes))
    }

    public func makeInstance(workload: Workload, config: Configuration, symbols: SymbolTable, seed: UInt64) throws -> KernelInstance {
        try checkShape(workload)
        try check(config, machine: nil)
        return try GemmW4A4KVInstance(workload: workload, config: config, symbols: symbols, names: template(config).render().symbols, seed: seed)
    }
}

/// The inputs of one gemm-w4a4-kv run: quantized activations and K/V weights, the append plan, and the
/// cache before the append (page table, NaN-filled pool).
public struct GemmW4A4KVInputs {
    public let m: Int, hkv: Int, d: Int, k: Int, outliers: Int
    public let a: AtomQuantization.Quantized
    public let w: AtomQuantization.Quantized
    public let plan: KVAppendPlan
    public let cache: PagedKVCache
    let seed: UInt64

    /// Random activations and weights as gemm-w4a4 makes them (outlier channels 20-100x larger), with
    /// the cache rule's edge cases planted in Y: activation channel 0 is 1.0 in every token (code 7);
    /// the weights of K head 0 are zero except a negative channel 0 (code -8), so that head's Y is
    /// -56 * sa * sw < 0 in every column, with a different sw per column; the d weight rows of V head 0
    /// are one row repeated (a constant Y row per token); the weights of K head 1 are zero (a zero row).
    public init(workload: Workload, format: KVCacheFormat, page: Int, seed: UInt64) {
        m = workload["m"]
        hkv = workload["hkv"]
        d = workload["d"]
        k = workload["k"]
        outliers = GemmW4A4KV.outliers(workload)
        self.seed = seed
        let n = 2 * hkv * d
        var rng = SeededGenerator(seed: seed)
        var x = GemmW4A4Reference.rows(m, k: k, outliers: outliers, rng: &rng)
        for r in 0..<m { x[r * k] = 1 }
        var wf = GemmW4A4Reference.rows(n, k: k, outliers: outliers, rng: &rng)
        for c in 0..<d {
            for i in 0..<k { wf[c * k + i] = 0 }
            wf[c * k] = -Float.random(in: 0.5...1, using: &rng)
        }
        let constant = hkv * d
        for c in constant + 1..<constant + d {
            for i in 0..<k { wf[c * k + i] = wf[constant * k + i] }
        }
        if hkv > 1 { for i in d * k..<2 * d * k { wf[i] = 0 } }
        a = AtomQuantization.quantize(x, rows: m, k: k, outliers: outliers, clip: AtomQuantization.activationClip)
        w = AtomQuantization.quantize(wf, rows: n, k: k, outliers: outliers, clip: AtomQuantization.weightClip)
        plan = GemmW4A4KV.plan(workload)
        let layout = KVPageLayout(format: format, pageTokens: page, kvHeads: hkv, headDim: d)
        cache = PagedKVCache(layout: layout, allocated: plan.allocated, capacity: workload["ctx"], seed: seed)
    }

    /// Y of the reference GEMM, `[m][2 * hkv * d]` (cached across instances of one workload and seed).
    public func referenceOutput() -> [Float] {
        ReferenceCache.shared.value(for: "gemm-w4a4-kv \(m) \(hkv) \(d) \(k) \(outliers) \(seed)") {
            GemmW4A4Reference.compute(a: a, w: w)
        }
    }

    /// The cache after the reference append of rows `y` (`[m][2 * hkv * d]`).
    public func appended(_ y: [Float], to cache: inout PagedKVCache) {
        let n = 2 * hkv * d
        y.withUnsafeBufferPointer { p in
            for r in 0..<m {
                let row = p.baseAddress! + r * n
                cache.append(sequence: Int(plan.sequences[r]), position: Int(plan.positions[r]), k: row, v: row + hkv * d)
            }
        }
    }
}

/// gemm-w4a4-kv bound to one workload: quantized activations, packed weights, the append plan and page
/// table, and the pool as the guarded output.
final class GemmW4A4KVInstance: KernelInstance {
    typealias WorkspaceBytes = @convention(c) (Int32) -> Int
    typealias PageBytes = @convention(c) (Int32, Int32) -> Int
    typealias Kernel = @convention(c) (
        UnsafePointer<UInt8>?, UnsafePointer<Float>?, UnsafePointer<Int32>?, UnsafePointer<Int8>?, UnsafePointer<Float>?,
        UnsafeRawPointer?, UnsafePointer<Int32>?, UnsafePointer<Int32>?, UnsafePointer<Int32>?, Int32, UnsafeMutableRawPointer?,
        UnsafeMutablePointer<Float>?, Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32, UnsafeMutableRawPointer?
    ) -> Void

    let inputs: GemmW4A4KVInputs
    let n: Int
    let operands: W4Operands
    let seqBuffer: AlignedBuffer, posBuffer: AlignedBuffer, tableBuffer: AlignedBuffer
    let kernel: Kernel
    let workspaceBytesPerThread: Int
    let threadCount: Int
    let blocks: [(rows: Range<Int>, cols: Range<Int>)]
    private var output: UnsafeMutableRawPointer?
    private var workspaces: [UnsafeMutableRawPointer] = []

    var outputBytes: Int { inputs.cache.pool.count }
    var workingSetBytes: Int {
        operands.byteCount + inputs.m * 2 * inputs.hkv * inputs.cache.layout.bytesPerRow
    }

    init(workload: Workload, config: Configuration, symbols: SymbolTable, names: [String: String], seed: UInt64) throws {
        let format = KVCacheFormat(rawValue: config.name("cache"))!
        inputs = GemmW4A4KVInputs(workload: workload, format: format, page: config.int("page"), seed: seed)
        let hkv = inputs.hkv, d = inputs.d
        n = 2 * hkv * d
        operands = try W4Operands(a: inputs.a, w: inputs.w, k: inputs.k, outliers: inputs.outliers, symbols: symbols, names: names)
        seqBuffer = AlignedBuffer(copying: inputs.plan.sequences)
        posBuffer = AlignedBuffer(copying: inputs.plan.positions)
        tableBuffer = AlignedBuffer(copying: inputs.cache.pageTable)
        let pageBytes = try symbols.function(names["page_bytes"]!, as: PageBytes.self)
        guard pageBytes(Int32(hkv), Int32(d)) == inputs.cache.layout.pageBytes else {
            throw ConstraintViolation(
                "layout", "the C page is \(pageBytes(Int32(hkv), Int32(d))) bytes, the Swift layout says \(inputs.cache.layout.pageBytes)")
        }
        let workspaceBytes = try symbols.function(names["workspace_bytes"]!, as: WorkspaceBytes.self)
        kernel = try symbols.function(names["kernel"]!, as: Kernel.self)
        workspaceBytesPerThread = workspaceBytes(Int32(d))
        threadCount = config.int("threads")
        // Rows in whole register tiles; columns in whole heads that are also whole weight panels.
        let nr = config.int("nr"), tm = config.int("tm")
        var (x, y) = (d, nr)
        while y != 0 { (x, y) = (y, x % y) }
        let rowRanges = balancedRanges(count: inputs.m, parts: tm, unit: config.int("mr"))
        let colRanges = balancedRanges(count: n, parts: threadCount / tm, unit: d / x * nr)
        blocks = rowRanges.flatMap { r in colRanges.map { (r, $0) } }
    }

    var dataRegions: [UnsafeRawBufferPointer] { operands.regions + [seqBuffer, posBuffer, tableBuffer].map(\.region) }

    func prepare() throws { operands.prepare() }

    func bind(output: UnsafeMutableRawPointer, workspaces: [UnsafeMutableRawPointer]) {
        self.output = output
        self.workspaces = workspaces
    }

    func run(thread index: Int) { run(blocks[index], workspace: workspaces[index], y: nil) }

    private func run(_ block: (rows: Range<Int>, cols: Range<Int>), workspace: UnsafeMutableRawPointer, y: UnsafeMutablePointer<Float>?) {
        guard !block.rows.isEmpty, !block.cols.isEmpty else { return }
        let o = operands
        kernel(
            o.codes.pointer.assumingMemoryBound(to: UInt8.self), o.scales.pointer.assumingMemoryBound(to: Float.self),
            o.sums.pointer.assumingMemoryBound(to: Int32.self), o.outlierCodes.pointer.assumingMemoryBound(to: Int8.self),
            o.outlierScales.pointer.assumingMemoryBound(to: Float.self), UnsafeRawPointer(o.packed.pointer),
            seqBuffer.pointer.assumingMemoryBound(to: Int32.self), posBuffer.pointer.assumingMemoryBound(to: Int32.self),
            tableBuffer.pointer.assumingMemoryBound(to: Int32.self), Int32(inputs.cache.maxPages), output, y,
            Int32(inputs.hkv), Int32(inputs.d), Int32(inputs.k), Int32(inputs.outliers), Int32(block.rows.lowerBound),
            Int32(block.rows.upperBound), Int32(block.cols.lowerBound), Int32(block.cols.upperBound), workspace)
    }

    /// The whole pool bit for bit against the reference append of the reference Y (see `GemmW4A4KV`).
    func verify() -> Verification {
        guard let output else { return .unbound }
        let reference = inputs.referenceOutput()
        var result = inputs.cache.verifyAppend(actual: output) { inputs.appended(reference, to: &$0) }
        if !result.passed, let workspace = workspaces.first {
            // Which half went wrong: run again (the same slots get the same bytes) with the debugging copy of Y.
            let y = AlignedBuffer(copying: [Float](repeating: .nan, count: inputs.m * n))
            let yp = y.pointer.assumingMemoryBound(to: Float.self)
            for block in blocks { run(block, workspace: workspace, y: yp) }
            let gemm = compareBitExact(expected: reference, actual: UnsafeBufferPointer(start: yp, count: inputs.m * n), columns: n)
            let cause =
                gemm.passed
                ? "Y is bit-exact, so the quantization epilogue is wrong"
                : "Y differs from the reference GEMM in \(gemm.mismatches) elements (\(gemm.firstMismatch ?? ""))"
            result.firstMismatch = (result.firstMismatch ?? "") + "; \(cause)"
        }
        return result
    }
}
