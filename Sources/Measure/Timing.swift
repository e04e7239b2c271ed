import Glibc

/// How long to keep timing a piece of work (see `/work/shared/design/MEASURE.md`): warm up, then
/// sample until at least `minSamples` were taken and the best and third-best samples are within
/// `stableWithin` of each other, or `maxSamples` were taken, or `budget` is spent.
public struct TimingPolicy: Codable, Sendable, Hashable {
    /// Untimed runs before sampling (caches, page faults, branch predictors, frequency ramp-up).
    public var warmup: Int
    public var minSamples: Int
    public var maxSamples: Int
    /// Relative tolerance between the best and the third-best sample: 0.03 is 3%.
    public var stableWithin: Double
    /// Wall time for the whole measurement, warm-up included. At least one sample is always taken.
    public var budget: Duration

    public init(
        warmup: Int = 2, minSamples: Int = 5, maxSamples: Int = 100, stableWithin: Double = 0.03,
        budget: Duration = .seconds(2)
    ) {
        self.warmup = warmup
        self.minSamples = minSamples
        self.maxSamples = maxSamples
        self.stableWithin = stableWithin
        self.budget = budget
    }
}

/// The samples of one measurement and their order statistics, in seconds.
public struct TimingSummary: Codable, Sendable, Hashable {
    /// Every sample, in the order taken.
    public var samples: [Double]
    public var min: Double
    public var median: Double
    /// 20th and 80th percentiles (linear interpolation between the closest ranks).
    public var p20: Double
    public var p80: Double
    public var count: Int
    /// True when there are at least three samples and the third-best is within `stableWithin` of the
    /// best (relative to the best).
    public var stable: Bool

    /// Summarises `samples` (seconds, any order). An empty list gives zeros and `stable == false`.
    public init(samples: [Double], stableWithin: Double = 0.03) {
        self.samples = samples
        let sorted = samples.sorted()
        count = sorted.count
        min = sorted.first ?? 0
        median = Self.percentile(sorted, 0.5)
        p20 = Self.percentile(sorted, 0.2)
        p80 = Self.percentile(sorted, 0.8)
        stable = sorted.count >= 3 && Self.withinTolerance(best: sorted[0], third: sorted[2], stableWithin)
    }

    /// The `q`-quantile of ascending `sorted` by linear interpolation at rank `q * (n - 1)`.
    static func percentile(_ sorted: [Double], _ q: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        let rank = q * Double(sorted.count - 1)
        let low = Int(rank.rounded(.down))
        let high = Swift.min(low + 1, sorted.count - 1)
        let fraction = rank - Double(low)
        return sorted[low] + (sorted[high] - sorted[low]) * fraction
    }

    static func withinTolerance(best: Double, third: Double, _ tolerance: Double) -> Bool {
        third - best <= tolerance * best
    }
}

/// Times closures with `clock_gettime(CLOCK_MONOTONIC)`.
public enum Stopwatch {
    /// Runs `body` per `policy` and summarises the timed runs. Errors from `body` end the measurement.
    /// `beforeSample`, when given, runs before every timed run, outside the timed region (e.g. to
    /// evict the caches for cold timing); its time counts against the budget.
    public static func time(
        _ policy: TimingPolicy, beforeSample: (() -> Void)? = nil, _ body: () throws -> Void
    ) rethrows -> TimingSummary {
        let start = nanoseconds()
        let budget = UInt64(Swift.max(0, seconds(policy.budget)) * 1e9)
        for _ in 0..<Swift.max(0, policy.warmup) { try body() }

        let limit = Swift.max(1, policy.maxSamples)
        var samples: [Double] = []
        samples.reserveCapacity(limit)
        // The three smallest samples so far, ascending.
        var best = (Double.infinity, Double.infinity, Double.infinity)
        while samples.count < limit {
            beforeSample?()
            let t0 = nanoseconds()
            try body()
            let t1 = nanoseconds()
            let sample = Double(t1 &- t0) * 1e-9
            samples.append(sample)
            if sample < best.0 {
                best = (sample, best.0, best.1)
            } else if sample < best.1 {
                best = (best.0, sample, best.1)
            } else if sample < best.2 {
                best.2 = sample
            }
            if samples.count >= policy.minSamples, samples.count >= 3,
                TimingSummary.withinTolerance(best: best.0, third: best.2, policy.stableWithin)
            {
                break
            }
            if t1 &- start >= budget { break }
        }
        return TimingSummary(samples: samples, stableWithin: policy.stableWithin)
    }

    /// Runs `body` `runs` times (at least once) and returns each run's work per nanosecond, ascending;
    /// `body` does the work and returns how much it did. For the probes that time a fixed loop.
    public static func rates(runs: Int, _ body: () -> Double) -> [Double] {
        (0..<max(1, runs)).map { _ in
            let t0 = nanoseconds()
            let work = body()
            let t1 = nanoseconds()
            return work / Double(max(1, t1 &- t0))
        }.sorted()
    }

    /// CLOCK_MONOTONIC in nanoseconds.
    @inline(__always)
    public static func nanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    static func seconds(_ duration: Duration) -> Double {
        let (s, atto) = duration.components
        return Double(s) + Double(atto) * 1e-18
    }
}
