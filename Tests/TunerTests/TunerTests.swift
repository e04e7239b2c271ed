import Foundation
import KernelKit
import Machine
import Pipeline
import Testing
import TuningStore

@testable import Tuner

/// A family that is only a parameter space: four tile-like integers and a constraint between two.
struct ToyFamily: KernelFamily {
    let name = "toy"
    let summary = "a parameter space for tuner tests"
    let templateVersion = 1
    let dimensions = ["n"]
    let shapeRules: [String] = []
    let targets: [ISATarget] = [.portable]
    let constraints = ["a-b: a * b <= 512"]
    var parameters: [ParameterSpec] {
        [
            ParameterSpec("a", .ints([1, 2, 4, 8, 16, 32, 64, 128]), default: .int(4), "a"),
            ParameterSpec("b", .ints([1, 2, 4, 8, 16, 32, 64, 128]), default: .int(4), "b"),
            ParameterSpec("c", .ints([16, 32, 64, 128, 256, 512, 1024, 2048]), default: .int(64), "c"),
            ParameterSpec("d", .ints([1, 2, 3, 4, 6, 8, 12, 16]), default: .int(2), "d"),
        ]
    }
    func checkShape(_ workload: Workload) throws {}
    func check(_ config: Configuration, machine: MachineContext?) throws {
        try checkDomains(config)
        guard config.int("a") * config.int("b") <= 512 else { throw ConstraintViolation("a-b", "a * b > 512") }
    }
    func defaultConfiguration(isa: ISATarget, machine: MachineContext?) -> Configuration {
        Configuration(Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, $0.defaultValue) }))
    }
    func render(_ config: Configuration) throws -> KernelSource { throw ConstraintViolation("toy", "not renderable") }
    func usefulOps(_ workload: Workload, _ config: Configuration) -> Double { 1 }
    func makeInstance(workload: Workload, config: Configuration, symbols: SymbolTable, seed: UInt64) throws -> KernelInstance {
        throw ConstraintViolation("toy", "not runnable")
    }
}

/// The toy space with seeds of its own: the analytical point, two far-apart points, a repeat of the
/// analytical point and one that breaks the a-b rule.
struct SeededToyFamily: KernelFamily {
    let toy = ToyFamily()
    var name: String { toy.name }
    var summary: String { toy.summary }
    var templateVersion: Int { toy.templateVersion }
    var dimensions: [String] { toy.dimensions }
    var shapeRules: [String] { toy.shapeRules }
    var targets: [ISATarget] { toy.targets }
    var constraints: [String] { toy.constraints }
    var parameters: [ParameterSpec] { toy.parameters }
    func checkShape(_ workload: Workload) throws {}
    func check(_ config: Configuration, machine: MachineContext?) throws { try toy.check(config, machine: machine) }
    func defaultConfiguration(isa: ISATarget, machine: MachineContext?) -> Configuration { toy.defaultConfiguration(isa: isa, machine: machine) }
    func searchSeeds(for workload: Workload, machine: MachineContext) -> [Configuration] {
        let analytical = analyticalConfiguration(for: workload, machine: machine)
        func point(_ a: Int, _ b: Int, _ c: Int, _ d: Int) -> Configuration {
            Configuration(["a": .int(a), "b": .int(b), "c": .int(c), "d": .int(d)])
        }
        return [analytical, point(128, 2, 1024, 8), analytical, point(64, 64, 16, 1), point(1, 128, 16, 1)]
    }
    func render(_ config: Configuration) throws -> KernelSource { try toy.render(config) }
    func usefulOps(_ workload: Workload, _ config: Configuration) -> Double { 1 }
    func makeInstance(workload: Workload, config: Configuration, symbols: SymbolTable, seed: UInt64) throws -> KernelInstance {
        try toy.makeInstance(workload: workload, config: config, symbols: symbols, seed: seed)
    }
}

/// Measures nothing: throughput is a smooth function of the parameters with one planted optimum
/// (a=16, b=8, c=256, d=4), and some points "crash".
final class FakeExecutor: TrialExecutor {
    let compilerIdentity = "fake-cc 1.0"
    var calls: [Configuration] = []
    var delay: Duration = .zero
    var constant: Double?
    /// Times "cold": the results carry a cold data state and `coldFactor` times the throughput.
    var cold = false
    var coldFactor = 0.5
    /// Throughput of chosen points, in place of `throughput` (e.g. a machine that now runs them otherwise).
    var overrides: [Configuration: Double] = [:]

    static func throughput(_ c: Configuration) -> Double {
        func l(_ name: String) -> Double { log2(Double(c.int(name))) }
        let e = pow(l("a") - 4, 2) / 3 + pow(l("b") - 3, 2) / 3 + pow(l("c") - 8, 2) / 5 + pow(l("d") - 2, 2) / 2
            + 0.15 * (l("a") - 4) * (l("b") - 3)
        return 100 * exp(-e / 2)
    }

    func execute(_ family: any KernelFamily, _ workload: Workload, _ config: Configuration) -> TrialResult {
        calls.append(config)
        if delay > .zero { Thread.sleep(forTimeInterval: Double(delay.components.attoseconds) / 1e18 + Double(delay.components.seconds)) }
        var r = TrialResult(status: .ok, stage: "done", family: family.name, workload: workload, configuration: config, templateVersion: family.templateVersion)
        if config.int("d") == 12 {
            r.status = .crashed
            r.stage = "run"
            r.message = "the variant died of SIGSEGV (signal 11) during run"
            return r
        }
        r.gops = (overrides[config] ?? constant ?? Self.throughput(config)) * (cold ? coldFactor : 1)
        r.dataState = cold ? "cold: the fake executor's caches" : "hot (fake)"
        return r
    }
}

enum TunerFixtures {
    static let machine = MachineContext(isa: ISAFeatures(architecture: .x86_64, usable: [.avx2, .fma]), topology: Topology(
        packages: [], numaNodes: [], cores: [.init(index: 0, pus: [0]), .init(index: 1, pus: [1])], pus: [0, 1], caches: [],
        hwlocAPIVersion: "test"))
    static let workload = Workload(family: "toy", shape: ["n": 1])

    static func tuner(_ executor: FakeExecutor, store: TuningStore? = nil) -> Tuner {
        Tuner(executor: executor, store: store, machine: machine, fingerprint: "test-machine")
    }
}

@Suite("Search strategies")
struct StrategyTests {
    let space = SearchSpace(family: ToyFamily(), workload: TunerFixtures.workload, machine: TunerFixtures.machine)

    @Test func exhaustiveVisitsEveryValidPointOnce() throws {
        let executor = FakeExecutor()
        var strategy: any SearchStrategy = ExhaustiveSearch()
        let summary = try TunerFixtures.tuner(executor).tune(family: ToyFamily(), workload: TunerFixtures.workload, strategy: &strategy, budget: Budget())
        let all = try #require(space.allPoints())
        #expect(summary.trials == all.count)
        #expect(Set(executor.calls).count == executor.calls.count, "a point was measured twice")
        #expect(summary.stop == .exhausted)
        #expect(executor.calls.allSatisfy(space.isValid))
    }

    @Test func modelGuidedFindsThePlantedOptimumInAFewPercentOfTheSpace() throws {
        let all = try #require(space.allPoints())
        let best = all.map(FakeExecutor.throughput).max()!
        for seed in [1, 2, 3] as [UInt64] {
            let executor = FakeExecutor()
            var strategy: any SearchStrategy = ModelGuidedSearch(seed: seed)
            // 15% of the space at most; stop early once 60 trials bring nothing better.
            let budget = Budget(maxTrials: Int(Double(all.count) * 0.15), patience: 60)
            let summary = try TunerFixtures.tuner(executor).tune(family: ToyFamily(), workload: TunerFixtures.workload, strategy: &strategy, budget: budget)
            let needed = summary.curve.firstIndex { $0 >= 0.95 * best }.map { $0 + 1 }
            #expect(needed != nil, "seed \(seed): never within 5% of \(best) (reached \(summary.best?.gops ?? 0))")
            print("model-guided seed \(seed): within 5% of the best after \(needed ?? -1) of \(all.count) points")
            #expect(Set(executor.calls).count == executor.calls.count)
        }
    }

    /// Both model-free and model-guided searches measure the family's seeds first, analytical point first,
    /// each once, and only then move on to neighbours and bred points.
    @Test(arguments: [StrategyKind.analytical, .modelGuided])
    func searchesMeasureTheFamilysSeedsFirst(kind: StrategyKind) throws {
        let family = SeededToyFamily()
        let space = SearchSpace(family: family, workload: TunerFixtures.workload, machine: TunerFixtures.machine)
        let seeds = space.seedPoints
        #expect(seeds.count == 3, "\(seeds)")  // the analytical point and two others: the repeat and the invalid one are dropped
        #expect(seeds.first == space.analyticalPoint)
        let executor = FakeExecutor()
        var s = kind.make(seed: 7)
        _ = try TunerFixtures.tuner(executor).tune(family: family, workload: TunerFixtures.workload, strategy: &s, budget: Budget(maxTrials: 8))
        #expect(Array(executor.calls.prefix(3)) == seeds)
        #expect(Set(executor.calls).count == executor.calls.count)
    }

    @Test func costModelRanksLikeTheTruthOnSmoothData() {
        var model = CostModel(parameters: ToyFamily().parameters)
        var rng = SeededGenerator(seed: 5)
        let train = (0..<80).compactMap { _ in space.randomPoint(using: &rng) }.map { ($0, FakeExecutor.throughput($0)) }
        model.fit(train)
        let test = (0..<40).compactMap { _ in space.randomPoint(using: &rng) }
        var agree = 0, total = 0
        for i in test.indices {
            for j in test.indices where i < j {
                let truth = FakeExecutor.throughput(test[i]) > FakeExecutor.throughput(test[j])
                let predicted = model.predict(test[i])! > model.predict(test[j])!
                total += 1
                if truth == predicted { agree += 1 }
            }
        }
        #expect(Double(agree) / Double(total) > 0.8, "pairwise ranking agreement \(agree)/\(total)")
    }

    @Test(arguments: StrategyKind.allCases)
    func everyStrategyHonoursEveryBudget(kind: StrategyKind) throws {
        // Trials.
        do {
            let executor = FakeExecutor()
            var s = kind.make(seed: 3)
            let summary = try TunerFixtures.tuner(executor).tune(family: ToyFamily(), workload: TunerFixtures.workload, strategy: &s, budget: Budget(maxTrials: 7))
            #expect(summary.trials <= 7)
            #expect(executor.calls.count == summary.trials)
            if kind != .analytical { #expect(summary.stop == .trials) }
        }
        // Time.
        do {
            let executor = FakeExecutor()
            executor.delay = .milliseconds(20)
            var s = kind.make(seed: 3)
            let start = ContinuousClock.now
            let summary = try TunerFixtures.tuner(executor).tune(family: ToyFamily(), workload: TunerFixtures.workload, strategy: &s, budget: Budget(maxTime: .milliseconds(200)))
            let elapsed = ContinuousClock.now - start
            // The budget is checked between trials: at most one 20 ms trial (plus scheduling on a
            // loaded machine) runs past it.
            #expect(elapsed < .milliseconds(200) + .seconds(1), "ran \(elapsed)")
            #expect(executor.calls.count < 200 / 20 + 3)
            #expect(summary.stop == .time || summary.stop == .exhausted)
        }
        // Patience: a flat landscape never improves after the first trial.
        do {
            let executor = FakeExecutor()
            executor.constant = 10
            var s = kind.make(seed: 3)
            let summary = try TunerFixtures.tuner(executor).tune(family: ToyFamily(), workload: TunerFixtures.workload, strategy: &s, budget: Budget(maxTrials: 100, patience: 4))
            #expect(summary.trials <= 1 + 4 + (executor.calls.contains { $0.int("d") == 12 } ? 1 : 0) || summary.stop == .exhausted)
            #expect(summary.stop == .patience || summary.stop == .exhausted)
        }
    }

    @Test func failuresAreRecordedNotFatal() throws {
        let executor = FakeExecutor()
        var s: any SearchStrategy = RandomSearch(seed: 11)
        let summary = try TunerFixtures.tuner(executor).tune(family: ToyFamily(), workload: TunerFixtures.workload, strategy: &s, budget: Budget(maxTrials: 200), fixed: ["d": .int(12)])
        #expect(summary.failures == summary.trials)
        #expect(summary.best == nil)
    }

    @Test func interruptStopsAfterTheTrialInFlight() throws {
        let executor = FakeExecutor()
        var s: any SearchStrategy = RandomSearch(seed: 1)
        // The tuner's own stop check, not the process-wide Ctrl-C flag: tests run concurrently.
        let tuner = TunerFixtures.tuner(executor)
        tuner.shouldStop = { true }
        let summary = try tuner.tune(family: ToyFamily(), workload: TunerFixtures.workload, strategy: &s, budget: Budget(maxTrials: 10))
        #expect(summary.stop == .interrupted)
        #expect(summary.trials == 0)
    }

    @Test func theCtrlCFlagIsWhatTheTunerAsksByDefault() {
        let tuner = TunerFixtures.tuner(FakeExecutor())
        #expect(tuner.shouldStop() == Interrupt.requested)
    }

    @Test func durationsParse() {
        #expect(Budget.parseDuration("90") == .seconds(90))
        #expect(Budget.parseDuration("5m") == .seconds(300))
        #expect(Budget.parseDuration("1h30m") == .seconds(5400))
        #expect(Budget.parseDuration("2.5s") == .milliseconds(2500))
        #expect(Budget.parseDuration("soon") == nil)
    }

    /// The Llama suites time decode-sized GEMMs with their weights coming from memory, the rest as asked.
    @Test func llamaSuitesMeasureDecodeGEMMsCold() throws {
        let suite = try #require(Suite.named("default"))
        #expect(suite.measuresCold(Workload(family: "gemm-w4a4", shape: ["m": 1, "n": 4096, "k": 4096, "outliers": 128])))
        #expect(suite.measuresCold(Workload(family: "gemm-w8a8", shape: ["m": 16, "n": 11008, "k": 4096])))
        #expect(!suite.measuresCold(Workload(family: "gemm-w8a8", shape: ["m": 64, "n": 11008, "k": 4096])))
        #expect(!suite.measuresCold(Workload(family: "silu-mul-quantize", shape: ["m": 1, "k": 11008, "outliers": 128])))
        #expect(!(try #require(Suite.named("smoke"))).measuresCold(Workload(family: "gemm-w8a8", shape: ["m": 1, "n": 512, "k": 512])))
    }
}

@Suite("Tuning with the database", .serialized)
struct TuningStoreIntegrationTests {
    func temporaryStore() throws -> TuningStore {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lowbit-tuner-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return try TuningStore(path: dir.appendingPathComponent("t.sqlite").path)
    }

    @Test func aSecondRunResumesAndNeverRepeatsAPoint() throws {
        let store = try temporaryStore()
        let first = FakeExecutor()
        var s1: any SearchStrategy = ModelGuidedSearch(seed: 4)
        let a = try TunerFixtures.tuner(first, store: store).tune(family: ToyFamily(), workload: TunerFixtures.workload, strategy: &s1, budget: Budget(maxTrials: 12))
        #expect(a.trials == 12 && a.resumed == 0)

        let second = FakeExecutor()
        var s2: any SearchStrategy = ModelGuidedSearch(seed: 4)
        let b = try TunerFixtures.tuner(second, store: store).tune(family: ToyFamily(), workload: TunerFixtures.workload, strategy: &s2, budget: Budget(maxTrials: 12))
        #expect(b.resumed == 12)
        #expect(Set(first.calls).isDisjoint(with: Set(second.calls)), "the second run measured a stored point again")
        #expect((b.best?.gops ?? 0) >= (a.best?.gops ?? 0))
        #expect(try store.trials(machine: "test-machine").count == 24)
        let best = try #require(try store.best(machine: "test-machine", workload: TunerFixtures.workload))
        #expect(abs(best.gops - (b.best?.gops ?? 0)) < 1e-9)
    }

    @Test func aColdRunMeasuresHotPointsAgainAndItsBestWins() throws {
        let store = try temporaryStore()
        let hot = FakeExecutor()
        var s1: any SearchStrategy = ModelGuidedSearch(seed: 4)
        let a = try TunerFixtures.tuner(hot, store: store).tune(family: ToyFamily(), workload: TunerFixtures.workload, strategy: &s1, budget: Budget(maxTrials: 12))
        let hotBest = try #require(try store.best(machine: "test-machine", workload: TunerFixtures.workload))

        let cold = FakeExecutor()
        cold.cold = true
        var s2: any SearchStrategy = ModelGuidedSearch(seed: 4)
        let b = try TunerFixtures.tuner(cold, store: store).tune(family: ToyFamily(), workload: TunerFixtures.workload, strategy: &s2, budget: Budget(maxTrials: 12))
        // Only the failures (never timed) carry over; the hot timings do not stand in for cold ones.
        #expect(b.resumed == a.failures)
        #expect(b.trials == 12)
        #expect(!Set(hot.calls).isDisjoint(with: Set(cold.calls)), "the cold run should time some of the hot run's points again")
        // Every cold trial is stored beside the hot one of the same configuration (its own point).
        let stored = try store.trials(machine: "test-machine")
        #expect(stored.count == 24)
        // The cold best replaces the hot one although its GOP/s are lower.
        let best = try #require(try store.best(machine: "test-machine", workload: TunerFixtures.workload))
        #expect(best.dataState?.hasPrefix("cold") == true)
        #expect(best.gops < hotBest.gops)
        #expect(abs(best.gops - (b.best?.gops ?? 0)) < 1e-9)
    }

    @Test func aNewTemplateVersionMeasuresTheOlderBestFirst() throws {
        let store = try temporaryStore()
        // What the older template found fastest (a point the search would not propose first).
        let older = Configuration(["a": .int(128), "b": .int(2), "c": .int(2048), "d": .int(1)])
        try store.insert(TrialRecord(
            machine: "test-machine", family: "toy", workload: TunerFixtures.workload, configuration: older, templateVersion: 0,
            compiler: "fake-cc 1.0", status: "ok", stage: "done", gops: 1e6))
        let executor = FakeExecutor()
        var strategy: any SearchStrategy = ModelGuidedSearch(seed: 4)
        let summary = try TunerFixtures.tuner(executor, store: store).tune(
            family: ToyFamily(), workload: TunerFixtures.workload, strategy: &strategy, budget: Budget(maxTrials: 4))
        #expect(executor.calls.first == older)
        #expect(executor.calls.count == 4 && summary.trials == 4)
        // The version-1 trials replace the version-0 best whatever their speed.
        #expect(try store.best(machine: "test-machine", workload: TunerFixtures.workload)?.templateVersion == 1)
        // A second run does not measure it again.
        let again = FakeExecutor()
        var s2: any SearchStrategy = ModelGuidedSearch(seed: 4)
        _ = try TunerFixtures.tuner(again, store: store).tune(
            family: ToyFamily(), workload: TunerFixtures.workload, strategy: &s2, budget: Budget(maxTrials: 2))
        #expect(!again.calls.contains(older))
    }
}


@Suite("Finals: stored configurations timed again side by side")
struct FinalTests {
    let machine = "test-machine"
    let workload = TunerFixtures.workload

    func store() throws -> TuningStore {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lowbit-final-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return try TuningStore(path: dir.appendingPathComponent("t.sqlite").path)
    }

    static func point(_ a: Int, d: Int = 1) -> Configuration {
        Configuration(["a": .int(a), "b": .int(2), "c": .int(64), "d": .int(d)])
    }

    /// Stores `ok` trials of the toy family as a tuning run of the fake compiler would.
    func seed(_ store: TuningStore, _ points: [(Configuration, Double)], dataState: String = "hot (fake)", session: String = "earlier") throws {
        for (config, gops) in points {
            try store.insert(TrialRecord(
                machine: machine, family: "toy", workload: workload, configuration: config, templateVersion: 1,
                compiler: "fake-cc 1.0", status: "ok", stage: "done", gops: gops, dataState: dataState, session: session))
        }
    }

    @Test func theFinalistsFastestSideBySideBecomesTheBestAtItsFinalSpeed() throws {
        let store = try store()
        let (a, b, c) = (Self.point(1), Self.point(2), Self.point(4))
        try seed(store, [(a, 300), (b, 200), (c, 100)])
        #expect(try store.best(machine: machine, workload: workload)?.configuration == a)
        // Timed now, in one run, c is the fastest and a the slowest.
        let executor = FakeExecutor()
        executor.overrides = [a: 50, b: 80, c: 120]
        let tuner = TunerFixtures.tuner(executor, store: store)
        let record = try tuner.final(family: ToyFamily(), workload: workload, count: 3, rounds: 2).get()
        #expect(executor.calls.count == 6)
        #expect(Set(executor.calls) == [a, b, c])
        #expect(executor.calls[0] != executor.calls[3], "each round starts with another finalist")
        let best = try #require(try store.best(machine: machine, workload: workload))
        #expect(best.configuration == c && best.gops == 120)
        #expect(record.winnerEntry?.configuration == c && record.previousBest == record.entries.first { $0.configuration == a }?.trialID)

        // The final is on record: lookup-facing history and the export say how the best was chosen.
        let deciding = try #require(try store.decidingFinal(machine: machine, workload: workload))
        #expect(deciding.entries.count == 3 && deciding.roundCount == 2 && deciding.winner == best.trialID)
        #expect(deciding.entries.first { $0.configuration == a }?.rounds == [50, 50])
        var description = try MachineModel().description
        description.fingerprint.id = machine
        try store.record(machine: description)
        let entry = try #require(try store.export(machine: machine, lowbitVersion: "test").entries.first)
        #expect(entry.gops == 120 && entry.final?.finalists == 3 && entry.final?.rounds == 2 && entry.final?.storedGops == 100)

        // A later trial must beat the final's number, not the stored one, to replace the best.
        try seed(store, [(Self.point(8), 110)])
        #expect(try store.best(machine: machine, workload: workload)?.configuration == c)
        try seed(store, [(Self.point(16), 130)])
        #expect(try store.best(machine: machine, workload: workload)?.configuration == Self.point(16))
        #expect(try store.decidingFinal(machine: machine, workload: workload) == nil, "the final no longer decides the best")
        // Pruning removes the finals' rows of the trials it deletes.
        #expect(try store.prune() == 4)
        #expect(try store.check().isEmpty)
    }

    @Test func finalistsAreTheBestTheSessionsFastestAndThenTheStoredOrder() throws {
        let store = try store()
        try seed(store, [(Self.point(1), 300), (Self.point(2), 250), (Self.point(4), 200)])
        // A search that just ran in a slower phase: its fastest trial still takes part.
        try seed(store, [(Self.point(8), 150), (Self.point(16), 120)], session: "now")
        let two = try store.finalists(machine: machine, workload: workload, compiler: "fake-cc 1.0", count: 2, session: "now")
        #expect(two.map(\.configuration) == [Self.point(1), Self.point(8)])
        let four = try store.finalists(machine: machine, workload: workload, compiler: "fake-cc 1.0", count: 4, session: "now")
        #expect(four.map(\.configuration) == [Self.point(1), Self.point(8), Self.point(2), Self.point(4)])
        // Another compiler's trials are not timed under this one's name.
        #expect(try store.finalists(machine: machine, workload: workload, compiler: "other-cc", count: 4).isEmpty)
    }

    @Test func aFinalistThatFailsNowIsNeverChosen() throws {
        let store = try store()
        // d = 12 "crashes" in the fake executor: stored as ok from an earlier run, it fails in the final.
        let crashing = Self.point(1, d: 12), slow = Self.point(2)
        try seed(store, [(crashing, 1000), (slow, 10)])
        let executor = FakeExecutor()
        executor.overrides = [slow: 5]
        let record = try TunerFixtures.tuner(executor, store: store).final(family: ToyFamily(), workload: workload, count: 2, rounds: 2).get()
        #expect(FinalEntry.scores(record.entries).contains { $0 == nil })
        let best = try #require(try store.best(machine: machine, workload: workload))
        #expect(best.configuration == slow && best.gops == 5)
    }

    @Test func aFinalIsSkippedWhenThereIsNothingToDecide() throws {
        let store = try store()
        let executor = FakeExecutor()
        let tuner = TunerFixtures.tuner(executor, store: store)
        #expect(try tuner.final(family: ToyFamily(), workload: workload, count: 3, rounds: 1) == .failure(.noBest))
        try seed(store, [(Self.point(1), 10)])
        #expect(try tuner.final(family: ToyFamily(), workload: workload, count: 3, rounds: 1) == .failure(.tooFewFinalists(1)))
        try seed(store, [(Self.point(2), 9), (Self.point(4), 8)], dataState: "cold: fake")
        // The best is now cold: a hot run does not time it.
        #expect(try tuner.final(family: ToyFamily(), workload: workload, count: 3, rounds: 1) == .failure(.dataCondition(bestIsCold: true)))
        #expect(executor.calls.isEmpty)
        executor.cold = true
        #expect(try tuner.final(family: ToyFamily(), workload: workload, count: 3, rounds: 1).get().entries.count == 2)
    }

    @Test func scoresCancelARoundThatRanSlow() {
        func entry(_ id: Int64, _ rounds: [Double?]) -> FinalEntry {
            FinalEntry(trialID: id, configuration: Self.point(1), storedGops: 1, rounds: rounds)
        }
        // The second round ran at half speed for everyone; b won it by a hair, a won the first clearly.
        let scores = FinalEntry.scores([entry(1, [100, 44]), entry(2, [80, 45]), entry(3, [90, 40])])
        #expect(scores[0]! > scores[1]! && scores[1]! > scores[2]!)
        #expect(abs(scores.compactMap { $0 }.map(log).reduce(0, +)) < 0.01, "relative speeds centre on 1")
        // The fastest single round does not decide: a's 200 in one round against b's steady lead.
        let lucky = FinalEntry.scores([entry(1, [200, 50, 50, 50]), entry(2, [100, 100, 100, 100])])
        #expect(lucky[1]! > lucky[0]!)
        // Nor does one unlucky run (a co-tenant's burst) sink a finalist that led every other round.
        let unlucky = FinalEntry.scores([entry(1, [100, 100, 30, 100]), entry(2, [90, 90, 90, 90])])
        #expect(unlucky[0]! > unlucky[1]!)
        #expect(FinalEntry.scores([entry(1, [10, nil]), entry(2, [5, 5])])[0] == nil)
    }
}
