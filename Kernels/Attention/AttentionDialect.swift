import KernelKit

/// How one ISA spells the fp32 vector operations of decode attention and the unpacking of cache codes.
/// The template (loops, paging, online softmax, merge) is shared; the portable dialect is scalar C
/// (one lane, `float` as the "vector").
struct AttentionDialect: Sendable {
    var lanes: Int
    var headers: [String]
    var vector: String
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
    /// Body of `static inline VEC codes_to_float(const unsigned char *row, int i)`: the codes of elements
    /// i ..< i + LANES as floats (i a multiple of LANES), for int4 and int8 rows.
    var int4Codes: [String]
    var int8Codes: [String]
    /// INT4 by table: `(table, body)`, where `table` builds the 16 dequantized values (c - z) * s of a
    /// row from `zv` and `sv`, and `body` is the body of `static inline VEC dequant_int4(const unsigned
    /// char *row, int i, VEC table)`, which looks elements i ..< i + LANES up in it. Nil: convert the
    /// codes and scale them.
    var int4Table: (table: String, body: [String])? = nil

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
        lanes: 1, headers: [], vector: "float", note: "scalar C",
        zero: "0.0f",
        load: { "*(\($0))" },
        store: { "*(\($0)) = \($1);" },
        splat: { $0 },
        add: { "\($0) + \($1)" }, sub: { "\($0) - \($1)" }, mul: { "\($0) * \($1)" },
        madd: { "\($2) + \($0) * \($1)" },
        hsum: ["return v;"],
        int4Codes: ["return (float)((row[i >> 1] >> ((i & 1) * 4)) & 15);"],
        int8Codes: ["return (float)row[i];"])

    static let avx2 = AttentionDialect(
        lanes: 8, headers: ["immintrin.h"], vector: "__m256", note: "AVX2 + FMA, 8 fp32 lanes",
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
        int4Codes: [
            "/* 4 bytes hold elements i..i+7: duplicate each byte, widen, shift odd lanes by 4, mask */",
            "int32_t word;",
            "memcpy(&word, row + i / 2, sizeof word);",
            "const __m128i bytes = _mm_cvtsi32_si128(word);",
            "const __m256i wide = _mm256_cvtepu8_epi32(_mm_unpacklo_epi8(bytes, bytes));",
            "const __m256i shift = _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4);",
            "return _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(wide, shift), _mm256_set1_epi32(15)));",
        ],
        int8Codes: [
            "return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(row + i))));",
        ])

    static let avx512 = AttentionDialect(
        lanes: 16, headers: ["immintrin.h"], vector: "__m512", note: "AVX-512F, 16 fp32 lanes",
        zero: "_mm512_setzero_ps()",
        load: { "_mm512_loadu_ps(\($0))" },
        store: { "_mm512_storeu_ps(\($0), \($1));" },
        splat: { "_mm512_set1_ps(\($0))" },
        add: { "_mm512_add_ps(\($0), \($1))" }, sub: { "_mm512_sub_ps(\($0), \($1))" }, mul: { "_mm512_mul_ps(\($0), \($1))" },
        madd: { "_mm512_fmadd_ps(\($0), \($1), \($2))" },
        hsum: ["return _mm512_reduce_add_ps(v);"],
        int4Codes: [
            "/* 8 bytes hold elements i..i+15: duplicate each byte, widen, shift odd lanes by 4, mask */",
            "const __m128i bytes = _mm_loadl_epi64((const __m128i *)(row + i / 2));",
            "const __m512i wide = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(bytes, bytes));",
            "const __m512i shift = _mm512_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4);",
            "return _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srlv_epi32(wide, shift), _mm512_set1_epi32(15)));",
        ],
        int8Codes: [
            "return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(row + i))));",
        ],
        int4Table: (
            table: "_mm512_mul_ps(_mm512_sub_ps(_mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), zv), sv)",
            body: [
                "/* 8 bytes hold elements i..i+15: duplicate each byte, widen, shift odd lanes by 4; vpermps reads the low 4 bits */",
                "const __m128i bytes = _mm_loadl_epi64((const __m128i *)(row + i / 2));",
                "const __m512i wide = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(bytes, bytes));",
                "const __m512i shift = _mm512_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4);",
                "return _mm512_permutexvar_ps(_mm512_srlv_epi32(wide, shift), table);",
            ]))

    static let neon = AttentionDialect(
        lanes: 4, headers: ["arm_neon.h"], vector: "float32x4_t", note: "NEON, 4 fp32 lanes",
        zero: "vdupq_n_f32(0.0f)",
        load: { "vld1q_f32(\($0))" },
        store: { "vst1q_f32(\($0), \($1));" },
        splat: { "vdupq_n_f32(\($0))" },
        add: { "vaddq_f32(\($0), \($1))" }, sub: { "vsubq_f32(\($0), \($1))" }, mul: { "vmulq_f32(\($0), \($1))" },
        madd: { "vfmaq_f32(\($2), \($0), \($1))" },
        hsum: ["return vaddvq_f32(v);"],
        int4Codes: [
            "/* 2 bytes hold elements i..i+3: broadcast, shift lane j right by 4j, mask */",
            "uint16_t pair;",
            "memcpy(&pair, row + i / 2, sizeof pair);",
            "const int32x4_t shift = {0, -4, -8, -12};",
            "return vcvtq_f32_u32(vandq_u32(vshlq_u32(vdupq_n_u32(pair), shift), vdupq_n_u32(15)));",
        ],
        int8Codes: [
            "uint32_t word;",
            "memcpy(&word, row + i, sizeof word);",
            "return vcvtq_f32_u32(vmovl_u16(vget_low_u16(vmovl_u8(vcreate_u8(word)))));",
        ])
}
