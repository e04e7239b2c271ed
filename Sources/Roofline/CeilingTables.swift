extension Ceilings {
    /// A table as header and rows of text, for the terminal and the HTML report alike.
    public typealias TextTable = (header: [String], rows: [[String]])

    /// Compute ceilings by ISA, operation and threads: operation, isa, threads, GOP/s.
    public var computeTable: TextTable {
        let rows = compute.sorted { ($0.isa, $0.op, $0.threads) < ($1.isa, $1.op, $1.threads) }
            .map { [$0.op, $0.isa, "\($0.threads)", String(format: "%.1f", $0.gops)] }
        return (["operation", "isa", "threads", "GOP/s"], rows)
    }

    /// Bandwidth plateaus in GB/s: one row per (operation, threads), one column per level measured.
    public var plateauTable: TextTable {
        let levels = ["L1", "L2", "L3", "L4", "DRAM"].filter { l in plateaus.contains { $0.level == l } }
        let keys = Set(plateaus.map { PlateauKey(op: $0.op, threads: $0.threads) }).sorted { ($0.op, $0.threads) < ($1.op, $1.threads) }
        let rows = keys.map { key in
            [key.op, "\(key.threads)"] + levels.map { level in
                plateau(op: key.op, threads: key.threads, level: level).map { String(format: "%.1f", $0) } ?? "-"
            }
        }
        return (["operation", "threads"] + levels, rows)
    }

    private struct PlateauKey: Hashable {
        var op: String
        var threads: Int
    }

    /// The plateau of exactly this (operation, threads, level), or nil.
    private func plateau(op: String, threads: Int, level: String) -> Double? {
        plateaus.first { $0.op == op && $0.threads == threads && $0.level == level }?.gbps
    }
}
