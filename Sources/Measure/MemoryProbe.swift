import CCPUFeatures
import Foundation
import Machine

/// What the memory system gives one thread right now: the latency of a pointer chase through a buffer
/// an eighth of the last-level cache's reported size (a cache hit on a machine of one's own) and the
/// read bandwidth of one thread streaming a buffer well past it. On a virtual machine the cache and the
/// memory bus are shared with other guests, which neither the clock (`CoreSpeed`) nor the vector
/// probe can see: on the Zen 3 VM this project tunes on, a chase through 4 MiB of the 32 MiB L3 took
/// 20 ns in one minute and 80-210 ns (memory latency) in the next.
public final class MemoryProbe {
    private let chase: PointerChase
    private let stream: UnsafeMutableBufferPointer<UInt64>
    public var chaseBytes: Int { chase.bytes }
    public let readBytes: Int

    /// - Parameter lastLevelCacheBytes: the reported size (nil: 32 MiB is assumed); the chase covers an
    ///   eighth of it (at least 256 KiB), the stream 4 times it (at least 64 MiB).
    public init(lastLevelCacheBytes: Int?) {
        let llc = max(lastLevelCacheBytes ?? 32 << 20, 2 << 20)
        chase = PointerChase(bytes: max(256 << 10, llc / 8))
        readBytes = max(64 << 20, 4 * llc)
        stream = .allocate(capacity: readBytes / 8)
        stream.initialize(repeating: 1)
    }

    deinit { stream.deallocate() }

    /// Nanoseconds per chase step (`PointerChase.nanoseconds`).
    public func chaseNanoseconds(steps: Int = 50_000, runs: Int = 3) -> Double {
        chase.nanoseconds(steps: steps, runs: runs)
    }

    /// GB/s of one thread reading the stream buffer: the best of `runs` passes.
    public func readGBps(runs: Int = 2) -> Double {
        let base = UnsafePointer(stream.baseAddress!)
        return Stopwatch.rates(runs: runs) {
            let sum = lowbit_read_lines(base, UInt64(stream.count))
            precondition(sum == UInt64(stream.count / 4), "the stream read \(sum)")
            return Double(readBytes)
        }.last!
    }

    /// Both readings now, on the calling thread.
    public func measure() -> MemorySpeed {
        MemorySpeed(chaseBytes: chaseBytes, chaseNs: chaseNanoseconds(), readBytes: readBytes, readGBps: readGBps())
    }
}

/// A buffer of `bytes` (a multiple of 64) whose 64-byte lines form one random cycle: word 8 * i holds
/// the word index of the line after line i. Following it is a chain of dependent loads, so the time per
/// step is the load latency of wherever the buffer lives (TLB misses included).
public final class PointerChase {
    private let next: UnsafeMutableBufferPointer<UInt64>
    public let bytes: Int

    public init(bytes: Int) {
        self.bytes = max(128, bytes / 64 * 64)
        let lines = self.bytes / 64
        next = .allocate(capacity: lines * 8)
        next.initialize(repeating: 0)
        // The lines in a random order, each pointing at the one after it: one cycle through them all,
        // which no prefetcher can guess.
        var order = Array(0..<lines)
        order.shuffle()
        for i in 0..<lines { next[8 * order[i]] = UInt64(8 * order[(i + 1) % lines]) }
    }

    deinit { next.deallocate() }

    /// Nanoseconds per step: the best of `runs` runs of `steps` steps, after one pass over every line
    /// that brings the buffer in.
    public func nanoseconds(steps: Int = 50_000, runs: Int = 3) -> Double {
        let base = UnsafePointer(next.baseAddress!)
        var at = lowbit_chase(base, 0, UInt64(bytes / 64))
        let fastest = Stopwatch.rates(runs: runs) {
            at = lowbit_chase(base, at, UInt64(steps))
            return Double(steps)
        }.last!
        precondition(at % 8 == 0, "the chase left its lines")
        return 1 / fastest
    }
}

/// One `MemoryProbe` reading.
public struct MemorySpeed: Codable, Sendable, Equatable {
    public var chaseBytes: Int
    public var chaseNs: Double
    public var readBytes: Int
    public var readGBps: Double

    /// A line comparing a run's start and end, with a warning when the chase's latency or the read
    /// bandwidth moved by more than 25% (both swing more than the clock on a shared machine).
    public static func report(start: MemorySpeed, end: MemorySpeed) -> String {
        func mib(_ b: Int) -> String { b % (1 << 20) == 0 ? "\(b >> 20) MiB" : "\(b >> 10) KiB" }
        var line = String(
            format: "memory speed (one thread: pointer chase in %@, read of %@): start %.0f ns, %.1f GB/s; end %.0f ns, %.1f GB/s",
            mib(start.chaseBytes), mib(start.readBytes), start.chaseNs, start.readGBps, end.chaseNs, end.readGBps)
        let latency = end.chaseNs / max(start.chaseNs, 1e-9), bandwidth = end.readGBps / max(start.readGBps, 1e-9)
        if abs(latency - 1) > 0.25 || abs(bandwidth - 1) > 0.25 {
            line += String(format: " (latency %+.0f%%, bandwidth %+.0f%%: other work shares this machine's cache and memory; "
                + "compare numbers measured side by side, not across runs)", (latency - 1) * 100, (bandwidth - 1) * 100)
        }
        return line
    }
}

/// Load latency against working-set size on the calling thread: a `PointerChase` at each size, the
/// curve lmbench's lat_mem_rd draws. Where it steps up shows the caches a thread really gets, which on a
/// shared or virtual machine can be less than the sizes the CPU reports.
public struct LatencyCurve: Codable, Sendable {
    public struct Point: Codable, Sendable, Equatable {
        public var bytes: Int
        public var nanoseconds: Double
    }

    public var points: [Point]
    /// The clock while it was measured (`CoreSpeed.chainSpeed`), to express the latencies in cycles.
    public var ghz: Double

    /// Powers of two from 8 KiB to four times the last-level cache (at least 64 MiB).
    public static func sizes(lastLevelCacheBytes: Int?) -> [Int] {
        let top = max(64 << 20, 4 * (lastLevelCacheBytes ?? 32 << 20))
        return Array(sequence(first: 8 << 10) { $0 * 2 <= top ? $0 * 2 : nil })
    }

    /// Measures every size in turn (a new buffer each), `steps` steps per run, best of three runs.
    public static func measure(sizes: [Int], steps: Int = 200_000) -> LatencyCurve {
        let ghz = CoreSpeed.chainSpeed()
        let points = sizes.map { bytes in Point(bytes: bytes, nanoseconds: PointerChase(bytes: bytes).nanoseconds(steps: steps)) }
        return LatencyCurve(points: points, ghz: ghz)
    }

    /// The curve over `sizes(lastLevelCacheBytes:)` of `topology`, measured on its first PU (bound there
    /// through `hwloc` where binding holds, the thread's binding given back after).
    public static func measure(topology: Topology, hwloc: HwlocTopology?) -> LatencyCurve {
        let sizes = sizes(lastLevelCacheBytes: topology.lastLevelCache.map { Int($0.sizeBytes) })
        var curve: LatencyCurve?
        if let hwloc, let pu = topology.pus.first {
            _ = CoreSpeed.onEach([pu], topology: hwloc) { curve = measure(sizes: sizes) }
        }
        return curve ?? measure(sizes: sizes)
    }

    /// The latency of the largest size at or below `bytes`, nil when none was measured.
    public func nanoseconds(atMost bytes: Int) -> Double? {
        points.filter { $0.bytes <= bytes }.max { $0.bytes < $1.bytes }?.nanoseconds
    }
}
