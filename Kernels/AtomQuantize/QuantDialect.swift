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
    var mul: @Sendable (String, String) -> String
    /// a * b + c with one rounding (fused multiply-add; the scalar spelling is C99's fmaf).
    var fma: @Sendable (_ a: String, _ b: String, _ c: String) -> String
    var div: @Sendable (String, String) -> String
    var max: @Sendable (String, String) -> String
    var min: @Sendable (String, String) -> String
    var abs: @Sendable (String) -> String
    var neg: @Sendable (String) -> String
    /// Round half to even to an integral float.
    var round: @Sendable (String) -> String
    /// Integral floats to int32 lanes (exact).
    var toInt: @Sendable (String) -> String
    /// Round half to even straight to int32 lanes (the conversion under the default rounding mode).
    var roundToInt: @Sendable (String) -> String
    /// y / s through the reciprocal r = 1 / s: q = y * r, e = fma(-q, s, y), q + e * r. With r
    /// correctly rounded and no overflow or underflow this is exactly the rounded quotient y / s
    /// (Markstein's theorem); the kernels take this path only when s >= 2^-100. Nil: plain division.
    var reciprocalQuotient: (@Sendable (_ y: String, _ s: String, _ r: String) -> String)?
    var isplat: @Sendable (String) -> String
    var imin: @Sendable (String, String) -> String
    var imax: @Sendable (String, String) -> String
    /// Int32 lanes per call of `store_nibbles` (0: the codes go through a byte buffer and
    /// `pack_group`, as in the scalar spelling).
    var nibbleVectors: Int
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
    /// Emits `gather_lanes(x, perm)`: the vector x[perm[0]], ..., x[perm[LANES - 1]], each lane loaded by
    /// itself and inserted (nil: the scalar spelling has no lanes).
    var laneGather: (@Sendable (inout CSource) -> Void)?
    /// ISA helper functions (`hmax`, `hsum`, `store_codes`, and `quotient` with `store_nibbles` or
    /// the scalar `pack_group`).
    var helpers: @Sendable (inout CSource) -> Void

    /// `gather_lanes(x, perm)` returning a `vector` of `lanes` floats: its comment (x[perm[0]], ...: `how`),
    /// signature and paired index loads (`indexPairs`), then `body`, which builds and returns the vector.
    static func gatherLanes(_ c: inout CSource, lanes: Int, vector: String, how: String, body: (inout CSource) -> Void) {
        c.comment(lines: [
            "x[perm[0]], ..., x[perm[\(lanes - 1)]]: \(how).",
            "The indices come two per 64-bit load (little-endian: perm[2i] is the low half of p(2i)(2i+1)).",
        ])
        c.function("static inline \(vector) gather_lanes(const float *x, const int32_t *perm)") { c in
            indexPairs(&c, count: lanes)
            body(&c)
        }
    }

    /// `gather_lanes`' indices, two per 64-bit load (`p01` holds perm[0] in its low half, perm[1] in its
    /// high half, little-endian): half the index loads, which with the data loads bound the gather.
    static func indexPairs(_ c: inout CSource, count: Int) {
        let names = stride(from: 0, to: count, by: 2).map { "p\($0)\($0 + 1)" }
        c.line("uint64_t \(names.joined(separator: ", "));")
        for (i, name) in names.enumerated() { c.line("memcpy(&\(name), perm + \(2 * i), sizeof \(name));") }
    }

    /// x86: the 128-bit `name` holding x at indices `first` ... `first + 3` of `indexPairs`, each a scalar
    /// load inserted into its lane (`vinsertps`).
    static func insertQuarter(_ c: inout CSource, _ name: String, first: Int) {
        c.declare("__m128", name, "_mm_load_ss(x + \(index(first)))")
        for lane in 1..<4 {
            c.line("\(name) = _mm_insert_ps(\(name), _mm_load_ss(x + \(index(first + lane))), 0x\(lane)0);")
        }
    }

    /// Index `lane` of `indexPairs`, as a C expression.
    static func index(_ lane: Int) -> String {
        let pair = "p\(lane / 2 * 2)\(lane / 2 * 2 + 1)"
        return lane % 2 == 0 ? "(int32_t)(uint32_t)\(pair)" : "(int32_t)(uint32_t)(\(pair) >> 32)"
    }

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
        mul: { "\(CExpr.factor($0)) * \(CExpr.operand($1))" },
        fma: { "fmaf(\($0), \($1), \($2))" },
        div: { "\(CExpr.factor($0)) / \(CExpr.operand($1))" },
        max: { "maxf(\($0), \($1))" },
        min: { "minf(\($0), \($1))" },
        abs: { "fabsf(\($0))" },
        neg: { "-\(CExpr.operand($0))" },
        round: { "nearbyintf(\($0))" },
        toInt: { "(int32_t)\(CExpr.operand($0))" },
        roundToInt: { "(int32_t)nearbyintf(\($0))" },
        reciprocalQuotient: nil,
        isplat: { $0 },
        imin: { "\($0) < \($1) ? \($0) : \($1)" },
        imax: { "\($0) > \($1) ? \($0) : \($1)" },
        nibbleVectors: 0,
        izero: "0",
        iadd: { "\($0) + \(CExpr.factor($1))" },
        pow2: { "pow2f(\($0))" },
        hmax: { $0 },
        hsum: { $0 },
        storeCodes: { "\($0)[\($1)] = (int8_t)\(CExpr.operand($2));" },
        vectorGather: nil,
        laneGather: nil,
        helpers: { c in
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
        note: "AVX2: 8 fp32 lanes; quotients by reciprocal and FMA correction, vcvtps2dq (nearest even), nibbles by vpackssdw/vpacksswb and shifts",
        zero: "_mm256_setzero_ps()",
        load: { "_mm256_loadu_ps(\($0) + \($1))" },
        store: { "_mm256_storeu_ps(\($0) + \($1), \($2));" },
        splat: { "_mm256_set1_ps(\($0))" },
        add: { "_mm256_add_ps(\($0), \($1))" },
        mul: { "_mm256_mul_ps(\($0), \($1))" },
        fma: { "_mm256_fmadd_ps(\($0), \($1), \($2))" },
        div: { "_mm256_div_ps(\($0), \($1))" },
        max: { "_mm256_max_ps(\($0), \($1))" },
        min: { "_mm256_min_ps(\($0), \($1))" },
        abs: { "_mm256_andnot_ps(_mm256_set1_ps(-0.0f), \($0))" },
        neg: { "_mm256_xor_ps(\($0), _mm256_set1_ps(-0.0f))" },
        round: { "_mm256_round_ps(\($0), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)" },
        toInt: { "_mm256_cvtps_epi32(\($0))" },
        roundToInt: { "_mm256_cvtps_epi32(\($0))" },
        reciprocalQuotient: { "quotient(\($0), \($1), \($2))" },
        isplat: { "_mm256_set1_epi32(\($0))" },
        imin: { "_mm256_min_epi32(\($0), \($1))" },
        imax: { "_mm256_max_epi32(\($0), \($1))" },
        nibbleVectors: 4,
        izero: "_mm256_setzero_si256()",
        iadd: { "_mm256_add_epi32(\($0), \($1))" },
        pow2: { "_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(\($0), _mm256_set1_epi32(127)), 23))" },
        hmax: { "hmax(\($0))" },
        hsum: { "hsum(\($0))" },
        storeCodes: { "store_codes(\($0) + \($1), \($2));" },
        vectorGather: { "_mm256_i32gather_ps(\($0), _mm256_loadu_si256((const __m256i *)(\($1) + \($2))), 4)" },
        laneGather: { c in
            QuantDialect.gatherLanes(&c, lanes: 8, vector: "__m256", how: "each lane a scalar load inserted into its half (vinsertps), no buffer") { c in
                for (name, first) in [("lo", 0), ("hi", 4)] { QuantDialect.insertQuarter(&c, name, first: first) }
                c.line("return _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);")
            }
        },
        helpers: { c in
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
            c.comment("y / s as the correctly rounded quotient, through r = 1 / s (see the file header).")
            c.function("static inline __m256 quotient(__m256 y, __m256 s, __m256 r)") { c in
                c.declare("const __m256", "q", "_mm256_mul_ps(y, r)")
                c.line("return _mm256_fmadd_ps(_mm256_fnmadd_ps(q, s, y), r, q);")
            }
            c.comment(lines: [
                "32 codes in [-8, 7] (int32 lanes: elements 0-7, 8-15, 16-23, 24-31) to 16 bytes, element 2i in",
                "the low nibble. vpackssdw and vpacksswb work per 128-bit half: half 0 ends up with elements",
                "0-3, 8-11, 16-19, 24-27 and half 1 with the others, so the packed 2-byte words are interleaved.",
            ])
            c.function("static inline void store_nibbles(uint8_t *dst, __m256i c0, __m256i c1, __m256i c2, __m256i c3)") { c in
                c.declare("const __m256i", "bytes", "_mm256_packs_epi16(_mm256_packs_epi32(c0, c1), _mm256_packs_epi32(c2, c3))")
                c.declare("const __m256i", "low", "_mm256_and_si256(bytes, _mm256_set1_epi8(0x0F))")
                c.comment("each 16-bit word (elements 2i, 2i + 1) keeps low | high << 4 in its low byte")
                c.declare("const __m256i", "pairs", "_mm256_and_si256(_mm256_or_si256(low, _mm256_srli_epi16(low, 4)), _mm256_set1_epi16(0x00FF))")
                c.declare("const __m256i", "packed", "_mm256_packus_epi16(pairs, pairs)")
                c.line("_mm_storeu_si128((__m128i *)dst, _mm_unpacklo_epi16(_mm256_castsi256_si128(packed), _mm256_extracti128_si256(packed, 1)));")
            }
        })

    // MARK: AVX-512 (F + BW)

    static let avx512 = QuantDialect(
        lanes: 16, headers: ["immintrin.h"], vec: "__m512", ivec: "__m512i",
        note: "AVX-512F/BW: 16 fp32 lanes; quotients by reciprocal and FMA correction, vcvtps2dq (nearest even), nibbles by shifts and vpmovqb",
        zero: "_mm512_setzero_ps()",
        load: { "_mm512_loadu_ps(\($0) + \($1))" },
        store: { "_mm512_storeu_ps(\($0) + \($1), \($2));" },
        splat: { "_mm512_set1_ps(\($0))" },
        add: { "_mm512_add_ps(\($0), \($1))" },
        mul: { "_mm512_mul_ps(\($0), \($1))" },
        fma: { "_mm512_fmadd_ps(\($0), \($1), \($2))" },
        div: { "_mm512_div_ps(\($0), \($1))" },
        max: { "_mm512_max_ps(\($0), \($1))" },
        min: { "_mm512_min_ps(\($0), \($1))" },
        abs: { "_mm512_abs_ps(\($0))" },
        neg: { "_mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(\($0)), _mm512_set1_epi32((int)0x80000000u)))" },
        round: { "_mm512_roundscale_ps(\($0), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)" },
        toInt: { "_mm512_cvtps_epi32(\($0))" },
        roundToInt: { "_mm512_cvtps_epi32(\($0))" },
        reciprocalQuotient: { "quotient(\($0), \($1), \($2))" },
        isplat: { "_mm512_set1_epi32(\($0))" },
        imin: { "_mm512_min_epi32(\($0), \($1))" },
        imax: { "_mm512_max_epi32(\($0), \($1))" },
        nibbleVectors: 1,
        izero: "_mm512_setzero_si512()",
        iadd: { "_mm512_add_epi32(\($0), \($1))" },
        pow2: { "_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(\($0), _mm512_set1_epi32(127)), 23))" },
        hmax: { "_mm512_reduce_max_ps(\($0))" },
        hsum: { "_mm512_reduce_add_epi32(\($0))" },
        storeCodes: { "_mm_storeu_si128((__m128i *)(\($0) + \($1)), _mm512_cvtsepi32_epi8(\($2)));" },
        vectorGather: { "_mm512_i32gather_ps(_mm512_loadu_si512((const void *)(\($1) + \($2))), \($0), 4)" },
        laneGather: { c in
            QuantDialect.gatherLanes(&c, lanes: 16, vector: "__m512", how: "four quarters of scalar loads inserted by vinsertps, then combined") { c in
                for q in 0..<4 { QuantDialect.insertQuarter(&c, "q\(q)", first: 4 * q) }
                c.declare("const __m256", "low", "_mm256_insertf128_ps(_mm256_castps128_ps256(q0), q1, 1)")
                c.declare("const __m256", "high", "_mm256_insertf128_ps(_mm256_castps128_ps256(q2), q3, 1)")
                c.line("return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(low)), _mm256_castps_pd(high), 1));")
            }
        },
        helpers: { c in
            c.comment("y / s as the correctly rounded quotient, through r = 1 / s (see the file header).")
            c.function("static inline __m512 quotient(__m512 y, __m512 s, __m512 r)") { c in
                c.declare("const __m512", "q", "_mm512_mul_ps(y, r)")
                c.line("return _mm512_fmadd_ps(_mm512_fnmadd_ps(q, s, y), r, q);")
            }
            c.comment(lines: [
                "16 codes in [-8, 7] (int32 lanes) to 8 bytes, element 2i in the low nibble: in each 64-bit lane",
                "the odd element's nibble moves next to the even one's, then vpmovqb keeps the low bytes.",
            ])
            c.function("static inline void store_nibbles(uint8_t *dst, __m512i c)") { c in
                c.declare("const __m512i", "low", "_mm512_and_si512(c, _mm512_set1_epi32(0x0F))")
                c.line("_mm_storel_epi64((__m128i *)dst, _mm512_cvtepi64_epi8(_mm512_or_si512(low, _mm512_srli_epi64(low, 28))));")
            }
        })

    // MARK: NEON (compile-tested on x86-64)

    static let neon = QuantDialect(
        lanes: 4, headers: ["arm_neon.h"], vec: "float32x4_t", ivec: "int32x4_t",
        note: "NEON: 4 fp32 lanes; quotients by reciprocal and FMA correction, fcvtns (nearest even), xtn narrowing, nibbles by shifts",
        zero: "vdupq_n_f32(0.0f)",
        load: { "vld1q_f32(\($0) + \($1))" },
        store: { "vst1q_f32(\($0) + \($1), \($2));" },
        splat: { "vdupq_n_f32(\($0))" },
        add: { "vaddq_f32(\($0), \($1))" },
        mul: { "vmulq_f32(\($0), \($1))" },
        fma: { "vfmaq_f32(\($2), \($0), \($1))" },
        div: { "vdivq_f32(\($0), \($1))" },
        max: { "vmaxq_f32(\($0), \($1))" },
        min: { "vminq_f32(\($0), \($1))" },
        abs: { "vabsq_f32(\($0))" },
        neg: { "vnegq_f32(\($0))" },
        round: { "vrndnq_f32(\($0))" },
        toInt: { "vcvtq_s32_f32(\($0))" },
        roundToInt: { "vcvtnq_s32_f32(\($0))" },
        reciprocalQuotient: { "quotient(\($0), \($1), \($2))" },
        isplat: { "vdupq_n_s32(\($0))" },
        imin: { "vminq_s32(\($0), \($1))" },
        imax: { "vmaxq_s32(\($0), \($1))" },
        nibbleVectors: 4,
        izero: "vdupq_n_s32(0)",
        iadd: { "vaddq_s32(\($0), \($1))" },
        pow2: { "vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(\($0), vdupq_n_s32(127)), 23))" },
        hmax: { "vmaxvq_f32(\($0))" },
        hsum: { "vaddvq_s32(\($0))" },
        storeCodes: { "store_codes(\($0) + \($1), \($2));" },
        vectorGather: nil,
        laneGather: { c in
            QuantDialect.gatherLanes(&c, lanes: 4, vector: "float32x4_t", how: "each lane a scalar load into its lane (ld1 {v.s}[lane])") { c in
                c.declare("float32x4_t", "v", "vld1q_dup_f32(x + \(QuantDialect.index(0)))")
                for lane in 1..<4 { c.line("v = vld1q_lane_f32(x + \(QuantDialect.index(lane)), v, \(lane));") }
                c.line("return v;")
            }
        },
        helpers: { c in
            c.comment("Four int32 codes, already inside int8 range, to four bytes.")
            c.function("static inline void store_codes(int8_t *dst, int32x4_t c)") { c in
                c.declare("const int8x8_t", "bytes", "vmovn_s16(vcombine_s16(vmovn_s32(c), vdup_n_s16(0)))")
                c.declare("const int32_t", "word", "vget_lane_s32(vreinterpret_s32_s8(bytes), 0)")
                c.line("memcpy(dst, &word, sizeof word);")
            }
            c.comment("y / s as the correctly rounded quotient, through r = 1 / s (see the file header).")
            c.function("static inline float32x4_t quotient(float32x4_t y, float32x4_t s, float32x4_t r)") { c in
                c.declare("const float32x4_t", "q", "vmulq_f32(y, r)")
                c.line("return vfmaq_f32(q, vfmsq_f32(y, q, s), r);")
            }
            c.comment("16 codes in [-8, 7] (int32 lanes, elements 0-15 in order) to 8 bytes, element 2i in the low nibble.")
            c.function("static inline void store_nibbles(uint8_t *dst, int32x4_t c0, int32x4_t c1, int32x4_t c2, int32x4_t c3)") { c in
                c.declare("const int16x8_t", "w01", "vcombine_s16(vmovn_s32(c0), vmovn_s32(c1))")
                c.declare("const int16x8_t", "w23", "vcombine_s16(vmovn_s32(c2), vmovn_s32(c3))")
                c.declare("const uint16x8_t", "pairs", "vreinterpretq_u16_s8(vcombine_s8(vmovn_s16(w01), vmovn_s16(w23)))")
                c.declare("const uint8x8_t", "even", "vand_u8(vmovn_u16(pairs), vdup_n_u8(0x0F))")
                c.line("vst1_u8(dst, vorr_u8(even, vshl_n_u8(vshrn_n_u16(pairs, 8), 4)));")
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
