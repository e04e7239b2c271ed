import Foundation
import KernelKit

/// What the tuner knows about one measured point.
public struct Observation: Sendable {
    public var configuration: Configuration
    /// Throughput, or nil when the trial failed (compile error, crash, wrong answer, timeout).
    public var gops: Double?
    /// Hardware counter values per run where the machine has them (e.g. "llc-misses").
    public var counters: [String: Double]

    public init(configuration: Configuration, gops: Double?, counters: [String: Double] = [:]) {
        self.configuration = configuration
        self.gops = gops
        self.counters = counters
    }
}

/// A search strategy proposes the next point to measure, given everything measured so far.
public protocol SearchStrategy {
    var name: String { get }
    /// The next point, never one in `history`; nil when the strategy has nothing left to propose.
    mutating func next(space: SearchSpace, history: [Observation]) -> Configuration?
}

public enum StrategyKind: String, CaseIterable, Sendable, Codable {
    case exhaustive, random, analytical
    case modelGuided = "model-guided"

    public func make(seed: UInt64) -> any SearchStrategy {
        switch self {
        case .exhaustive: return ExhaustiveSearch()
        case .random: return RandomSearch(seed: seed)
        case .analytical: return AnalyticalSearch()
        case .modelGuided: return ModelGuidedSearch(seed: seed)
        }
    }
}

extension Array where Element == Observation {
    var measured: Set<Configuration> { Set(map(\.configuration)) }
}

/// Every valid point, in a fixed order. Refuses spaces too large to list.
public struct ExhaustiveSearch: SearchStrategy {
    public let name = "exhaustive"
    private var queue: [Configuration]?
    private var position = 0

    public init() {}

    public mutating func next(space: SearchSpace, history: [Observation]) -> Configuration? {
        if queue == nil { queue = space.allPoints() ?? [] }
        let seen = history.measured
        while let q = queue, position < q.count {
            let c = q[position]
            position += 1
            if !seen.contains(c) { return c }
        }
        return nil
    }
}

/// Uniformly random valid points.
public struct RandomSearch: SearchStrategy {
    public let name = "random"
    private var rng: SeededGenerator

    public init(seed: UInt64) { rng = SeededGenerator(seed: seed) }

    public mutating func next(space: SearchSpace, history: [Observation]) -> Configuration? {
        let seen = history.measured
        for _ in 0..<1000 {
            guard let c = space.randomPoint(using: &rng) else { return nil }
            if !seen.contains(c) { return c }
        }
        return nil
    }
}

/// The analytical point (BLIS-style, from the topology) and the family's other seeds, then neighbours
/// of the best, best first: a local search that needs no model.
public struct AnalyticalSearch: SearchStrategy {
    public let name = "analytical"
    private var seeds: [Configuration]?

    public init() {}

    public mutating func next(space: SearchSpace, history: [Observation]) -> Configuration? {
        let seen = history.measured
        if seeds == nil { seeds = space.seedPoints }
        if let seed = seeds!.first(where: { !seen.contains($0) }) { return seed }
        // Hill-climb: unmeasured neighbours of the best points so far.
        let ranked = history.filter { $0.gops != nil }.sorted { $0.gops! > $1.gops! }
        for o in ranked.prefix(5) {
            if let n = space.neighbors(of: o.configuration).first(where: { !seen.contains($0) }) { return n }
        }
        // Without a valid analytical point, start from the family's default for the space.
        if history.isEmpty, let fallback = space.project(space.family.defaultConfiguration(isa: space.family.bestTarget(on: space.machine), machine: space.machine)) {
            return fallback
        }
        return nil
    }
}

/// Evolutionary search steered by a cost model trained on the trials so far, seeded by the analytical
/// point and the family's other seeds. Each step breeds candidates from the best points (mutation,
/// crossover) plus a few random ones, and measures the one the model ranks highest, with some
/// exploration. Where the machine counts cache misses, candidates near points with fewer misses per
/// GOP/s are preferred.
public struct ModelGuidedSearch: SearchStrategy {
    public let name = "model-guided"
    private var rng: SeededGenerator
    private var model: CostModel?
    private var seeds: [Configuration]?
    public var candidatesPerStep = 256
    public var exploration = 0.1

    public init(seed: UInt64) { rng = SeededGenerator(seed: seed) }

    public mutating func next(space: SearchSpace, history: [Observation]) -> Configuration? {
        let seen = history.measured
        // 1. The seeds (the analytical point first), then neighbours of the best: cheap, and usually good.
        if seeds == nil { seeds = space.seedPoints }
        if let seed = seeds!.first(where: { !seen.contains($0) }) { return seed }
        let good = history.filter { ($0.gops ?? 0) > 0 }
        if good.count < 4 {
            if let base = good.max(by: { $0.gops! < $1.gops! })?.configuration,
                let n = space.neighbors(of: base).filter({ !seen.contains($0) }).randomElement(using: &rng)
            {
                return n
            }
            return RandomSearch.draw(space: space, seen: seen, rng: &rng)
        }

        // 2. Fit the model and breed candidates from the best points.
        var model = self.model ?? CostModel(parameters: space.free)
        model.fit(good.map { ($0.configuration, $0.gops!) })
        self.model = model
        let elite = good.sorted { $0.gops! > $1.gops! }.prefix(6).map(\.configuration)
        var candidates = Set<Configuration>()
        for _ in 0..<candidatesPerStep {
            let roll = Double.random(in: 0..<1, using: &rng)
            var c: Configuration?
            if roll < 0.6 {
                c = space.mutate(elite.randomElement(using: &rng)!, rate: 0.25, using: &rng)
            } else if roll < 0.85, elite.count > 1 {
                let pair = elite.shuffled(using: &rng).prefix(2)
                c = space.crossover(pair.first!, pair.last!, using: &rng)
            } else {
                c = space.randomPoint(using: &rng, attempts: 200)
            }
            if let c, !seen.contains(c) { candidates.insert(c) }
        }
        for n in elite.prefix(2).flatMap(space.neighbors(of:)) where !seen.contains(n) { candidates.insert(n) }
        guard !candidates.isEmpty else { return RandomSearch.draw(space: space, seen: seen, rng: &rng) }

        let ordered = candidates.sorted { $0.description < $1.description }  // deterministic order
        if Double.random(in: 0..<1, using: &rng) < exploration { return ordered.randomElement(using: &rng) }
        let missPenalty = Self.missPenalty(history)
        return ordered.max { score($0, model, missPenalty) < score($1, model, missPenalty) }
    }

    private func score(_ c: Configuration, _ model: CostModel, _ penalty: [Configuration: Double]) -> Double {
        (model.predict(c) ?? 0) * (1 - Self.nearestPenalty(c, penalty))
    }

    /// The penalty of the measured point that differs from `c` in the fewest parameters.
    static func nearestPenalty(_ c: Configuration, _ penalty: [Configuration: Double]) -> Double {
        guard !penalty.isEmpty else { return 0 }
        func distance(_ a: Configuration, _ b: Configuration) -> Int { a.values.keys.filter { a[$0] != b[$0] }.count }
        return penalty.min { distance(c, $0.key) < distance(c, $1.key) }?.value ?? 0
    }

    /// With hardware counters: points whose measured neighbours miss the last-level cache more per
    /// operation than the best point are mildly penalised (up to 10%). Empty without counters.
    static func missPenalty(_ history: [Observation]) -> [Configuration: Double] {
        let withMisses = history.filter { $0.counters["llc-misses"] != nil && ($0.gops ?? 0) > 0 }
        guard withMisses.count >= 4 else { return [:] }
        let rates = withMisses.map { ($0.configuration, $0.counters["llc-misses"]! / $0.gops!) }
        let lo = rates.map(\.1).min()!, hi = rates.map(\.1).max()!
        guard hi > lo else { return [:] }
        return Dictionary(rates.map { ($0.0, 0.1 * ($0.1 - lo) / (hi - lo)) }, uniquingKeysWith: { a, _ in a })
    }
}

extension RandomSearch {
    static func draw(space: SearchSpace, seen: Set<Configuration>, rng: inout SeededGenerator) -> Configuration? {
        for _ in 0..<500 {
            guard let c = space.randomPoint(using: &rng) else { return nil }
            if !seen.contains(c) { return c }
        }
        return nil
    }
}
