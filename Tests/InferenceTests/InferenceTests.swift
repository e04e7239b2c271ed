import Foundation
import Testing

@testable import Inference

@Suite("Inference")
struct InferenceSmokeTests {
    @Test func moduleLinks() { _ = Inference.self }
}

/// The baselines' row helpers: the 16-lane INT8 quantization against the one-value-at-a-time rule, and
/// the threaded norms, SiLU and quantization against one thread.
@Suite("Baseline row math")
struct BaselineRowMathTests {
    /// s = max|x| / 127 and q = clamp(rne(x * (1 / s)), -127, 127), one value at a time.
    static func expected(_ x: [Float]) -> (codes: [Int8], scale: Float) {
        let s = x.reduce(Float(0)) { max($0, abs($1)) } / 127
        guard s > 0 else { return (Array(repeating: 0, count: x.count), 0) }
        let inverse = 1 / s
        return (x.map { Int8(max(-127, min(127, ($0 * inverse).rounded(.toNearestOrEven)))) }, s)
    }

    @Test func int8RowsMatchTheScalarRule() {
        var rng = SystemRandomNumberGenerator()
        for k in [1, 7, 15, 16, 17, 33, 100, 4096] {
            var rows: [[Float]] = [Array(repeating: 0, count: k)]
            rows.append((0..<k).map { _ in Float.random(in: -3...3, using: &rng) })
            // Ties: multiples of half a code step (max 127 makes s = 1).
            rows.append((0..<k).map { i -> Float in
                let half = Float((i * 37) % 255 - 127) / 2
                return i == 0 ? 127 : half
            })
            rows.append((0..<k).map { i in i % 5 == 0 ? -1e-30 : 0 })
            for x in rows {
                var codes = [Int8](repeating: 99, count: k)
                let scale = x.withUnsafeBufferPointer { p in codes.withUnsafeMutableBufferPointer { Int8Rows.quantizeRow(p.baseAddress!, count: k, into: $0.baseAddress!) } }
                let want = Self.expected(x)
                #expect(scale == want.scale && codes == want.codes, "k = \(k)")
            }
        }
    }

    @Test func threadedHelpersMatchOneThread() throws {
        let threads = try testRuntime(threads: 2).threads
        let m = 5, k = 300
        var rng = SystemRandomNumberGenerator()
        let x = (0..<(m * k)).map { _ in Float.random(in: -4...4, using: &rng) }
        let weight = (0..<k).map { _ in Float.random(in: 0.5...1.5, using: &rng) }
        var one = [Float](repeating: 0, count: m * k), two = one
        x.withUnsafeBufferPointer { p in
            one.withUnsafeMutableBufferPointer { RowMath.rmsNorm(p.baseAddress!, rows: m, k: k, weight: weight, eps: 1e-5, into: $0.baseAddress!) }
            two.withUnsafeMutableBufferPointer {
                RowMath.rmsNorm(p.baseAddress!, rows: m, k: k, weight: weight, eps: 1e-5, into: $0.baseAddress!, threads: threads)
            }
        }
        #expect(zip(one, two).filter { $0 != $1 }.count == 0)
        let count = 3 * 4096 + 13
        let up = (0..<count).map { _ in Float.random(in: -2...2, using: &rng) }
        var gate = (0..<count).map { _ in Float.random(in: -8...8, using: &rng) }
        gate[1] = -100  // e^100 overflows: silu is -0 (up to the sign of up)
        gate[2] = 100
        gate[3] = 0
        var g1 = gate, g2 = gate
        up.withUnsafeBufferPointer { u in
            g1.withUnsafeMutableBufferPointer { RowMath.siluMul($0.baseAddress!, u.baseAddress!, count: count) }
            g2.withUnsafeMutableBufferPointer { RowMath.siluMul($0.baseAddress!, u.baseAddress!, count: count, threads: threads) }
        }
        #expect(zip(g1, g2).filter { $0 != $1 }.count == 0, "threads change SiLU values")
        for i in 0..<count {
            let want = Double(gate[i]) / (1 + Foundation.exp(-Double(gate[i]))) * Double(up[i])
            #expect(abs(Double(g1[i]) - want) <= 1e-6 * abs(want) + 1e-30, "silu at \(gate[i])")
        }
        let scratch = Scratch()
        let rows = x.withUnsafeBufferPointer { Int8Rows.quantize($0.baseAddress!, rows: m, k: k, scratch, threads: threads) }
        for r in 0..<m {
            let want = Self.expected(Array(x[r * k..<(r + 1) * k]))
            #expect(rows.scales[r] == want.scale)
            #expect(Array(UnsafeBufferPointer(start: rows.codes + r * k, count: k)) == want.codes)
        }
    }
}
