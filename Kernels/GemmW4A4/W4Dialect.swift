import KernelKit

/// How one ISA spells the W4A4 micro-kernel: INT4 x INT4 group sums (exact in int16 or int32), the
/// fp32 group epilogue, and the INT8 outlier dot product.
///
/// Weights are stored as signed 4-bit codes; x86 targets unpack them to the unsigned form w + 8
/// (`u8` operand of vpmaddubsw / vpdpbusd) and correct by 8 * sum(a) per group (the int32 sums of
/// vpdpbusd start from -8 * sum(a); the int16 sums of AVX2 subtract it when widened), which the quantize
/// kernel already provides as the group sum. Arm's sdot is signed x signed and needs no correction.
///
/// With `unpack=mask` the x86 targets store w + 8 in the packed panel (`NibbleForm.unsigned`), so the
/// unpack is two masks and a shift; on the vpdpbusd targets (`unsignedScaledHigh`) the high nibble is
/// used in place as 16 (w + 8), the activations that meet the low nibble are stored times 16 (still a
/// byte), and the group sum, 16 times the exact one, is shifted down by 4: two masks per load.
struct W4Dialect: Sendable {
    var lanes: Int
    var registers: Int
    var headers: [String]
    var intVector: String
    var floatVector: String
    var note: String
    /// Whether group sums need the -8 * sum(a) correction (unsigned-weight dot products).
    var offsetWeights: Bool
    /// Accumulate one group in int16 lanes (vpmaddubsw + vpaddw), widening at the group's end.
    var int16Groups: Bool

    var zero: String
    /// Constants every tile declares (e.g. int16 ones for vpmaddwd).
    var fixedConstants: [String]
    var constants: @Sendable (_ form: NibbleForm) -> [String]
    /// Declarations unpacking one 4·lanes-byte load at `pointer` into `lo` (k 0-3) and `hi` (k 4-7).
    var unpack: @Sendable (_ form: NibbleForm, _ pointer: String, _ lo: String, _ hi: String) -> [String]
    var broadcast: @Sendable (String) -> String
    var accumulate: @Sendable (_ acc: String, _ weights: String, _ activations: String) -> String
    /// int32 group sums from the accumulator (widening int16 pairs where needed).
    var widen: @Sendable (String) -> String
    var subInt: @Sendable (String, String) -> String
    /// An int32 vector shifted right by 4, arithmetic (exact on the multiples of 16 it is given).
    var shiftRight4: @Sendable (String) -> String
    var splatInt: @Sendable (String) -> String
    /// An int16 vector of one value: the start of the int16 group sums (read only when `int16Groups`).
    var splatInt16: (@Sendable (String) -> String)? = nil
    var loadInt: @Sendable (String) -> String
    var toFloat: @Sendable (String) -> String
    var mulFloat: @Sendable (String, String) -> String
    var addFloat: @Sendable (String, String) -> String
    var splatFloat: @Sendable (String) -> String
    var loadFloat: @Sendable (String) -> String
    var storeFloat: @Sendable (String, String) -> String

    /// The INT8 outlier dot product (the gemm-w8a8 expressions of the same target).
    var outlierRow: @Sendable (_ name: String, _ a: String) -> [String]
    var outlierAccumulate: @Sendable (_ acc: String, _ row: String, _ b: String) -> String
    var outlierConstants: [String]
    var outlierOffset: Bool
    var loadBytes: @Sendable (String) -> String

    /// The dialect of a target; `groupSums` "int32" picks AVX2's int32 path (other targets sum in int32
    /// whatever it says).
    static func forTarget(_ isa: ISATarget, groupSums: String? = nil) -> W4Dialect? {
        switch isa {
        case .portable: return nil
        case .avx2: return groupSums == "int32" ? avx2Int32 : avx2
        case .avxvnni: return avxvnni
        case .avx512vnni: return avx512vnni
        case .neonDotprod: return neon
        }
    }

    private static func x86Unpack(_ prefix: String, _ bits: Int) -> @Sendable (NibbleForm, String, String, String) -> [String] {
        let si = "si\(bits)"
        return { form, p, lo, hi in
            let load = bits == 512 ? "_mm512_loadu_si512((const void *)(\(p)))" : "_mm256_loadu_si256((const __m256i *)(\(p)))"
            let raw = "\(lo)_raw"
            var lines = ["const __m\(bits)i \(raw) = \(load);"]
            switch form {
            case .signed, .signedTable:
                lines.append("const __m\(bits)i \(lo) = \(prefix)_shuffle_epi8(to_unsigned, \(prefix)_and_\(si)(\(raw), low_nibbles));")
                lines.append("const __m\(bits)i \(hi) = \(prefix)_shuffle_epi8(to_unsigned, \(prefix)_and_\(si)(\(prefix)_srli_epi16(\(raw), 4), low_nibbles));")
            case .unsigned:
                lines.append("const __m\(bits)i \(lo) = \(prefix)_and_\(si)(\(raw), low_nibbles);")
                lines.append("const __m\(bits)i \(hi) = \(prefix)_and_\(si)(\(prefix)_srli_epi16(\(raw), 4), low_nibbles);")
            case .unsignedScaledHigh:
                lines.append("const __m\(bits)i \(lo) = \(prefix)_and_\(si)(\(raw), low_nibbles);")
                lines.append("const __m\(bits)i \(hi) = \(prefix)_andnot_\(si)(low_nibbles, \(raw)); /* 16 (w + 8) */")
            }
            return lines
        }
    }

    private static func x86Constants(_ prefix: String, _ bits: Int) -> @Sendable (NibbleForm) -> [String] {
        { form in
            var lines = ["const __m\(bits)i low_nibbles = \(prefix)_set1_epi8(0x0F);"]
            if form == .signed {
                let table = (0..<16).map { String(($0 ^ 8)) }
                let bytes = bits == 512 ? Array(repeating: table, count: 4).flatMap { $0 } : table + table
                let args = bits == 512 ? bytes.reversed().joined(separator: ", ") : bytes.reversed().joined(separator: ", ")
                lines.append("/* nibble -> w + 8 for signed 4-bit w, in every 128-bit lane */")
                lines.append("const __m\(bits)i to_unsigned = \(prefix)_set_epi8(\(args));")
            }
            return lines
        }
    }

    static let avx2 = W4Dialect(
        lanes: 8, registers: 16, headers: ["immintrin.h"], intVector: "__m256i", floatVector: "__m256",
        note: "vpmaddubsw(w + 8, a) accumulated in int16 over a whole group (|sum| <= 32 * 2 * 15 * 8 = 7680) from -4 * sum(a) in each lane, a pair's two lanes added by vpmaddwd at the group's end (-8 * sum(a) in all)",
        offsetWeights: true, int16Groups: true,
        zero: "_mm256_setzero_si256()",
        fixedConstants: ["const __m256i ones16 = _mm256_set1_epi16(1);"],
        constants: x86Constants("_mm256", 256),
        unpack: x86Unpack("_mm256", 256),
        broadcast: { "_mm256_set1_epi32(\($0))" },
        accumulate: { acc, w, a in "_mm256_add_epi16(\(acc), _mm256_maddubs_epi16(\(w), \(a)))" },
        widen: { "_mm256_madd_epi16(\($0), ones16)" },
        subInt: { "_mm256_sub_epi32(\($0), \($1))" },
        shiftRight4: { "_mm256_srai_epi32(\($0), 4)" },
        splatInt: { "_mm256_set1_epi32(\($0))" },
        splatInt16: { "_mm256_set1_epi16((int16_t)(\($0)))" },
        loadInt: { "_mm256_loadu_si256((const __m256i *)(\($0)))" },
        toFloat: { "_mm256_cvtepi32_ps(\($0))" },
        mulFloat: { "_mm256_mul_ps(\($0), \($1))" },
        addFloat: { "_mm256_add_ps(\($0), \($1))" },
        splatFloat: { "_mm256_set1_ps(\($0))" },
        loadFloat: { "_mm256_loadu_ps(\($0))" },
        storeFloat: { "_mm256_storeu_ps(\($0), \($1));" },
        outlierRow: { name, a in ["const __m256i \(name) = \(a);", "const __m256i \(name)_abs = _mm256_sign_epi8(\(name), \(name));"] },
        outlierAccumulate: { acc, row, b in
            "_mm256_add_epi32(\(acc), _mm256_madd_epi16(_mm256_maddubs_epi16(\(row)_abs, _mm256_sign_epi8(\(b), \(row))), ones16))"
        },
        outlierConstants: [], outlierOffset: false,
        loadBytes: { "_mm256_loadu_si256((const __m256i *)(\($0)))" })

    /// AVX2's int32 path: each vpmaddubsw's pair sums widened by vpmaddwd and added in int32 at once (one
    /// more instruction per step than the int16 path), the sums starting from -8 * sum(a).
    static let avx2Int32: W4Dialect = {
        var d = avx2
        d.note = "vpmaddubsw(w + 8, a) widened to int32 by vpmaddwd after every step and added in int32, starting from -8 * sum(a)"
        d.int16Groups = false
        d.accumulate = { acc, w, a in "_mm256_add_epi32(\(acc), _mm256_madd_epi16(_mm256_maddubs_epi16(\(w), \(a)), ones16))" }
        d.widen = { $0 }
        return d
    }()

    static let avxvnni: W4Dialect = {
        var d = avx2
        d.note = "VEX vpdpbusd(w + 8, a) accumulates each group exactly in int32, starting from -8 * sum(a)"
        d.int16Groups = false
        d.fixedConstants = []
        d.accumulate = { acc, w, a in "_mm256_dpbusd_avx_epi32(\(acc), \(w), \(a))" }
        d.widen = { $0 }
        d.outlierRow = { name, a in ["const __m256i \(name) = _mm256_xor_si256(\(a), flip_activation);"] }
        d.outlierAccumulate = { acc, row, b in "_mm256_dpbusd_avx_epi32(\(acc), \(row), \(b))" }
        d.outlierConstants = ["const __m256i flip_activation = _mm256_set1_epi32((int)0x80808080u);"]
        d.outlierOffset = true
        return d
    }()

    static let avx512vnni = W4Dialect(
        lanes: 16, registers: 32, headers: ["immintrin.h"], intVector: "__m512i", floatVector: "__m512",
        note: "vpdpbusd(w + 8, a) accumulates each group exactly in int32, starting from -8 * sum(a)",
        offsetWeights: true, int16Groups: false,
        zero: "_mm512_setzero_si512()",
        fixedConstants: [],
        constants: x86Constants("_mm512", 512),
        unpack: x86Unpack("_mm512", 512),
        broadcast: { "_mm512_set1_epi32(\($0))" },
        accumulate: { acc, w, a in "_mm512_dpbusd_epi32(\(acc), \(w), \(a))" },
        widen: { $0 },
        subInt: { "_mm512_sub_epi32(\($0), \($1))" },
        shiftRight4: { "_mm512_srai_epi32(\($0), 4)" },
        splatInt: { "_mm512_set1_epi32(\($0))" },
        loadInt: { "_mm512_loadu_si512((const void *)(\($0)))" },
        toFloat: { "_mm512_cvtepi32_ps(\($0))" },
        mulFloat: { "_mm512_mul_ps(\($0), \($1))" },
        addFloat: { "_mm512_add_ps(\($0), \($1))" },
        splatFloat: { "_mm512_set1_ps(\($0))" },
        loadFloat: { "_mm512_loadu_ps(\($0))" },
        storeFloat: { "_mm512_storeu_ps(\($0), \($1));" },
        outlierRow: { name, a in ["const __m512i \(name) = _mm512_xor_si512(\(a), flip_activation);"] },
        outlierAccumulate: { acc, row, b in "_mm512_dpbusd_epi32(\(acc), \(row), \(b))" },
        outlierConstants: ["const __m512i flip_activation = _mm512_set1_epi32((int)0x80808080u);"],
        outlierOffset: true,
        loadBytes: { "_mm512_loadu_si512((const void *)(\($0)))" })

    static let neon = W4Dialect(
        lanes: 4, registers: 32, headers: ["arm_neon.h"], intVector: "int32x4_t", floatVector: "float32x4_t",
        note: "sdot on sign-extended 4-bit codes, exact int32 group sums",
        offsetWeights: false, int16Groups: false,
        zero: "vdupq_n_s32(0)",
        fixedConstants: [],
        constants: { form in
            form == .signedTable
                ? ["/* nibble -> signed 4-bit value */", "const int8x16_t to_signed = {0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1};", "const uint8x16_t low_nibbles = vdupq_n_u8(0x0F);"]
                : []
        },
        unpack: { form, p, lo, hi in
            let raw = "\(lo)_raw"
            if form == .signedTable {
                return [
                    "const uint8x16_t \(raw) = vld1q_u8((const uint8_t *)(\(p)));",
                    "const int8x16_t \(lo) = vqtbl1q_s8(to_signed, vandq_u8(\(raw), low_nibbles));",
                    "const int8x16_t \(hi) = vqtbl1q_s8(to_signed, vshrq_n_u8(\(raw), 4));",
                ]
            }
            return [
                "const int8x16_t \(raw) = vld1q_s8((const int8_t *)(\(p)));",
                "const int8x16_t \(lo) = vshrq_n_s8(vshlq_n_s8(\(raw), 4), 4);",
                "const int8x16_t \(hi) = vshrq_n_s8(\(raw), 4);",
            ]
        },
        broadcast: { "vreinterpretq_s8_s32(vdupq_n_s32(\($0)))" },
        accumulate: { acc, w, a in "vdotq_s32(\(acc), \(w), \(a))" },
        widen: { $0 },
        subInt: { "vsubq_s32(\($0), \($1))" },
        shiftRight4: { "vshrq_n_s32(\($0), 4)" },
        splatInt: { "vdupq_n_s32(\($0))" },
        loadInt: { "vld1q_s32(\($0))" },
        toFloat: { "vcvtq_f32_s32(\($0))" },
        mulFloat: { "vmulq_f32(\($0), \($1))" },
        addFloat: { "vaddq_f32(\($0), \($1))" },
        splatFloat: { "vdupq_n_f32(\($0))" },
        loadFloat: { "vld1q_f32(\($0))" },
        storeFloat: { "vst1q_f32(\($0), \($1));" },
        outlierRow: { name, a in ["const int8x16_t \(name) = \(a);"] },
        outlierAccumulate: { acc, row, b in "vdotq_s32(\(acc), \(b), \(row))" },
        outlierConstants: [], outlierOffset: false,
        loadBytes: { "vld1q_s8((const int8_t *)(\($0)))" })
}

extension W4Dialect {
    /// A statement storing the lanes of `value` to `pointer` (uint16_t *) as IEEE binary16, rounded to
    /// nearest even: vcvtps2ph (AVX-512F; F16C through `store_halves8` on the AVX2 targets) or fcvtn.
    func storeHalves(_ pointer: String, _ value: String) -> String {
        switch floatVector {
        case "__m512": return "_mm256_storeu_si256((__m256i *)(\(pointer)), _mm512_cvtps_ph(\(value), _MM_FROUND_TO_NEAREST_INT));"
        case "__m256": return "store_halves8(\(pointer), \(value));"
        default: return "vst1_u16(\(pointer), vreinterpret_u16_f16(vcvt_f16_f32(\(value))));"
        }
    }

    /// The AVX2 targets' F16C helper: a function of its own, compiled for F16C (the target flags are
    /// AVX2 and FMA), so only a machine with F16C runs it (`half-store` rule).
    var halfHelpers: [String] {
        guard floatVector == "__m256" else { return [] }
        return [
            "/* 8 fp32 lanes to binary16, round to nearest even (F16C vcvtps2ph). */",
            "__attribute__((target(\"f16c\"))) static void store_halves8(uint16_t *p, __m256 v) {",
            "    _mm_storeu_si128((__m128i *)p, _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));",
            "}",
        ]
    }
}

/// The form of the normal codes in a packed gemm-w4a4 panel and how the tile unpacks them.
enum NibbleForm: Equatable, Sendable {
    /// Signed 4-bit codes: the portable target, NEON (`mask`: shifts; `lut`: `signedTable`) and the x86
    /// targets with `unpack=lut` (a vpshufb table to w + 8).
    case signed
    /// NEON's `unpack=lut`: signed codes looked up by tbl.
    case signedTable
    /// w + 8 in each nibble (AVX2 `unpack=mask`): a mask, and a shift and a mask.
    case unsigned
    /// w + 8 in each nibble, the high one used in place as 16 (w + 8) (vpdpbusd targets, `unpack=mask`).
    case unsignedScaledHigh

    init(isa: ISATarget, unpack: String) {
        switch (isa, unpack) {
        case (.avx2, "mask"): self = .unsigned
        case (.avxvnni, "mask"), (.avx512vnni, "mask"): self = .unsignedScaledHigh
        case (.neonDotprod, "lut"): self = .signedTable
        default: self = .signed
        }
    }

    /// Whether the panel holds w + 8 (the packing differs from the signed form).
    var storesUnsigned: Bool { self == .unsigned || self == .unsignedScaledHigh }
}
