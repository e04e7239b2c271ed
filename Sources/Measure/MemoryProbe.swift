import CCPUFeatures
import Foundation

/// What the memory system gives one thread right now: the latency of a pointer chase through a buffer
/// an eighth of the last-level cache's reported size (a cache hit on a machine of one's own) and the
/// read bandwidth of one thread streaming a buffer well past it. On a virtual machine the cache and the
/// memory bus are shared with other guests, which neither the clock (`CoreSpeed`) nor the vector
/// probe can see: on the Zen 3 VM this project tunes on, a chase through 4 MiB of the 32 MiB L3 took
/// 20 ns in one minute and 80-210 ns (memory latency) in the next.
public final class MemoryProbe {
    /// The chase's buffer: word 8 * i holds the word index of the next line, one random cycle over
    /// every 64-byte line.
    private let chase: UnsafeMutableBufferPointer<UInt64>
    private let stream: UnsafeMutableBufferPointer<UInt64>
    public let chaseBytes: Int
    public let readBytes: Int

    /// - Parameter lastLevelCacheBytes: the reported size (nil: 32 MiB is assumed); the chase covers an
    ///   eighth of it (at least 256 KiB), the stream 4 times it (at least 64 MiB).
    public init(lastLevelCacheBytes: Int?) {
        let llc = max(lastLevelCacheBytes ?? 32 << 20, 2 << 20)
        chaseBytes = max(256 << 10, llc / 8) / 64 * 64
        readBytes = max(64 << 20, 4 * llc)
        chase = .allocate(capacity: chaseBytes / 8)
        stream = .allocate(capacity: readBytes / 8)
        let lines = chaseBytes / 64
        // Sattolo's shuffle: one cycle through every line, so the chase visits them all.
        var order = Array(0..<lines)
        var rng = SystemRandomNumberGenerator()
        for i in stride(from: lines - 1, to: 0, by: -1) { order.swapAt(i, Int.random(in: 0..<i, using: &rng)) }
        chase.initialize(repeating: 0)
        for i in 0..<lines { chase[8 * i] = UInt64(8 * order[i]) }
        stream.initialize(repeating: 1)
    }

    deinit {
        chase.deallocate()
        stream.deallocate()
    }

    /// Nanoseconds per chase step: the best of `runs` runs of `steps` steps, after one pass that
    /// brings the buffer in.
    public func chaseNanoseconds(steps: Int = 50_000, runs: Int = 3) -> Double {
        let base = UnsafePointer(chase.baseAddress!)
        var at = lowbit_chase(base, 0, UInt64(chaseBytes / 64))
        var best = Double.infinity
        for _ in 0..<max(1, runs) {
            let t0 = Stopwatch.nanoseconds()
            at = lowbit_chase(base, at, UInt64(steps))
            let t1 = Stopwatch.nanoseconds()
            best = min(best, Double(t1 &- t0) / Double(max(1, steps)))
        }
        precondition(at % 8 == 0, "the chase left its lines")
        return best
    }

    /// GB/s of one thread reading the stream buffer: the best of `runs` passes.
    public func readGBps(runs: Int = 2) -> Double {
        let base = UnsafePointer(stream.baseAddress!)
        var best = 0.0
        for _ in 0..<max(1, runs) {
            let t0 = Stopwatch.nanoseconds()
            let sum = lowbit_read_lines(base, UInt64(stream.count))
            let t1 = Stopwatch.nanoseconds()
            precondition(sum == UInt64(stream.count / 4), "the stream read \(sum)")
            best = max(best, Double(readBytes) / Double(max(1, t1 &- t0)))
        }
        return best
    }

    /// Both readings now, on the calling thread.
    public func measure() -> MemorySpeed {
        MemorySpeed(chaseBytes: chaseBytes, chaseNs: chaseNanoseconds(), readBytes: readBytes, readGBps: readGBps())
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
