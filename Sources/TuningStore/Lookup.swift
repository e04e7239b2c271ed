import Foundation
import KernelKit
import Logging

/// Which record a runtime lookup used.
public enum LookupSource: Codable, Sendable, Equatable {
    /// The best trial for exactly this (machine, workload).
    case exact(trialID: Int64)
    /// The best trial of the nearest stored shape of the same family on the same machine, at this
    /// Euclidean distance over log2 of the shape dimensions.
    case nearest(workload: Workload, distance: Double, trialID: Int64)
    /// Nothing tuned for this family on this machine: the caller's analytical default.
    case analyticalDefault
}

/// The configuration a runtime should use for a workload, and where it came from.
public struct LookupResult: Codable, Sendable, Equatable {
    public var configuration: Configuration
    public var source: LookupSource
    /// Set only the first time (per process) a (machine, family) falls back to the default.
    public var warning: String?

    public init(configuration: Configuration, source: LookupSource, warning: String?) {
        self.configuration = configuration
        self.source = source
        self.warning = warning
    }
}

/// The (machine, family) pairs already warned about in this process.
final class FallbackWarnings: @unchecked Sendable {
    static let shared = FallbackWarnings()
    private let lock = NSLock()
    private var seen: Set<String> = []

    /// True the first time `key` is passed.
    func first(_ key: String) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        return seen.insert(key).inserted
    }
}

extension TuningStore {
    /// The configuration to run `workload` with on `machine`:
    /// 1. the best record of exactly this (machine, workload);
    /// 2. else the best record of the nearest stored shape of the same family on the same machine,
    ///    by Euclidean distance over log2 of each dimension (shapes with other dimension names are
    ///    not comparable; ties go to the faster record);
    /// 3. else `fallback()`, with a warning that is logged and returned only the first time per
    ///    (machine, family) in this process.
    public func lookup(machine: String, workload: Workload, fallback: () -> Configuration) throws -> LookupResult {
        if let best = try best(machine: machine, workload: workload) {
            return LookupResult(configuration: best.configuration, source: .exact(trialID: best.trialID), warning: nil)
        }
        var nearest: (best: BestRecord, distance: Double)?
        for candidate in try bests(machine: machine, family: workload.family) {
            guard let distance = Self.logShapeDistance(workload, candidate.workload) else { continue }
            if let current = nearest {
                if distance > current.distance { continue }
                if distance == current.distance, candidate.gops <= current.best.gops { continue }
            }
            nearest = (candidate, distance)
        }
        if let nearest {
            logger.debug(
                "lookup \(workload) on \(machine): using nearest \(nearest.best.workload) (distance \(nearest.distance))")
            return LookupResult(
                configuration: nearest.best.configuration,
                source: .nearest(workload: nearest.best.workload, distance: nearest.distance, trialID: nearest.best.trialID),
                warning: nil)
        }
        var warning: String?
        if FallbackWarnings.shared.first("\(machine)\n\(workload.family)") {
            let text = "no tuned record for \(workload) on machine \(machine); using the analytical default"
            logger.warning("\(text)")
            warning = text
        }
        return LookupResult(configuration: fallback(), source: .analyticalDefault, warning: warning)
    }

    /// Euclidean distance between two shapes over log2 of each dimension; nil when they do not have
    /// the same dimension names or a dimension is not positive.
    public static func logShapeDistance(_ a: Workload, _ b: Workload) -> Double? {
        guard a.family == b.family, Set(a.shape.keys) == Set(b.shape.keys) else { return nil }
        var sum = 0.0
        for (dim, x) in a.shape {
            guard let y = b.shape[dim], x > 0, y > 0 else { return nil }
            let d = log2(Double(x)) - log2(Double(y))
            sum += d * d
        }
        return sum.squareRoot()
    }
}
