import Foundation
import Testing

@testable import Machine

@Suite("Topology from hwloc")
struct TopologyTests {
    let topology: Topology

    init() throws { topology = try HwlocTopology().snapshot() }

    @Test func machineHasProcessingUnitsCoresAndMemory() {
        #expect(!topology.pus.isEmpty)
        #expect(!topology.cores.isEmpty)
        #expect(!topology.packages.isEmpty)
        #expect(!topology.numaNodes.isEmpty)
        #expect(topology.numaNodes.allSatisfy { $0.memoryBytes > 0 })
        #expect(topology.pus == topology.pus.sorted())
    }

    @Test func coresPartitionThePUs() {
        let fromCores = topology.cores.flatMap(\.pus)
        #expect(fromCores.sorted() == topology.pus)
        #expect(Set(fromCores).count == fromCores.count, "a PU belongs to one core")
    }

    @Test func everyCacheIsSaneAndCoversMachinePUs() {
        #expect(!topology.caches.isEmpty)
        let all = Set(topology.pus)
        for cache in topology.caches {
            #expect(cache.sizeBytes > 0, "\(cache.name) has size 0")
            #expect(cache.lineSize > 0, "\(cache.name) has line size 0")
            #expect(!cache.pus.isEmpty)
            #expect(Set(cache.pus).isSubset(of: all), "\(cache.name) names PUs the machine lacks")
        }
    }

    @Test func cachesNest() {
        // Each data/unified cache instance lies inside one instance of every higher level, which is larger.
        let data = topology.caches.filter { $0.kind != .instruction }
        for inner in data {
            for level in Set(data.map(\.level)) where level > inner.level {
                let outer = data.filter { $0.level == level }
                let containing = outer.filter { Set(inner.pus).isSubset(of: Set($0.pus)) }
                #expect(containing.count == 1, "\(inner.name)#\(inner.index) is not inside exactly one L\(level)")
                if let c = containing.first {
                    #expect(c.sizeBytes > inner.sizeBytes, "L\(level) is not larger than \(inner.name)")
                }
            }
        }
    }

    @Test func cacheLevelsSummariseInstances() {
        let levels = topology.cacheLevels
        #expect(levels.map(\.instances).reduce(0, +) == topology.caches.count)
        #expect(topology.dataCache(level: 1)?.kind == .data)
        #expect(topology.lastLevelCache != nil)
        // Ordered by level.
        #expect(levels.map(\.level) == levels.map(\.level).sorted())
    }

    @Test func snapshotIsCodable() throws {
        let data = try JSONEncoder().encode(topology)
        #expect(try JSONDecoder().decode(Topology.self, from: data) == topology)
    }
}
