import KernelKit

/// The loop bodies of `peak-bandwidth` per target; each step covers 64 elements (256 bytes).
struct BandwidthDialect: Sendable {
    var headers: [String]
    var stride: Int { 64 }
    var sumSetup: [String]
    var sumStep: [String]
    /// Lines that reduce the pass's partial sums into `part` (uint32_t).
    var sumFinish: [String]
    var fillSetup: @Sendable (String) -> [String]
    var fillStep: [String]
    var copyStep: [String]
    var triadSetup: [String]
    var triadStep: [String]

    /// Plain C (what the compiler makes of it is the portable ceiling); also used for Arm, where the
    /// compiler's own NEON code is the honest baseline for these loops.
    static let portable = BandwidthDialect(
        headers: [],
        sumSetup: ["uint32_t s = 0;"],
        sumStep: ["for (size_t j = 0; j < 64; j++) s += (uint32_t)x[i + j];"],
        sumFinish: ["const uint32_t part = s;"],
        fillSetup: { ["const int32_t v = \($0);"] },
        fillStep: ["for (size_t j = 0; j < 64; j++) x[i + j] = v;"],
        copyStep: ["for (size_t j = 0; j < 64; j++) x[i + j] = y[i + j];"],
        triadSetup: [],
        triadStep: ["for (size_t j = 0; j < 64; j++) x[i + j] = y[i + j] + s * z[i + j];"])

    static func x86(bits: Int) -> BandwidthDialect {
        let lanes = bits / 32, vectors = 64 / lanes
        let p = bits == 512 ? "_mm512" : "_mm256"
        let vi = "__m\(bits)i", vf = "__m\(bits)"
        func loadI(_ e: String) -> String { bits == 512 ? "_mm512_loadu_si512((const void *)(\(e)))" : "_mm256_loadu_si256((const __m256i *)(\(e)))" }
        func storeI(_ e: String, _ v: String) -> String { bits == 512 ? "_mm512_storeu_si512((void *)(\(e)), \(v));" : "_mm256_storeu_si256((__m256i *)(\(e)), \(v));" }
        let accs = min(4, vectors)
        var finish = ["uint32_t lanes[\(lanes)];"]
        finish.append("const \(vi) s = \((1..<accs).reduce("s0") { "\(p)_add_epi32(\($0), s\($1))" });")
        finish.append(bits == 512 ? "_mm512_storeu_si512((void *)lanes, s);" : "_mm256_storeu_si256((__m256i *)lanes, s);")
        finish.append("uint32_t part = 0;")
        finish.append("for (int l = 0; l < \(lanes); l++) part += lanes[l];")
        return BandwidthDialect(
            headers: ["immintrin.h"],
            sumSetup: (0..<accs).map { "\(vi) s\($0) = \(p)_setzero_si\(bits)();" },
            sumStep: (0..<vectors).map { u in "s\(u % accs) = \(p)_add_epi32(s\(u % accs), \(loadI("x + i + \(u * lanes)")));" },
            sumFinish: finish,
            fillSetup: { ["const \(vi) v = \(p)_set1_epi32(\($0));"] },
            fillStep: (0..<vectors).map { u in storeI("x + i + \(u * lanes)", "v") },
            copyStep: (0..<vectors).map { u in storeI("x + i + \(u * lanes)", loadI("y + i + \(u * lanes)")) },
            triadSetup: ["const \(vf) scalar = \(p)_set1_ps(s);"],
            triadStep: (0..<vectors).map { u in
                "\(p)_storeu_ps(x + i + \(u * lanes), \(p)_add_ps(\(p)_loadu_ps(y + i + \(u * lanes)), \(p)_mul_ps(scalar, \(p)_loadu_ps(z + i + \(u * lanes)))));"
            })
    }

    static func forTarget(_ isa: ISATarget) -> BandwidthDialect {
        switch isa {
        case .avx2, .avxvnni: return x86(bits: 256)
        case .avx512vnni: return x86(bits: 512)
        case .portable, .neonDotprod: return portable
        }
    }
}
