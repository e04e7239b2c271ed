import Kernels

/// The quantized matrix product of the simulation, in the kernels' arithmetic (KERNELS.md sections 1
/// and 2): per output, exact int32 sums of each group, each added to one fp32 accumulator as
/// `acc = acc + Float(sum) * (sA * sW)` in group order, then the outlier term the same way.
///
/// With Atom-format inputs this is `GemmW4A4Reference.compute` and with INT8 per-row inputs
/// `GemmW8A8Reference.compute`, bit for bit (the tests check both), so the simulated model computes
/// each linear layer exactly as the kernels do.
public enum IntegerGemm {
    /// Y [a.rows][w.rows] = A W^T for activations `a` and weights `w` of the same K, group length
    /// and outlier count.
    public static func multiply(_ a: IntegerRows, _ w: IntegerRows) -> [Float] {
        precondition(a.k == w.k && a.format.outliers == w.format.outliers && a.groupLength == w.groupLength,
                     "activations and weights must share K, outliers and the group length")
        let m = a.rows, n = w.rows, normal = a.normal, groups = a.groups, length = a.groupLength, o = a.format.outliers
        var y = [Float](repeating: 0, count: m * n)
        a.codes.withUnsafeBufferPointer { ac in
            w.codes.withUnsafeBufferPointer { wc in
                a.outlierCodes.withUnsafeBufferPointer { ao in
                    w.outlierCodes.withUnsafeBufferPointer { wo in
                        y.withUnsafeMutableBufferPointer { out in
                            for i in 0..<m {
                                for j in 0..<n {
                                    var acc: Float = 0
                                    for g in 0..<groups {
                                        let sum = dot(ac, i * normal + g * length, wc, j * normal + g * length, length)
                                        acc = acc + Float(sum) * (a.scales[i * groups + g] * w.scales[j * groups + g])
                                    }
                                    if o > 0 {
                                        let sum = dot(ao, i * o, wo, j * o, o)
                                        acc = acc + Float(sum) * (a.outlierScales[i] * w.outlierScales[j])
                                    }
                                    out[i * n + j] = acc
                                }
                            }
                        }
                    }
                }
            }
        }
        return y
    }

    /// Exact sum of products of `count` codes (|sum| <= 127 * 127 * count, which fits int32 for any
    /// layer width below 133,000).
    @inline(__always)
    static func dot(_ a: UnsafeBufferPointer<Int8>, _ i: Int, _ b: UnsafeBufferPointer<Int8>, _ j: Int, _ count: Int) -> Int32 {
        var s0: Int32 = 0, s1: Int32 = 0
        var t = 0
        while t + 2 <= count {
            s0 &+= Int32(a[i + t]) &* Int32(b[j + t])
            s1 &+= Int32(a[i + t + 1]) &* Int32(b[j + t + 1])
            t += 2
        }
        if t < count { s0 &+= Int32(a[i + t]) &* Int32(b[j + t]) }
        return s0 &+ s1
    }
}
