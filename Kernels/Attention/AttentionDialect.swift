import KernelKit

/// How one ISA spells the fp32 vector operations of decode attention, the widening of cache codes and
/// the exponential of the softmax. The template (loops, paging, RoPE, online softmax, merge) is shared;
/// the portable dialect is scalar C (one lane, `float` as the "vector", `unsigned` as the code vector).
///
/// Codes are read LANES at a time: `widen_codes(p)` loads LANES bytes and zero-extends each to a 32-bit
/// lane. An INT4 byte j holds elements j (low nibble) and j + d/2 (high nibble), so one widened load
/// gives both halves of a RoPE pair: `w & 15` and `w >> 4`.
struct AttentionDialect: Sendable {
    var lanes: Int
    var headers: [String]
    var vector: String
    /// The integer vector type of widened codes.
    var codes: String
    var note: String
    var zero: String
    var load: @Sendable (String) -> String
    /// A statement storing vector `value` at pointer `p`.
    var store: @Sendable (_ p: String, _ value: String) -> String
    var splat: @Sendable (String) -> String
    var add: @Sendable (String, String) -> String
    var sub: @Sendable (String, String) -> String
    var mul: @Sendable (String, String) -> String
    /// a * b + c (an explicit fused multiply-add where the target has one).
    var madd: @Sendable (_ a: String, _ b: String, _ c: String) -> String
    /// Body of `static inline float hsum(VEC v)`.
    var hsum: [String]
    /// Body of `static inline CODES widen_codes(const unsigned char *p)`: bytes p[0 .. LANES - 1] as lanes.
    var widen: [String]
    /// The high nibble (w >> 4) and the low nibble (w & 15) of widened codes, and codes as fp32.
    var highNibble: @Sendable (String) -> String
    var lowNibble: @Sendable (String) -> String
    var toFloat: @Sendable (String) -> String
    /// INT4 by table: `build(zv, sv)` makes the 16 values (c - z) * s of a row from splatted z and s;
    /// `lookup(w, table)` picks lane i's value by the low 4 bits of w's lane i (higher bits ignored, so the
    /// low nibble needs no mask). Nil: convert the codes and scale them.
    var int4Table: (build: @Sendable (_ zv: String, _ sv: String) -> String, lookup: @Sendable (_ w: String, _ table: String) -> String)? = nil
    /// Body of `static inline VEC hsum_lanes(const VEC *v)`: lane k of the result is the sum of the lanes
    /// of v[k], for LANES vectors (a transposing add tree). Nil: one `hsum` per vector.
    var hsumLanes: [String]? = nil
    /// The pieces of a vector e^x (see `ExpParts`); nil: scalar `expf`.
    var exp: ExpParts? = nil

    static func forTarget(_ isa: ISATarget) -> AttentionDialect? {
        switch isa {
        case .portable: return portable
        case .avx2: return avx2
        case .avx512vnni: return avx512
        case .neonDotprod: return neon
        case .avxvnni: return nil
        }
    }

    static let portable = AttentionDialect(
        lanes: 1, headers: [], vector: "float", codes: "unsigned", note: "scalar C",
        zero: "0.0f",
        load: { "*(\($0))" },
        store: { "*(\($0)) = \($1);" },
        splat: { $0 },
        add: { "\($0) + \($1)" }, sub: { "\($0) - \($1)" }, mul: { "\($0) * \($1)" },
        madd: { "\($2) + \($0) * \($1)" },
        hsum: ["return v;"],
        widen: ["return p[0];"],
        highNibble: { "(\($0) >> 4)" }, lowNibble: { "(\($0) & 15u)" }, toFloat: { "(float)\($0)" })

    static let avx2 = AttentionDialect(
        lanes: 8, headers: ["immintrin.h"], vector: "__m256", codes: "__m256i", note: "AVX2 + FMA, 8 fp32 lanes",
        zero: "_mm256_setzero_ps()",
        load: { "_mm256_loadu_ps(\($0))" },
        store: { "_mm256_storeu_ps(\($0), \($1));" },
        splat: { "_mm256_set1_ps(\($0))" },
        add: { "_mm256_add_ps(\($0), \($1))" }, sub: { "_mm256_sub_ps(\($0), \($1))" }, mul: { "_mm256_mul_ps(\($0), \($1))" },
        madd: { "_mm256_fmadd_ps(\($0), \($1), \($2))" },
        hsum: [
            "__m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));",
            "s = _mm_add_ps(s, _mm_movehl_ps(s, s));",
            "s = _mm_add_ss(s, _mm_movehdup_ps(s));",
            "return _mm_cvtss_f32(s);",
        ],
        widen: ["return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));"],
        highNibble: { "_mm256_srli_epi32(\($0), 4)" },
        lowNibble: { "_mm256_and_si256(\($0), _mm256_set1_epi32(15))" },
        toFloat: { "_mm256_cvtepi32_ps(\($0))" },
        hsumLanes: [
            "/* pairwise sums within each 128-bit half, then the halves of v[0..3] and v[4..7] added */",
            "const __m256 s01 = _mm256_hadd_ps(v[0], v[1]);",
            "const __m256 s23 = _mm256_hadd_ps(v[2], v[3]);",
            "const __m256 s45 = _mm256_hadd_ps(v[4], v[5]);",
            "const __m256 s67 = _mm256_hadd_ps(v[6], v[7]);",
            "const __m256 s0123 = _mm256_hadd_ps(s01, s23);",
            "const __m256 s4567 = _mm256_hadd_ps(s45, s67);",
            "return _mm256_add_ps(_mm256_permute2f128_ps(s0123, s4567, 0x20), _mm256_permute2f128_ps(s0123, s4567, 0x31));",
        ],
        exp: ExpParts(
            clamp: { "_mm256_max_ps(_mm256_set1_ps(-87.0f), \($0))" },
            round: { "_mm256_round_ps(\($0), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)" },
            pow2: { "_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(\($0)), _mm256_set1_epi32(127)), 23))" },
            fnmadd: { "_mm256_fnmadd_ps(\($0), \($1), \($2))" }))

    static let avx512 = AttentionDialect(
        lanes: 16, headers: ["immintrin.h"], vector: "__m512", codes: "__m512i", note: "AVX-512F, 16 fp32 lanes; INT4 dequantized by a 16-entry vpermps table per row",
        zero: "_mm512_setzero_ps()",
        load: { "_mm512_loadu_ps(\($0))" },
        store: { "_mm512_storeu_ps(\($0), \($1));" },
        splat: { "_mm512_set1_ps(\($0))" },
        add: { "_mm512_add_ps(\($0), \($1))" }, sub: { "_mm512_sub_ps(\($0), \($1))" }, mul: { "_mm512_mul_ps(\($0), \($1))" },
        madd: { "_mm512_fmadd_ps(\($0), \($1), \($2))" },
        hsum: ["return _mm512_reduce_add_ps(v);"],
        widen: ["return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p));"],
        highNibble: { "_mm512_srli_epi32(\($0), 4)" },
        lowNibble: { "_mm512_and_si512(\($0), _mm512_set1_epi32(15))" },
        toFloat: { "_mm512_cvtepi32_ps(\($0))" },
        int4Table: (
            build: { "_mm512_mul_ps(_mm512_sub_ps(_mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), \($0)), \($1))" },
            lookup: { "_mm512_permutexvar_ps(\($0), \($1))" }),
        exp: ExpParts(
            clamp: { "_mm512_max_ps(_mm512_set1_ps(-87.0f), \($0))" },
            round: { "_mm512_roundscale_ps(\($0), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)" },
            pow2: { "_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(\($0)), _mm512_set1_epi32(127)), 23))" },
            fnmadd: { "_mm512_fnmadd_ps(\($0), \($1), \($2))" }))

    static let neon = AttentionDialect(
        lanes: 4, headers: ["arm_neon.h"], vector: "float32x4_t", codes: "uint32x4_t", note: "NEON, 4 fp32 lanes",
        zero: "vdupq_n_f32(0.0f)",
        load: { "vld1q_f32(\($0))" },
        store: { "vst1q_f32(\($0), \($1));" },
        splat: { "vdupq_n_f32(\($0))" },
        add: { "vaddq_f32(\($0), \($1))" }, sub: { "vsubq_f32(\($0), \($1))" }, mul: { "vmulq_f32(\($0), \($1))" },
        madd: { "vfmaq_f32(\($2), \($0), \($1))" },
        hsum: ["return vaddvq_f32(v);"],
        widen: [
            "uint32_t word;",
            "memcpy(&word, p, sizeof word);",
            "return vmovl_u16(vget_low_u16(vmovl_u8(vcreate_u8(word))));",
        ],
        highNibble: { "vshrq_n_u32(\($0), 4)" },
        lowNibble: { "vandq_u32(\($0), vdupq_n_u32(15))" },
        toFloat: { "vcvtq_f32_u32(\($0))" })
}

/// A vector e^x for x <= 0 (scores minus their running maximum), rendered by the template from these
/// target operations: x = n ln2 + r with n = round(x / ln2) and |r| <= ln2 / 2 (Cody-Waite, ln2 in two
/// parts), e^r by its Taylor polynomial of degree 7 (truncation below 6e-9 relative), times 2^n built in
/// the exponent field. x is clamped at -87 first (e^-87 ~ 1.6e-38 is nothing next to the block's largest
/// term, 1, and keeps 2^n normal); a NaN passes the clamp.
struct ExpParts: Sendable {
    /// max(-87, x), returning x when x is NaN.
    var clamp: @Sendable (String) -> String
    /// Round to nearest (an fp32 vector of integers).
    var round: @Sendable (String) -> String
    /// 2^n for an fp32 vector n of integers in [-126, 0].
    var pow2: @Sendable (String) -> String
    /// c - a * b, fused.
    var fnmadd: @Sendable (_ a: String, _ b: String, _ c: String) -> String
}
