import Foundation
import KernelKit

/// A cost model over configurations: ridge regression of log(GOP/s) on the parameters (log2 of
/// integers, one-hot names) with their squares and pairwise products, so it can represent an optimum
/// inside the space and interactions such as mr x nr. Small, deterministic, refit after every trial.
public struct CostModel: Sendable {
    let parameters: [ParameterSpec]
    private var weights: [Double] = []
    private var featureMeans: [Double] = []
    private var featureScales: [Double] = []
    public private(set) var trainedOn = 0

    public init(parameters: [ParameterSpec]) { self.parameters = parameters }

    /// Base features: one per integer parameter, one per value of each name parameter.
    func baseFeatures(_ c: Configuration) -> [Double] {
        var f: [Double] = []
        for p in parameters {
            switch p.domain {
            case .ints(let values):
                guard values.count > 1 else { continue }
                if case .int(let v)? = c[p.name] { f.append(log2(Double(max(v, 1)))) } else { f.append(0) }
            case .names(let values):
                guard values.count > 1 else { continue }
                for name in values { f.append(c[p.name] == .name(name) ? 1 : 0) }
            }
        }
        return f
    }

    func features(_ c: Configuration) -> [Double] {
        let base = baseFeatures(c)
        var f = [1.0] + base
        for i in base.indices {
            for j in i..<base.count { f.append(base[i] * base[j]) }
        }
        return f
    }

    /// Fits on (configuration, GOP/s) pairs with positive throughput.
    public mutating func fit(_ samples: [(Configuration, Double)], ridge: Double = 0.05) {
        let data = samples.filter { $0.1 > 0 }
        trainedOn = data.count
        guard data.count >= 2 else {
            weights = []
            return
        }
        let rows = data.map { features($0.0) }
        let y = data.map { log($0.1) }
        let width = rows[0].count
        // Standardise features (not the intercept) so one ridge strength suits them all.
        featureMeans = (0..<width).map { j in j == 0 ? 0 : rows.reduce(0) { $0 + $1[j] } / Double(rows.count) }
        featureScales = (0..<width).map { j in
            guard j > 0 else { return 1 }
            let v = rows.reduce(0) { $0 + ($1[j] - featureMeans[j]) * ($1[j] - featureMeans[j]) } / Double(rows.count)
            return v > 1e-12 ? v.squareRoot() : 1
        }
        let x = rows.map { standardise($0) }
        var a = [[Double]](repeating: [Double](repeating: 0, count: width), count: width)
        var b = [Double](repeating: 0, count: width)
        for (row, target) in zip(x, y) {
            for i in 0..<width {
                b[i] += row[i] * target
                for j in 0..<width { a[i][j] += row[i] * row[j] }
            }
        }
        for i in 1..<width { a[i][i] += ridge * Double(rows.count) }
        a[0][0] += 1e-9
        weights = Self.solve(a, b) ?? []
    }

    private func standardise(_ row: [Double]) -> [Double] {
        row.indices.map { j in j == 0 ? 1 : (row[j] - featureMeans[j]) / featureScales[j] }
    }

    /// Predicted GOP/s, or nil before the model has been fitted.
    public func predict(_ c: Configuration) -> Double? {
        guard !weights.isEmpty else { return nil }
        let x = standardise(features(c))
        return exp(zip(x, weights).reduce(0) { $0 + $1.0 * $1.1 })
    }

    /// Gaussian elimination with partial pivoting; nil for a singular system.
    static func solve(_ matrix: [[Double]], _ rhs: [Double]) -> [Double]? {
        var a = matrix, b = rhs
        let n = b.count
        for col in 0..<n {
            guard let pivot = (col..<n).max(by: { abs(a[$0][col]) < abs(a[$1][col]) }), abs(a[pivot][col]) > 1e-12 else { return nil }
            a.swapAt(col, pivot)
            b.swapAt(col, pivot)
            for r in (col + 1)..<n where a[r][col] != 0 {
                let f = a[r][col] / a[col][col]
                for c in col..<n { a[r][c] -= f * a[col][c] }
                b[r] -= f * b[col]
            }
        }
        var x = [Double](repeating: 0, count: n)
        for r in stride(from: n - 1, through: 0, by: -1) {
            var s = b[r]
            for c in (r + 1)..<n { s -= a[r][c] * x[c] }
            x[r] = s / a[r][r]
        }
        return x
    }
}
