import Glibc

/// Leaves the caches without a kernel's data: reads a buffer larger than every cache level, one load
/// per cache line. Reading (not writing) fills the caches with clean lines, so the kernel pays for
/// fetching its data from memory and nothing for writing the evictor's lines back.
///
/// Used by cold timing: every sample starts with this, outside the timed region, on each thread of
/// the trial (each thread's private L1 and L2 are flushed by its own reads; the shared levels by all).
public final class CacheEvictor: @unchecked Sendable {
    /// Bytes of the buffer.
    public let byteCount: Int
    private let base: UnsafeMutableRawPointer
    /// Where the loads' sum goes, so the reads cannot be optimised away.
    private var sink: UInt64 = 0

    /// A buffer of `byteCount` bytes (rounded up to whole pages), every page written once here so the
    /// timed runs never take its page faults.
    public init(byteCount: Int) {
        let page = 4096
        self.byteCount = max(page, (byteCount + page - 1) / page * page)
        var p: UnsafeMutableRawPointer?
        guard posix_memalign(&p, page, self.byteCount) == 0, let p else {
            fatalError("CacheEvictor: cannot allocate \(byteCount) bytes")
        }
        base = p
        memset(base, 0x5A, self.byteCount)
    }

    deinit { free(base) }

    /// The size that flushes a machine whose last-level cache and per-core caches hold `cacheBytes`
    /// in all: twice that (replacement is not exactly LRU), and at least 64 MiB.
    public static func size(forCacheBytes cacheBytes: UInt64) -> Int {
        max(64 << 20, Int(cacheBytes) * 2)
    }

    /// Reads part `index` of `parts` equal slices (a thread's share of one eviction).
    public func evict(part index: Int, of parts: Int) {
        let lines = byteCount / 64
        let lo = lines * index / max(parts, 1), hi = lines * (index + 1) / max(parts, 1)
        let words = base.assumingMemoryBound(to: UInt64.self)
        var sum: UInt64 = 0
        var line = lo
        while line < hi {
            sum &+= words[line &* 8]
            line &+= 1
        }
        sink &+= sum
    }

    /// Reads the whole buffer on the calling thread.
    public func evict() { evict(part: 0, of: 1) }
}
