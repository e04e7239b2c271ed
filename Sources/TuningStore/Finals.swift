import Foundation
import GRDB
import KernelKit

/// One finalist of a side-by-side final: a stored trial timed again, in rounds, beside the others.
public struct FinalEntry: Codable, Sendable, Equatable {
    public var trialID: Int64
    public var configuration: KernelKit.Configuration
    /// The GOP/s the trial was stored with (measured in its own tuning run).
    public var storedGops: Double
    /// GOP/s of each round; nil where the run failed (crash, wrong answer, hang).
    public var rounds: [Double?]

    public init(trialID: Int64, configuration: KernelKit.Configuration, storedGops: Double, rounds: [Double?]) {
        self.trialID = trialID
        self.configuration = configuration
        self.storedGops = storedGops
        self.rounds = rounds
    }

    /// The fastest round; nil when every round failed.
    public var gops: Double? { rounds.compactMap { $0 }.max() }

    /// Each finalist's speed relative to the others: in round r its GOP/s over the geometric mean of the
    /// GOP/s of the finalists that ran in that round, and its score the median of those over the rounds.
    /// A round compares its finalists under one condition, so a phase of the machine that slowed a whole
    /// round cancels, and the median leaves out a single lucky or unlucky run (a co-tenant's burst). nil
    /// for a finalist that failed in any round (it is never chosen).
    public static func scores(_ entries: [FinalEntry]) -> [Double?] {
        let rounds = entries.map(\.rounds.count).max() ?? 0
        var relative = Array(repeating: [Double](), count: entries.count)
        for r in 0..<rounds {
            let values = entries.compactMap { r < $0.rounds.count ? $0.rounds[r] : nil }.filter { $0 > 0 }
            guard !values.isEmpty else { continue }
            let geomean = exp(values.map { log($0) }.reduce(0, +) / Double(values.count))
            for (i, e) in entries.enumerated() {
                if r < e.rounds.count, let g = e.rounds[r], g > 0 { relative[i].append(g / geomean) }
            }
        }
        return entries.indices.map { i in
            let failed = entries[i].rounds.contains { $0 == nil || $0! <= 0 }
            return failed || relative[i].isEmpty ? nil : median(relative[i])
        }
    }

    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted(), n = sorted.count
        return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    }
}

/// What a final decided for one (machine, workload).
public struct FinalRecord: Codable, Sendable, Equatable {
    public var machine: String
    public var workload: Workload
    public var session: String
    public var entries: [FinalEntry]
    /// The trial that became the best (the highest `FinalEntry.scores`), nil when every finalist failed.
    public var winner: Int64?
    /// The best's trial before the final.
    public var previousBest: Int64?
    public var measuredAt: Date

    public var winnerEntry: FinalEntry? { entries.first { $0.trialID == winner } }
    public var roundCount: Int { entries.map(\.rounds.count).max() ?? 0 }
}

extension TuningStore {
    /// The candidates of a final for (machine, workload): up to `count` `ok` trials of the stored best's
    /// template version and data condition (hot or cold) measured with `compiler`: the current best (when
    /// measured with `compiler`), then the fastest trial of `session` (a search that just ran, perhaps in a
    /// slower phase than the stored records), then the others by stored GOP/s. Empty when the workload has
    /// no best.
    public func finalists(machine: String, workload: Workload, compiler: String, count: Int, session: String? = nil) throws -> [TrialRecord] {
        guard count > 0, let best = try best(machine: machine, workload: workload) else { return [] }
        let cold = TrialRecord.isCold(best.dataState)
        let candidates = try trials(machine: machine, workload: workload).filter {
            $0.succeeded && $0.templateVersion == best.templateVersion && $0.isCold == cold && $0.compiler == compiler
                && ($0.gops ?? 0) > 0
        }
        var ranked = candidates.sorted { ($0.gops ?? 0) > ($1.gops ?? 0) }
        // Moved to the front in reverse order of preference: the session's fastest, then the best.
        for id in [ranked.first { $0.session != nil && $0.session == session }?.id, best.trialID] {
            if let id, let i = ranked.firstIndex(where: { $0.id == id }) { ranked.insert(ranked.remove(at: i), at: 0) }
        }
        return Array(ranked.prefix(count))
    }

    /// Stores a final and makes its winner, the finalist of the highest `FinalEntry.scores` (relative
    /// speed, round by round), the best of (machine, workload), with the GOP/s of its fastest round: the
    /// finalists were timed side by side, so their numbers compare, where the stored ones may come from
    /// runs minutes or days apart. The finalists must be `ok` trials of the
    /// best's template version and data condition (what `finalists` returns), so the best's rank class
    /// does not change. Nothing changes when every finalist failed.
    @discardableResult
    public func recordFinal(machine: String, workload: Workload, session: String, entries: [FinalEntry]) throws -> FinalRecord {
        let now = Date()
        return try pool.write { db in
            let previous = try Self.storedBest(db, machine: machine, workload: workload)
            let scores = FinalEntry.scores(entries)
            let winner = entries.indices.filter { scores[$0] != nil }.max { scores[$0]! < scores[$1]! }.map { entries[$0] }
            for (entry, score) in zip(entries, scores) {
                try db.execute(
                    sql: """
                        INSERT INTO finals (machine, workload_key, session, trial_id, stored_gops, rounds, gops, score, chosen, measured_at)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [
                        machine, workload.description, session, entry.trialID, entry.storedGops,
                        try JSONText.encode(entry.rounds), entry.gops, score, entry.trialID == winner?.trialID, now,
                    ])
            }
            if let winner, let gops = winner.gops {
                try db.execute(
                    sql: "UPDATE best SET trial_id = ?, gops = ?, updated_at = ? WHERE machine = ? AND workload_key = ?",
                    arguments: [winner.trialID, gops, now, machine, workload.description])
            }
            return FinalRecord(
                machine: machine, workload: workload, session: session, entries: entries, winner: winner?.trialID,
                previousBest: previous?.trialID, measuredAt: now)
        }
    }

    /// The final that chose the current best of (machine, workload), if the best was chosen by one (a
    /// trial that replaced it later, or a newer final, makes an older final history).
    public func decidingFinal(machine: String, workload: Workload) throws -> FinalRecord? {
        try pool.read { db in
            guard let best = try Self.storedBest(db, machine: machine, workload: workload),
                  let session = try String.fetchOne(
                    db,
                    sql: """
                        SELECT session FROM finals WHERE machine = ? AND workload_key = ? AND trial_id = ? AND chosen = 1
                            AND abs(gops - ?) < 1e-9 ORDER BY id DESC LIMIT 1
                        """,
                    arguments: [machine, workload.description, best.trialID, best.gops])
            else { return nil }
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT f.trial_id AS trial_id, f.stored_gops AS stored_gops, f.rounds AS rounds, f.chosen AS chosen,
                        f.measured_at AS measured_at, t.configuration AS configuration
                    FROM finals f JOIN trials t ON t.id = f.trial_id
                    WHERE f.machine = ? AND f.workload_key = ? AND f.session = ? ORDER BY f.id
                    """,
                arguments: [machine, workload.description, session])
            let entries = try rows.map { row in
                FinalEntry(
                    trialID: row["trial_id"], configuration: try JSONText.decode(KernelKit.Configuration.self, row["configuration"]),
                    storedGops: row["stored_gops"], rounds: try JSONText.decode([Double?].self, row["rounds"]))
            }
            return FinalRecord(
                machine: machine, workload: workload, session: session, entries: entries, winner: best.trialID, previousBest: nil,
                measuredAt: rows.first?["measured_at"] ?? Date())
        }
    }
}
