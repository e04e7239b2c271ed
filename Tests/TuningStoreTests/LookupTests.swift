import Foundation
import KernelKit
import Testing
import TuningStore

@Suite("Tuning store: runtime lookup")
struct LookupTests {
    @Test func exactThenNearestThenDefaultWithOneWarning() throws {
        let dir = TempDir()
        let store = try TuningStore(path: dir.file("db.sqlite"))
        let id = "lookup-\(UUID().uuidString)"
        let exactID = try store.insert(trial(machine: id, workload: gemm(64), configuration: config(mr: 4), gops: 100))
        let smallID = try store.insert(trial(machine: id, workload: gemm(1), configuration: config(mr: 1), gops: 10))
        // Another machine's record must not be used.
        try store.insert(trial(machine: "elsewhere", workload: gemm(48), configuration: config(mr: 9), gops: 500))

        let exact = try store.lookup(machine: id, workload: gemm(64)) { config(mr: 0) }
        #expect(exact.source == .exact(trialID: exactID))
        #expect(exact.configuration == config(mr: 4))
        #expect(exact.warning == nil)

        // m = 48 is log2(64/48) = 0.415 from 64 and log2(48) = 5.58 from 1.
        let near = try store.lookup(machine: id, workload: gemm(48)) { config(mr: 0) }
        guard case .nearest(let workload, let distance, let trialID) = near.source else {
            Issue.record("expected a nearest record, got \(near.source)")
            return
        }
        #expect(workload == gemm(64) && trialID == exactID)
        #expect(abs(distance - log2(64.0 / 48.0)) < 1e-12)
        #expect(near.configuration == config(mr: 4) && near.warning == nil)

        let small = try store.lookup(machine: id, workload: gemm(3)) { config(mr: 0) }
        #expect(small.source == .nearest(workload: gemm(1), distance: log2(3.0), trialID: smallID))

        // Another family on this machine: the analytical default, with a warning only the first time.
        let attention = Workload(family: "attention-decode", shape: ["heads": 32, "tokens": 4096])
        let first = try store.lookup(machine: id, workload: attention) { Configuration(["block": .int(64)]) }
        #expect(first.source == .analyticalDefault)
        #expect(first.configuration == Configuration(["block": .int(64)]))
        let warning = try #require(first.warning)
        #expect(warning.contains("no tuned record for") && warning.contains(id) && warning.contains("analytical default"))
        let second = try store.lookup(
            machine: id, workload: Workload(family: "attention-decode", shape: ["heads": 8, "tokens": 512])
        ) { Configuration(["block": .int(32)]) }
        #expect(second.source == .analyticalDefault && second.warning == nil)
        // Shapes with other dimension names are not comparable: the default again (new family key, so warned).
        let odd = try store.lookup(machine: id, workload: Workload(family: "gemm-w8a8", shape: ["m": 64])) { config(mr: 0) }
        #expect(odd.source == .analyticalDefault && odd.warning != nil)
    }

    @Test func logShapeDistance() {
        #expect(TuningStore.logShapeDistance(gemm(64), gemm(64)) == 0)
        #expect(TuningStore.logShapeDistance(gemm(2, 4, 8), gemm(4, 8, 16)) == 3.0.squareRoot())
        #expect(TuningStore.logShapeDistance(gemm(64), Workload(family: "gemm-w8a8", shape: ["m": 64, "n": 4096])) == nil)
        #expect(TuningStore.logShapeDistance(gemm(64), Workload(family: "other", shape: gemm(64).shape)) == nil)
        #expect(TuningStore.logShapeDistance(gemm(0), gemm(64)) == nil)
    }

    @Test func resultsAreCodable() throws {
        let result = LookupResult(
            configuration: config(), source: .nearest(workload: gemm(64), distance: 0.5, trialID: 7), warning: nil)
        let decoded = try JSONDecoder().decode(LookupResult.self, from: try JSONEncoder().encode(result))
        #expect(decoded == result)
    }
}
