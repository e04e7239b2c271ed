import Machine

/// Which processing units a kernel's threads run on, chosen from the topology.
public enum ThreadPlacement: String, Codable, Sendable, CaseIterable {
    /// One thread per core first (cores in order), then second PUs of cores: most cache and ports per thread.
    case scatter
    /// PUs in order, filling each core's hardware threads before the next core.
    case compact

    public func pus(count: Int, topology: Topology) -> [Int] {
        let byCore = topology.cores.map(\.pus)
        let order: [Int]
        switch self {
        case .compact:
            order = byCore.flatMap { $0 }
        case .scatter:
            let depth = byCore.map(\.count).max() ?? 0
            order = (0..<depth).flatMap { level in byCore.compactMap { level < $0.count ? $0[level] : nil } }
        }
        let available = order.isEmpty ? topology.pus : order
        return (0..<count).map { available[$0 % max(available.count, 1)] }
    }
}
