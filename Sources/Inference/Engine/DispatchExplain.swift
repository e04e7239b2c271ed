import KernelKit

/// The `--explain` report: per layer and kernel, the workload looked up, the configuration that runs,
/// its variant, and where the configuration came from (exact tuned record, nearest tuned shape,
/// analytical default, portable fallback), with the engine's notes.
public enum DispatchExplain {
    /// A table of `records` (one line per (layer, role, workload)), then a count per origin.
    public static func text(_ records: [DispatchRecord], machine: String, database: String?) -> String {
        var lines = [
            "dispatch on machine \(machine), tuning database: \(database ?? "none (analytical configurations)")",
        ]
        let rows = records.sorted { a, b in
            (a.layer ?? Int.max, order(a.role)) < (b.layer ?? Int.max, order(b.role))
        }
        let header = ["layer", "kernel", "workload", "source", "variant"]
        var table = [header]
        var notes: [String] = []
        for r in rows {
            let shape = r.choice.workload.shape.keys.sorted().map { "\($0)=\(r.choice.workload.shape[$0]!)" }.joined(separator: " ")
            table.append([r.layer.map(String.init) ?? "-", r.role, "\(r.choice.family) \(shape)", r.choice.origin.description, r.choice.variant])
            for n in r.choice.notes where !notes.contains(n) { notes.append(n) }
        }
        let widths = header.indices.map { i in table.map { $0[i].count }.max() ?? 0 }
        for row in table {
            lines.append(row.indices.map { i in i == row.count - 1 ? row[i] : row[i].padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  "))
        }
        lines.append("")
        lines.append("configurations:")
        var shown = Set<String>()
        for r in rows where shown.insert(r.choice.variant + r.choice.configuration.description).inserted {
            lines.append("  \(r.choice.variant): \(r.choice.configuration)")
        }
        var counts: [String: Int] = [:]
        for r in rows { counts[origin(r.choice.origin), default: 0] += 1 }
        lines.append("sources: " + counts.keys.sorted().map { "\($0) \(counts[$0]!)" }.joined(separator: ", "))
        if !notes.isEmpty {
            lines.append("notes:")
            lines += notes.map { "  \($0)" }
        }
        return lines.joined(separator: "\n")
    }

    private static func origin(_ o: ConfigurationOrigin) -> String {
        switch o {
        case .exact: "exact tuned"
        case .nearest: "nearest tuned shape"
        case .analyticalDefault: "analytical default"
        case .portableFallback: "portable fallback"
        }
    }

    private static let roles = [
        "qkv-quantize", "q_proj", "k_proj", "v_proj", "kv-append", "attention", "o-quantize", "o_proj", "gate/up-quantize",
        "gate_proj", "up_proj", "down-quantize", "down_proj", "lm_head",
    ]

    private static func order(_ role: String) -> Int { roles.firstIndex(of: role) ?? roles.count }
}
