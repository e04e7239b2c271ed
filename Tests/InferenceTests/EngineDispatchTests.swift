import Foundation
import Inference
import KernelKit
import Kernels
import Machine
import Model
import Testing
import TuningStore

@Suite("Engine dispatch", .serialized)
struct EngineDispatchTests {
    /// A database with one tuned gemm-w4a4 record at the shape of the tiny model's q/k/v/o projections
    /// for one token (m=1 n=256 k=256 outliers=128; k/v have n=128 and look it up as the nearest
    /// shape), and a record this machine cannot run (more threads than it has PUs) at m=2.
    @Test func tunedRecordsAreUsedAndExplained() throws {
        let dir = EngineTempDir()
        let path = dir.file("tuned.sqlite")
        let probe = try testRuntime()
        let machine = probe.machine.description
        let family = GemmW4A4()
        let context = MachineContext(machine)
        let decode = Workload(family: "gemm-w4a4", shape: ["m": 1, "n": 256, "k": 256, "outliers": 128])
        var tuned = family.analyticalConfiguration(for: decode, machine: context)
        tuned["threads"] = .int(1)
        tuned["mc"] = .int([8, 16, 24, 32, 48, 64].first { $0 % tuned.int("mr") == 0 && $0 != tuned.int("mc") }!)
        try family.check(tuned, machine: context)
        #expect(tuned != family.analyticalConfiguration(for: decode, machine: context))
        var unrunnable = tuned
        unrunnable["threads"] = .int(64)
        let twoRows = Workload(family: "gemm-w4a4", shape: ["m": 2, "n": 256, "k": 256, "outliers": 128])
        let store = try TuningStore(path: path)
        func record(_ w: Workload, _ c: KernelKit.Configuration) -> TrialRecord { storedTrial(family, w, c, machine: machine) }
        let id = try store.insert(record(decode, tuned))
        try store.insert(record(twoRows, unrunnable))
        try store.close()

        var options = EngineOptions()
        options.maxContext = 16
        let engine = try Engine(model: tinyWeights(layers: 1), mode: .w4a4, options: options, runtime: testRuntime(database: path))
        let s = try engine.makeSequence()
        _ = try engine.step([(s, [5, 6])])  // m = 2: the unrunnable record
        _ = try engine.step([(s, [7])])  // m = 1: the tuned record
        let records = engine.dispatchRecords
        func find(_ role: String, m: Int) -> DispatchRecord? {
            records.first { $0.role == role && $0.choice.workload["m"] == m }
        }
        let q1 = try #require(find("q_proj", m: 1))
        #expect(q1.choice.origin == .exact(trialID: id))
        #expect(q1.choice.configuration == tuned)
        #expect(find("o_proj", m: 1)?.choice.origin == .exact(trialID: id))
        if case .nearest? = find("k_proj", m: 1)?.choice.origin {} else { Issue.record("k_proj should use the nearest tuned shape") }
        let q2 = try #require(find("q_proj", m: 2))
        #expect(q2.choice.origin == .analyticalDefault)
        #expect(q2.choice.notes.contains { $0.contains("rejected on this machine") })
        #expect(records.first { $0.role == "attention" }?.choice.origin == .analyticalDefault)
        let text = DispatchExplain.text(records, machine: machine.fingerprint.id, database: path)
        #expect(text.contains("exact tuned (trial \(id))"))
        #expect(text.contains("nearest tuned shape"))
        #expect(text.contains("analytical default"))
        #expect(text.contains("rejected on this machine"))
    }

    /// Tuned records whose packings differ at the same panel width (unpack=lut keeps signed codes, x86's
    /// unpack=mask stores w + 8) each get their own packing of a layer's weights: the logits equal those
    /// of the analytical configurations bit for bit (every gemm-w4a4 variant is exact).
    @Test func configurationsThatPackDifferentlyKeepTheirOwnPacking() throws {
        let probe = try testRuntime()
        let machine = probe.machine.description
        let family = GemmW4A4()
        let context = MachineContext(machine)
        let isa = family.bestTarget(on: context)
        guard isa == .avx2 || isa == .avx512vnni || isa == .avxvnni else { return }  // one code form elsewhere
        let dir = EngineTempDir()
        let path = dir.file("packings.sqlite")
        let store = try TuningStore(path: path)
        var forms: Set<String> = []
        for (m, unpack) in [(1, "lut"), (2, "mask")] {
            let w = Workload(family: "gemm-w4a4", shape: ["m": m, "n": 256, "k": 256, "outliers": 128])
            var c = family.analyticalConfiguration(for: w, machine: context)
            c["unpack"] = .name(unpack)
            c["threads"] = .int(1)
            c["mr"] = .int(1)  // the same panel width in both, so only the code form tells the packings apart
            c["nr"] = .int(16)
            c["acc"] = .name("registers")
            try family.check(c, machine: context)
            forms.insert(GemmW4A4.packingKey(c))
            try store.insert(storedTrial(family, w, c, machine: machine))
        }
        try store.close()
        #expect(forms.count == 2)

        func run(_ database: String?, packedLayouts: Int = 2) throws -> (logits: [[Float]], packed: PackedWeightsStats) {
            var options = EngineOptions()
            options.maxContext = 16
            options.packedLayouts = packedLayouts
            let engine = try Engine(model: tinyWeights(layers: 1), mode: .w4a4, options: options, runtime: testRuntime(database: database))
            let s = try engine.makeSequence()
            // m = 2, 1, 1, 2: the tuned layouts in turn, the first one again at the end
            let logits = try [engine.step([(s, [5, 6])]), engine.step([(s, [7])]), engine.step([(s, [8])]), engine.step([(s, [9, 10])])]
            return (logits.map { $0[0].values }, engine.packedWeights)
        }
        let both = try run(path), one = try run(path, packedLayouts: 1), analytical = try run(nil)
        #expect(both.logits == analytical.logits)
        // One packing kept per layer: the m = 2 layout is dropped for m = 1's and packed again at the end,
        // with the same logits and less memory held.
        #expect(one.logits == both.logits)
        #expect(both.packed.dropped == 0 && one.packed.dropped > 0)
        #expect(one.packed.packings > both.packed.packings)
        #expect(one.packed.bytes < both.packed.bytes)
        var none = EngineOptions()
        none.packedLayouts = 0
        #expect(throws: EngineError.self) { try Engine(model: tinyWeights(layers: 1), mode: .w4a4, options: none) }
    }

    /// Tuned gather=transpose records for the reordering quantize kernels (blocks of eight rows through
    /// the stage, which the engine sizes from the record): a step of 17 tokens on two threads (blocks
    /// [0, 8) and [8, 17)) and one of 9 on one thread (a block and a row) give the analytical
    /// configurations' logits bit for bit, as every quantize variant is exact.
    @Test func transposedQuantizeRecordsKeepTheLogits() throws {
        let probe = try testRuntime()
        let machine = probe.machine.description
        let context = MachineContext(machine)
        guard ISATarget.avx2.runs(on: machine.isa) else { return }  // gather=transpose is AVX2 code
        var options = EngineOptions()
        options.maxContext = 32
        func run(_ database: String?) throws -> (logits: [[Float]], records: [DispatchRecord]) {
            let engine = try Engine(model: tinyWeights(layers: 1), mode: .w4a4, options: options, runtime: testRuntime(database: database))
            let s = try engine.makeSequence()
            let logits = try [engine.step([(s, Array(1...17))]), engine.step([(s, Array(20...28))])]
            return (logits.map { $0[0].values }, engine.dispatchRecords)
        }
        let analytical = try run(nil)
        // The workloads the engine looks up for the two reordering kernels, at m = 32 and 16.
        let workloads = Set(analytical.records.map(\.choice.workload).filter {
            [AtomQuantize.Op.rmsnormReorderQuantize.rawValue, AtomQuantize.Op.reorderQuantize.rawValue].contains($0.family)
        })
        #expect(workloads.count == 4, "\(workloads)")
        let dir = EngineTempDir()
        let path = dir.file("transpose.sqlite")
        let store = try TuningStore(path: path)
        for w in workloads {
            let family = AtomQuantize(AtomQuantize.Op(rawValue: w.family)!)
            var c = family.defaultConfiguration(isa: .avx2, machine: context)
            c["gather"] = .name(AtomQuantize.Gather.transpose.rawValue)
            c["threads"] = .int(w["m"] == 32 ? 2 : 1)
            try family.check(c, machine: context)
            try store.insert(storedTrial(family, w, c, machine: machine))
        }
        try store.close()
        let tuned = try run(path)
        let used = tuned.records.filter { workloads.contains($0.choice.workload) }
        #expect(!used.isEmpty && used.allSatisfy { $0.choice.configuration.name("gather") == "transpose" })
        #expect(tuned.logits == analytical.logits)
    }

    /// The cache kernels are held to the cache's page, so `resizeCache` chooses the page again for the
    /// new workload (b = sequences, ctx = capacity): with attention-decode records at b = 1 (page 16) and
    /// b = 4 (page 32), the cache and every attention call take 16 and then 32, with the same logits; a page
    /// the options fix stays through a resize.
    @Test func resizedCacheTakesThePageOfItsWorkload() throws {
        let probe = try testRuntime()
        let machine = probe.machine.description
        let family = AttentionDecode()
        let context = MachineContext(machine)
        let config = try tinyWeights(layers: 1).config
        let dir = EngineTempDir()
        let path = dir.file("pages.sqlite")
        let store = try TuningStore(path: path)
        for (b, page) in [(1, 16), (4, 32)] {
            let w = Workload(family: "attention-decode", shape: [
                "b": b, "hq": config.numAttentionHeads, "hkv": config.numKeyValueHeads, "d": config.headDim, "ctx": 16, "kvbits": 4,
            ])
            var c = family.analyticalConfiguration(for: w, machine: context)
            c["page"] = .int(page)
            c["threads"] = .int(1)
            try family.check(c, machine: context)
            try store.insert(storedTrial(family, w, c, machine: machine))
        }
        try store.close()

        var options = EngineOptions()
        options.maxSequences = 1
        options.maxContext = 16
        let engine = try Engine(model: tinyWeights(layers: 1), mode: .w4a4, options: options, runtime: testRuntime(database: path))
        func run() throws -> [Float] {
            let s = try engine.makeSequence()
            defer { engine.release(s) }
            _ = try engine.step([(s, [3, 4, 5])])
            return try engine.step([(s, [6])])[0].values
        }
        func attentionPages() -> Set<Int> {
            Set(engine.dispatchRecords.filter { $0.role == "attention" }.map { $0.choice.configuration.int("page") })
        }
        #expect(engine.pageTokens == 16)
        let before = try run()
        #expect(attentionPages() == [16])
        try engine.resizeCache(maxSequences: 4, maxContext: 16)
        #expect(engine.pageTokens == 32)
        #expect(try run() == before)
        #expect(attentionPages() == [32])

        options.pageTokens = 64
        let fixed = try Engine(model: tinyWeights(layers: 1), mode: .w4a4, options: options, runtime: testRuntime(database: path))
        try fixed.resizeCache(maxSequences: 4, maxContext: 16)
        #expect(fixed.pageTokens == 64)
    }

    /// Without a database every kernel runs its analytical configuration, and `--explain` says so for
    /// every layer and kernel.
    @Test func analyticalWithoutDatabase() throws {
        var options = EngineOptions()
        options.maxContext = 16
        let engine = try Engine(model: tinyWeights(layers: 2), mode: .w4a4, options: options, runtime: testRuntime())
        _ = try engine.generate(prompt: [1, 2, 3], steps: 2)
        let records = engine.dispatchRecords
        #expect(records.allSatisfy { $0.choice.origin == .analyticalDefault })
        let roles = Set(records.map(\.role))
        for role in ["qkv-quantize", "q_proj", "k_proj", "v_proj", "kv-append", "attention", "o-quantize", "o_proj", "gate/up-quantize",
                     "gate_proj", "up_proj", "down-quantize", "down_proj"] {
            #expect(roles.contains(role), "no dispatch record for \(role)")
        }
        #expect(Set(records.compactMap(\.layer)) == [0, 1])
        #expect(records.filter { $0.choice.family == "attention-decode" }.allSatisfy { $0.choice.configuration.name("cache") == "int4" })
        let text = DispatchExplain.text(records, machine: "m", database: nil)
        #expect(text.contains("analytical default"))
        #expect(!text.contains("exact tuned"))
    }
}

/// A trial of `c` for `w` as the tuner stores one (10 GOP/s, measured on `machine`).
private func storedTrial(_ family: any KernelFamily, _ w: Workload, _ c: KernelKit.Configuration, machine: MachineDescription) -> TrialRecord {
    TrialRecord(
        machine: machine.fingerprint.id, workload: w, configuration: c, templateVersion: family.templateVersion,
        compiler: "test", status: "ok", stage: "time", gops: 10)
}
