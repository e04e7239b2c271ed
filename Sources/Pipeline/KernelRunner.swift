import Foundation
import KernelKit
import Kernels
import Logging
import Machine
import Measure
import Toolchain

/// Runs points of kernel families: check -> render -> compile (cached) -> isolated worker (verify, time,
/// count). A variant that fails anywhere becomes a `TrialResult` with its stage and message; the runner
/// replaces a dead worker and carries on.
public final class KernelRunner {
    public let machine: MachineDescription
    public let compiler: CompilerInfo
    public let cache: ArtifactCache
    public var policy: TimingPolicy
    public var timeLimit: TimeLimit
    /// Read counters on every thread around the timed region.
    public var countEvents = true
    /// Time with cold caches: every sample starts after the worker threads read a buffer twice the
    /// size of the caches, so inputs and outputs come from memory (see `CacheEvictor`).
    public var cold = false
    private let worker: WorkerProcess
    private let logger: Logger
    /// Fastest time per run seen so far per workload, for time limits.
    private var bestSeen: [Workload: Double] = [:]

    /// - Parameter workerExecutable: the `lowbit` binary (run as `lowbit worker`).
    public init(
        machine: MachineDescription, workerExecutable: URL, compiler: CompilerInfo? = nil, cache: ArtifactCache = ArtifactCache(),
        policy: TimingPolicy = TimingPolicy(), timeLimit: TimeLimit = TimeLimit(), logger: Logger = Logger(label: "lowbit.runner")
    ) throws {
        self.machine = machine
        self.compiler = try compiler ?? CompilerDiscovery.discover()
        self.cache = cache
        self.policy = policy
        self.timeLimit = timeLimit
        self.logger = logger
        worker = WorkerProcess(executable: workerExecutable, arguments: ["worker"])
    }

    deinit { worker.shutdown() }

    /// Times the worker process was replaced after a crash or timeout.
    public var workerRestarts: Int { worker.restarts }

    /// The path of the running `lowbit` executable, for spawning workers.
    public static var currentExecutable: URL {
        URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0])
    }

    public func run(_ family: any KernelFamily, _ workload: Workload, _ config: Configuration, seed: UInt64 = 1, verifyOnly: Bool = false) -> TrialResult {
        var result = TrialResult(
            status: .ok, stage: "check", family: family.name, workload: workload, configuration: config,
            templateVersion: family.templateVersion)
        let context = MachineContext(machine)
        do {
            try family.checkShape(workload)
            try family.check(config, machine: nil)
        } catch {
            return failed(result, .rejected, "check", "\(error)")
        }
        for (name, value) in family.workloadParameters(workload).sorted(by: { $0.key < $1.key }) where config[name] != value {
            return failed(result, .rejected, "check", "workload-parameters: \(workload) fixes \(name)=\(value), the configuration has \(name)=\(config[name].map { "\($0)" } ?? "nothing")")
        }
        // An ISA this machine cannot execute is "unsupported", not merely rejected.
        if let isaName = config["isa"]?.description, let isa = ISATarget(rawValue: isaName) {
            result.isa = isa
            if let why = isa.missingFeatures(on: machine.isa) {
                return failed(result, .unsupported, "check", why)
            }
        }
        do {
            try family.check(config, machine: context)
        } catch {
            return failed(result, .rejected, "check", "\(error)")
        }

        // Render and compile.
        let source: KernelSource
        do {
            source = try family.render(config)
        } catch {
            return failed(result, .rejected, "render", "\(error)")
        }
        result.variant = source.name
        result.isa = source.isa
        let job = CompileJob(name: source.name, source: source.code, flags: source.isa.compilerFlags, compiler: compiler)
        result.compiler = compiler
        result.flags = CompileJob.baseFlags + job.flags
        result.cacheKey = job.cacheKey
        let artifact: Artifact
        do {
            artifact = try cache.artifact(for: job)
        } catch let failure as CompileFailure {
            return failed(result, .compileError, "compile", failure.stderr.isEmpty ? "\(failure)" : failure.stderr)
        } catch {
            return failed(result, .compileError, "compile", "\(error)")
        }
        result.fromCache = artifact.fromCache
        result.compileSeconds = artifact.compileSeconds
        if let reason = artifact.rebuildReason { logger.notice("rebuilt \(source.name): \(reason)") }

        // Verify, time and count in the worker.
        let placement = ThreadPlacement(rawValue: config["placement"]?.description ?? "scatter") ?? .scatter
        let threads = config["threads"].flatMap { if case .int(let t) = $0 { t } else { nil } } ?? 1
        let request = WorkerTrialRequest(
            family: family.name, workload: workload, configuration: config, library: artifact.path.path, seed: seed,
            policy: policy, pus: placement.pus(count: threads, topology: machine.topology), count: countEvents,
            verifyOnly: verifyOnly, cold: cold)
        let payload: Data
        do {
            payload = try JSONEncoder().encode(request)
        } catch {
            return failed(result, .loadError, "encode", "\(error)")
        }
        let limit = callLimit(family, workload, config, verifyOnly: verifyOnly)
        logger.debug("trial \(source.name) on \(workload): limit \(limit)")
        switch worker.call(payload, timeout: limit) {
        case .reply(let data):
            guard let reply = try? JSONDecoder().decode(WorkerTrialReply.self, from: data) else {
                return failed(result, .crashed, "reply", "the worker's reply could not be decoded")
            }
            result.status = reply.status
            result.stage = reply.stage
            result.message = reply.message
            result.verification = reply.verification
            result.timing = reply.timing
            result.counters = reply.counters
            result.bindings = reply.bindings
            result.dataState = reply.dataState
            if let timing = reply.timing, timing.min > 0 {
                result.gops = family.usefulOps(workload, config) / timing.min / 1e9
                bestSeen[workload] = min(bestSeen[workload] ?? .infinity, timing.min)
            }
            return result
        case .failed(let message):
            return failed(result, .loadError, "worker", message)
        case let .crashed(signal, name, stderrTail):
            let stage = WorkerStage.last(in: stderrTail) ?? "unknown"
            return failed(result, .crashed, stage, "the variant died of \(name) (signal \(signal)) during \(stage)")
        case let .exited(status, stderrTail):
            let stage = WorkerStage.last(in: stderrTail) ?? "unknown"
            return failed(result, .crashed, stage, "the worker exited with status \(status) during \(stage)")
        case let .timedOut(after, stderrTail):
            let stage = WorkerStage.last(in: stderrTail) ?? "unknown"
            return failed(result, .timeout, stage, "no answer after \(after) (during \(stage)); the worker was killed and replaced")
        }
    }

    /// The limit for one worker call: verification (reference included) plus timing, where a run may
    /// take `factor` x the best time seen for this workload, and never less than the floor. A call that
    /// only verifies runs the kernel once: it is allowed two runs (the second for making the inputs and
    /// packing them), not the timing's samples, so a hang is reported in seconds rather than minutes.
    func callLimit(_ family: any KernelFamily, _ workload: Workload, _ config: Configuration, verifyOnly: Bool = false) -> Duration {
        // The Swift reference does at least ~0.2 G useful ops per second even in debug builds.
        let referenceSeconds = family.usefulOps(workload, config) / 0.2e9
        let perRun = timeLimit.limit(bestSeen: bestSeen[workload].map { Duration.seconds($0) })
        if verifyOnly { return .seconds(referenceSeconds) + perRun * 2 }
        let runs = Double(policy.warmup + policy.minSamples + 1)
        // A cold sample first reads the eviction buffer (a few hundred MiB at worst, at >= 1 GB/s).
        let eviction: Duration = cold ? .seconds(Double(policy.minSamples + 1) * 0.3) : .zero
        return .seconds(referenceSeconds) + policy.budget + perRun * runs + eviction
    }

    private func failed(_ base: TrialResult, _ status: TrialResult.Status, _ stage: String, _ message: String) -> TrialResult {
        var r = base
        r.status = status
        r.stage = stage
        r.message = message
        logger.info("\(base.family) \(base.configuration): \(status.rawValue) at \(stage): \(message)")
        return r
    }
}
