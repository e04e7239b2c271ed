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
    /// Quantizing at load (`init(model:mode:...)` in w8a8 or w4a4): the settings given to
    /// `AtomModelQuantizer`, the method taken from the mode. The default is Atom's W4A4 with a short
    /// calibration (16 random tokens, seed 0); `lowbit quantize` calibrates on 256 by default.
    public var quantization = QuantizationSettings(method: .w4a4, calibration: EngineOptions.defaultCalibration)
    /// W4A4 at load: the reorder permutations of every layer (identity for the ablation's
    /// round-to-nearest); nil calibrates with `quantization.calibration`.
    public var permutations: [LayerPermutations]?
    /// The KV cache format; nil: the mode's (fp32, int8, int4).
    public var kvCache: KVCacheFormat?
    /// Packed copies of its weights each quantized linear layer keeps, one per packed layout (panel width
    /// and what else a GEMM variant's packing depends on). Configurations tuned for different batch sizes
    /// may pack differently; two cover a prefill and a decode size in turn, and a layout dropped is packed
    /// again when it runs (`Engine.packedWeights` counts both).
    public var packedLayouts = 2

    public static let defaultCalibration = CalibrationSettings(tokens: 16, sequenceLength: 16, seed: 0)

    public init() {}

    /// The settings quantizing at load uses for `mode` (w8a8 or w4a4).
    func settings(for mode: EngineMode) -> QuantizationSettings {
        mode == .w4a4 ? quantization : QuantizationSettings(method: .w8a8, calibration: quantization.calibration)
    }
}

/// `Engine.packedWeights`.
public struct PackedWeightsStats: Sendable, Equatable {
    /// `EngineOptions.packedLayouts`.
    public var layoutsPerLayer: Int
    /// Bytes the packings kept now hold, over every layer and the lm_head.
    public var bytes: Int
    /// Packings made so far, and how many of them were dropped for a newer layout.
    public var packings: Int
    public var dropped: Int
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
    /// The page size `EngineOptions.pageTokens` fixed, if it did; otherwise every cache (the first and
    /// each `resizeCache`) takes the page of attention-decode's configuration for its own workload.
    private let fixedPageTokens: Int?
    private(set) var kernels: EngineKernels
    private(set) var context: LayerContext
    /// Bounds the layers' packed weights and counts the packing (`EngineOptions.packedLayouts`).
    let packing: PackingPolicy
    let embedding: [Float]
    let finalNorm: [Float]
    /// FP32 in the fp32 engine, FP16 in the quantized ones (as Atom).
    let lmHead: LMHead
    /// RoPE tables [capacity][head_dim / 2].
    private(set) var ropeCos: AlignedBuffer, ropeSin: AlignedBuffer
    /// How the linear layers were quantized (nil in fp32).
    public let quantization: QuantizationSettings?
    /// The reorder permutations of every layer (identity for w8a8; nil in fp32).
    public let permutations: [LayerPermutations]?
    var lengths: [Int]
    var stamps: [Int]
    var live: [Bool]
    /// Stamps never repeat, so an ID of a released sequence never matches a later one.
    private var nextStamp = 1

    /// An engine with its own runtime (this machine, no tuning database, one thread per core).
    public convenience init(model: LlamaWeights, mode: EngineMode, options: EngineOptions = EngineOptions()) throws {
        try self.init(model: model, mode: mode, options: options, runtime: EngineRuntime())
    }

    /// An engine on FP32 weights. In w8a8 and w4a4 the linear layers are quantized now, by the code
    /// `lowbit quantize` runs (`AtomModelQuantizer` with `options.quantization`; for W4A4 calibrated
    /// now unless `options.permutations` gives the permutations): the engine then holds the same
    /// weights as one made with `init(quantized:)` from the file that command writes.
    public convenience init(model: LlamaWeights, mode: EngineMode, options: EngineOptions, runtime: EngineRuntime) throws {
        do { try model.validate() } catch { throw EngineError.invalidInput("\(error)") }
        switch mode {
        case .fp32:
            try self.init(config: model.config, mode: .fp32, layers: model.layers.map { FP32Layer($0, eps: model.config.rmsNormEps) },
                          embedding: model.embedding, finalNorm: model.finalNorm, lmHead: model.lmHead,
                          quantization: nil, permutations: nil, options: options, runtime: runtime)
        case .w8a8, .w4a4:
            let settings = options.settings(for: mode)
            let quantized: QuantizedModel
            do {
                if mode == .w4a4, let permutations = options.permutations {
                    quantized = try AtomModelQuantizer.quantize(model, permutations: permutations, settings: settings)
                } else {
                    quantized = try AtomModelQuantizer.quantize(model, settings: settings)
                }
            } catch let error as ModelError {
                throw EngineError.invalidInput("quantizing at load: \(error)")
            }
            try self.init(quantized: quantized, options: options, runtime: runtime)
        }
    }

    /// An engine on a quantized model (`QuantizedModel.load(from:)` of what `lowbit quantize` wrote, or
    /// `AtomModelQuantizer`'s result): no FP32 linear weights needed. The mode is the model's method.
    public convenience init(quantized model: QuantizedModel, options: EngineOptions, runtime: EngineRuntime) throws {
        let c = model.config, s = model.settings
        guard model.layers.count == c.numHiddenLayers else {
            throw EngineError.invalidInput("the quantized model has \(model.layers.count) layers; its config says \(c.numHiddenLayers)")
        }
        let mode: EngineMode, layers: [any DecoderLayer]
        switch s.method {
        case .w4a4:
            mode = .w4a4
            layers = try model.layers.map { try W4A4Layer($0, config: c, settings: s) }
        case .w8a8:
            mode = .w8a8
            layers = try model.layers.map { try W8A8Layer($0, eps: c.rmsNormEps) }
        }
        try self.init(config: c, mode: mode, layers: layers, embedding: model.embedding, finalNorm: model.finalNorm,
                      lmHead: model.lmHead, quantization: s, permutations: model.layers.map(\.permutations), options: options,
                      runtime: runtime)
    }

    /// Prepares the KV cache and the rest around prepared layers.
    private init(config c: LlamaConfig, mode: EngineMode, layers: [any DecoderLayer], embedding: Matrix, finalNorm: [Float],
                 lmHead: Matrix, quantization: QuantizationSettings?, permutations: [LayerPermutations]?, options: EngineOptions,
                 runtime: EngineRuntime) throws {
        self.mode = mode
        config = c
        self.runtime = runtime
        let capacity = options.maxContext ?? c.maxPositionEmbeddings
        guard capacity >= 1, options.maxSequences >= 1 else {
            throw EngineError.invalidInput("maxContext and maxSequences must be at least 1")
        }
        guard options.packedLayouts >= 1 else {
            throw EngineError.invalidInput("packedLayouts must be at least 1 (a layer keeps the packing it runs), not \(options.packedLayouts)")
        }
        packing = PackingPolicy(layoutsPerLayer: options.packedLayouts)
        let format = options.kvCache ?? mode.kvCache
        fixedPageTokens = options.pageTokens
        let layout = try Self.cacheLayout(runtime, c, format, fixedPage: options.pageTokens, sequences: options.maxSequences, capacity: capacity)
        kv = try PagedKVStore(layout: layout, layers: c.numHiddenLayers, slots: options.maxSequences, capacity: capacity)
        kernels = EngineKernels(provider: runtime.provider, layout: layout, capacity: capacity)
        context = LayerContext(kernels: kernels, threads: runtime.threads, scratch: Scratch(), packing: packing)
        self.layers = layers
        self.quantization = quantization
        self.permutations = permutations
        self.embedding = embedding.values
        self.finalNorm = finalNorm
        self.lmHead = try LMHead(lmHead, halfPrecision: mode != .fp32)
        let tables = RoPE.table(positions: capacity, headDim: c.headDim, theta: Double(c.ropeTheta))
        ropeCos = AlignedBuffer(copying: tables.cos)
        ropeSin = AlignedBuffer(copying: tables.sin)
        lengths = Array(repeating: 0, count: options.maxSequences)
        stamps = Array(repeating: 0, count: options.maxSequences)
        live = Array(repeating: false, count: options.maxSequences)
    }

    /// The layout of a cache for `sequences` of `capacity` tokens: the fixed page if the options gave one,
    /// else the page attention-decode's configuration asks for at that (largest) workload.
    private static func cacheLayout(_ runtime: EngineRuntime, _ c: LlamaConfig, _ format: KVCacheFormat, fixedPage: Int?,
                                    sequences: Int, capacity: Int) throws -> KVPageLayout {
        let page = try fixedPage ?? {
            let w = Workload(family: "attention-decode", shape: [
                "b": EngineKernels.roundNearestPowerOfTwo(sequences), "hq": c.numAttentionHeads, "hkv": c.numKeyValueHeads,
                "d": c.headDim, "ctx": EngineKernels.roundNearestPowerOfTwo(capacity), "kvbits": format.bits,
            ])
            return try runtime.provider.kernel(AttentionDecode(), for: w).int("page")
        }()
        return KVPageLayout(format: format, pageTokens: page, kvHeads: c.numKeyValueHeads, headDim: c.headDim)
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
    /// The KV cache format.
    public var kvCache: KVCacheFormat { kv.layout.format }
    /// Bytes of the KV pools (all layers).
    public var cacheBytes: Int { kv.byteCount }

    /// Bytes of the KV pools `resizeCache(maxSequences: sequences, maxContext: capacity)` would allocate
    /// (with the page it would choose), without allocating them.
    public func cacheBytes(sequences: Int, capacity: Int) throws -> Int {
        let layout = try Self.cacheLayout(runtime, config, kv.layout.format, fixedPage: fixedPageTokens, sequences: sequences, capacity: capacity)
        return PagedKVStore.byteCount(layout: layout, layers: config.numHiddenLayers, slots: sequences, capacity: capacity)
    }

    /// The quantized layers' packed weights: bytes held now, packings made and dropped since the engine
    /// was made (the FP32 mode packs nothing).
    public var packedWeights: PackedWeightsStats {
        PackedWeightsStats(layoutsPerLayer: packing.layoutsPerLayer, bytes: packing.bytesHeld, packings: packing.packings, dropped: packing.dropped)
    }

    /// Every kernel use so far: layer, role, workload, configuration and where it came from.
    public var dispatchRecords: [DispatchRecord] { kernels.records }

    /// Time per part of every step run so far.
    public var profile: StepProfile { context.profile }

    /// Clears `profile`.
    public func resetProfile() { context.profile = StepProfile() }

    /// Replaces the KV cache with an empty one for `maxSequences` sequences of `maxContext` tokens, keeping
    /// the prepared weights. The format stays; the page size is chosen again, as at init, for the new
    /// workload (the cache kernels are held to the cache's page, so a page chosen for another batch size
    /// would override the tuned configuration) unless the options fixed one. Every sequence must have
    /// been released. The dispatch log and the profile start over.
    public func resizeCache(maxSequences: Int, maxContext: Int) throws {
        guard !live.contains(true) else { throw EngineError.invalidInput("release every sequence before resizing the cache") }
        guard maxSequences >= 1, maxContext >= 1 else { throw EngineError.invalidInput("maxContext and maxSequences must be at least 1") }
        let layout = try Self.cacheLayout(runtime, config, kv.layout.format, fixedPage: fixedPageTokens, sequences: maxSequences, capacity: maxContext)
        kv = try PagedKVStore(layout: kv.layout, layers: 0, slots: 1, capacity: 1)  // frees the old pools first
        kv = try PagedKVStore(layout: layout, layers: config.numHiddenLayers, slots: maxSequences, capacity: maxContext)
        kernels = EngineKernels(provider: runtime.provider, layout: layout, capacity: maxContext)
        context = LayerContext(kernels: kernels, threads: runtime.threads, scratch: Scratch(), packing: packing)
        let tables = RoPE.table(positions: maxContext, headDim: config.headDim, theta: Double(config.ropeTheta))
        ropeCos = AlignedBuffer(copying: tables.cos)
        ropeSin = AlignedBuffer(copying: tables.sin)
        lengths = Array(repeating: 0, count: maxSequences)
        stamps = Array(repeating: 0, count: maxSequences)
        live = Array(repeating: false, count: maxSequences)
    }
}
