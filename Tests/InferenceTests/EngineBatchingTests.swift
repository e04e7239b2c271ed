import Foundation
import Measure
@testable import Inference
import Model
import Testing

@Suite("Engine batching", .serialized)
struct EngineBatchingTests {
    static let requests: [ContinuousBatcher.Request] = [
        .init(prompt: [1, 2, 3, 4, 5, 6, 7], maxNewTokens: 5),
        .init(prompt: [400], maxNewTokens: 3),
        .init(prompt: [9, 80, 81, 82], maxNewTokens: 6),
        .init(prompt: [33, 34], maxNewTokens: 2),
        .init(prompt: [100, 200, 300, 400, 500, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], maxNewTokens: 4),
    ]

    /// Requests joining and leaving between steps (a batch of at most 3, one submitted mid-run, 17-token
    /// pages of 16 crossed) give each request the tokens it gets alone: every row of every kernel is
    /// computed the same way whatever else is in the batch (quantization is per row, the integer GEMMs
    /// are exact per element, attention is per row).
    @Test(arguments: [EngineMode.w4a4, .w8a8, .fp32])
    func continuousBatchingMatchesAlone(mode: EngineMode) throws {
        let weights = try tinyWeights()
        var options = EngineOptions()
        options.maxContext = 32
        options.maxSequences = 3
        options.pageTokens = 16
        let engine = try Engine(model: weights, mode: mode, options: options, runtime: testRuntime(threads: 2))
        let alone = try Self.requests.map { try engine.generate(prompt: $0.prompt, steps: $0.maxNewTokens) }
        let batcher = try ContinuousBatcher(engine: engine, maxBatch: 3)
        var ids = try Self.requests.dropLast().map { try batcher.submit($0) }
        try batcher.step()
        try batcher.step()
        ids.append(try batcher.submit(Self.requests.last!))
        let results = try batcher.runToCompletion()
        #expect(batcher.steps < alone.reduce(0) { $0 + $1.count }, "batching should take fewer steps than running one by one")
        for (i, id) in ids.enumerated() {
            #expect(results[id] == alone[i], "request \(i) in \(mode)")
        }
        #expect(batcher.isIdle)
    }

    @Test func badInputIsRefused() throws {
        let engine = try Engine(model: tinyWeights(layers: 1), mode: .w8a8, options: EngineOptions(), runtime: testRuntime())
        let s = try engine.makeSequence()
        #expect(throws: EngineError.self) { try engine.step([(s, [512])]) }
        #expect(throws: EngineError.self) { try engine.step([(s, [])]) }
        #expect(throws: EngineError.self) { try engine.step([(s, [1]), (s, [2])]) }
        engine.release(s)
        #expect(throws: EngineError.self) { try engine.step([(s, [1])]) }
        #expect(throws: EngineError.self) { try EngineMode.parse("w3a3") }
        do {
            _ = try EngineMode.parse("int4")
            Issue.record("int4 is not a mode")
        } catch {
            #expect("\(error)".contains("fp32, w8a8, w4a4"))
        }
        let batcher = try ContinuousBatcher(engine: engine)
        #expect(throws: EngineError.self) { try batcher.submit(.init(prompt: [], maxNewTokens: 1)) }
    }

    /// An engine per mode on a one-layer tiny model, each with the one-token cache serve-bench starts from.
    static func benchEngines(threads: Int) throws -> [Engine] {
        let weights = try tinyWeights(layers: 1)
        let runtime = try testRuntime(threads: threads)
        var options = EngineOptions()
        options.maxContext = 1
        options.maxSequences = 1
        return try EngineMode.allCases.map { try Engine(model: weights, mode: $0, options: options, runtime: runtime) }
    }

    /// The benchmark runs end to end on the tiny model (numbers are not checked here).
    @Test func serveBenchRuns() throws {
        let engines = try Self.benchEngines(threads: 2)
        var bench = ServeBench.Options(batches: [1, 3], context: 40, steps: 2)
        bench.warmup = 1
        let report = try ServeBench.run(engines: engines, options: bench, model: "tiny") { _ in }
        #expect(report.results.count == 6)
        #expect(report.results.allSatisfy { $0.tokensPerSecond > 0 && $0.step.count == 2 })
        #expect(report.ratios.count == 2 && report.ratios.allSatisfy { $0.w4a4OverFP32 != nil && $0.w4a4OverW8A8 != nil })
        // Per-round ratios: each round's steps in order, and the median ratio inside their range.
        #expect(report.results.allSatisfy { $0.stepSeconds?.count == 2 })
        for ratio in report.ratios {
            let rounds = try #require(ratio.w4a4OverW8A8Rounds)
            let w4 = try #require(report.results.first { $0.batch == ratio.batch && $0.mode == .w4a4 }?.stepSeconds)
            let w8 = try #require(report.results.first { $0.batch == ratio.batch && $0.mode == .w8a8 }?.stepSeconds)
            #expect(rounds == [min(w8[0] / w4[0], w8[1] / w4[1]), max(w8[0] / w4[0], w8[1] / w4[1])])
            #expect(ratio.w4a4OverFP32Rounds?.count == 2)
        }
        // The projection breakdown: every projection of every mode, and the layers' seven add up to the
        // gemm part (the same timings, cut finer); lm_head sits inside embed+lm_head.
        let layerProjections = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        for result in report.results {
            let p = try #require(result.projectionSeconds)
            #expect(Set(p.keys) == Set(layerProjections + ["lm_head"]), "\(result.mode) at batch \(result.batch): \(p.keys.sorted())")
            #expect(p.values.allSatisfy { $0 > 0 })
            let gemm = try #require(result.partSeconds[StepProfile.Part.gemm.rawValue])
            let sum = layerProjections.reduce(0) { $0 + p[$1]! }
            #expect(abs(sum - gemm) <= 1e-9 + 1e-9 * gemm, "\(result.mode): projections \(sum) s, gemm \(gemm) s")
            #expect(p["lm_head"]! <= result.partSeconds[StepProfile.Part.head.rawValue]!)
        }
        // The vector probe read before every timed step, where the architecture has one.
        if VectorProbe.host != nil {
            #expect(report.results.allSatisfy { $0.vectorGops?.count == 2 && $0.vectorGops!.allSatisfy { $0 > 0 } })
            #expect(report.coreSpeedAtStart?.vectorGops != nil && report.coreSpeedAtEnd?.vectorGops != nil)
        }
        // The memory probe at start and end.
        #expect(report.memoryAtStart != nil && report.memoryAtEnd != nil)
        // Steal over the engine's CPUs, from /proc/stat (Linux reports the field, zero off a VM).
        let steal = try #require(report.stealFraction)
        #expect(steal >= 0 && steal <= 1)
    }

    /// A batch whose modes' steps saw vector readings more than 10% apart gets a note naming both;
    /// closer readings, or none, get none.
    @Test func serveBenchNotesModesThatSawDifferentVectorShares() {
        func result(_ batch: Int, _ mode: EngineMode, _ gops: [Double]?) -> ServeBench.Result {
            ServeBench.Result(
                batch: batch, mode: mode, step: TimingSummary(samples: [1]), tokensPerSecond: 1, timePerOutputTokenMs: 1000, partSeconds: [:],
                layerSeconds: 1, cacheBytes: 0, vectorGops: gops)
        }
        let results = [
            result(8, .w8a8, [400, 390, 410]), result(8, .w4a4, [300, 320, 310]),
            result(16, .w8a8, [400, 390]), result(16, .w4a4, [380, 370]),
            result(32, .w8a8, nil), result(32, .w4a4, [300]),
        ]
        let notes = ServeBench.vectorNotes(results, batches: [8, 16, 32])
        #expect(notes.count == 1)
        #expect(notes.first?.hasPrefix("batch 8: the vector probe before w4a4's steps read 78% of its reading before w8a8's (median 310 against 400 GOP/s)") == true,
                "\(notes)")
    }

    /// A batch whose caches do not fit leaves modes out (the largest cache first) with a note, rather than
    /// allocating past the machine's memory; a run where nothing fits is an error that says so.
    @Test func serveBenchLeavesOutCachesThatDoNotFit() throws {
        let engines = try Self.benchEngines(threads: 1)
        var bench = ServeBench.Options(batches: [1, 3], context: 40, steps: 1)
        bench.warmup = 0
        let capacity = bench.context + bench.warmup + bench.steps + 1
        func need(_ mode: EngineMode, _ batch: Int) throws -> Int {
            try engines.first { $0.mode == mode }!.cacheBytes(sequences: batch, capacity: capacity)
        }
        // The estimate is what resizeCache allocates.
        try engines[0].resizeCache(maxSequences: 3, maxContext: capacity)
        #expect(engines[0].cacheBytes == (try need(engines[0].mode, 3)))
        try engines[0].resizeCache(maxSequences: 1, maxContext: 1)
        #expect(try need(.fp32, 3) > need(.w8a8, 3) && need(.w8a8, 3) > need(.w4a4, 3))
        // Room for all three at batch 1, for W8A8 and W4A4 only at batch 3.
        bench.memoryLimit = try need(.w8a8, 3) + need(.w4a4, 3) + need(.fp32, 3) / 2
        #expect(try need(.fp32, 1) + need(.w8a8, 1) + need(.w4a4, 1) <= bench.memoryLimit!)
        var lines: [String] = []
        let report = try ServeBench.run(engines: engines, options: bench, model: "tiny") { lines.append($0) }
        #expect(Set(report.results.filter { $0.batch == 1 }.map(\.mode)) == Set(EngineMode.allCases))
        #expect(Set(report.results.filter { $0.batch == 3 }.map(\.mode)) == [.w8a8, .w4a4])
        let ratio3 = try #require(report.ratios.first { $0.batch == 3 })
        #expect(ratio3.w4a4OverFP32 == nil && ratio3.w4a4OverW8A8 != nil)
        let note = try #require(report.notes.first { $0.hasPrefix("batch 3: left out fp32") })
        #expect(note.contains("do not fit beside w8a8 (") && note.contains("in the limit of") && lines.contains(note), "\(note)")
        // Nothing fits: an error naming the batches, and no engine left with a large cache.
        bench.memoryLimit = try need(.w4a4, 1) - 1
        #expect {
            try ServeBench.run(engines: engines, options: bench, model: "tiny") { _ in }
        } throws: { error in
            "\(error)".contains("no batch size fits in memory") && "\(error)".contains("nothing runs at this batch size")
        }
        #expect(engines.allSatisfy { $0.maxSequences == 1 })
    }
}
