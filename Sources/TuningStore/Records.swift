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

    /// Whether the data were cold in the timed region (the caches evicted before every sample): the
    /// `dataState` text of a cold measurement starts with "cold".
    public var isCold: Bool { Self.isCold(dataState) }

    public static func isCold(_ dataState: String?) -> Bool { dataState?.hasPrefix("cold") ?? false }

    /// The identity of "the same point": machine, workload, template version, compiler, flags,
    /// configuration and, for a cold measurement, the line `data=cold`, as canonical text (one
    /// `name=value` line each). Stored verbatim in a UNIQUE column: a point with the same key is never
    /// stored (or measured) twice. A hot and a cold measurement of one configuration are two points:
    /// they time different things.
    public var pointKey: String {
        Self.pointKey(
            machine: machine, workload: workload, templateVersion: templateVersion, compiler: compiler, flags: flags,
            configuration: configuration, cold: isCold)
    }

    /// `pointKey` for values that are not (yet) a record.
    public static func pointKey(
        machine: String, workload: Workload, templateVersion: Int, compiler: String, flags: [String],
        configuration: Configuration, cold: Bool = false
    ) -> String {
        ([
            "machine=\(machine)",
            "workload=\(workload.description)",
            "template=\(templateVersion)",
            "compiler=\(compiler)",
            "flags=\(flags.joined(separator: " "))",
            "configuration=\(configuration.description)",
        ] + (cold ? [Self.coldPointLine] : [])).joined(separator: "\n")
    }

    /// The line a cold measurement's `pointKey` ends with.
    static let coldPointLine = "data=cold"
}

/// How the best record of a (machine, workload) is chosen among its `ok` trials: the greater rank
/// wins, compared in this order:
/// 1. the newer template version (the older generated code is gone);
/// 2. cold over hot: a workload measured with the caches evicted is measured as it runs when its data
///    stream from memory (the decode GEMMs of a model whose layers do not fit in cache); a hot timing
///    of the same workload answers another question, and is not allowed to outrank it;
/// 3. the higher GOP/s.
/// A trial replaces the stored best only when its rank is strictly greater.
public struct BestRank: Comparable, Sendable {
    public var templateVersion: Int
    public var cold: Bool
    public var gops: Double

    public init(templateVersion: Int, cold: Bool, gops: Double) {
        self.templateVersion = templateVersion
        self.cold = cold
        self.gops = gops
    }

    public init(_ trial: TrialRecord) {
        self.init(templateVersion: trial.templateVersion, cold: trial.isCold, gops: trial.gops ?? 0)
    }

    public static func < (a: BestRank, b: BestRank) -> Bool {
        if a.templateVersion != b.templateVersion { return a.templateVersion < b.templateVersion }
        if a.cold != b.cold { return !a.cold }
        return a.gops < b.gops
    }

    /// What besides GOP/s decided between `self` (named `name`) and a record of rank `other` (named
    /// `otherName`), in words; nil when both are of one template version and one data condition.
    public func contrast(with other: BestRank, _ name: String, _ otherName: String) -> String? {
        if templateVersion != other.templateVersion {
            return "\(name) is of template version \(templateVersion), \(otherName) of \(other.templateVersion)"
        }
        if cold != other.cold { return "\(name) was measured \(cold ? "cold" : "hot"), \(otherName) \(other.cold ? "cold" : "hot")" }
        return nil
    }
}

/// The best measured trial for one (machine, workload): the `ok` trial of the greatest `BestRank`.
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
