import KernelKit

/// How one ISA spells the operations of the int8 micro-kernel. The driver, packing and tails are
/// shared; only these expressions differ between targets.
struct Int8Dialect: Sendable {
    /// int32 lanes per vector (1 for the portable scalar code).
    var lanes: Int
    var headers: [String]
    /// Vector registers available for the tile, for the register-pressure rule.
    var registers: Int
    var intVector: String
    /// One-line description for the file header.
    var dotNote: String
    /// Whether the dot product adds 128 to activations (unsigned x signed) and needs the column-sum fix.
    var offsetsActivations: Bool

    var zero: String
    var loadInt: @Sendable (String) -> String
    var storeInt: @Sendable (String, String) -> String
    /// Broadcast of four activation bytes (an int32 expression) to every lane.
    var broadcast: @Sendable (String) -> String
    /// Declarations that prepare the broadcast row value `a` once per row and step (e.g. |a|).
    var prepareRow: @Sendable (_ name: String, _ a: String) -> [String]
    /// Type of the prepared row value.
    var rowType: String
    /// `acc + dot(row, b)` for one accumulator.
    var accumulate: @Sendable (_ acc: String, _ row: String, _ b: String) -> String
    /// Constants the step needs, declared once per tile.
    var constants: [String]
    var loadB: @Sendable (String) -> String
    var bType: String

    // Epilogue
    var floatVector: String
    var subtract: @Sendable (String, String) -> String
    var toFloat: @Sendable (String) -> String
    var mulFloat: @Sendable (String, String) -> String
    var splatFloat: @Sendable (String) -> String
    var loadFloat: @Sendable (String) -> String
    var storeFloat: @Sendable (String, String) -> String

    static func forTarget(_ isa: ISATarget) -> Int8Dialect? {
        switch isa {
        case .portable: return nil
        case .avx2: return avx2
        case .avx512vnni: return avx512vnni
        case .avxvnni: return avxvnni
        case .neonDotprod: return neon
        }
    }

    static let avx2 = Int8Dialect(
        lanes: 8, headers: ["immintrin.h"], registers: 16, intVector: "__m256i",
        dotNote: "sign transfer, vpmaddubsw(|a|, sign(a) * b) then vpmaddwd with ones;\nint16 pair sums are at most 2 * 127 * 127 = 32258: no saturation for operands in [-127, 127]",
        offsetsActivations: false,
        zero: "_mm256_setzero_si256()",
        loadInt: { "_mm256_loadu_si256((const __m256i *)(\($0)))" },
        storeInt: { "_mm256_storeu_si256((__m256i *)(\($0)), \($1));" },
        broadcast: { "_mm256_set1_epi32(\($0))" },
        prepareRow: { name, a in ["const __m256i \(name) = \(a);", "const __m256i \(name)_abs = _mm256_sign_epi8(\(name), \(name));"] },
        rowType: "__m256i",
        accumulate: { acc, row, b in
            "_mm256_add_epi32(\(acc), _mm256_madd_epi16(_mm256_maddubs_epi16(\(row)_abs, _mm256_sign_epi8(\(b), \(row))), ones))"
        },
        constants: ["const __m256i ones = _mm256_set1_epi16(1);"],
        loadB: { "_mm256_loadu_si256((const __m256i *)(\($0)))" }, bType: "__m256i",
        floatVector: "__m256",
        subtract: { "_mm256_sub_epi32(\($0), \($1))" },
        toFloat: { "_mm256_cvtepi32_ps(\($0))" },
        mulFloat: { "_mm256_mul_ps(\($0), \($1))" },
        splatFloat: { "_mm256_set1_ps(\($0))" },
        loadFloat: { "_mm256_loadu_ps(\($0))" },
        storeFloat: { "_mm256_storeu_ps(\($0), \($1));" })

    static let avx512vnni = Int8Dialect(
        lanes: 16, headers: ["immintrin.h"], registers: 32, intVector: "__m512i",
        dotNote: "offset, vpdpbusd((a + 128) as u8, b) accumulates exactly in int32;\n128 * colsum(W) is subtracted in the epilogue",
        offsetsActivations: true,
        zero: "_mm512_setzero_si512()",
        loadInt: { "_mm512_loadu_si512((const void *)(\($0)))" },
        storeInt: { "_mm512_storeu_si512((void *)(\($0)), \($1));" },
        broadcast: { "_mm512_set1_epi32(\($0))" },
        prepareRow: { name, a in ["const __m512i \(name) = _mm512_xor_si512(\(a), flip);"] },
        rowType: "__m512i",
        accumulate: { acc, row, b in "_mm512_dpbusd_epi32(\(acc), \(row), \(b))" },
        constants: ["const __m512i flip = _mm512_set1_epi32((int)0x80808080u);"],
        loadB: { "_mm512_loadu_si512((const void *)(\($0)))" }, bType: "__m512i",
        floatVector: "__m512",
        subtract: { "_mm512_sub_epi32(\($0), \($1))" },
        toFloat: { "_mm512_cvtepi32_ps(\($0))" },
        mulFloat: { "_mm512_mul_ps(\($0), \($1))" },
        splatFloat: { "_mm512_set1_ps(\($0))" },
        loadFloat: { "_mm512_loadu_ps(\($0))" },
        storeFloat: { "_mm512_storeu_ps(\($0), \($1));" })

    /// The AVX2 dialect with the VEX-encoded vpdpbusd (AVX-VNNI) for the dot product.
    static let avxvnni: Int8Dialect = {
        var d = avx2
        d.dotNote = "offset, VEX vpdpbusd((a + 128) as u8, b) accumulates exactly in int32;\n128 * colsum(W) is subtracted in the epilogue"
        d.offsetsActivations = true
        d.prepareRow = { name, a in ["const __m256i \(name) = _mm256_xor_si256(\(a), flip);"] }
        d.accumulate = { acc, row, b in "_mm256_dpbusd_avx_epi32(\(acc), \(row), \(b))" }
        d.constants = ["const __m256i flip = _mm256_set1_epi32((int)0x80808080u);"]
        return d
    }()

    static let neon = Int8Dialect(
        lanes: 4, headers: ["arm_neon.h"], registers: 32, intVector: "int32x4_t",
        dotNote: "sdot: signed x signed int8 dot products of four bytes into each int32 lane, exact",
        offsetsActivations: false,
        zero: "vdupq_n_s32(0)",
        loadInt: { "vld1q_s32(\($0))" },
        storeInt: { "vst1q_s32(\($0), \($1));" },
        broadcast: { "vreinterpretq_s8_s32(vdupq_n_s32(\($0)))" },
        prepareRow: { name, a in ["const int8x16_t \(name) = \(a);"] },
        rowType: "int8x16_t",
        accumulate: { acc, row, b in "vdotq_s32(\(acc), \(b), \(row))" },
        constants: [],
        loadB: { "vld1q_s8(\($0))" }, bType: "int8x16_t",
        floatVector: "float32x4_t",
        subtract: { "vsubq_s32(\($0), \($1))" },
        toFloat: { "vcvtq_f32_s32(\($0))" },
        mulFloat: { "vmulq_f32(\($0), \($1))" },
        splatFloat: { "vdupq_n_f32(\($0))" },
        loadFloat: { "vld1q_f32(\($0))" },
        storeFloat: { "vst1q_f32(\($0), \($1));" })
}
