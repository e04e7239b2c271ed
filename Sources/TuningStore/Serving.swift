import Foundation
import GRDB

/// One measured point of `lowbit serve-bench`: decode throughput of one engine mode at one batch size
/// (schema v3, table `serving`).
public struct ServingRecord: Codable, Sendable, Equatable {
    public var machine: String
    /// The model directory's name and shape, e.g. "llama-7b 2 layers".
    public var model: String
    /// Engine mode: "fp32", "w8a8" (with INT8 KV) or "w4a4" (Atom, with INT4 KV).
    public var mode: String
    public var batch: Int
    /// Tokens already in every sequence's KV cache when decoding starts.
    public var context: Int
    /// Generated tokens per second over the whole batch.
    public var tokensPerSecond: Double
    /// Wall time of one decode step (one output token per sequence), in milliseconds.
    public var millisecondsPerToken: Double
    /// The benchmark run the point belongs to (points of one run are comparable).
    public var session: String
    public var measuredAt: Date

    public init(
        machine: String, model: String, mode: String, batch: Int, context: Int, tokensPerSecond: Double,
        millisecondsPerToken: Double, session: String, measuredAt: Date = Date()
    ) {
        self.machine = machine
        self.model = model
        self.mode = mode
        self.batch = batch
        self.context = context
        self.tokensPerSecond = tokensPerSecond
        self.millisecondsPerToken = millisecondsPerToken
        self.session = session
        self.measuredAt = measuredAt
    }
}

extension TuningStore {
    /// Stores the points of one serve-bench run in one transaction.
    public func record(serving points: [ServingRecord]) throws {
        try pool.write { db in
            for p in points {
                try db.execute(
                    sql: """
                        INSERT INTO serving (machine, model, mode, batch, context, tokens_per_second, ms_per_token, session, measured_at)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [p.machine, p.model, p.mode, p.batch, p.context, p.tokensPerSecond, p.millisecondsPerToken, p.session, p.measuredAt])
            }
        }
    }

    /// Serve-bench points of a machine, oldest first.
    public func serving(machine: String) throws -> [ServingRecord] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM serving WHERE machine = ? ORDER BY measured_at, id", arguments: [machine]).map { row in
                ServingRecord(
                    machine: row["machine"], model: row["model"], mode: row["mode"], batch: row["batch"], context: row["context"],
                    tokensPerSecond: row["tokens_per_second"], millisecondsPerToken: row["ms_per_token"], session: row["session"],
                    measuredAt: row["measured_at"])
            }
        }
    }
}
