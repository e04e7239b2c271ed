import KernelKit
import Kernels
import Model

/// Options of an `Engine`; the defaults suit tests and `lowbit generate`.
public struct EngineOptions: Sendable {
    /// Sequences the KV cache holds at once.
    public var maxSequences = 8
    /// Tokens per sequence; nil means the model's `max_position_embeddings`.
    public var maxContext: Int?
    /// KV page size in tokens; nil takes attention-decode's configuration for this engine's largest
    /// workload (the cache families are then held to it).
    public var pageTokens: Int?
    /// W4A4: the reorder permutations; nil calibrates on `calibrationTokens` random tokens.
    public var atomPlan: AtomPlan?
    public var calibrationTokens = 16
    /// W4A4: how many channels of each linear layer's input stay INT8.
    public var outliers = AtomOutliers.standard

    public init() {}
}

/// A sequence in the engine: a slot of the KV cache, stamped so a released one cannot be used again.
public struct SequenceID: Hashable, Sendable, CustomStringConvertible {
    let slot: Int
    let stamp: Int
    public var description: String { "sequence \(slot).\(stamp)" }
}

/// A Llama decoder on lowbit's kernels, in one of three modes (`EngineMode`), over a paged KV cache.
///
/// `step` runs any mix of sequences and tokens as one batch: every token is a row of the GEMMs, its K
/// and V are appended to its sequence's pages (kv-append), and attention-decode gives each row
/// attention over its own sequence up to and including itself (an entry per row, with the row's
/// position + 1 as its length). A prompt is therefore prefilled in one step through batched GEMMs, with
/// causal attention by construction, and decode steps, prefills of newly joined sequences and their
/// mixture are the same call (continuous batching, see `ContinuousBatcher`).
///
/// Not thread-safe: one thread drives an engine.
public final class Engine {
    public let mode: EngineMode
    public let config: LlamaConfig
    public let runtime: EngineRuntime
    let layers: [any DecoderLayer]
    private(set) var kv: PagedKVStore
    private(set) var kernels: EngineKernels
    private(set) var context: LayerContext
    let embedding: [Float]
    let finalNorm: [Float]
    let lmHead: FP32Linear
    /// RoPE tables [capacity][head_dim / 2].
    private(set) var ropeCos: AlignedBuffer, ropeSin: AlignedBuffer
    /// The W4A4 plan in use (nil in the other modes).
    public let atomPlan: AtomPlan?
    var lengths: [Int]
    var stamps: [Int]
    var live: [Bool]
    /// Stamps never repeat, so an ID of a released sequence never matches a later one.
    private var nextStamp = 1

    /// An engine with its own runtime (this machine, no tuning database, one thread per core).
    public convenience init(model: LlamaWeights, mode: EngineMode, options: EngineOptions = EngineOptions()) throws {
        try self.init(model: model, mode: mode, options: options, runtime: EngineRuntime())
    }

    /// Prepares the weights for `mode` (quantizing and, for W4A4, calibrating now) and the KV cache.
    public init(model: LlamaWeights, mode: EngineMode, options: EngineOptions, runtime: EngineRuntime) throws {
        do { try model.validate() } catch { throw EngineError.invalidInput("\(error)") }
        let c = model.config
        self.mode = mode
        config = c
        self.runtime = runtime
        let capacity = options.maxContext ?? c.maxPositionEmbeddings
        guard capacity >= 1, options.maxSequences >= 1 else {
            throw EngineError.invalidInput("maxContext and maxSequences must be at least 1")
        }
        let format = KVCacheFormat(rawValue: mode.cacheFormat)!
        let page = try options.pageTokens ?? Self.pageTokens(runtime, c, format, sequences: options.maxSequences, capacity: capacity)
        let layout = KVPageLayout(format: format, pageTokens: page, kvHeads: c.numKeyValueHeads, headDim: c.headDim)
        kv = try PagedKVStore(layout: layout, layers: c.numHiddenLayers, slots: options.maxSequences, capacity: capacity)
        kernels = EngineKernels(provider: runtime.provider, layout: layout, capacity: capacity)
        context = LayerContext(kernels: kernels, threads: runtime.threads, scratch: Scratch())
        switch mode {
        case .fp32:
            layers = model.layers.map { FP32Layer($0, eps: c.rmsNormEps) }
            atomPlan = nil
        case .w8a8:
            layers = model.layers.map { W8A8Layer($0, eps: c.rmsNormEps) }
            atomPlan = nil
        case .w4a4:
            let plan = try options.atomPlan ?? AtomPlan.calibrate(
                model, tokens: AtomPlan.calibrationTokens(count: options.calibrationTokens, vocabulary: c.vocabSize), outliers: options.outliers)
            try plan.validate(c)
            layers = try zip(model.layers, plan.layers).map { try W4A4Layer($0, permutations: $1, config: c, outliers: plan.outliers) }
            atomPlan = plan
        }
        embedding = model.embedding.values
        finalNorm = model.finalNorm
        lmHead = FP32Linear(model.lmHead)
        let tables = RoPE.table(positions: capacity, headDim: c.headDim, theta: Double(c.ropeTheta))
        ropeCos = AlignedBuffer(copying: tables.cos)
        ropeSin = AlignedBuffer(copying: tables.sin)
        lengths = Array(repeating: 0, count: options.maxSequences)
        stamps = Array(repeating: 0, count: options.maxSequences)
        live = Array(repeating: false, count: options.maxSequences)
    }

    /// The page size attention-decode's configuration asks for at this engine's largest workload.
    private static func pageTokens(_ runtime: EngineRuntime, _ c: LlamaConfig, _ format: KVCacheFormat, sequences: Int, capacity: Int) throws -> Int {
        let w = Workload(family: "attention-decode", shape: [
            "b": EngineKernels.roundNearestPowerOfTwo(sequences), "hq": c.numAttentionHeads, "hkv": c.numKeyValueHeads,
            "d": c.headDim, "ctx": EngineKernels.roundNearestPowerOfTwo(capacity), "kvbits": format.bits,
        ])
        return try runtime.provider.kernel(AttentionDecode(), for: w, waiving: ["size"]).int("page")
    }

    // MARK: sequences

    /// A new, empty sequence.
    public func makeSequence() throws -> SequenceID {
        let slot = try kv.takeSlot()
        stamps[slot] = nextStamp
        nextStamp += 1
        lengths[slot] = 0
        live[slot] = true
        return SequenceID(slot: slot, stamp: stamps[slot])
    }

    /// Frees the sequence's pages and slot; the ID is dead afterwards.
    public func release(_ id: SequenceID) {
        guard isLive(id) else { return }
        live[id.slot] = false
        kv.release(id.slot)
    }

    /// Tokens the sequence holds (the position of its next token).
    public func length(of id: SequenceID) throws -> Int {
        try check(id)
        return lengths[id.slot]
    }

    func isLive(_ id: SequenceID) -> Bool {
        id.slot >= 0 && id.slot < live.count && live[id.slot] && stamps[id.slot] == id.stamp
    }

    func check(_ id: SequenceID) throws {
        guard isLive(id) else { throw EngineError.invalidInput("\(id) was released or never made by this engine") }
    }

    /// Sequences the cache holds at once, and tokens per sequence.
    public var maxSequences: Int { kv.slots }
    public var maxContext: Int { kv.capacity }
    /// The KV page size in tokens.
    public var pageTokens: Int { kv.layout.pageTokens }
    /// Bytes of the KV pools (all layers).
    public var cacheBytes: Int { kv.byteCount }

    /// Every kernel use so far: layer, role, workload, configuration and where it came from.
    public var dispatchRecords: [DispatchRecord] { kernels.records }

    /// Time per part of every step run so far.
    public var profile: StepProfile { context.profile }

    /// Clears `profile`.
    public func resetProfile() { context.profile = StepProfile() }

    /// Replaces the KV cache with an empty one for `maxSequences` sequences of `maxContext` tokens (same
    /// format and page size), keeping the prepared weights and the loaded kernels. Every sequence must
    /// have been released. The dispatch log and the profile start over.
    public func resizeCache(maxSequences: Int, maxContext: Int) throws {
        guard !live.contains(true) else { throw EngineError.invalidInput("release every sequence before resizing the cache") }
        guard maxSequences >= 1, maxContext >= 1 else { throw EngineError.invalidInput("maxContext and maxSequences must be at least 1") }
        let layout = kv.layout
        kv = try PagedKVStore(layout: layout, layers: 0, slots: 1, capacity: 1)  // frees the old pools first
        kv = try PagedKVStore(layout: layout, layers: config.numHiddenLayers, slots: maxSequences, capacity: maxContext)
        kernels = EngineKernels(provider: runtime.provider, layout: layout, capacity: maxContext)
        context = LayerContext(kernels: kernels, threads: runtime.threads, scratch: Scratch())
        let tables = RoPE.table(positions: maxContext, headDim: config.headDim, theta: Double(config.ropeTheta))
        ropeCos = AlignedBuffer(copying: tables.cos)
        ropeSin = AlignedBuffer(copying: tables.sin)
        lengths = Array(repeating: 0, count: maxSequences)
        stamps = Array(repeating: 0, count: maxSequences)
        live = Array(repeating: false, count: maxSequences)
    }
}
