import Machine

/// Finds the bandwidth plateaus of a sweep and labels them with the memory level that holds the
/// working set: a level's plateau is the median of the sweep points that fit comfortably in it
/// (at most half its capacity as the threads see it) and not in the level below (more than twice
/// the lower level's capacity); DRAM takes the points past twice the last level.
public struct PlateauDetector: Sendable {
    /// Memory levels from the nearest: name and capacity for `threads` threads (private caches add up
    /// over the cores the threads run on; shared ones count once).
    public let levels: [(name: String, bytes: Double)]

    public init(levels: [(name: String, bytes: Double)]) { self.levels = levels }

    /// Data-cache levels of the topology, for `threads` threads on distinct cores.
    public init(topology: Topology, threads: Int) {
        var levels: [(String, Double)] = []
        for level in topology.cacheLevels where level.kind != .instruction {
            let perInstance = Double(level.sizeBytes)
            let instancesUsed = level.pusPerInstance <= 1 ? Double(min(threads, max(1, level.instances))) : 1
            levels.append(("L\(level.level)", perInstance * instancesUsed))
        }
        self.levels = levels.sorted { $0.1 < $1.1 }
    }

    /// The level whose capacity first holds `bytes`, or DRAM.
    public func level(holding bytes: Double) -> String {
        levels.first { bytes <= $0.bytes }?.name ?? "DRAM"
    }

    /// One plateau per level that has interior points, from the sweep of one (operation, threads).
    public func plateaus(of points: [Ceilings.SweepPoint]) -> [Ceilings.Plateau] {
        guard let first = points.first else { return [] }
        var result: [Ceilings.Plateau] = []
        let bounds = levels.map(\.bytes)
        for (i, level) in (levels.map(\.name) + ["DRAM"]).enumerated() {
            let lower = i == 0 ? 0 : bounds[i - 1] * 2
            let upper = i < bounds.count ? bounds[i] / 2 : .infinity
            let inside = points.filter { Double($0.bytes) > lower && Double($0.bytes) <= upper }.map(\.gbps).sorted()
            guard !inside.isEmpty else { continue }
            result.append(Ceilings.Plateau(op: first.op, threads: first.threads, level: level, gbps: inside[inside.count / 2]))
        }
        return result
    }

    /// Working-set sizes for a sweep: powers of two (with `fine`, also the midpoints 1.5 x) from
    /// 4 KiB to 4 x the largest level, and at least to 64 MiB.
    public func sizes(fine: Bool = false) -> [Int] {
        let top = max((levels.last?.bytes ?? Double(32 << 20)) * 4, Double(64 << 20))
        var sizes: [Int] = []
        var s = 4096
        while Double(s) <= top {
            sizes.append(s)
            if fine, Double(s + s / 2) <= top { sizes.append(s + s / 2) }
            s *= 2
        }
        return sizes
    }
}
