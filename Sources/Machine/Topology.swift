/// The machine's hardware topology as hwloc sees it, as a plain value.
///
/// PU numbers are OS indices (what `taskset` and `/proc/cpuinfo` call CPUs); every list of PUs is sorted.
public struct Topology: Codable, Sendable, Equatable {
    public struct Package: Codable, Sendable, Equatable {
        public var index: Int
        public var vendor: String?
        public var model: String?
        public var pus: [Int]

        public init(index: Int, vendor: String?, model: String?, pus: [Int]) {
            self.index = index
            self.vendor = vendor
            self.model = model
            self.pus = pus
        }
    }

    public struct NUMANode: Codable, Sendable, Equatable {
        public var index: Int
        public var memoryBytes: UInt64
        public var pus: [Int]

        public init(index: Int, memoryBytes: UInt64, pus: [Int]) {
            self.index = index
            self.memoryBytes = memoryBytes
            self.pus = pus
        }
    }

    public struct Core: Codable, Sendable, Equatable {
        public var index: Int
        public var pus: [Int]

        public init(index: Int, pus: [Int]) {
            self.index = index
            self.pus = pus
        }
    }

    public enum CacheKind: String, Codable, Sendable, CaseIterable {
        case data, instruction, unified

        /// The suffix lstopo uses: L1d, L1i, L2 (unified has none).
        public var suffix: String {
            switch self {
            case .data: return "d"
            case .instruction: return "i"
            case .unified: return ""
            }
        }
    }

    public struct Cache: Codable, Sendable, Equatable {
        public var level: Int
        public var kind: CacheKind
        public var index: Int
        public var sizeBytes: UInt64
        public var lineSize: Int
        /// Ways of associativity: 0 when unknown, -1 when fully associative.
        public var associativity: Int
        /// The PUs that share this cache instance.
        public var pus: [Int]

        public init(level: Int, kind: CacheKind, index: Int, sizeBytes: UInt64, lineSize: Int, associativity: Int, pus: [Int]) {
            self.level = level
            self.kind = kind
            self.index = index
            self.sizeBytes = sizeBytes
            self.lineSize = lineSize
            self.associativity = associativity
            self.pus = pus
        }

        public var name: String { "L\(level)\(kind.suffix)" }
    }

    public var packages: [Package]
    public var numaNodes: [NUMANode]
    public var cores: [Core]
    public var pus: [Int]
    public var caches: [Cache]
    /// hwloc's API version at run time (hwloc_get_api_version), e.g. "2.8.0" for hwloc 2.9.
    public var hwlocAPIVersion: String

    public init(
        packages: [Package], numaNodes: [NUMANode], cores: [Core], pus: [Int], caches: [Cache],
        hwlocAPIVersion: String
    ) {
        self.packages = packages
        self.numaNodes = numaNodes
        self.cores = cores
        self.pus = pus
        self.caches = caches
        self.hwlocAPIVersion = hwlocAPIVersion
    }

    /// One line per distinct cache (level, kind): what a tuner needs to size its blocks.
    public struct CacheLevel: Codable, Sendable, Equatable {
        public var level: Int
        public var kind: CacheKind
        public var sizeBytes: UInt64
        public var lineSize: Int
        public var associativity: Int
        public var instances: Int
        /// PUs per instance (1 = private to a PU).
        public var pusPerInstance: Int

        public var name: String { "L\(level)\(kind.suffix)" }
    }

    /// The cache levels, ordered by level then data/instruction/unified. Where instances of one level
    /// differ (hybrid cores), the smallest size is reported, which is the safe one to tile for.
    public var cacheLevels: [CacheLevel] {
        let grouped = Dictionary(grouping: caches) { "\($0.level)-\($0.kind.rawValue)" }
        return grouped.values.compactMap { group -> CacheLevel? in
            guard let first = group.min(by: { $0.sizeBytes < $1.sizeBytes }) else { return nil }
            return CacheLevel(
                level: first.level, kind: first.kind, sizeBytes: first.sizeBytes,
                lineSize: first.lineSize, associativity: first.associativity,
                instances: group.count, pusPerInstance: group.map(\.pus.count).max() ?? 0)
        }.sorted { ($0.level, $0.kind.sortKey) < ($1.level, $1.kind.sortKey) }
    }

    /// The per-core data cache of the given level (L1d, L2, L3), if the machine has one.
    public func dataCache(level: Int) -> CacheLevel? {
        cacheLevels.first { $0.level == level && $0.kind != .instruction }
    }

    /// The largest cache level, shared or not: the last-level cache.
    public var lastLevelCache: CacheLevel? {
        cacheLevels.filter { $0.kind != .instruction }.max { $0.level < $1.level }
    }

    public var totalMemoryBytes: UInt64 { numaNodes.reduce(0) { $0 + $1.memoryBytes } }
}

extension Topology.CacheKind {
    fileprivate var sortKey: Int {
        switch self {
        case .data: return 0
        case .instruction: return 1
        case .unified: return 2
        }
    }
}
