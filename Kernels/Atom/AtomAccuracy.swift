import KernelKit

/// The accuracy ablation of the Atom method on synthetic data: how far each quantization scheme's
/// matrix product is from fp32, on activations with injected outlier channels.
///
/// Each scheme quantizes and dequantizes activations X [M][K] (per token) and weights W [N][K] (per
/// output channel), multiplies in Double, and reports the normwise relative error
/// ||Y_q - Y|| / ||Y|| against Y = X W^T computed from the unquantized values.
public enum AtomAccuracy {
    public struct Scheme: Sendable {
        public var name: String
        public var bits: Int
        /// Group size along K for the normal channels (nil: one scale per row).
        public var groupSize: Int?
        /// Outlier channels kept in INT8 (the last ones after reordering).
        public var outliers: Int
        public var activationClip: Float
        public var weightClip: Float
    }

    /// Atom's ablation, in order, then W8A8.
    public static let schemes: [Scheme] = [
        Scheme(name: "W4A4 round-to-nearest", bits: 4, groupSize: nil, outliers: 0, activationClip: 1, weightClip: 1),
        Scheme(name: "+ 128 outliers in INT8", bits: 4, groupSize: nil, outliers: 128, activationClip: 1, weightClip: 1),
        Scheme(name: "+ group-128 scales", bits: 4, groupSize: 128, outliers: 128, activationClip: 1, weightClip: 1),
        Scheme(name: "+ clipping (0.9 / 0.85): Atom", bits: 4, groupSize: 128, outliers: 128,
               activationClip: AtomQuantization.activationClip, weightClip: AtomQuantization.weightClip),
        Scheme(name: "W8A8 per token / channel", bits: 8, groupSize: nil, outliers: 0, activationClip: 1, weightClip: 1),
    ]

    public struct Row: Sendable {
        public var scheme: String
        public var relativeError: Double
    }

    /// Synthetic data: activations N(0,1)-like with `outlierChannels` channels 20 to 100 times larger,
    /// weights uniform in [-1, 1] / sqrt(K). Channels are then reordered by their sum of squares
    /// (ascending, as Atom's calibration does), so the outliers end last.
    public static func data(m: Int, n: Int, k: Int, outlierChannels: Int, seed: UInt64) -> (x: [Float], w: [Float]) {
        var rng = SeededGenerator(seed: seed)
        var big = Set<Int>()
        while big.count < outlierChannels { big.insert(Int.random(in: 0..<k, using: &rng)) }
        let gain = (0..<k).map { big.contains($0) ? Float.random(in: 20...100, using: &rng) : 1 }
        var x = [Float](repeating: 0, count: m * k)
        for i in 0..<m {
            for c in 0..<k {
                // Sum of uniforms: roughly normal, bounded.
                let v = (0..<4).reduce(Float(0)) { s, _ in s + Float.random(in: -1...1, using: &rng) } * 0.87
                x[i * k + c] = v * gain[c]
            }
        }
        let scale = 1 / Float(k).squareRoot()
        var w = (0..<n * k).map { _ in Float.random(in: -1...1, using: &rng) * scale }
        // Reorder channels by sum of squares of the activations, ascending.
        let energy = (0..<k).map { c in (0..<m).reduce(0.0) { $0 + Double(x[$1 * k + c] * x[$1 * k + c]) } }
        let order = (0..<k).sorted { (energy[$0], $0) < (energy[$1], $1) }
        x = (0..<m).flatMap { i in order.map { x[i * k + $0] } }
        w = (0..<n).flatMap { j in order.map { w[j * k + $0] } }
        return (x, w)
    }

    /// Quantizes and dequantizes rows the way `scheme` does.
    static func fakeQuantize(_ v: [Float], rows: Int, k: Int, scheme: Scheme, clip: Float) -> [Double] {
        var out = [Double](repeating: 0, count: v.count)
        let normal = k - scheme.outliers
        let qmax = Float((1 << (scheme.bits - 1)) - 1)  // 7 or 127
        let qmin = scheme.bits == 4 ? Float(-8) : -qmax
        for r in 0..<rows {
            let base = r * k
            let group = scheme.groupSize ?? normal
            var start = 0
            while start < normal {
                let end = min(start + group, normal)
                let absmax = (start..<end).reduce(Float(0)) { max($0, abs(v[base + $1])) }
                let s = absmax * clip / qmax
                for c in start..<end {
                    let q = s > 0 ? max(qmin, min(qmax, (v[base + c] / s).rounded(.toNearestOrEven))) : 0
                    out[base + c] = Double(q) * Double(s)
                }
                start = end
            }
            if scheme.outliers > 0 {
                let absmax = (normal..<k).reduce(Float(0)) { max($0, abs(v[base + $1])) }
                let s = AtomQuantization.int8Scale(absmax: absmax)
                for c in normal..<k { out[base + c] = Double(AtomQuantization.int8Code(v[base + c], scale: s)) * Double(s) }
            }
        }
        return out
    }

    /// The table: one row per scheme.
    public static func table(m: Int = 64, n: Int = 256, k: Int = 4096, outlierChannels: Int = 8, seed: UInt64 = 1) -> [Row] {
        let (x, w) = data(m: m, n: n, k: k, outlierChannels: outlierChannels, seed: seed)
        let xd = x.map(Double.init), wd = w.map(Double.init)
        let reference = product(xd, wd, m: m, n: n, k: k)
        let norm = reference.reduce(0) { $0 + $1 * $1 }.squareRoot()
        return schemes.map { scheme in
            let xq = fakeQuantize(x, rows: m, k: k, scheme: scheme, clip: scheme.activationClip)
            let wq = fakeQuantize(w, rows: n, k: k, scheme: scheme, clip: scheme.weightClip)
            let y = product(xq, wq, m: m, n: n, k: k)
            let err = zip(y, reference).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }.squareRoot()
            return Row(scheme: scheme.name, relativeError: err / norm)
        }
    }

    static func product(_ x: [Double], _ w: [Double], m: Int, n: Int, k: Int) -> [Double] {
        var y = [Double](repeating: 0, count: m * n)
        x.withUnsafeBufferPointer { xp in
            w.withUnsafeBufferPointer { wp in
                for i in 0..<m {
                    for j in 0..<n {
                        var s = 0.0
                        for c in 0..<k { s += xp[i * k + c] * wp[j * k + c] }
                        y[i * n + j] = s
                    }
                }
            }
        }
        return y
    }
}
