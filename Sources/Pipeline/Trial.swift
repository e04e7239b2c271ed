import Foundation
import KernelKit
import Machine
import Measure
import Toolchain

/// The outcome of building, verifying and timing one point of a family: failures are data.
public struct TrialResult: Codable, Sendable {
    public enum Status: String, Codable, Sendable, CaseIterable {
        case ok
        /// The configuration or shape breaks a rule (checked before compiling).
        case rejected
        /// The target's instructions are not usable on this machine.
        case unsupported
        case compileError = "compile-error"
        case loadError = "load-error"
        case verifyFailed = "verify-failed"
        case crashed
        case timeout
    }

    public var status: Status
    /// Where it stopped: check, compile, load, prepare, run, verify, time.
    public var stage: String
    public var message: String?

    public var family: String
    public var workload: Workload
    public var configuration: Configuration
    public var templateVersion: Int
    public var variant: String?
    public var isa: ISATarget?
    public var compiler: CompilerInfo?
    public var flags: [String] = []
    public var cacheKey: String?
    public var fromCache: Bool?
    public var compileSeconds: Double?

    public var verification: Verification?
    public var timing: TimingSummary?
    /// Useful operations per second at the minimum time, in 10^9.
    public var gops: Double?
    public var counters: [CounterValue] = []
    /// How each worker thread's binding went.
    public var bindings: [BindingOutcome] = []
    /// What was hot or cold in the timed region.
    public var dataState: String?

    public var succeeded: Bool { status == .ok }

    public init(
        status: Status, stage: String, message: String? = nil, family: String, workload: Workload,
        configuration: Configuration, templateVersion: Int
    ) {
        self.status = status
        self.stage = stage
        self.message = message
        self.family = family
        self.workload = workload
        self.configuration = configuration
        self.templateVersion = templateVersion
    }
}

/// The request the parent sends to a worker process.
struct WorkerTrialRequest: Codable {
    var family: String
    var workload: Workload
    var configuration: Configuration
    var library: String
    var seed: UInt64
    var policy: TimingPolicy
    var pus: [Int]
    /// Read counters on every thread around the timed region.
    var count: Bool
    var verifyOnly: Bool
    /// Evict the caches before every timed run (cold data) instead of reusing them (hot data).
    var cold: Bool = false
}

/// The worker's answer.
struct WorkerTrialReply: Codable {
    var status: TrialResult.Status
    var stage: String
    var message: String?
    var verification: Verification?
    var timing: TimingSummary?
    var counters: [CounterValue]
    var bindings: [BindingOutcome]
    var dataState: String?
}

/// Markers the worker writes to standard error as it goes, so a parent that had to kill it can tell
/// which stage hung or crashed.
enum WorkerStage {
    static let prefix = "lowbit-worker stage: "

    static func enter(_ stage: String) {
        FileHandle.standardError.write(Data("\(prefix)\(stage)\n".utf8))
    }

    /// The last stage named in a worker's standard error.
    static func last(in stderr: String) -> String? {
        stderr.components(separatedBy: "\n").last { $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)) }
    }
}
