import Foundation

/// The Llama decoder's building blocks, written plainly for the FP32 reference: activations are
/// Float, every reduction (dot products, means, softmax sums) is accumulated in Double, so the
/// reference is as close to exact as a Float-in, Float-out model can be.
public enum LlamaMath {
    /// RMSNorm: `y[i] = x[i] / sqrt(mean(x^2) + eps) * weight[i]`.
    public static func rmsNorm(_ x: [Float], weight: [Float], eps: Float) -> [Float] {
        precondition(x.count == weight.count, "rmsNorm: \(x.count) values, \(weight.count) weights")
        var sum = 0.0
        for v in x { sum += Double(v) * Double(v) }
        let scale = 1 / (sum / Double(x.count) + Double(eps)).squareRoot()
        var y = [Float](repeating: 0, count: x.count)
        for i in x.indices { y[i] = Float(Double(x[i]) * scale * Double(weight[i])) }
        return y
    }

    /// `y = W x` for a linear weight W [out, in] (PyTorch layout).
    public static func linear(_ x: [Float], _ w: Matrix) -> [Float] {
        linear(rows: [x], w)[0]
    }

    /// `linear` of every row of `xs` (a prompt's tokens): each weight row is read once for all the rows,
    /// and large products split their weight rows across the cores. Every output is its own Double dot
    /// product, so neither the number of rows nor the split changes a bit of it.
    public static func linear(rows xs: [[Float]], _ w: Matrix) -> [[Float]] {
        for x in xs { precondition(x.count == w.cols, "linear: input of \(x.count) for a [\(w.rows), \(w.cols)] weight") }
        let n = w.rows, k = w.cols
        guard !xs.isEmpty, n > 0, k > 0 else { return xs.map { _ in [Float](repeating: 0, count: n) } }
        var flat = [Float](repeating: 0, count: xs.count * n)
        let chunks = min(n, Parallel.parts(work: xs.count * n * k))
        flat.withUnsafeMutableBufferPointer { out in
            w.values.withUnsafeBufferPointer { wp in
                let y = SharedPointer(out.baseAddress!), weights = SharedPointer(wp.baseAddress!)
                Parallel.forEach(chunks) { c in
                    for o in (n * c / chunks)..<(n * (c + 1) / chunks) {
                        let row = UnsafeBufferPointer(start: weights.pointer + o * k, count: k)
                        for t in xs.indices {
                            y.pointer[t * n + o] = xs[t].withUnsafeBufferPointer { Float(dot($0, row)) }
                        }
                    }
                }
            }
        }
        return xs.indices.map { Array(flat[($0 * n)..<(($0 + 1) * n)]) }
    }

    /// Sum of a[i] * b[i] in Double, with independent partial sums so that it vectorizes.
    @inline(__always)
    static func dot(_ a: UnsafeBufferPointer<Float>, _ b: UnsafeBufferPointer<Float>) -> Double {
        let n = a.count
        var s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
        var i = 0
        while i + 4 <= n {
            s0 += Double(a[i]) * Double(b[i])
            s1 += Double(a[i + 1]) * Double(b[i + 1])
            s2 += Double(a[i + 2]) * Double(b[i + 2])
            s3 += Double(a[i + 3]) * Double(b[i + 3])
            i += 4
        }
        while i < n {
            s0 += Double(a[i]) * Double(b[i])
            i += 1
        }
        return (s0 + s1) + (s2 + s3)
    }

    /// RoPE's inverse frequencies `theta^(-2i/d)` for i < d/2 (Hugging Face's `inv_freq`).
    public static func inverseFrequencies(headDim d: Int, theta: Float) -> [Double] {
        (0..<(d / 2)).map { Foundation.pow(Double(theta), -Double(2 * $0) / Double(d)) }
    }

    /// Rotates one head's vector in place for `position`, Hugging Face's rotate-half convention:
    /// for i < d/2 and angle = position * invFreq[i],
    /// `x'[i] = x[i] cos - x[i + d/2] sin`, `x'[i + d/2] = x[i + d/2] cos + x[i] sin`.
    public static func rope(_ x: inout ArraySlice<Float>, position: Int, inverseFrequencies: [Double]) {
        let half = x.count / 2
        precondition(inverseFrequencies.count == half, "rope: \(inverseFrequencies.count) frequencies for a head of \(x.count)")
        let base = x.startIndex
        for i in 0..<half {
            let angle = Double(position) * inverseFrequencies[i]
            let c = Foundation.cos(angle), s = Foundation.sin(angle)
            let a = Double(x[base + i]), b = Double(x[base + i + half])
            x[base + i] = Float(a * c - b * s)
            x[base + i + half] = Float(b * c + a * s)
        }
    }

    /// Softmax in Double (max subtracted first), returned in Double.
    public static func softmax(_ x: [Double]) -> [Double] {
        guard let m = x.max() else { return [] }
        var e = x.map { Foundation.exp($0 - m) }
        let sum = e.reduce(0, +)
        for i in e.indices { e[i] /= sum }
        return e
    }

    /// SiLU, `x * sigmoid(x)`.
    @inline(__always)
    public static func silu(_ x: Float) -> Float {
        let d = Double(x)
        return Float(d / (1 + Foundation.exp(-d)))
    }

    /// The down projection's input: `silu(gate[i]) * up[i]`.
    public static func swiglu(gate: [Float], up: [Float]) -> [Float] {
        precondition(gate.count == up.count)
        var y = [Float](repeating: 0, count: gate.count)
        for i in y.indices { y[i] = Float(Double(silu(gate[i])) * Double(up[i])) }
        return y
    }

    /// Causal attention of one query head over `count` cached positions of one KV head.
    ///
    /// `query` is [headDim] (after RoPE); `keys` and `values` hold rows of `rowWidth` floats per position,
    /// this head's part starting at `offset`. Scores are `q . k / sqrt(headDim)`, softmax and the
    /// weighted sum of V are in Double.
    public static func attend(query: ArraySlice<Float>, keys: [Float], values: [Float], count: Int,
                              rowWidth: Int, offset: Int) -> [Float] {
        let d = query.count
        let scale = 1 / Double(d).squareRoot()
        var scores = [Double](repeating: 0, count: count)
        Array(query).withUnsafeBufferPointer { q in
            keys.withUnsafeBufferPointer { k in
                for t in 0..<count {
                    let start = t * rowWidth + offset
                    scores[t] = dot(q, UnsafeBufferPointer(rebasing: k[start..<(start + d)])) * scale
                }
            }
        }
        let p = softmax(scores)
        var out = [Double](repeating: 0, count: d)
        for t in 0..<count {
            let start = t * rowWidth + offset
            for i in 0..<d { out[i] += p[t] * Double(values[start + i]) }
        }
        return out.map { Float($0) }
    }
}
