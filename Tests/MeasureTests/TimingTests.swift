import Foundation
import Testing

@testable import Measure

@Suite("Timing protocol")
struct TimingTests {
    @Test func summaryStatistics() {
        let summary = TimingSummary(samples: [5, 1, 4, 2, 3])
        #expect(summary.samples == [5, 1, 4, 2, 3], "samples keep their order")
        #expect(summary.min == 1)
        #expect(summary.median == 3)
        #expect(abs(summary.p20 - 1.8) < 1e-12)
        #expect(abs(summary.p80 - 4.2) < 1e-12)
        #expect(summary.count == 5)
        #expect(!summary.stable)

        let even = TimingSummary(samples: [4, 1, 3, 2])
        #expect(even.median == 2.5)
        let one = TimingSummary(samples: [7])
        #expect(one.min == 7 && one.median == 7 && one.p20 == 7 && one.p80 == 7)
        #expect(!one.stable)
        let none = TimingSummary(samples: [])
        #expect(none.count == 0 && none.min == 0 && !none.stable)
    }

    @Test func stabilityComparesBestAndThirdBest() {
        #expect(TimingSummary(samples: [1.0, 5.0, 1.02, 1.01]).stable)
        #expect(!TimingSummary(samples: [1.0, 1.05, 1.04]).stable)
        #expect(TimingSummary(samples: [1.0, 1.05, 1.04], stableWithin: 0.06).stable)
        #expect(!TimingSummary(samples: [1.0, 1.0]).stable, "needs three samples")
    }

    @Test func stopsAtMaxSamplesWhenNeverStable() {
        var calls = 0
        let policy = TimingPolicy(warmup: 3, minSamples: 2, maxSamples: 7, stableWithin: -1, budget: .seconds(60))
        let summary = Stopwatch.time(policy) { calls += 1 }
        #expect(summary.count == 7)
        #expect(calls == 10, "warm-up runs are not sampled")
        #expect(summary.samples.allSatisfy { $0 >= 0 })
    }

    @Test func stopsAtMinSamplesWhenStable() {
        let policy = TimingPolicy(warmup: 0, minSamples: 5, maxSamples: 100, stableWithin: .infinity)
        #expect(Stopwatch.time(policy) {}.count == 5)
        let few = TimingPolicy(warmup: 0, minSamples: 1, maxSamples: 100, stableWithin: .infinity)
        #expect(Stopwatch.time(few) {}.count == 3, "stability needs a third-best sample")
    }

    @Test func stopsWhenTheBudgetIsSpent() {
        let policy = TimingPolicy(warmup: 1, minSamples: 5, maxSamples: 100, stableWithin: -1, budget: .milliseconds(100))
        let summary = Stopwatch.time(policy) { usleep(20_000) }
        #expect(summary.count >= 1 && summary.count < 20)
        #expect(summary.min >= 0.019)
        #expect(!summary.stable)
        let tiny = TimingPolicy(warmup: 0, minSamples: 5, maxSamples: 100, stableWithin: -1, budget: .zero)
        #expect(Stopwatch.time(tiny) { usleep(1000) }.count == 1, "at least one sample")
    }

    @Test func errorsEndTheMeasurement() {
        var calls = 0
        #expect(throws: TestFailure.self) {
            try Stopwatch.time(TimingPolicy()) {
                calls += 1
                if calls == 4 { throw TestFailure(message: "bad kernel") }
            }
        }
    }

    @Test func defaultPolicyMatchesTheDesign() {
        let policy = TimingPolicy()
        #expect(policy.warmup == 2 && policy.minSamples == 5 && policy.maxSamples == 100)
        #expect(policy.stableWithin == 0.03 && policy.budget == .seconds(2))
    }
}
