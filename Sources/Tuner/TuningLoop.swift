import Foundation
import KernelKit
import Logging
import Roofline
import Machine
import Pipeline
import Toolchain
import TuningStore

/// Something that measures one point: the real `KernelRunner`, or a fake in tests and replays.
public protocol TrialExecutor: AnyObject {
    /// Identifies the compiler in database keys, e.g. "clang version 21.0.0 (/opt/swift/usr/bin/clang)".
    var compilerIdentity: String { get }
    /// Whether trials are timed cold (caches evicted before every sample).
    var cold: Bool { get }
    func execute(_ family: any KernelFamily, _ workload: Workload, _ config: Configuration) -> TrialResult
}

extension TrialExecutor {
    public var cold: Bool { false }
}

extension KernelRunner: TrialExecutor {
    public var compilerIdentity: String { compiler.identity }

    public func execute(_ family: any KernelFamily, _ workload: Workload, _ config: Configuration) -> TrialResult {
        run(family, workload, config)
    }
}

extension CompilerInfo {
    /// The compiler as it appears in tuning records: family, version line and path.
    public var identity: String { "\(version) (\(path))" }
}

/// One line of progress, for a live status line or a log.
public struct TuneProgress: Sendable {
    public var workload: Workload
    public var strategy: String
    public var trialsDone: Int
    public var trialBudget: Int?
    public var failures: Int
    public var resumed: Int
    public var best: Observation?
    public var elapsed: Duration
    public var timeBudget: Duration?
    public var last: TrialResult?

    /// Estimated time left from the average trial time and the nearest budget.
    public var eta: Duration? {
        var candidates: [Duration] = []
        if let timeBudget { candidates.append(max(.zero, timeBudget - elapsed)) }
        if let trialBudget, trialsDone > 0 {
            candidates.append(elapsed / trialsDone * max(0, trialBudget - trialsDone))
        }
        return candidates.min()
    }
}

/// What a tuning run of one workload did.
public struct TuneSummary: Sendable {
    public var workload: Workload
    public var strategy: String
    public var trials: Int
    public var failures: Int
    /// Points already in the database, reused instead of measured again.
    public var resumed: Int
    public var best: Observation?
    public var stop: StopReason
    public var elapsed: Duration
    /// Best GOP/s so far after each measured trial (a tuning curve).
    public var curve: [Double]
}

/// The tuning loop: a strategy proposes, the executor measures, the store keeps every trial.
public final class Tuner {
    public let executor: TrialExecutor
    public let store: TuningStore?
    public let machine: MachineContext
    public let fingerprint: String
    public var session = UUID().uuidString
    /// Asked between trials; the default is the process's Ctrl-C flag.
    public var shouldStop: @Sendable () -> Bool = { Interrupt.requested }
    private let logger: Logger
    /// The machine's roofline, read from the store once: each stored trial gets its attainment.
    private lazy var ceilings: Ceilings = {
        guard let store, let record = try? store.machine(fingerprint) else { return Ceilings() }
        return Ceilings(flat: record.ceilings ?? [:])
    }()

    public init(executor: TrialExecutor, store: TuningStore?, machine: MachineContext, fingerprint: String, logger: Logger = Logger(label: "lowbit.tuner")) {
        self.executor = executor
        self.store = store
        self.machine = machine
        self.fingerprint = fingerprint
        self.logger = logger
    }

    /// Tunes one workload. Points already stored for this machine, template version, compiler and data
    /// condition (hot or cold, as the executor measures) are loaded first and never measured again;
    /// each new trial is stored as soon as it finishes.
    public func tune(
        family: any KernelFamily, workload: Workload, strategy: inout any SearchStrategy, budget: Budget,
        fixed: [String: ParamValue] = [:], restricted: [String: [ParamValue]] = [:], progress: ((TuneProgress) -> Void)? = nil
    ) throws -> TuneSummary {
        try family.checkShape(workload)
        let space = SearchSpace(family: family, workload: workload, machine: machine, fixed: fixed, restricted: restricted)
        var history = try resumedObservations(family: family, workload: workload)
        let resumed = history.count
        let clock = ContinuousClock()
        let start = clock.now
        var trials = 0, failures = 0, sinceImprovement = 0
        var best = history.filter { $0.gops != nil }.max { $0.gops! < $1.gops! }
        var curve: [Double] = []
        var stop = StopReason.exhausted
        if resumed > 0 { logger.info("\(workload): \(resumed) points already measured; resuming") }
        // After a template change the stored best of the older code is the first point measured: the
        // search then starts from what was fastest before instead of losing it to a short budget.
        var carried = try carriedBest(family: family, workload: workload, space: space, history: history)
        if let carried { logger.info("\(workload): measuring the best configuration of the older template first: \(carried)") }

        while true {
            if shouldStop() { stop = .interrupted; break }
            if let max = budget.maxTrials, trials >= max { stop = .trials; break }
            if let max = budget.maxTime, clock.now - start >= max { stop = .time; break }
            if let patience = budget.patience, sinceImprovement >= patience { stop = .patience; break }
            let proposal = carried ?? strategy.next(space: space, history: history)
            carried = nil
            guard let config = proposal else { stop = .exhausted; break }

            let result = executor.execute(family, workload, config)
            trials += 1
            if !result.succeeded { failures += 1 }
            let observation = Observation(
                configuration: config, gops: result.succeeded ? result.gops : nil, counters: Self.counterValues(result))
            history.append(observation)
            if let g = observation.gops, g > (best?.gops ?? 0) {
                best = observation
                sinceImprovement = 0
            } else {
                sinceImprovement += 1
            }
            curve.append(best?.gops ?? 0)
            if let store {
                _ = try store.insert(record(result, strategy: strategy.name, family: family))
            }
            progress?(
                TuneProgress(
                    workload: workload, strategy: strategy.name, trialsDone: trials, trialBudget: budget.maxTrials,
                    failures: failures, resumed: resumed, best: best, elapsed: clock.now - start,
                    timeBudget: budget.maxTime, last: result))
        }
        return TuneSummary(
            workload: workload, strategy: strategy.name, trials: trials, failures: failures, resumed: resumed, best: best,
            stop: stop, elapsed: clock.now - start, curve: curve)
    }

    /// The stored best of (machine, workload) when it was measured with an older template version, its
    /// configuration is in this run's space, and this version has not measured it yet.
    func carriedBest(family: any KernelFamily, workload: Workload, space: SearchSpace, history: [Observation]) throws -> Configuration? {
        guard let store, let best = try store.best(machine: fingerprint, workload: workload),
              best.templateVersion < family.templateVersion
        else { return nil }
        // Parameters the newer version added take their defaults (the older code's behaviour).
        let config = family.completing(best.configuration)
        guard space.isValid(config), !history.contains(where: { $0.configuration == config }) else { return nil }
        return config
    }

    /// Stored trials of this (machine, workload, template version, compiler, data condition), as
    /// observations: a hot timing says nothing about the same point timed cold, and the other way round
    /// (a failure, which was never timed, counts for both).
    func resumedObservations(family: any KernelFamily, workload: Workload) throws -> [Observation] {
        guard let store else { return [] }
        return try store.trials(machine: fingerprint, workload: workload)
            .filter {
                $0.templateVersion == family.templateVersion && $0.compiler == executor.compilerIdentity
                    && (!$0.succeeded || $0.isCold == executor.cold)
            }
            .map { Observation(configuration: $0.configuration, gops: $0.succeeded ? $0.gops : nil, counters: Self.counterValues($0.counters)) }
    }

    func record(_ r: TrialResult, strategy: String, family: any KernelFamily) -> TrialRecord {
        let attainment = r.gops.flatMap { gops in
            Attainment.of(
                family: r.family, workload: r.workload, config: r.configuration, achieved: gops,
                usefulOps: family.usefulOps(r.workload, r.configuration), ceilings: ceilings, topology: machine.topology,
                cold: TrialRecord.isCold(r.dataState))
        }
        return TrialRecord(
            machine: fingerprint, family: r.family, workload: r.workload, configuration: r.configuration,
            templateVersion: r.templateVersion, variant: r.variant, compiler: executor.compilerIdentity, flags: r.flags,
            status: r.status.rawValue, stage: r.stage, message: r.message, timing: r.timing, gops: r.gops,
            counters: r.counters, bindingsHonoured: r.bindings.isEmpty ? nil : r.bindings.allSatisfy(\.honoured),
            dataState: r.dataState, strategy: strategy, session: session, attainment: attainment?.fraction,
            binding: attainment?.binding)
    }

    static func counterValues(_ r: TrialResult) -> [String: Double] { counterValues(r.counters) }

    static func counterValues(_ values: [CounterValue]) -> [String: Double] {
        Dictionary(values.compactMap { v in v.value.map { (v.event, Double($0)) } }, uniquingKeysWith: { a, _ in a })
    }
}
