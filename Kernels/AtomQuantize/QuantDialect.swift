import KernelKit

/// How one ISA spells the fp32 vector operations of the quantize kernels. The kernel bodies (row
/// loop, group quantization, outliers, exp, RMS scale) are shared; only these expressions and a few
/// ISA helpers differ. `scalar` is the portable spelling (one lane); the SIMD targets use it too, for
/// the elements of a row past the last full vector, so tails compute exactly what the vectors do.
struct QuantDialect: Sendable {
    /// fp32 lanes per vector (1 for the scalar spelling).
    var lanes: Int
    var headers: [String]
    var vec: String
    var ivec: String
    /// One line for the file header: which instructions do the work.
    var note: String

    var zero: String
    /// `base[index ...]` as a vector.
    var load: @Sendable (_ base: String, _ index: String) -> String
    /// Statement storing `value` at `base[index ...]`.
    var store: @Sendable (_ base: String, _ index: String, _ value: String) -> String
    var splat: @Sendable (String) -> String
    var add: @Sendable (String, String) -> String
    var sub: @Sendable (String, String) -> String
    var mul: @Sendable (String, String) -> String
    var div: @Sendable (String, String) -> String
    var max: @Sendable (String, String) -> String
    var min: @Sendable (String, String) -> String
    var abs: @Sendable (String) -> String
    var neg: @Sendable (String) -> String
    /// Round half to even to an integral float.
    var round: @Sendable (String) -> String
    /// Integral floats to int32 lanes (exact).
    var toInt: @Sendable (String) -> String
    var izero: String
    var iadd: @Sendable (String, String) -> String
    /// 2^n as a float, from int32 lanes n in [-126, 127], through the exponent bits.
    var pow2: @Sendable (String) -> String
    /// The largest lane, as a float expression.
    var hmax: @Sendable (String) -> String
    /// The sum of the int32 lanes, as an int32 expression.
    var hsum: @Sendable (String) -> String
    /// Statement storing int32 lanes already inside int8 range as bytes at `base + index`.
    var storeCodes: @Sendable (_ base: String, _ index: String, _ value: String) -> String
    /// `base[perm[index]], base[perm[index + 1]], ...` through the hardware gather (nil: none).
    var vectorGather: (@Sendable (_ base: String, _ perm: String, _ index: String) -> String)?
    /// The same through one scalar load per lane.
    var scalarGather: @Sendable (_ base: String, _ perm: String, _ index: String) -> String
    /// ISA helper functions (`hmax`, `hsum`, `store_codes`, `pack_group`, and `gather_loads` when the
    /// second argument says the code gathers through scalar loads).
    var helpers: @Sendable (inout CSource, _ scalarGather: Bool) -> Void

    static func forTarget(_ isa: ISATarget) -> QuantDialect? {
        switch isa {
        case .portable: return scalar
        case .avx2: return avx2
        case .avx512vnni: return avx512
        case .neonDotprod: return neon
        case .avxvnni: return nil
        }
    }

    // MARK: Scalar (portable, and every target's row tails)

    static let scalar = QuantDialect(
        lanes: 1, headers: [], vec: "float", ivec: "int32_t", note: "plain C, one element at a time",
        zero: "0.0f",
        load: { "\($0)[\($1)]" },
        store: { "\($0)[\($1)] = \($2);" },
        splat: { $0 },
        add: { "\($0) + \(CExpr.factor($1))" },
        sub: { "\($0) - \(CExpr.factor($1))" },
        mul: { "\(CExpr.factor($0)) * \(CExpr.operand($1))" },
        div: { "\(CExpr.factor($0)) / \(CExpr.operand($1))" },
        max: { "maxf(\($0), \($1))" },
        min: { "minf(\($0), \($1))" },
        abs: { "fabsf(\($0))" },
        neg: { "-\(CExpr.operand($0))" },
        round: { "nearbyintf(\($0))" },
        toInt: { "(int32_t)\(CExpr.operand($0))" },
        izero: "0",
        iadd: { "\($0) + \(CExpr.factor($1))" },
        pow2: { "pow2f(\($0))" },
        hmax: { $0 },
        hsum: { $0 },
        storeCodes: { "\($0)[\($1)] = (int8_t)\(CExpr.operand($2));" },
        vectorGather: nil,
        scalarGather: { "\($0)[\($1)[\($2)]]" },
        helpers: { c, scalarGather in
            c.comment("128 signed 4-bit codes (one per byte) to 64 bytes: element 2i in the low nibble, 2i + 1 in the high.")
            c.function("static inline void pack_group(const int8_t *q, uint8_t *dst)") { c in
                c.forLoop("int i = 0", "i < GROUP / 2", "i++") { c in
                    c.line("dst[i] = (uint8_t)((q[2 * i] & 0x0F) | ((q[2 * i + 1] & 0x0F) << 4));")
                }
            }
        })

    // MARK: AVX2

    static let avx2 = QuantDialect(
        lanes: 8, headers: ["immintrin.h"], vec: "__m256", ivec: "__m256i",
        note: "AVX2: 8 fp32 lanes; vdivps, vroundps (nearest even), vpackssdw/vpacksswb, nibbles by vpmaddubsw",
        zero: "_mm256_setzero_ps()",
        load: { "_mm256_loadu_ps(\($0) + \($1))" },
        store: { "_mm256_storeu_ps(\($0) + \($1), \($2));" },
        splat: { "_mm256_set1_ps(\($0))" },
        add: { "_mm256_add_ps(\($0), \($1))" },
        sub: { "_mm256_sub_ps(\($0), \($1))" },
        mul: { "_mm256_mul_ps(\($0), \($1))" },
        div: { "_mm256_div_ps(\($0), \($1))" },
        max: { "_mm256_max_ps(\($0), \($1))" },
        min: { "_mm256_min_ps(\($0), \($1))" },
        abs: { "_mm256_andnot_ps(_mm256_set1_ps(-0.0f), \($0))" },
        neg: { "_mm256_xor_ps(\($0), _mm256_set1_ps(-0.0f))" },
        round: { "_mm256_round_ps(\($0), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)" },
        toInt: { "_mm256_cvtps_epi32(\($0))" },
        izero: "_mm256_setzero_si256()",
        iadd: { "_mm256_add_epi32(\($0), \($1))" },
        pow2: { "_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(\($0), _mm256_set1_epi32(127)), 23))" },
        hmax: { "hmax(\($0))" },
        hsum: { "hsum(\($0))" },
        storeCodes: { "store_codes(\($0) + \($1), \($2));" },
        vectorGather: { "_mm256_i32gather_ps(\($0), _mm256_loadu_si256((const __m256i *)(\($1) + \($2))), 4)" },
        scalarGather: { "gather_loads(\($0), \($1) + \($2))" },
        helpers: { c, scalarGather in
            c.comment("The largest lane.")
            c.function("static inline float hmax(__m256 v)") { c in
                c.declare("__m128", "m", "_mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1))")
                c.line("m = _mm_max_ps(m, _mm_movehl_ps(m, m));")
                c.line("m = _mm_max_ps(m, _mm_shuffle_ps(m, m, 1));")
                c.line("return _mm_cvtss_f32(m);")
            }
            c.comment("The sum of the lanes (exact: at most 128 * 8 in magnitude).")
            c.function("static inline int32_t hsum(__m256i v)") { c in
                c.declare("__m128i", "s", "_mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1))")
                c.line("s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));")
                c.line("s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));")
                c.line("return _mm_cvtsi128_si32(s);")
            }
            c.comment("Eight int32 codes, already inside int8 range, to eight bytes.")
            c.function("static inline void store_codes(int8_t *dst, __m256i c)") { c in
                c.declare("const __m128i", "words", "_mm_packs_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1))")
                c.line("_mm_storel_epi64((__m128i *)dst, _mm_packs_epi16(words, words));")
            }
            c.comment(lines: [
                "128 signed 4-bit codes (one per byte) to 64 bytes: element 2i in the low nibble, 2i + 1 in the high.",
                "vpmaddubsw of the low nibbles with bytes (1, 16) gives q[2i] + 16 * q[2i + 1] in 0..255 per pair.",
            ])
            c.function("static inline void pack_group(const int8_t *q, uint8_t *dst)") { c in
                c.declare("const __m256i", "low4", "_mm256_set1_epi8(0x0F)")
                c.declare("const __m256i", "weights", "_mm256_set1_epi16(0x1001)")
                c.forLoop("int i = 0", "i < GROUP", "i += 64") { c in
                    c.declare("const __m256i", "a", "_mm256_and_si256(_mm256_loadu_si256((const __m256i *)(q + i)), low4)")
                    c.declare("const __m256i", "b", "_mm256_and_si256(_mm256_loadu_si256((const __m256i *)(q + i + 32)), low4)")
                    c.declare("const __m256i", "pairs", "_mm256_packus_epi16(_mm256_maddubs_epi16(a, weights), _mm256_maddubs_epi16(b, weights))")
                    c.comment("vpackuswb interleaves the 128-bit halves (a0 b0 a1 b1): restore a0 a1 b0 b1")
                    c.line("_mm256_storeu_si256((__m256i *)(dst + i / 2), _mm256_permute4x64_epi64(pairs, 0xD8));")
                }
            }
            guard scalarGather else { return }
            c.comment("base[idx[0]], ..., base[idx[7]] through scalar loads.")
            c.function("static inline __m256 gather_loads(const float *base, const int32_t *idx)") { c in
                c.line("return _mm256_setr_ps(\((0..<8).map { "base[idx[\($0)]]" }.joined(separator: ", ")));")
            }
        })

    // MARK: AVX-512 (F + BW)

    static let avx512 = QuantDialect(
        lanes: 16, headers: ["immintrin.h"], vec: "__m512", ivec: "__m512i",
        note: "AVX-512F/BW: 16 fp32 lanes; vdivps, vrndscaleps (nearest even), vpmovsdb, nibbles by vpmaddubsw + vpmovwb",
        zero: "_mm512_setzero_ps()",
        load: { "_mm512_loadu_ps(\($0) + \($1))" },
        store: { "_mm512_storeu_ps(\($0) + \($1), \($2));" },
        splat: { "_mm512_set1_ps(\($0))" },
        add: { "_mm512_add_ps(\($0), \($1))" },
        sub: { "_mm512_sub_ps(\($0), \($1))" },
        mul: { "_mm512_mul_ps(\($0), \($1))" },
        div: { "_mm512_div_ps(\($0), \($1))" },
        max: { "_mm512_max_ps(\($0), \($1))" },
        min: { "_mm512_min_ps(\($0), \($1))" },
        abs: { "_mm512_abs_ps(\($0))" },
        neg: { "_mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(\($0)), _mm512_set1_epi32((int)0x80000000u)))" },
        round: { "_mm512_roundscale_ps(\($0), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)" },
        toInt: { "_mm512_cvtps_epi32(\($0))" },
        izero: "_mm512_setzero_si512()",
        iadd: { "_mm512_add_epi32(\($0), \($1))" },
        pow2: { "_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(\($0), _mm512_set1_epi32(127)), 23))" },
        hmax: { "_mm512_reduce_max_ps(\($0))" },
        hsum: { "_mm512_reduce_add_epi32(\($0))" },
        storeCodes: { "_mm_storeu_si128((__m128i *)(\($0) + \($1)), _mm512_cvtsepi32_epi8(\($2)));" },
        vectorGather: { "_mm512_i32gather_ps(_mm512_loadu_si512((const void *)(\($1) + \($2))), \($0), 4)" },
        scalarGather: { "gather_loads(\($0), \($1) + \($2))" },
        helpers: { c, scalarGather in
            c.comment(lines: [
                "128 signed 4-bit codes (one per byte) to 64 bytes: element 2i in the low nibble, 2i + 1 in the high.",
                "vpmaddubsw of the low nibbles with bytes (1, 16) gives q[2i] + 16 * q[2i + 1] in 0..255 per pair.",
            ])
            c.function("static inline void pack_group(const int8_t *q, uint8_t *dst)") { c in
                c.declare("const __m512i", "low4", "_mm512_set1_epi8(0x0F)")
                c.declare("const __m512i", "weights", "_mm512_set1_epi16(0x1001)")
                c.forLoop("int i = 0", "i < GROUP", "i += 64") { c in
                    c.declare("const __m512i", "codes", "_mm512_and_si512(_mm512_loadu_si512((const void *)(q + i)), low4)")
                    c.line("_mm256_storeu_si256((__m256i *)(dst + i / 2), _mm512_cvtepi16_epi8(_mm512_maddubs_epi16(codes, weights)));")
                }
            }
            guard scalarGather else { return }
            c.comment("base[idx[0]], ..., base[idx[15]] through scalar loads.")
            c.function("static inline __m512 gather_loads(const float *base, const int32_t *idx)") { c in
                c.line("return _mm512_setr_ps(\((0..<8).map { "base[idx[\($0)]]" }.joined(separator: ", ")),")
                c.line("                      \((8..<16).map { "base[idx[\($0)]]" }.joined(separator: ", ")));")
            }
        })

    // MARK: NEON (compile-tested on x86-64)

    static let neon = QuantDialect(
        lanes: 4, headers: ["arm_neon.h"], vec: "float32x4_t", ivec: "int32x4_t",
        note: "NEON: 4 fp32 lanes; fdiv, frintn (nearest even), xtn narrowing, nibbles by ld2 de-interleave, shift and or",
        zero: "vdupq_n_f32(0.0f)",
        load: { "vld1q_f32(\($0) + \($1))" },
        store: { "vst1q_f32(\($0) + \($1), \($2));" },
        splat: { "vdupq_n_f32(\($0))" },
        add: { "vaddq_f32(\($0), \($1))" },
        sub: { "vsubq_f32(\($0), \($1))" },
        mul: { "vmulq_f32(\($0), \($1))" },
        div: { "vdivq_f32(\($0), \($1))" },
        max: { "vmaxq_f32(\($0), \($1))" },
        min: { "vminq_f32(\($0), \($1))" },
        abs: { "vabsq_f32(\($0))" },
        neg: { "vnegq_f32(\($0))" },
        round: { "vrndnq_f32(\($0))" },
        toInt: { "vcvtq_s32_f32(\($0))" },
        izero: "vdupq_n_s32(0)",
        iadd: { "vaddq_s32(\($0), \($1))" },
        pow2: { "vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(\($0), vdupq_n_s32(127)), 23))" },
        hmax: { "vmaxvq_f32(\($0))" },
        hsum: { "vaddvq_s32(\($0))" },
        storeCodes: { "store_codes(\($0) + \($1), \($2));" },
        vectorGather: nil,
        scalarGather: { "gather_loads(\($0), \($1) + \($2))" },
        helpers: { c, scalarGather in
            c.comment("Four int32 codes, already inside int8 range, to four bytes.")
            c.function("static inline void store_codes(int8_t *dst, int32x4_t c)") { c in
                c.declare("const int8x8_t", "bytes", "vmovn_s16(vcombine_s16(vmovn_s32(c), vdup_n_s16(0)))")
                c.declare("const int32_t", "word", "vget_lane_s32(vreinterpret_s32_s8(bytes), 0)")
                c.line("memcpy(dst, &word, sizeof word);")
            }
            c.comment("128 signed 4-bit codes (one per byte) to 64 bytes: element 2i in the low nibble, 2i + 1 in the high.")
            c.function("static inline void pack_group(const int8_t *q, uint8_t *dst)") { c in
                c.forLoop("int i = 0", "i < GROUP", "i += 32") { c in
                    c.declare("const uint8x16x2_t", "pairs", "vld2q_u8((const uint8_t *)(q + i))")
                    c.declare("const uint8x16_t", "low", "vandq_u8(pairs.val[0], vdupq_n_u8(0x0F))")
                    c.line("vst1q_u8(dst + i / 2, vorrq_u8(low, vshlq_n_u8(pairs.val[1], 4)));")
                }
            }
            guard scalarGather else { return }
            c.comment("base[idx[0]], ..., base[idx[3]] through scalar loads.")
            c.function("static inline float32x4_t gather_loads(const float *base, const int32_t *idx)") { c in
                c.declare("const float", "lanes[4]", "{base[idx[0]], base[idx[1]], base[idx[2]], base[idx[3]]}")
                c.line("return vld1q_f32(lanes);")
            }
        })
}

/// Parenthesisation of generated scalar expressions: only where C's precedence needs it, so the
/// portable code reads like hand-written C and keeps the left-to-right order of the reference.
enum CExpr {
    /// Operators outside any parentheses or brackets, as " + ", " - ", " * ", " / ".
    static func topLevelOperators(_ s: String) -> Set<Character> {
        var depth = 0
        var found = Set<Character>()
        let chars = Array(s)
        for (i, ch) in chars.enumerated() {
            switch ch {
            case "(", "[": depth += 1
            case ")", "]": depth -= 1
            case "+", "-", "*", "/", "?":
                if depth == 0, i > 0, i + 1 < chars.count, chars[i - 1] == " ", chars[i + 1] == " " { found.insert(ch) }
            default: break
            }
        }
        return found
    }

    /// A right operand (or a unary operand): parenthesised when it has any top-level operator.
    static func operand(_ s: String) -> String { topLevelOperators(s).isEmpty ? s : "(\(s))" }

    /// The left operand of * or /: parenthesised when it has a top-level + or -.
    static func factor(_ s: String) -> String {
        topLevelOperators(s).isDisjoint(with: ["+", "-", "?"]) ? s : "(\(s))"
    }
}
