import Foundation
import KernelKit
import Machine
import Measure
import Model

/// Decode throughput of the three modes at several batch sizes, measured interleaved in one run.
///
/// For each batch size B every engine gets a fresh KV cache holding B sequences of `context` tokens
/// (filled with random valid entries by `makeFilledSequence`: a real prefill of B x context tokens
/// would take far longer than the decode being measured), runs `warmup` untimed decode steps (kernel
/// compiles, weight packing for new panel widths), then `steps` timed decode steps, the modes taking
/// turns step by step (the order rotating every step) so that a change in the machine's load hits them
/// alike. A step is one token for each of the B sequences, greedy-sampled from its logits.
public enum ServeBench {
    public struct Options: Sendable {
        public var batches: [Int]
        public var context: Int
        public var steps: Int
        public var warmup = 1
        public var seed: UInt64 = 7
        /// Bytes the KV caches of one batch may take, all modes together; nil: the memory Linux reports
        /// available (`MemAvailable`) when the batch starts, less a reserve for the weights a new
        /// configuration packs and the activations (`memoryReserve`). A mode whose cache does not fit
        /// is left out of that batch (the largest cache first), with a note, instead of the kernel's
        /// out-of-memory killer ending the run.
        public var memoryLimit: Int?

        public init(batches: [Int], context: Int, steps: Int) {
            self.batches = batches
            self.context = context
            self.steps = steps
        }
    }

    /// One (batch, mode) measurement.
    public struct Result: Codable, Sendable {
        public var batch: Int
        public var mode: EngineMode
        /// Seconds per decode step (one token for each sequence): min, median, p20, p80, samples.
        public var step: TimingSummary
        /// batch / median step time.
        public var tokensPerSecond: Double
        /// Median step time in milliseconds: the time per output token each sequence sees.
        public var timePerOutputTokenMs: Double
        /// Mean seconds per step in each part (`StepProfile.Part` names).
        public var partSeconds: [String: Double]
        /// Mean seconds per step inside the decoder layers (all parts but embed+lm_head).
        public var layerSeconds: Double
        public var cacheBytes: Int
        /// Each timed step's seconds, in round order (round s ran every mode once); nil in reports
        /// written before they were kept.
        public var stepSeconds: [Double]?
        /// Mean seconds per step in each projection's kernel calls, summed over the layers (q_proj ...
        /// down_proj, lm_head; `StepProfile.projections`); nil in reports written before they were kept.
        public var projectionSeconds: [String: Double]?
        /// Bytes of packed weights the engine held after the batch (`Engine.packedWeights`), packings made
        /// during the batch (warm-up included) and during its timed steps alone (a packing there is timed:
        /// its layouts did not fit in `EngineOptions.packedLayouts`); nil in reports written before.
        public var packedBytes: Int?
        public var packings: Int?
        public var packingsTimed: Int?
        /// The vector throughput of the engine's PUs (`VectorProbe`, GOP/s averaged over the PUs) sampled
        /// right before each timed step, in step order; nil without a probe or in reports written before.
        public var vectorGops: [Double]?

        /// The median of `vectorGops`, nil without samples.
        public var vectorMedian: Double? {
            vectorGops.flatMap { $0.isEmpty ? nil : TimingSummary(samples: $0).median }
        }
    }

    /// Speed-ups at one batch size, from median step times.
    public struct Ratio: Codable, Sendable {
        public var batch: Int
        public var w4a4OverFP32: Double?
        public var w4a4OverW8A8: Double?
        /// The same ratios on the time spent inside the decoder layers (lm_head excluded: FP32 in the fp32
        /// mode, FP16 in the quantized ones).
        public var layersW4A4OverFP32: Double?
        public var layersW4A4OverW8A8: Double?
        /// A projection, not a measurement: the ratios of a 32-layer model, 32 / layers times the measured
        /// time inside the layers plus the measured time outside them (embedding, final norm, lm_head).
        public var projected32W4A4OverFP32: Double?
        public var projected32W4A4OverW8A8: Double?
        /// The smallest and largest ratio of one round's step times (the modes ran one after the other
        /// in each round): how far the machine's drift moved the ratio during the run.
        public var w4a4OverFP32Rounds: [Double]?
        public var w4a4OverW8A8Rounds: [Double]?
    }

    public struct Report: Codable, Sendable {
        public var machine: String
        public var model: String
        public var layers: Int
        public var context: Int
        public var steps: Int
        public var threads: Int
        public var database: String?
        public var loadAverageAtStart: String
        /// The engine threads' cores' speed before the first batch and after the last (`CoreSpeed`).
        public var coreSpeedAtStart: CoreSpeed?
        public var coreSpeedAtEnd: CoreSpeed?
        /// The share of the engine's CPUs' time the hypervisor stole during the run (/proc/stat), nil
        /// where it is not reported (and in reports written before it was kept).
        public var stealFraction: Double?
        public var stealCPUs: [Int]?
        /// `MemoryProbe` before the first batch and after the last.
        public var memoryAtStart: MemorySpeed?
        public var memoryAtEnd: MemorySpeed?
        public var results: [Result]
        public var ratios: [Ratio]
        public var notes: [String]
    }

    /// Runs the benchmark on engines that share `engines`' runtime; `progress` gets a line per phase.
    public static func run(engines: [Engine], options: Options, model: String, progress: (String) -> Void) throws -> Report {
        guard let first = engines.first else { throw EngineError.invalidInput("serve-bench needs at least one engine") }
        guard options.steps >= 1, options.context >= 1, !options.batches.isEmpty, options.batches.allSatisfy({ $0 >= 1 }) else {
            throw EngineError.invalidInput("serve-bench needs batches >= 1, a context >= 1 and steps >= 1")
        }
        let capacity = options.context + options.warmup + options.steps + 1
        let machine = first.runtime.machine
        let speedPUs = ThreadPlacement.scatter.pus(count: first.runtime.threads.threadCount, topology: machine.description.topology)
        let loadAverage = Self.loadAverage()
        let speedAtStart = CoreSpeed.measure(pus: speedPUs, topology: machine.hwloc)
        let probe = VectorProbe.host
        let timesAtStart = CPUTimes.now(cpus: speedPUs)
        let memory = MemoryProbe(lastLevelCacheBytes: machine.description.topology.lastLevelCache.map { Int($0.sizeBytes) })
        let memoryAtStart = memory.measure()
        var results: [Result] = []
        var memoryNotes: [String] = []
        for batch in options.batches {
            let (active, left) = try Self.fitting(engines, batch: batch, capacity: capacity, limit: options.memoryLimit)
            if let left {
                progress(left)
                memoryNotes.append(left)
            }
            if active.isEmpty { continue }
            var sequences: [[SequenceID]] = []
            var tokens: [[Int]] = []
            for (e, engine) in active.enumerated() {
                try engine.resizeCache(maxSequences: batch, maxContext: capacity)
                progress("batch \(batch): \(engine.mode.rawValue) cache for \(batch) x \(capacity) tokens in pages of \(engine.pageTokens), filling \(options.context)")
                sequences.append(try (0..<batch).map { b in
                    try engine.makeFilledSequence(length: options.context, seed: options.seed &+ UInt64(b))
                })
                var rng = SeededGenerator(seed: options.seed &+ UInt64(e))
                tokens.append((0..<batch).map { _ in Int.random(in: 0..<engine.config.vocabSize, using: &rng) })
            }
            func decode(_ e: Int) throws {
                let logits = try active[e].step(zip(sequences[e], tokens[e]).map { ($0, [$1]) })
                tokens[e] = logits.map { LlamaReference.argmax($0.values) }
            }
            let packedBefore = active.map(\.packedWeights.packings)
            for _ in 0..<options.warmup { for e in active.indices { try decode(e) } }
            for engine in active { engine.resetProfile() }
            let packedWarm = active.map(\.packedWeights.packings)
            var samples = Array(repeating: [Double](), count: active.count)
            var vector = Array(repeating: [Double](), count: active.count)
            for s in 0..<options.steps {
                for i in active.indices {
                    let e = (i + s) % active.count
                    if let probe {
                        var gops: [Double] = []
                        _ = CoreSpeed.onEach(speedPUs, topology: machine.hwloc) { gops.append(probe.gops(runs: 1)) }
                        vector[e].append(gops.reduce(0, +) / Double(max(1, gops.count)))
                    }
                    let start = StepProfile.now()
                    try decode(e)
                    samples[e].append(StepProfile.now() - start)
                }
            }
            for (e, engine) in active.enumerated() {
                let summary = TimingSummary(samples: samples[e])
                let p = engine.profile
                let steps = Double(max(p.steps, 1))
                let parts = Dictionary(uniqueKeysWithValues: StepProfile.Part.allCases.map { ($0.rawValue, p[$0] / steps) })
                let packed = engine.packedWeights
                results.append(Result(
                    batch: batch, mode: engine.mode, step: summary, tokensPerSecond: Double(batch) / summary.median,
                    timePerOutputTokenMs: summary.median * 1e3, partSeconds: parts, layerSeconds: p.layerSeconds / steps,
                    cacheBytes: engine.cacheBytes, stepSeconds: samples[e], projectionSeconds: p.projections.mapValues { $0 / steps },
                    packedBytes: packed.bytes, packings: packed.packings - packedBefore[e], packingsTimed: packed.packings - packedWarm[e],
                    vectorGops: probe == nil ? nil : vector[e]))
                for id in sequences[e] { engine.release(id) }
                progress("batch \(batch): \(engine.mode.rawValue) \(String(format: "%.1f", Double(batch) / summary.median)) tokens/s")
                if packed.packings > packedWarm[e] {
                    let line = "batch \(batch): \(engine.mode.rawValue) packed weights \(packed.packings - packedWarm[e]) times during the timed steps "
                        + "(their time is in the step times): the layouts its kernels use do not fit in \(packed.layoutsPerLayer) per layer; "
                        + "a larger --packed-layouts keeps them"
                    progress(line)
                    memoryNotes.append(line)
                }
            }
            for engine in active { try engine.resizeCache(maxSequences: 1, maxContext: 1) }
        }
        guard !results.isEmpty else {
            throw EngineError.invalidInput("no batch size fits in memory: \(memoryNotes.joined(separator: "; "))")
        }
        return Report(
            machine: first.runtime.machine.description.fingerprint.id, model: model, layers: first.config.numHiddenLayers,
            context: options.context, steps: options.steps, threads: first.runtime.threads.threadCount,
            database: first.runtime.databasePath, loadAverageAtStart: loadAverage, coreSpeedAtStart: speedAtStart,
            coreSpeedAtEnd: CoreSpeed.measure(pus: speedPUs, topology: machine.hwloc),
            stealFraction: timesAtStart.flatMap { start in CPUTimes.now(cpus: speedPUs)?.stealFraction(since: start) }, stealCPUs: speedPUs,
            memoryAtStart: memoryAtStart, memoryAtEnd: memory.measure(), results: results,
            ratios: ratios(results, batches: options.batches, layers: first.config.numHiddenLayers),
            notes: notes + memoryNotes + vectorNotes(results, batches: options.batches))
    }

    /// The memory a batch's caches may take when no limit is given: `MemAvailable` less the reserve.
    static func memoryBudget() -> Int? {
        HostMemory.availableBytes().map { $0 - memoryReserve(available: $0) }
    }

    /// Kept free beyond the caches: an eighth of the available memory, at least 2 GiB (weights packed for
    /// a new panel width during the warm-up, activations, the page tables).
    static func memoryReserve(available: Int) -> Int { max(2 << 30, available / 8) }

    /// The engines whose caches for `batch` sequences of `capacity` tokens fit in `limit` bytes together
    /// (or in `memoryBudget()`), in their order: the engine with the largest cache is left out first.
    /// Returns them and, when any was left out, a line that says which, what they need and what is free.
    static func fitting(_ engines: [Engine], batch: Int, capacity: Int, limit: Int?) throws -> ([Engine], String?) {
        guard let budget = limit ?? memoryBudget() else { return (engines, nil) }
        let needs = try engines.map { try $0.cacheBytes(sequences: batch, capacity: capacity) }
        var kept = Array(engines.indices)
        var total = needs.reduce(0, +)
        while total > budget, let largest = kept.max(by: { needs[$0] < needs[$1] }) {
            kept.removeAll { $0 == largest }
            total -= needs[largest]
        }
        guard kept.count < engines.count else { return (engines, nil) }
        func gib(_ bytes: Int) -> String { String(format: "%.1f GiB", Double(bytes) / Double(1 << 30)) }
        func list(_ indices: [Int]) -> String {
            indices.map { "\(engines[$0].mode.rawValue) (\(gib(needs[$0])))" }.joined(separator: ", ")
        }
        let left = engines.indices.filter { !kept.contains($0) }
        let room = limit.map { "the limit of \(gib($0))" } ?? "the \(gib(budget)) free (MemAvailable less a reserve)"
        let beside = kept.isEmpty ? "" : " beside \(list(kept))"
        let outcome = kept.isEmpty ? "; nothing runs at this batch size" : ""
        return (kept.map { engines[$0] },
                "batch \(batch): left out \(list(left)): the KV caches for \(batch) x \(capacity) tokens do not fit\(beside) in \(room)\(outcome). "
                    + "A smaller --context, fewer --layers or --batch, or fewer --modes fits them")
    }

    static let notes = [
        "KV caches are filled with random valid entries (kv-append of random rows), not by a prefill.",
        "Step time: one decode token for every sequence of the batch, greedy sampling included; modes interleaved step by step.",
        "lm_head runs in FP32 (OpenBLAS) in the fp32 mode and with FP16 weights (gemm-f16) in w8a8 and w4a4, as Atom keeps it; layer ratios leave it out.",
        "projected32 ratios are projections to 32 layers from the measured per-layer and lm_head times, not measurements.",
    ]

    /// A note per batch whose modes' steps saw vector throughputs (the medians of the readings before
    /// their steps) more than 10% apart: the machine, not the kernels, moved that batch's ratios.
    static func vectorNotes(_ results: [Result], batches: [Int]) -> [String] {
        batches.compactMap { b in
            let medians = results.filter { $0.batch == b }.compactMap { r in r.vectorMedian.map { (r.mode, $0) } }
            guard let low = medians.min(by: { $0.1 < $1.1 }), let high = medians.max(by: { $0.1 < $1.1 }), low.1 > 0,
                  high.1 / low.1 > 1.1 else { return nil }
            return String(format: "batch %d: the vector probe before %@'s steps read %.0f%% of its reading before %@'s (median %.0f against %.0f GOP/s): "
                + "the machine gave the modes different shares of the cores, which moves this batch's ratios; run it again", b,
                low.0.rawValue, low.1 / high.1 * 100, high.0.rawValue, low.1, high.1)
        }
    }

    static func ratios(_ results: [Result], batches: [Int], layers: Int) -> [Ratio] {
        batches.map { b in
            func r(_ mode: EngineMode) -> Result? { results.first { $0.batch == b && $0.mode == mode } }
            let w4 = r(.w4a4), f = r(.fp32), w8 = r(.w8a8)
            func over(_ base: Result?, _ key: (Result) -> Double) -> Double? {
                guard let w4, let base else { return nil }
                return key(base) / key(w4)
            }
            func projected(_ x: Result) -> Double { 32 / Double(layers) * x.layerSeconds + (x.partSeconds[StepProfile.Part.head.rawValue] ?? 0) }
            /// [min, max] over rounds of base's step time / W4A4's in the same round.
            func rounds(_ base: Result?) -> [Double]? {
                guard let a = base?.stepSeconds, let b = w4?.stepSeconds, a.count == b.count, !a.isEmpty else { return nil }
                let perRound = zip(a, b).map { $0 / $1 }
                return [perRound.min()!, perRound.max()!]
            }
            return Ratio(
                batch: b, w4a4OverFP32: over(f) { $0.step.median }, w4a4OverW8A8: over(w8) { $0.step.median },
                layersW4A4OverFP32: over(f) { $0.layerSeconds }, layersW4A4OverW8A8: over(w8) { $0.layerSeconds },
                projected32W4A4OverFP32: over(f, projected), projected32W4A4OverW8A8: over(w8, projected),
                w4a4OverFP32Rounds: rounds(f), w4a4OverW8A8Rounds: rounds(w8))
        }
    }

    static func loadAverage() -> String {
        (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").prefix(3).joined(separator: " ") ?? "unknown"
    }
}
