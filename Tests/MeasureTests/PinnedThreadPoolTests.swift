import Foundation
import Glibc
import Machine
import Testing

@testable import Measure

@Suite("Pinned thread pool")
struct PinnedThreadPoolTests {
    let topology: HwlocTopology
    let pus: [Int]
    init() throws {
        topology = try HwlocTopology()
        pus = topology.snapshot().pus
    }

    @Test func everyIndexRunsOncePerRunForAThousandRuns() throws {
        // More threads than PUs too: each PU twice.
        for layout in [pus, pus + pus] {
            let pool = try PinnedThreadPool(pus: layout, topology: topology)
            let n = layout.count
            let counts = UnsafeMutablePointer<Int>.allocate(capacity: n)
            counts.initialize(repeating: 0, count: n)
            defer { counts.deallocate() }
            for run in 1...1000 {
                pool.run { index in counts[index] += 1 }
                if (0..<n).contains(where: { counts[$0] != run }) {
                    Issue.record("after run \(run): \((0..<n).map { counts[$0] })")
                    break
                }
            }
            #expect((0..<n).allSatisfy { counts[$0] == 1000 })
        }
    }

    @Test func cFunctionVariantRunsEveryIndex() throws {
        let pool = try PinnedThreadPool(pus: pus + pus, topology: topology)
        let n = pool.threadCount
        let counts = UnsafeMutablePointer<Int>.allocate(capacity: n)
        counts.initialize(repeating: 0, count: n)
        defer { counts.deallocate() }
        for _ in 0..<1000 {
            pool.run(context: UnsafeMutableRawPointer(counts)) { context, index in
                context!.assumingMemoryBound(to: Int.self)[index] += 1
            }
        }
        #expect((0..<n).allSatisfy { counts[$0] == 1000 })
    }

    @Test func runWaitsForTheSlowestThread() throws {
        let pool = try PinnedThreadPool(pus: pus, topology: topology, spinIterations: 100)
        let n = pool.threadCount
        let done = UnsafeMutablePointer<Bool>.allocate(capacity: n)
        done.initialize(repeating: false, count: n)
        defer { done.deallocate() }
        for _ in 0..<5 {
            (0..<n).forEach { done[$0] = false }
            pool.run { index in
                usleep(UInt32(5_000 * (index + 1)))
                done[index] = true
            }
            #expect((0..<n).allSatisfy { done[$0] })
        }
    }

    @Test func threadZeroIsTheCallerAndTheOthersAreFixed() throws {
        let pool = try PinnedThreadPool(pus: pus, topology: topology)
        let n = pool.threadCount
        let ids = UnsafeMutablePointer<pthread_t>.allocate(capacity: n)
        defer { ids.deallocate() }
        pool.run { index in ids[index] = pthread_self() }
        let first = (0..<n).map { ids[$0] }
        #expect(Set(first).count == n)
        #expect(first[0] == pthread_self(), "the caller runs index 0")
        #expect(!first.dropFirst().contains(pthread_self()))
        for _ in 0..<100 {
            pool.run { index in ids[index] = pthread_self() }
        }
        #expect((0..<n).map { ids[$0] } == first, "no thread is created after init")
    }

    @Test func anotherCallingThreadBecomesThreadZeroAndShutdownRestoresTheBinding() throws {
        let before = topology.currentThreadBinding()
        let pool = try PinnedThreadPool(pus: pus, topology: topology)
        if pool.bindings[0].honoured { #expect(topology.currentThreadBinding() == [pus[0]]) }
        let n = pool.threadCount
        let ids = UnsafeMutablePointer<pthread_t>.allocate(capacity: n)
        defer { ids.deallocate() }
        // Driven from another thread, that thread runs index 0.
        let address = Int(bitPattern: ids)
        let other = Thread {
            let ids = UnsafeMutablePointer<pthread_t>(bitPattern: address)!
            pool.run { index in ids[index] = pthread_self() }
            #expect(ids[0] == pthread_self())
        }
        other.start()
        while !other.isFinished { usleep(1_000) }
        #expect(ids[0] != pthread_self())
        pool.run { index in ids[index] = pthread_self() }
        #expect(ids[0] == pthread_self())
        pool.shutdown()
        #expect(topology.currentThreadBinding() == before, "the caller's binding from before the pool is back")
    }

    @Test func bindingsAreRecordedPerThread() throws {
        let pool = try PinnedThreadPool(pus: pus, topology: topology)
        #expect(pool.bindings.count == pus.count)
        for (binding, pu) in zip(pool.bindings, pus) {
            #expect(binding.requested == [pu])
            switch binding.status {
            case .honoured:
                #expect(binding.readBack == [pu])
            case .notReflected:
                #expect(binding.readBack != [pu])
            case .refused:
                #expect(!(binding.message ?? "").isEmpty, "a refusal carries the OS's message")
            }
        }
        // Where binding is honoured, the body really runs on its PU.
        let n = pool.threadCount
        let cpus = UnsafeMutablePointer<[Int]?>.allocate(capacity: n)
        cpus.initialize(repeating: nil, count: n)
        defer {
            cpus.deinitialize(count: n)
            cpus.deallocate()
        }
        let topology = self.topology
        pool.run { index in cpus[index] = topology.lastCPULocation() }
        for index in 0..<n where pool.bindings[index].honoured {
            if let ranOn = cpus[index] { #expect(ranOn == [pus[index]]) }
        }
    }

    @Test func sleepingThreadsWakeUp() throws {
        // No spinning at all: every hand-off goes through the condition variables.
        let pool = try PinnedThreadPool(pus: pus, topology: topology, spinIterations: 0)
        let n = pool.threadCount
        let counts = UnsafeMutablePointer<Int>.allocate(capacity: n)
        counts.initialize(repeating: 0, count: n)
        defer { counts.deallocate() }
        for i in 0..<300 {
            if i % 50 == 0 { usleep(2_000) }  // let them fall asleep
            pool.run { index in counts[index] += 1 }
        }
        #expect((0..<n).allSatisfy { counts[$0] == 300 })
    }

    @Test func badPUsAreRejectedAndShutdownIsIdempotent() throws {
        let missing = (pus.max() ?? 0) + 1000
        #expect(throws: MachineError.self) { try PinnedThreadPool(pus: [missing], topology: topology) }
        #expect(throws: MachineError.self) { try PinnedThreadPool(pus: [], topology: topology) }
        let pool = try PinnedThreadPool(pus: [pus[0]], topology: topology)
        var ran = false
        pool.run { _ in ran = true }
        #expect(ran)
        pool.shutdown()
        pool.shutdown()
    }
}
