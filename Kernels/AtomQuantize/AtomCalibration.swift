/// Offline calibration of the Atom reorder permutation (KERNELS.md section 3): run calibration tokens
/// through the model, score each input channel of a linear layer by its sum of squares over all
/// tokens, sort ascending. The O largest channels end last, where the quantize kernels keep them in
/// INT8. The permutation lists, for each position, the source channel (`y[j] = x[perm[j]]`).
///
/// Rows can be fed one at a time (or in blocks) as the calibration set streams by; sums are kept in
/// Double so that the order does not depend on how the tokens were split.
public struct AtomCalibration: Sendable, Equatable {
    public let channels: Int
    /// Per-channel sum of x^2 over every row fed so far.
    public private(set) var sumsOfSquares: [Double]
    /// Rows (tokens) fed so far.
    public private(set) var tokens = 0

    public init(channels: Int) {
        precondition(channels > 0, "a calibration needs at least one channel")
        self.channels = channels
        sumsOfSquares = [Double](repeating: 0, count: channels)
    }

    /// Adds one row of `channels` activations.
    public mutating func add(row: some Collection<Float>) {
        precondition(row.count == channels, "a row has \(row.count) values; the calibration has \(channels) channels")
        for (c, v) in zip(0..<channels, row) {
            let d = Double(v)
            sumsOfSquares[c] += d * d
        }
        tokens += 1
    }

    /// Adds rows stored row-major ([T][channels]).
    public mutating func add(rows: [Float]) {
        precondition(rows.count % channels == 0, "\(rows.count) values are not whole rows of \(channels) channels")
        for t in 0..<rows.count / channels { add(row: rows[t * channels..<(t + 1) * channels]) }
    }

    /// The reorder permutation of the rows fed so far.
    public func permutation() -> [Int32] { Self.permutation(sumsOfSquares: sumsOfSquares) }

    /// Channels sorted ascending by sum of squares, ties kept in index order (a stable sort), so the
    /// largest channels end last.
    public static func permutation(sumsOfSquares: [Double]) -> [Int32] {
        precondition(sumsOfSquares.count <= Int(Int32.max), "too many channels for int32 indices")
        return sumsOfSquares.indices
            .sorted { a, b in sumsOfSquares[a] != sumsOfSquares[b] ? sumsOfSquares[a] < sumsOfSquares[b] : a < b }
            .map { Int32($0) }
    }

    /// The permutation of a whole calibration set at once ([T][channels], row-major).
    public static func permutation(rows: [Float], channels: Int) -> [Int32] {
        var calibration = AtomCalibration(channels: channels)
        calibration.add(rows: rows)
        return calibration.permutation()
    }
}
