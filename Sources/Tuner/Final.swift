import Foundation
import KernelKit
import TuningStore

/// Why a final did not run for a workload.
public enum FinalSkip: Error, Sendable, Equatable, CustomStringConvertible {
    /// Nothing tuned for the workload yet.
    case noBest
    /// The best was timed cold and this run times hot, or the other way round.
    case dataCondition(bestIsCold: Bool)
    /// Fewer than two candidates: nothing to compare.
    case tooFewFinalists(Int)
    /// Stopped (Ctrl-C) before every finalist ran once; nothing was stored.
    case interrupted

    public var description: String {
        switch self {
        case .noBest: return "no tuned record yet"
        case .dataCondition(let cold):
            return "the best was timed \(cold ? "cold" : "hot") and this run times \(cold ? "hot" : "cold")"
                + (cold ? " (add --cold)" : " (leave out --cold)")
        case .tooFewFinalists(let n): return "\(n) stored configuration\(n == 1 ? "" : "s") of the best's kind: nothing to compare"
        case .interrupted: return "interrupted before every finalist ran once; nothing stored"
        }
    }
}

extension Tuner {
    /// A final for one workload: the best, the fastest trial of this tuner's session and the fastest other
    /// stored configurations of the best's template version and data condition, `count` in all
    /// (`TuningStore.finalists`), are timed again side by side, `rounds` times each in
    /// turns (each round in another order), and the one of the highest relative speed (`FinalEntry.scores`)
    /// becomes the workload's best.
    ///
    /// Trials of one workload are measured minutes or sessions apart, and a machine whose speed drifts
    /// (a VM with co-tenants) ranks them by its phases as much as by the code; a final compares them under
    /// one condition. A finalist that fails now (crash, wrong answer, hang) is not chosen.
    public func final(
        family: any KernelFamily, workload: Workload, count: Int, rounds: Int,
        progress: ((_ round: Int, _ finalist: Int, _ gops: Double?) -> Void)? = nil
    ) throws -> Result<FinalRecord, FinalSkip> {
        guard let store, let best = try store.best(machine: fingerprint, workload: workload) else { return .failure(.noBest) }
        let bestIsCold = TrialRecord.isCold(best.dataState)
        guard bestIsCold == executor.cold else { return .failure(.dataCondition(bestIsCold: bestIsCold)) }
        let candidates = try store.finalists(
            machine: fingerprint, workload: workload, compiler: executor.compilerIdentity, count: count, session: session)
        guard candidates.count >= 2 else { return .failure(.tooFewFinalists(candidates.count)) }
        var results = Array(repeating: [Double?](), count: candidates.count)
        for round in 0..<max(1, rounds) {
            if shouldStop() { break }
            // Rotate the order each round, so no finalist always runs first (or right after the slowest).
            for step in 0..<candidates.count {
                let i = (step + round) % candidates.count
                let r = executor.execute(family, workload, candidates[i].configuration)
                let gops = r.succeeded ? r.gops : nil
                results[i].append(gops)
                progress?(round + 1, i, gops)
            }
        }
        guard results.allSatisfy({ !$0.isEmpty }) else { return .failure(.interrupted) }
        let entries = zip(candidates, results).map { trial, rounds in
            FinalEntry(trialID: trial.id ?? -1, configuration: trial.configuration, storedGops: trial.gops ?? 0, rounds: rounds)
        }
        return .success(try store.recordFinal(machine: fingerprint, workload: workload, session: session, entries: entries))
    }
}
