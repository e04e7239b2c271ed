import Foundation
import KernelKit
import Kernels
import Machine
import Measure
import Toolchain

/// The worker side of a trial: runs inside `lowbit worker`, one request at a time. It keeps loaded
/// libraries and thread pools between requests (threads are never created inside a timed region).
public final class TrialWorker {
    private let topology: HwlocTopology
    private let availability: CounterAvailability
    private var libraries: [String: LoadedLibrary] = [:]
    private var pools: [[Int]: PinnedThreadPool] = [:]
    /// Made on the first cold request and kept: its pages are touched once.
    private var evictor: CacheEvictor?

    public init() throws {
        topology = try HwlocTopology()
        availability = CounterAvailability.probe()
    }

    /// Serves requests on standard input until it closes. Never returns.
    public static func serve() -> Never {
        let worker: TrialWorker
        do {
            worker = try TrialWorker()
        } catch {
            FileHandle.standardError.write(Data("lowbit worker: \(error)\n".utf8))
            exit(70)
        }
        // A stored closure, not a closure literal: Swift 6.3's optimizer crashes on the literal form
        // passed to a `-> Never` function in release builds.
        let handler: (Data) throws -> Data = worker.handle
        WorkerServer.serve(handler: handler)
    }

    func handle(_ data: Data) throws -> Data {
        let request = try JSONDecoder().decode(WorkerTrialRequest.self, from: data)
        return try JSONEncoder().encode(perform(request))
    }

    private func perform(_ request: WorkerTrialRequest) -> WorkerTrialReply {
        var reply = WorkerTrialReply(status: .ok, stage: "load", counters: [], bindings: [])
        func fail(_ status: TrialResult.Status, _ stage: String, _ message: String) -> WorkerTrialReply {
            reply.status = status
            reply.stage = stage
            reply.message = message
            return reply
        }

        WorkerStage.enter("load")
        let instance: KernelInstance
        do {
            let family = try KernelRegistry.family(named: request.family)
            let library = try libraries[request.library] ?? LoadedLibrary(path: URL(fileURLWithPath: request.library))
            libraries[request.library] = library
            instance = try family.makeInstance(
                workload: request.workload, config: request.configuration, symbols: library, seed: request.seed)
        } catch {
            return fail(.loadError, "load", "\(error)")
        }

        WorkerStage.enter("prepare")
        do {
            try instance.prepare()
        } catch {
            return fail(.loadError, "prepare", "\(error)")
        }
        let pool: PinnedThreadPool
        let output: GuardedBuffer
        do {
            pool = try self.pool(for: request.pus)
            output = try GuardedBuffer(byteCount: instance.outputBytes, alignment: 64)
        } catch {
            return fail(.loadError, "prepare", "\(error)")
        }
        reply.bindings = pool.bindings
        guard pool.threadCount == instance.threadCount else {
            return fail(.loadError, "prepare", "the configuration asks for \(instance.threadCount) threads, the pool has \(pool.threadCount)")
        }
        let workspaces = (0..<instance.threadCount).map { _ in AlignedBuffer(byteCount: instance.workspaceBytesPerThread) }
        instance.bind(output: output.pointer, workspaces: workspaces.map(\.pointer))
        // The kernel holds raw pointers into these buffers: keep them alive until the trial ends
        // (an optimized build would otherwise free them after their last use in Swift).
        defer { withExtendedLifetime((output, workspaces)) {} }

        // Verification: poisoned output, one run, canaries, comparison with the reference.
        WorkerStage.enter("run")
        output.poison(with: GuardedBuffer.float32Poison)
        pool.run { instance.run(thread: $0) }
        guard output.canariesIntact() else {
            return fail(.verifyFailed, "run", "the variant wrote before the start of its output buffer")
        }
        WorkerStage.enter("verify")
        let verification = instance.verify()
        reply.verification = verification
        guard verification.passed else {
            return fail(
                .verifyFailed, "verify",
                "\(verification.mismatches) of \(verification.checked) outputs differ (\(verification.tolerance)); first: \(verification.firstMismatch ?? "?")")
        }
        guard !request.verifyOnly else { return reply }

        // Counters start on every pool thread before the timed region and stop after it, so they
        // cover warm-up and samples without adding anything inside either.
        WorkerStage.enter("time")
        var evict: (() -> Void)?
        var coldHow = ""
        if request.cold {
            let regions = instance.dataRegions + [UnsafeRawBufferPointer(start: output.pointer, count: instance.outputBytes)]
                + workspaces.map(\.region)
            let bytes = regions.reduce(0) { $0 + $1.count }
            if !instance.dataRegions.isEmpty, CacheControl.flush(regions[0]) {
                // Every line of the kernel's data is written back and invalidated: it comes from memory.
                evict = { for r in regions { CacheControl.flush(r) } }
                coldHow = "cold: every line of the kernel's \(Format.mib(bytes)) (inputs, output, scratch) flushed from the caches before every sample"
            } else {
                // Reading a buffer twice the caches' size; caches with scan-resistant replacement may
                // keep some of the kernel's lines.
                let evictor = self.evictor ?? CacheEvictor(byteCount: CacheEvictor.size(forCacheBytes: cacheBytes))
                self.evictor = evictor
                let threads = pool.threadCount
                evict = { pool.run { evictor.evict(part: $0, of: threads) } }
                coldHow = "cold (approximate): before every sample the threads read \(evictor.byteCount >> 20) MiB; caches with scan-resistant replacement may keep some of the kernel's \(Format.mib(bytes))"
            }
        }
        let counters = request.count ? startCounters(on: pool) : nil
        let timing = Stopwatch.time(request.policy, beforeSample: evict) { pool.run { instance.run(thread: $0) } }
        reply.timing = timing
        if let counters {
            reply.counters = stopCounters(counters, on: pool, runs: request.policy.warmup + timing.count)
        }
        reply.dataState = request.cold ? coldHow : dataState(instance)
        guard output.canariesIntact() else {
            return fail(.verifyFailed, "time", "the variant wrote before the start of its output buffer while timed")
        }
        WorkerStage.enter("done")
        return reply
    }

    private func pool(for pus: [Int]) throws -> PinnedThreadPool {
        if let pool = pools[pus] { return pool }
        let pool = try PinnedThreadPool(pus: pus, topology: topology)
        pools[pus] = pool
        return pool
    }

    /// Bytes of every data cache: the last level once, the private levels per instance.
    private var cacheBytes: UInt64 {
        topology.snapshot().caches.filter { $0.kind != .instruction }.reduce(0) { $0 + $1.sizeBytes }
    }

    /// What is hot in the timed region: every sample reuses the same inputs.
    private func dataState(_ instance: KernelInstance) -> String {
        let working = Format.mib(instance.workingSetBytes)
        guard let llc = topology.snapshot().lastLevelCache else { return "hot: inputs reused by every sample; working set \(working)" }
        let fits = UInt64(instance.workingSetBytes) <= llc.sizeBytes
        return "hot: inputs reused by every sample; working set \(working) \(fits ? "fits in" : "exceeds") the \(llc.sizeBytes >> 20) MiB \(llc.name)"
    }

    private func startCounters(on pool: PinnedThreadPool) -> CounterSlots {
        let slots = CounterSlots(count: pool.threadCount)
        let availability = self.availability
        pool.run { index in
            do {
                let counters = try Counters(availability: availability)
                try counters.start()
                slots.counters[index] = counters
            } catch {
                slots.values[index] = [CounterValue(event: "all", value: nil, status: .unavailable("\(error)"), source: nil)]
            }
        }
        return slots
    }

    /// Stops every thread's counters and sums the threads' values, per run of the kernel.
    private func stopCounters(_ slots: CounterSlots, on pool: PinnedThreadPool, runs: Int) -> [CounterValue] {
        pool.run { index in
            guard let counters = slots.counters[index] else { return }
            do {
                slots.values[index] = try counters.stop().values
            } catch {
                slots.values[index] = [CounterValue(event: "all", value: nil, status: .unavailable("\(error)"), source: nil)]
            }
            slots.counters[index] = nil  // PAPI event sets are destroyed on the thread that made them
        }
        return CounterValue.sum(slots.values.compactMap { $0 }, dividedBy: runs)
    }
}

enum Format {
    static func mib(_ bytes: Int) -> String { String(format: "%.2f MiB", Double(bytes) / 1_048_576) }
}

/// Per-thread counters and results; each pool thread touches only its own index.
private final class CounterSlots: @unchecked Sendable {
    var counters: [Counters?]
    var values: [[CounterValue]?]
    init(count: Int) {
        counters = Array(repeating: nil, count: count)
        values = Array(repeating: nil, count: count)
    }
}

extension LoadedLibrary: SymbolTable {}

extension CounterValue {
    /// Sums per-thread values event by event; the status is the weakest of the threads'.
    static func sum(_ perThread: [[CounterValue]], dividedBy runs: Int) -> [CounterValue] {
        guard let first = perThread.first else { return [] }
        return first.indices.map { i in
            let column = perThread.compactMap { $0.indices.contains(i) ? $0[i] : nil }
            var total = first[i]
            if let reason = column.lazy.compactMap({ if case .unavailable(let r) = $0.status { r } else { nil } }).first {
                total.status = .unavailable(reason)
                total.value = nil
                return total
            }
            total.value = column.compactMap(\.value).reduce(0, +) / Int64(max(runs, 1))
            if let estimate = column.lazy.compactMap({ if case .estimated(let r) = $0.status { r } else { nil } }).first {
                total.status = .estimated(estimate)
            }
            return total
        }
    }
}
