import KernelKit

/// How one (ISA, operation) pair of `peak-compute` is spelled in C, and what its accumulators must
/// hold after n rounds.
///
/// Operands: fp32 uses a = 1/1024 and b = 3 for every accumulator (distinct accumulators are distinct
/// work); the integer forms pair four activation bytes a_p = p + 1 (unsigned) with accumulators / 4
/// weight bytes b_q = -(q + 1), one pair per accumulator, so no two updates are the same computation.
///
/// Enough independent chains to cover latency x throughput: a dot product of latency 5 issued on two
/// ports needs 10 in flight (8 chains measured 1.4x below 16 for vpdpbusd zmm here). 512-bit and NEON
/// targets (32 vector registers) run 16 integer chains, 256-bit x86 (16 registers) 8.
struct PeakDialect: Sendable {
    var headers: [String]
    var vectorType: String
    var elementType: String
    var elementBytes: Int
    var lanes: Int
    var accumulators: Int
    var opsPerUpdate: Int
    var constraint: String
    var note: String
    var setup: [String]
    var operands: [String]
    var zero: String
    var update: @Sendable (_ acc: String, _ index: Int) -> String
    var store: @Sendable (_ pointer: String, _ acc: String) -> String
    /// The exact value every lane of accumulator `index` holds after `n` rounds.
    var expected: @Sendable (_ index: Int, _ n: Int) -> Int64
    /// Reads element `index` of the output as an integer (fp32 values are exact multiples of 1/1024
    /// and are compared scaled by 1024).
    var read: @Sendable (_ base: UnsafeMutableRawPointer, _ index: Int) -> Int64

    static let fpA = "1.0f / 1024.0f", fpB = "3.0f"

    static func make(isa: ISATarget, op: PeakCompute.Operation) -> PeakDialect? {
        switch (isa, op) {
        case (.avx2, .fp32FMA), (.avxvnni, .fp32FMA):
            return fma(headers: ["immintrin.h"], type: "__m256", lanes: 8, accumulators: 12, constraint: "x",
                       splat: "_mm256_set1_ps", zero: "_mm256_setzero_ps()", op: "_mm256_fmadd_ps", store: "_mm256_storeu_ps")
        case (.avx512vnni, .fp32FMA):
            return fma(headers: ["immintrin.h"], type: "__m512", lanes: 16, accumulators: 24, constraint: "v",
                       splat: "_mm512_set1_ps", zero: "_mm512_setzero_ps()", op: "_mm512_fmadd_ps", store: "_mm512_storeu_ps")
        case (.neonDotprod, .fp32FMA):
            var d = fma(headers: ["arm_neon.h"], type: "float32x4_t", lanes: 4, accumulators: 24, constraint: "w",
                        splat: "vdupq_n_f32", zero: "vdupq_n_f32(0.0f)", op: "", store: "vst1q_f32")
            d.update = { acc, _ in "vfmaq_f32(\(acc), a, b" }
            return d
        case (.avx2, .int8I32), (.avxvnni, .int8I32):
            return int8(type: "__m256i", lanes: 8, bits: 256, constraint: "x", op: op, setupPrefix: "_mm256",
                        update: { acc, p, q in "_mm256_add_epi32(\(acc), _mm256_madd_epi16(_mm256_maddubs_epi16(a\(p), b\(q)), ones)" })
        case (.avx512vnni, .int8I32):
            return int8(type: "__m512i", lanes: 16, bits: 512, constraint: "v", op: op, setupPrefix: "_mm512",
                        update: { acc, p, q in "_mm512_add_epi32(\(acc), _mm512_madd_epi16(_mm512_maddubs_epi16(a\(p), b\(q)), ones)" })
        case (.avx2, .int8I16), (.avxvnni, .int8I16):
            return int8(type: "__m256i", lanes: 16, bits: 256, constraint: "x", op: op, setupPrefix: "_mm256",
                        update: { acc, p, q in "_mm256_add_epi16(\(acc), _mm256_maddubs_epi16(a\(p), b\(q))" })
        case (.avx512vnni, .int8I16):
            return int8(type: "__m512i", lanes: 32, bits: 512, constraint: "v", op: op, setupPrefix: "_mm512",
                        update: { acc, p, q in "_mm512_add_epi16(\(acc), _mm512_maddubs_epi16(a\(p), b\(q))" })
        case (.avx512vnni, .int8Dot):
            return int8(type: "__m512i", lanes: 16, bits: 512, constraint: "v", op: op, setupPrefix: "_mm512",
                        update: { acc, p, q in "_mm512_dpbusd_epi32(\(acc), a\(p), b\(q)" })
        case (.avxvnni, .int8Dot):
            return int8(type: "__m256i", lanes: 8, bits: 256, constraint: "x", op: op, setupPrefix: "_mm256",
                        update: { acc, p, q in "_mm256_dpbusd_avx_epi32(\(acc), a\(p), b\(q)" })
        case (.avx2, .int4Dot):
            return int8(type: "__m256i", lanes: 16, bits: 256, constraint: "x", op: op, setupPrefix: "_mm256", int16: true,
                        update: { acc, p, q in "_mm256_add_epi16(\(acc), _mm256_maddubs_epi16(_mm256_and_si256(a\(p), low4), b\(q))" })
        case (.avxvnni, .int4Dot):
            return int8(type: "__m256i", lanes: 8, bits: 256, constraint: "x", op: op, setupPrefix: "_mm256",
                        update: { acc, p, q in "_mm256_dpbusd_avx_epi32(\(acc), _mm256_and_si256(a\(p), low4), b\(q)" })
        case (.avx512vnni, .int4Dot):
            return int8(type: "__m512i", lanes: 16, bits: 512, constraint: "v", op: op, setupPrefix: "_mm512",
                        update: { acc, p, q in "_mm512_dpbusd_epi32(\(acc), _mm512_and_si512(a\(p), low4), b\(q)" })
        case (.neonDotprod, .int8Dot), (.neonDotprod, .int4Dot):
            var d = int8(type: "int32x4_t", lanes: 4, bits: 128, constraint: "w", op: op, setupPrefix: "", accumulators: 16,
                         update: { acc, p, q in "vdotq_s32(\(acc), a\(p), b\(q)" })
            // sdot is signed x signed: the same products as the x86 forms (a_p > 0, b_q < 0).
            d.headers = ["arm_neon.h"]
            d.setup = []
            for p in 0..<4 { d.setup.append("int8x16_t a\(p) = vdupq_n_s8(\(p + 1));") }
            for q in 0..<d.accumulators / 4 { d.setup.append("int8x16_t b\(q) = vdupq_n_s8(-\(q + 1));") }
            if op == .int4Dot {
                d.setup.append("const int8x16_t low4 = vdupq_n_s8(0x0F);")
                d.update = { acc, j in "vdotq_s32(\(acc), vandq_s8(a\(j % 4), low4), b\(j / 4)" }
                d.note = "masking the low nibbles, then sdot: 16 byte pairs into int32 lanes"
            }
            d.zero = "vdupq_n_s32(0)"
            d.store = { p, acc in "vst1q_s32(\(p), \(acc));" }
            return d
        default:
            return nil
        }
    }

    private static func fma(
        headers: [String], type: String, lanes: Int, accumulators: Int, constraint: String, splat: String, zero: String,
        op: String, store: String
    ) -> PeakDialect {
        PeakDialect(
            headers: headers, vectorType: type, elementType: "float", elementBytes: 4, lanes: lanes,
            accumulators: accumulators, opsPerUpdate: 2 * lanes, constraint: constraint,
            note: "fused multiply-add on \(lanes) fp32 lanes",
            setup: ["\(type) a = \(splat)(\(fpA));", "\(type) b = \(splat)(\(fpB));"], operands: ["a", "b"], zero: zero,
            update: { acc, _ in "\(op)(a, b, \(acc)" },
            store: { p, acc in "\(store)(\(p), \(acc));" },
            expected: { _, n in Int64(n) * 3 },
            read: { base, i in Int64(base.load(fromByteOffset: i * 4, as: Float.self) * 1024) })
    }

    private static func int8(
        type: String, lanes: Int, bits: Int, constraint: String, op: PeakCompute.Operation, setupPrefix: String,
        int16: Bool = false, accumulators: Int? = nil, update: @escaping @Sendable (String, Int, Int) -> String
    ) -> PeakDialect {
        let accumulators = accumulators ?? (bits == 256 ? 8 : 16)
        let bytes = bits / 8
        let i16 = op == .int8I16 || int16
        // Useful operations per update: 2 per byte pair.
        let ops = 2 * bytes
        var setup: [String] = []
        for p in 0..<4 { setup.append("\(type) a\(p) = \(setupPrefix)_set1_epi8(\(p + 1));") }
        for q in 0..<accumulators / 4 { setup.append("\(type) b\(q) = \(setupPrefix)_set1_epi8(-\(q + 1));") }
        if op == .int8I32 { setup.append("const \(type) ones = \(setupPrefix)_set1_epi16(1);") }
        // The operands (1..4) are their own low nibbles: masking changes no product, only the work.
        if op == .int4Dot { setup.append("const \(type) low4 = \(setupPrefix)_set1_epi8(0x0F);") }
        let note: String
        switch op {
        case .int8I32: note = "vpmaddubsw then vpmaddwd with ones then vpaddd, \(bytes) byte pairs"
        case .int8I16: note = "vpmaddubsw then vpaddw, \(bytes) byte pairs into int16 lanes"
        case .int4Dot where i16: note = "masking the low nibbles, then vpmaddubsw and vpaddw, \(bytes) byte pairs into int16 lanes"
        case .int4Dot: note = "masking the low nibbles, then one dot-product instruction, \(bytes) byte pairs into int32 lanes"
        default: note = "one dot-product instruction, \(bytes) byte pairs into int32 lanes"
        }
        let storeName = bits == 512 ? "_mm512_storeu_si512((void *)" : "_mm256_storeu_si256((__m256i *)"
        let read: @Sendable (UnsafeMutableRawPointer, Int) -> Int64
        if i16 {
            read = { base, i in Int64(base.load(fromByteOffset: i * 2, as: Int16.self)) }
        } else {
            read = { base, i in Int64(base.load(fromByteOffset: i * 4, as: Int32.self)) }
        }
        let expected: @Sendable (Int, Int) -> Int64 = { j, n in
            // Each int32 lane sums four byte products per update (int16 lanes two).
            let product: Int64 = -Int64((j % 4 + 1) * (j / 4 + 1))
            let perUpdate: Int64 = (i16 ? 2 : 4) * product
            let total: Int64 = Int64(n) * perUpdate
            return i16 ? Int64(Int16(truncatingIfNeeded: total)) : Int64(Int32(truncatingIfNeeded: total))
        }
        let zero = "\(setupPrefix)_setzero_si\(bits)()"
        return PeakDialect(
            headers: ["immintrin.h"], vectorType: type, elementType: i16 ? "int16_t" : "int32_t",
            elementBytes: i16 ? 2 : 4, lanes: lanes, accumulators: accumulators, opsPerUpdate: ops, constraint: constraint,
            note: note, setup: setup, operands: ["a0", "a1", "a2", "a3"] + (0..<accumulators / 4).map { "b\($0)" }, zero: zero,
            update: { acc, j in update(acc, j % 4, j / 4) },
            store: { p, acc in "\(storeName)(\(p)), \(acc));" },
            expected: expected, read: read)
    }
}
