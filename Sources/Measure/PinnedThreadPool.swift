import Foundation
import Glibc
import Machine
import Synchronization

/// A fixed set of threads, each bound to one PU, that run a closure together with little dispatch
/// overhead: it is used inside timed regions, around GEMMs that take microseconds.
///
/// Thread 0 is the thread that calls `run`: `init` binds it to the first PU, and `run` rebinds a
/// different calling thread (the binding it had before is put back by `shutdown`, when the same
/// thread calls it). The other threads are created (and bind themselves) in `init`; none are created
/// later. `run` publishes the closure and bumps a generation counter, runs share 0 itself, then waits
/// for the others. Idle threads spin on that counter for a short while (`spinIterations` atomic
/// loads) and then sleep on a condition variable; the caller does the same while it waits for the
/// last one. Spinners yield the CPU every 64 polls.
///
/// Running share 0 on the caller, rather than on a pool thread while the caller waits, means that on
/// a machine with as many threads as PUs no thread waits on a PU that another one computes on (a
/// spinning caller that shares a PU with a worker steals its cycles, and a sleeping one costs a
/// wake-up per run), and a one-thread pool runs its body inline.
/// A call creates no threads and no Dispatch work; `run(context:function:)` allocates nothing.
///
/// `run` must not be called from two threads at once, nor from inside its own body (both are
/// caught by a precondition). The pool is `@unchecked Sendable` so it can be handed to the thread
/// that drives it.
public final class PinnedThreadPool: @unchecked Sendable {
    /// The PU (OS index) of each thread, by thread index.
    public let pus: [Int]
    /// What the OS answered when each thread bound itself to its PU, by thread index. A refused
    /// binding (common in VMs) is recorded here and the thread runs unbound.
    public let bindings: [BindingOutcome]
    private let state: PoolState
    private var threads: [pthread_t]
    private var isShutDown = false
    private let topology: HwlocTopology
    /// The thread bound to the first PU as thread 0 now, and each calling thread's binding from before
    /// its first `run` (or `init`).
    private var owner: pthread_t
    private var bindingsBefore: [pthread_t: [Int]?]

    /// The number of threads.
    public var threadCount: Int { pus.count }

    /// Starts one thread per entry of `pus` and waits until each has bound itself.
    /// - Parameter spinIterations: how many times an idle thread polls for work before it sleeps.
    /// - Throws: `MachineError.invalidRequest` when `pus` is empty or names a PU the machine does not
    ///   have; `PoolError` when a thread cannot be created.
    public init(pus: [Int], topology: HwlocTopology, spinIterations: Int = 50_000) throws {
        guard !pus.isEmpty else { throw MachineError.invalidRequest("a thread pool needs at least one PU") }
        let known = Set(topology.snapshot().pus)
        if let bad = pus.first(where: { !known.contains($0) }) {
            throw MachineError.invalidRequest(
                "PU \(bad) does not exist; this machine has PUs \(known.sorted().map(String.init).joined(separator: ", "))")
        }
        let state = PoolState(count: pus.count, spinIterations: max(0, spinIterations))
        // Thread 0 is the caller: remember its binding, then bind it to the first PU.
        let callerBinding = topology.currentThreadBinding()
        let caller = try topology.bindCurrentThread(to: [pus[0]])
        var threads: [pthread_t] = []
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setstacksize(&attributes, 8 << 20)
        for (index, pu) in pus.enumerated().dropFirst() {
            let start = WorkerStart(state: state, index: index, pu: pu, topology: topology)
            var thread = pthread_t()
            let context = Unmanaged.passRetained(start).toOpaque()
            let rc = pthread_create(
                &thread, &attributes,
                { raw in
                    let start = Unmanaged<WorkerStart>.fromOpaque(raw!).takeRetainedValue()
                    start.state.workerMain(index: start.index, pu: start.pu, topology: start.topology)
                    return nil
                }, context)
            guard rc == 0 else {
                Unmanaged<WorkerStart>.fromOpaque(context).release()
                state.stop()
                for thread in threads { pthread_join(thread, nil) }
                Self.restore(callerBinding, topology: topology)
                throw PoolError(message: "pthread_create failed: \(String(cString: strerror(rc)))")
            }
            threads.append(thread)
        }
        let outcomes = state.waitForStartup()
        self.pus = pus
        self.state = state
        self.threads = threads
        self.topology = topology
        self.owner = pthread_self()
        self.bindingsBefore = [pthread_self(): callerBinding]
        var bindings = [caller]
        for outcome in outcomes {
            switch outcome {
            case .success(let binding): bindings.append(binding)
            case .failure(let error):
                state.stop()
                for thread in threads { pthread_join(thread, nil) }
                Self.restore(callerBinding, topology: topology)
                self.isShutDown = true
                self.bindings = []
                throw error
            }
        }
        self.bindings = bindings
    }

    deinit {
        shutdown()
    }

    /// Runs `body(threadIndex)` once on every pool thread, concurrently, and returns when all calls
    /// have returned; the calling thread runs index 0. Writes made by `body` are visible to the caller
    /// afterwards.
    ///
    /// Cost: the hand-off itself plus one small heap box that `withoutActuallyEscaping` needs for its
    /// escape check. For the innermost timed loops, `run(context:function:)` allocates nothing.
    public func run(_ body: (Int) -> Void) {
        let state = begin()
        withoutActuallyEscaping(body) { body in
            state.dispatch(closure: body, function: nil, context: nil)
        }
        state.busy.store(false, ordering: .releasing)
    }

    /// Runs `function(context, threadIndex)` once on every pool thread, like `run(_:)`, without any
    /// allocation: a C function pointer (such as a kernel entry point, or a non-capturing Swift
    /// closure) and an opaque argument.
    public func run(
        context: UnsafeMutableRawPointer?,
        function: @convention(c) (UnsafeMutableRawPointer?, Int) -> Void
    ) {
        let state = begin()
        state.dispatch(closure: nil, function: function, context: context)
        state.busy.store(false, ordering: .releasing)
    }

    private func begin() -> PoolState {
        precondition(!isShutDown, "PinnedThreadPool.run after shutdown")
        precondition(
            state.busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged,
            "PinnedThreadPool.run called concurrently or from inside its own body")
        if pthread_equal(owner, pthread_self()) == 0 {
            // A new calling thread becomes thread 0: bind it as the first one was.
            let me = pthread_self()
            if bindingsBefore[me] == nil { bindingsBefore[me] = .some(topology.currentThreadBinding()) }
            _ = try? topology.bindCurrentThread(to: [pus[0]])
            owner = me
        }
        return state
    }

    /// Puts a thread's binding from before the pool back (every PU when it was not known).
    private static func restore(_ binding: [Int]?, topology: HwlocTopology) {
        if let binding, (try? topology.bindCurrentThread(to: binding)) != nil { return }
        topology.unbindCurrentThread()
    }

    /// Stops and joins the threads. Called by `deinit`; calling it twice is harmless.
    public func shutdown() {
        guard !isShutDown else { return }
        isShutDown = true
        state.stop()
        for thread in threads { pthread_join(thread, nil) }
        threads = []
        // The thread that shuts the pool down gets its binding back (other callers keep the first PU).
        if let before = bindingsBefore[pthread_self()] { Self.restore(before, topology: topology) }
    }
}

/// A thread could not be created.
public struct PoolError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var description: String { message }
}

/// What a new thread needs, passed through `pthread_create`'s context pointer.
private final class WorkerStart {
    let state: PoolState
    let index: Int
    let pu: Int
    let topology: HwlocTopology
    init(state: PoolState, index: Int, pu: Int, topology: HwlocTopology) {
        self.state = state
        self.index = index
        self.pu = pu
        self.topology = topology
    }
}

/// The state shared between the pool's owner and its threads.
///
/// Hand-off: `dispatch` stores the job and the count of unfinished threads, then bumps
/// `generation` (sequentially consistent, so it also releases the job). A thread that sees a new
/// generation runs the job and decrements `remaining`; the one that reaches zero wakes the caller if
/// it went to sleep. Sleeping uses the usual flag-then-recheck pattern under a condition variable's
/// lock (`sleepers` / `callerWaiting`), so no wake-up is lost.
private final class PoolState: @unchecked Sendable {
    let count: Int
    let spinIterations: Int
    let generation = Atomic<UInt64>(0)
    let remaining = Atomic<Int>(0)
    let sleepers = Atomic<Int>(0)
    let callerWaiting = Atomic<Bool>(false)
    let stopping = Atomic<Bool>(false)
    let busy = Atomic<Bool>(false)
    let wake = NSCondition()
    let done = NSCondition()
    /// The job of the current `dispatch`: a closure, or a C function and its argument. Written before
    /// the `generation` bump that publishes it.
    var closure: ((Int) -> Void)?
    var function: (@convention(c) (UnsafeMutableRawPointer?, Int) -> Void)?
    var context: UnsafeMutableRawPointer?

    private let startup = NSCondition()
    private var outcomes: [Result<BindingOutcome, any Error>?]  // guarded by startup
    private var started = 0  // guarded by startup

    init(count: Int, spinIterations: Int) {
        self.count = count
        self.spinIterations = spinIterations
        outcomes = Array(repeating: nil, count: count)
    }

    /// The binding outcomes of threads 1 ..< count (thread 0 is the caller), once each has started.
    func waitForStartup() -> [Result<BindingOutcome, any Error>] {
        startup.lock()
        while started < count - 1 { startup.wait() }
        let result = outcomes.dropFirst().map { $0! }
        startup.unlock()
        return result
    }

    // MARK: Owner side

    func dispatch(
        closure: ((Int) -> Void)?, function: (@convention(c) (UnsafeMutableRawPointer?, Int) -> Void)?,
        context: UnsafeMutableRawPointer?
    ) {
        self.closure = closure
        self.function = function
        self.context = context
        defer {
            self.closure = nil
            self.function = nil
            self.context = nil
        }
        guard count > 1 else {
            invoke(0)
            return
        }
        remaining.store(count - 1, ordering: .relaxed)
        generation.wrappingAdd(1, ordering: .sequentiallyConsistent)
        if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
            wake.lock()
            wake.broadcast()
            wake.unlock()
        }
        invoke(0)
        // Spin briefly (the others started when this thread did), then sleep.
        var spins = spinIterations / 8
        while remaining.load(ordering: .acquiring) != 0 {
            if spins > 0 {
                spins -= 1
                if spins & 63 == 0 { sched_yield() }
                continue
            }
            done.lock()
            callerWaiting.store(true, ordering: .sequentiallyConsistent)
            while remaining.load(ordering: .sequentiallyConsistent) != 0 { done.wait() }
            callerWaiting.store(false, ordering: .relaxed)
            done.unlock()
        }
    }

    func stop() {
        stopping.store(true, ordering: .sequentiallyConsistent)
        generation.wrappingAdd(1, ordering: .sequentiallyConsistent)
        wake.lock()
        wake.broadcast()
        wake.unlock()
    }

    // MARK: Thread side

    func workerMain(index: Int, pu: Int, topology: HwlocTopology) {
        let outcome = Result { try topology.bindCurrentThread(to: [pu]) }
        startup.lock()
        outcomes[index] = outcome
        started += 1
        startup.broadcast()
        startup.unlock()

        var seen: UInt64 = 0
        while true {
            var current = generation.load(ordering: .acquiring)
            var spins = spinIterations
            while current == seen {
                if spins > 0 {
                    spins -= 1
                    if spins & 63 == 0 { sched_yield() }
                } else {
                    wake.lock()
                    sleepers.wrappingAdd(1, ordering: .sequentiallyConsistent)
                    while generation.load(ordering: .sequentiallyConsistent) == seen { wake.wait() }
                    sleepers.wrappingSubtract(1, ordering: .sequentiallyConsistent)
                    wake.unlock()
                }
                current = generation.load(ordering: .acquiring)
            }
            seen = current
            if stopping.load(ordering: .acquiring) { return }
            invoke(index)
            if remaining.subtract(1, ordering: .sequentiallyConsistent).newValue == 0,
                callerWaiting.load(ordering: .sequentiallyConsistent)
            {
                done.lock()
                done.signal()
                done.unlock()
            }
        }
    }

    /// Calls the published job. Kept out of line so that the thread's reference to the closure is
    /// released before `remaining` is decremented (the caller's `withoutActuallyEscaping` checks that
    /// nothing kept it).
    @inline(never)
    private func invoke(_ index: Int) {
        if let function {
            function(context, index)
        } else {
            closure.unsafelyUnwrapped(index)
        }
    }
}
