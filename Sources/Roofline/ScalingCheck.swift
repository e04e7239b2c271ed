/// A compute ceiling is a peak: the most a core (or several) can do. On a shared machine one reading can
/// land in another tenant's burst; on the development VM a 2-thread int8 ceiling once read no more than
/// the 1-thread one, and the next run nearly twice as much. The cores of a peak-compute run share
/// nothing but the clock, so a t-thread reading far below t times the 1-thread one is suspect: it is
/// measured again, and the highest reading kept.
public enum ScalingCheck {
    /// A t-thread reading below this fraction of t times the 1-thread one is measured again.
    public static let floor = 0.75

    /// Whether `gops` on `threads` threads falls below `floor` of `threads` times `oneThread`.
    public static func isSuspect(_ gops: Double, threads: Int, oneThread: Double) -> Bool {
        threads > 1 && oneThread > 0 && gops < floor * Double(threads) * oneThread
    }

    /// The readings of one ceiling: `first`, then up to `retries` more from `measure` while the highest
    /// so far is suspect (a failed measurement, nil, ends the retries). `kept` is the highest.
    public static func settle(first: Double, threads: Int, oneThread: Double?, retries: Int = 2,
                              measure: () -> Double?) -> (kept: Double, readings: [Double]) {
        var readings = [first]
        guard let oneThread else { return (first, readings) }
        while readings.count <= retries, isSuspect(readings.max()!, threads: threads, oneThread: oneThread) {
            guard let again = measure() else { break }
            readings.append(again)
        }
        return (readings.max()!, readings)
    }
}
