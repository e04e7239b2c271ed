import Foundation
import KernelKit
import Machine
import Measure

/// One measured (or failed) point, as the tuning database stores it.
///
/// Failures are data: a trial that did not compile, verify or finish is stored with its `status`,
/// `stage` and `message`, so the same point is never tried again for the same build (see `pointKey`).
public struct TrialRecord: Codable, Sendable, Equatable {
    /// The row id; nil until stored.
    public var id: Int64?
    /// The machine fingerprint id (`MachineFingerprint.id`).
    public var machine: String
    public var family: String
    public var workload: Workload
    public var configuration: Configuration
    public var templateVersion: Int
    /// The family's name for the generated code path (e.g. the ISA target), when it has one.
    public var variant: String?
    /// Compiler identity, e.g. `clang 21.0.0 /opt/swift/usr/bin/clang`.
    public var compiler: String
    public var flags: [String]
    /// `ok`, `rejected`, `unsupported`, `compile-error`, `load-error`, `verify-failed`, `crashed` or
    /// `timeout` (the raw values of `TrialResult.Status`).
    public var status: String
    /// Where the trial stopped: check, compile, load, prepare, run, verify, time (or `import`).
    public var stage: String
    public var message: String?
    public var timing: TimingSummary?
    /// Useful operations per second at the minimum time, in 10^9.
    public var gops: Double?
    public var counters: [CounterValue]
    /// Whether every worker thread's binding held; nil when not known.
    public var bindingsHonoured: Bool?
    /// What was hot or cold in the timed region.
    public var dataState: String?
    /// The search strategy that proposed this point (`import` for imported records).
    public var strategy: String?
    /// The tuning run that measured it.
    public var session: String?
    public var createdAt: Date
    /// Achieved GOP/s over the roofline bound min(compute ceiling, bandwidth ceiling x intensity),
    /// when the machine's ceilings were known at the time (schema v2).
    public var attainment: Double?
    /// The ceiling that binds, e.g. "compute: int8-dot avx512-vnni" or "bandwidth: L2 read".
    public var binding: String?

    public init(
        id: Int64? = nil, machine: String, family: String? = nil, workload: Workload, configuration: Configuration,
        templateVersion: Int, variant: String? = nil, compiler: String, flags: [String] = [], status: String,
        stage: String, message: String? = nil, timing: TimingSummary? = nil, gops: Double? = nil,
        counters: [CounterValue] = [], bindingsHonoured: Bool? = nil, dataState: String? = nil,
        strategy: String? = nil, session: String? = nil, createdAt: Date = Date(), attainment: Double? = nil,
        binding: String? = nil
    ) {
        self.id = id
        self.machine = machine
        self.family = family ?? workload.family
        self.workload = workload
        self.configuration = configuration
        self.templateVersion = templateVersion
        self.variant = variant
        self.compiler = compiler
        self.flags = flags
        self.status = status
        self.stage = stage
        self.message = message
        self.timing = timing
        self.gops = gops
        self.counters = counters
        self.bindingsHonoured = bindingsHonoured
        self.dataState = dataState
        self.strategy = strategy
        self.session = session
        self.createdAt = createdAt
        self.attainment = attainment
        self.binding = binding
    }

    /// True for a trial that verified and was timed.
    public var succeeded: Bool { status == "ok" }

    /// The identity of "the same point": machine, workload, template version, compiler, flags and
    /// configuration, as canonical text (one `name=value` line each). Stored verbatim in a UNIQUE
    /// column: a point with the same key is never stored (or measured) twice.
    public var pointKey: String {
        Self.pointKey(
            machine: machine, workload: workload, templateVersion: templateVersion, compiler: compiler, flags: flags,
            configuration: configuration)
    }

    /// `pointKey` for values that are not (yet) a record.
    public static func pointKey(
        machine: String, workload: Workload, templateVersion: Int, compiler: String, flags: [String],
        configuration: Configuration
    ) -> String {
        [
            "machine=\(machine)",
            "workload=\(workload.description)",
            "template=\(templateVersion)",
            "compiler=\(compiler)",
            "flags=\(flags.joined(separator: " "))",
            "configuration=\(configuration.description)",
        ].joined(separator: "\n")
    }
}

/// The best measured trial for one (machine, workload): the fastest `ok` trial by GOP/s.
public struct BestRecord: Codable, Sendable, Equatable {
    public var machine: String
    public var workload: Workload
    public var family: String
    public var trialID: Int64
    public var configuration: Configuration
    public var templateVersion: Int
    public var variant: String?
    public var gops: Double
    /// `timing.min`, in seconds.
    public var minSeconds: Double?
    /// `timing.median`, in seconds.
    public var medianSeconds: Double?
    /// The number of timed samples.
    public var samples: Int?
    /// The full timing summary of the trial.
    public var timing: TimingSummary?
    public var compiler: String
    public var flags: [String]
    public var dataState: String?
    public var strategy: String?
    /// The trial's roofline attainment and binding ceiling, when stored (schema v2).
    public var attainment: Double? = nil
    public var binding: String? = nil
    /// When the trial was measured (`TrialRecord.createdAt`).
    public var measuredAt: Date
}

/// A machine the database has seen.
public struct MachineRecord: Codable, Sendable, Equatable {
    public var fingerprint: String
    public var description: MachineDescription
    /// Measured roofline ceilings by name (e.g. `int8-gops`, `dram-gbps`), when known.
    public var ceilings: [String: Double]?
    public var firstSeen: Date
    public var lastSeen: Date

    public init(
        fingerprint: String, description: MachineDescription, ceilings: [String: Double]?, firstSeen: Date,
        lastSeen: Date
    ) {
        self.fingerprint = fingerprint
        self.description = description
        self.ceilings = ceilings
        self.firstSeen = firstSeen
        self.lastSeen = lastSeen
    }
}
