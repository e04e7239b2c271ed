import ArgumentParser
import Foundation
import KernelKit
import Kernels
import Machine
import Pipeline
import Tuner

/// Replays measurements already taken: a strategy "measures" a point by reading its stored result.
final class ReplayExecutor: TrialExecutor {
    let compilerIdentity: String
    let table: [Configuration: TrialResult]

    init(compilerIdentity: String, table: [Configuration: TrialResult]) {
        self.compilerIdentity = compilerIdentity
        self.table = table
    }

    func execute(_ family: any KernelFamily, _ workload: Workload, _ config: Configuration) -> TrialResult {
        table[config] ?? TrialResult(status: .rejected, stage: "replay", message: "not in the measured space", family: family.name, workload: workload, configuration: config, templateVersion: family.templateVersion)
    }
}

/// `lowbit bench tuner`: measure a small gemm-w8a8 space exhaustively, then count how many trials each
/// strategy needs to come within 5% of the exhaustive best, replaying the same measurements.
struct TunerBenchmark {
    var m = 64, n = 1024, k = 1024
    var seeds: [UInt64] = [1, 2, 3, 4, 5]

    static let restricted: [String: [ParamValue]] = [
        "mr": [2, 4, 6, 8].map(ParamValue.int),
        "nr": [16, 32, 48, 64].map(ParamValue.int),
        "kc": [128, 256, 512, 1024].map(ParamValue.int),
        "mc": [48, 96, 192].map(ParamValue.int),
        "nc": [384, 768, 1536].map(ParamValue.int),
        "ku": [1, 2].map(ParamValue.int),
    ]

    func run(runner: KernelRunner, machine: MachineDescription) throws {
        let family = GemmW8A8()
        let context = MachineContext(machine)
        let workload = Workload(family: family.name, shape: ["m": m, "n": n, "k": k])
        let isa = family.bestTarget(on: context)
        let threads = min(2, machine.topology.cores.count)
        let fixed: [String: ParamValue] = [
            "isa": .name(isa.rawValue), "threads": .int(threads), "tm": .int(1), "pf": .int(0), "placement": .name("scatter"),
        ]
        let space = SearchSpace(family: family, workload: workload, machine: context, fixed: fixed, restricted: Self.restricted)
        guard let points = space.allPoints(), !points.isEmpty else { throw ValidationError("the benchmark space is empty on this machine") }
        print("tuner benchmark: \(workload), isa \(isa.rawValue), \(threads) threads; \(points.count) valid points")
        print("measuring every point (exhaustive)...")
        var table: [Configuration: TrialResult] = [:]
        var done = 0
        for p in points {
            table[p] = runner.run(family, workload, p)
            done += 1
            if done % 25 == 0 { FileHandle.standardError.write(Data("  \(done)/\(points.count)\n".utf8)) }
        }
        let ok = table.values.compactMap(\.gops)
        guard let best = ok.max() else { throw ValidationError("no point of the space verified") }
        print(String(format: "exhaustive best: %.1f GOP/s (%d of %d points verified and timed)", best, ok.count, points.count))
        print("")

        let replay = ReplayExecutor(compilerIdentity: runner.compilerIdentity, table: table)
        var t = Table(["strategy", "trials to 95% of best (per seed)", "median", "median % of space", "worst % of space"],
                      alignments: [.left, .left, .right, .right, .right])
        for kind in [StrategyKind.random, .analytical, .modelGuided] {
            var needed: [Int?] = []
            for seed in (kind == .analytical ? [seeds[0]] : seeds) {
                let tuner = Tuner(executor: replay, store: nil, machine: context, fingerprint: machine.fingerprint.id)
                var strategy = kind.make(seed: seed)
                let summary = try tuner.tune(
                    family: family, workload: workload, strategy: &strategy, budget: Budget(maxTrials: points.count),
                    fixed: fixed, restricted: Self.restricted)
                needed.append(summary.curve.firstIndex { $0 >= 0.95 * best }.map { $0 + 1 })
            }
            let found = needed.compactMap { $0 }.sorted()
            let median = found.isEmpty ? nil : found[found.count / 2]
            let worst = needed.contains(nil) ? nil : found.last
            func pct(_ v: Int?) -> String { v.map { String(format: "%.1f%%", 100 * Double($0) / Double(points.count)) } ?? "never" }
            t.add([kind.rawValue, needed.map { $0.map(String.init) ?? "never" }.joined(separator: " "), median.map(String.init) ?? "never", pct(median), pct(worst)])
        }
        print(t.render())
        print("")
        print("Strategies replay the exhaustive measurements (same numbers for all); target: model-guided within 15% of the space.")
    }
}
