import KernelKit
import Machine
import Measure

/// The engine's worker threads: a `PinnedThreadPool` (one thread per core by default, bound with the
/// scatter placement), or the calling thread alone when one thread is asked for.
///
/// Kernels split their work into `shares` (a configuration's `threads`: GEMM blocks, row ranges,
/// attention units). Share `s` runs on pool thread `s % threadCount`, so a configuration tuned for
/// more threads than the engine has still runs (its shares take turns) and one tuned for fewer leaves
/// threads idle.
public final class KernelThreads {
    /// Threads that run shares (1: the caller).
    public let threadCount: Int
    private let pool: PinnedThreadPool?

    /// - Parameters:
    ///   - count: threads; nil means one per core of `machine`.
    ///   - spinIterations: how long an idle pool thread polls before sleeping; short, so that idle
    ///     threads leave the cores to OpenBLAS's own threads in the FP32 baseline.
    public init(count: Int?, machine: MachineModel, spinIterations: Int = 20_000) throws {
        let topology = machine.description.topology
        let n = max(1, count ?? topology.cores.count)
        threadCount = n
        if n == 1 {
            pool = nil
        } else {
            pool = try PinnedThreadPool(
                pus: ThreadPlacement.scatter.pus(count: n, topology: topology), topology: machine.hwloc, spinIterations: spinIterations)
        }
    }

    /// Runs `body(share)` for every share in `0..<shares` and returns when all have run.
    public func run(shares: Int, _ body: (Int) -> Void) {
        guard shares > 0 else { return }
        guard let pool, shares > 1 else {
            for s in 0..<shares { body(s) }
            return
        }
        let n = threadCount
        pool.run { thread in
            var s = thread
            while s < shares {
                body(s)
                s += n
            }
        }
    }

    /// Runs `body` over contiguous ranges covering `0..<count`, one range per thread, or one range on
    /// the calling thread when `count` is below `2 * grain` (too little work to share).
    public func forEachRange(_ count: Int, grain: Int = 1, _ body: (Range<Int>) -> Void) {
        guard count > 0 else { return }
        let shares = min(threadCount, max(1, count / max(grain, 1)))
        guard shares > 1 else {
            body(0..<count)
            return
        }
        run(shares: shares) { s in body(count * s / shares..<count * (s + 1) / shares) }
    }
}
