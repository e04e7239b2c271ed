import Foundation
import KernelKit

/// The valid points of a family for one workload on one machine: the product of the parameter
/// domains (with some parameters fixed), filtered by the family's constraints. Spaces are usually far
/// too large to list, so points are drawn, mutated and checked one at a time.
public struct SearchSpace: Sendable {
    public let family: any KernelFamily
    public let workload: Workload
    public let machine: MachineContext
    /// Parameters held at one value (e.g. threads from the command line).
    public let fixed: [String: ParamValue]
    /// Parameters restricted to a subset of their domain (e.g. for a space small enough to measure
    /// exhaustively).
    public let restricted: [String: [ParamValue]]

    public init(
        family: any KernelFamily, workload: Workload, machine: MachineContext, fixed: [String: ParamValue] = [:],
        restricted: [String: [ParamValue]] = [:]
    ) {
        self.family = family
        self.workload = workload
        self.machine = machine
        // What the workload decides is never searched.
        self.fixed = fixed.merging(family.workloadParameters(workload)) { _, workloads in workloads }
        self.restricted = restricted
    }

    /// The parameters that vary, with their (possibly restricted) values.
    public var free: [ParameterSpec] {
        family.parameters.filter { fixed[$0.name] == nil }.map { p in
            guard let values = restricted[p.name] else { return p }
            var q = p
            q.domain = Self.domain(values, like: p.domain)
            return q
        }
    }

    private static func domain(_ values: [ParamValue], like original: ParameterDomain) -> ParameterDomain {
        switch original {
        case .ints: return .ints(values.compactMap { if case .int(let v) = $0 { v } else { nil } })
        case .names: return .names(values.map(\.description))
        }
    }

    /// The size of the unconstrained product (an upper bound on the valid points).
    public var productSize: Double { free.reduce(1) { $0 * Double($1.domain.values.count) } }

    public func isValid(_ config: Configuration) -> Bool {
        for (name, value) in fixed where config[name] != value { return false }
        for (name, values) in restricted where !(config[name].map(values.contains) ?? false) { return false }
        return (try? family.check(config, machine: machine)) != nil
    }

    /// Why a configuration is not in the space, or nil.
    public func violation(_ config: Configuration) -> String? {
        for (name, value) in fixed where config[name] != value { return "\(name) is fixed at \(value)" }
        do {
            try family.check(config, machine: machine)
            return nil
        } catch {
            return "\(error)"
        }
    }

    /// `config` moved into the space: fixed values set, every other parameter moved to the nearest
    /// allowed value (by log distance for integers). Nil when the result breaks a constraint.
    public func project(_ config: Configuration) -> Configuration? {
        var c = config
        for (name, value) in fixed { c[name] = value }
        for p in free {
            let values = p.domain.values
            guard let current = c[p.name] else {
                c[p.name] = values.first
                continue
            }
            if values.contains(current) { continue }
            if case .int(let v) = current {
                c[p.name] = values.min { a, b in
                    guard case .int(let x) = a, case .int(let y) = b else { return false }
                    return abs(log2(Double(max(x, 1))) - log2(Double(max(v, 1)))) < abs(log2(Double(max(y, 1))) - log2(Double(max(v, 1))))
                }
            } else {
                c[p.name] = values.first
            }
        }
        return isValid(c) ? c : nil
    }

    /// The family's analytical point for this workload, moved into the space.
    public var analyticalPoint: Configuration? {
        project(family.analyticalConfiguration(for: workload, machine: machine))
    }

    /// The family's search seeds (`KernelFamily.searchSeeds`, the analytical configuration first) moved
    /// into the space, in order, without repeats.
    public var seedPoints: [Configuration] {
        var points: [Configuration] = []
        for c in family.searchSeeds(for: workload, machine: machine).compactMap(project) where !points.contains(c) {
            points.append(c)
        }
        return points
    }

    /// A uniformly drawn valid point (rejection sampling), or nil after `attempts` invalid draws.
    public func randomPoint<G: RandomNumberGenerator>(using rng: inout G, attempts: Int = 20_000) -> Configuration? {
        for _ in 0..<attempts {
            var c = Configuration(fixed)
            for p in free { c[p.name] = p.domain.values.randomElement(using: &rng)! }
            if isValid(c) { return c }
        }
        return nil
    }

    /// Every valid point, or nil when the product exceeds `limit` (use a sampling strategy then).
    public func allPoints(limit: Int = 200_000) -> [Configuration]? {
        guard productSize <= Double(limit) else { return nil }
        var points = [Configuration(fixed)]
        for p in free {
            points = points.flatMap { base in p.domain.values.map { v in var c = base; c[p.name] = v; return c } }
        }
        return points.filter(isValid)
    }

    /// Valid points one step away: one parameter moved to an adjacent value of its domain (or any other
    /// value, for names).
    public func neighbors(of config: Configuration) -> [Configuration] {
        var result: [Configuration] = []
        for p in free {
            let values = p.domain.values
            guard let current = config[p.name], let i = values.firstIndex(of: current) else { continue }
            let candidates: [ParamValue]
            switch p.domain {
            case .ints: candidates = [i - 1, i + 1].filter { values.indices.contains($0) }.map { values[$0] }
            case .names: candidates = values.filter { $0 != current }
            }
            for v in candidates {
                var c = config
                c[p.name] = v
                if isValid(c) { result.append(c) }
            }
        }
        return result
    }

    /// A random valid point a few steps from `config`: each free parameter moves with probability `rate`.
    public func mutate<G: RandomNumberGenerator>(_ config: Configuration, rate: Double, using rng: inout G, attempts: Int = 50) -> Configuration? {
        for _ in 0..<attempts {
            var c = config
            var changed = false
            for p in free where Double.random(in: 0..<1, using: &rng) < rate {
                let values = p.domain.values
                guard let current = c[p.name], let i = values.firstIndex(of: current) else { continue }
                switch p.domain {
                case .ints:
                    let step = Bool.random(using: &rng) ? 1 : -1
                    let j = i + step * Int.random(in: 1...2, using: &rng)
                    if values.indices.contains(j) { c[p.name] = values[j]; changed = true }
                case .names:
                    c[p.name] = values.randomElement(using: &rng)!
                    changed = changed || c[p.name] != current
                }
            }
            if changed, isValid(c) { return c }
        }
        return nil
    }

    /// A child taking each parameter from one parent or the other.
    public func crossover<G: RandomNumberGenerator>(_ a: Configuration, _ b: Configuration, using rng: inout G) -> Configuration? {
        for _ in 0..<20 {
            var c = a
            for p in free where Bool.random(using: &rng) { c[p.name] = b[p.name] }
            if isValid(c) { return c }
        }
        return nil
    }
}
