/// A row-major FP32 matrix. Linear weights use PyTorch's layout: `rows` = output features,
/// `cols` = input features, so `y[o] = sum_i W[o, i] * x[i]`.
public struct Matrix: Sendable, Equatable {
    public let rows: Int
    public let cols: Int
    /// `rows * cols` values, row after row.
    public var values: [Float]

    public init(rows: Int, cols: Int, values: [Float]) {
        precondition(rows >= 0 && cols >= 0 && values.count == rows * cols, "a \(rows)x\(cols) matrix needs \(rows * cols) values, got \(values.count)")
        self.rows = rows
        self.cols = cols
        self.values = values
    }

    /// A matrix of zeros.
    public init(rows: Int, cols: Int) {
        self.init(rows: rows, cols: cols, values: [Float](repeating: 0, count: rows * cols))
    }

    /// Row `r`, copied.
    public func row(_ r: Int) -> [Float] { Array(values[(r * cols)..<((r + 1) * cols)]) }

    /// Element (r, c).
    public subscript(r: Int, c: Int) -> Float {
        get { values[r * cols + c] }
        set { values[r * cols + c] = newValue }
    }

    /// The largest |value| (0 for an empty matrix); NaN if any value is NaN.
    public var maxMagnitude: Float {
        var m: Float = 0
        for v in values {
            if v.isNaN { return .nan }
            m = max(m, abs(v))
        }
        return m
    }

    /// Whether every value is finite.
    public var isFinite: Bool { values.allSatisfy(\.isFinite) }
}
