import KernelKit

/// How one ISA spells the fp32 vectors of gemm-f16 and the widening of fp16 weights.
struct F16Dialect: Sendable {
    var lanes: Int
    var registers: Int
    var headers: [String]
    var vector: String
    var note: String
    var zero: String
    var splat: @Sendable (String) -> String
    /// a * b + c, fused (one rounding, as `Float.addingProduct`).
    var fma: @Sendable (_ a: String, _ b: String, _ c: String) -> String
    /// A statement storing vector `value` at pointer `p`.
    var store: @Sendable (_ p: String, _ value: String) -> String
    /// Body of `static inline VEC load_halves(const uint16_t *p)`: LANES halves widened to fp32.
    var loadHalves: [String]

    /// AVX2's widening with F16C's `vcvtph2ps` (`halves=f16c`): one instruction per 8 halves where the
    /// integer path takes about ten. The functions that use it are compiled for F16C by attribute, so the
    /// rest of the avx2 target still runs without it.
    static let f16cHalves = ["return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));"]

    static func forTarget(_ isa: ISATarget) -> F16Dialect? {
        switch isa {
        case .portable: portable
        case .avx2: avx2
        case .avx512vnni: avx512
        case .neonDotprod: neon
        case .avxvnni: nil
        }
    }

    static let portable = F16Dialect(
        lanes: 1, registers: 0, headers: ["math.h"], vector: "float", note: "scalar C, fmaf",
        zero: "0.0f", splat: { $0 }, fma: { "fmaf(\($0), \($1), \($2))" }, store: { "*(\($0)) = \($1);" },
        loadHalves: ["return half_to_float(p[0]);"])

    static let avx2 = F16Dialect(
        lanes: 8, registers: 16, headers: ["immintrin.h"], vector: "__m256",
        note: "AVX2 + FMA, 8 fp32 lanes; halves widened with integer operations (no F16C needed)",
        zero: "_mm256_setzero_ps()", splat: { "_mm256_set1_ps(\($0))" }, fma: { "_mm256_fmadd_ps(\($0), \($1), \($2))" },
        store: { "_mm256_storeu_ps(\($0), \($1));" },
        loadHalves: [
            "/* normal halves: exponent and mantissa moved into fp32 position, exponent rebiased by 127 - 15;",
            "   zero and subnormal halves (exponent 0): mantissa * 2^-24. Integer work and normal fp32 only",
            "   (no denormal operands). Weights are finite. */",
            "const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));",
            "const __m256i shifted = _mm256_slli_epi32(_mm256_and_si256(h, _mm256_set1_epi32(0x7fff)), 13);",
            "__m256 value = _mm256_castsi256_ps(_mm256_add_epi32(shifted, _mm256_set1_epi32((127 - 15) << 23)));",
            "const __m256i tiny = _mm256_cmpeq_epi32(_mm256_and_si256(h, _mm256_set1_epi32(0x7c00)), _mm256_setzero_si256());",
            "if (!_mm256_testz_si256(tiny, tiny)) {",
            "    const __m256 small = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_and_si256(h, _mm256_set1_epi32(0x3ff))), _mm256_set1_ps(0x1p-24f));",
            "    value = _mm256_blendv_ps(value, small, _mm256_castsi256_ps(tiny));",
            "}",
            "const __m256i sign = _mm256_slli_epi32(_mm256_and_si256(h, _mm256_set1_epi32(0x8000)), 16);",
            "return _mm256_or_ps(value, _mm256_castsi256_ps(sign));",
        ])

    static let avx512 = F16Dialect(
        lanes: 16, registers: 32, headers: ["immintrin.h"], vector: "__m512", note: "AVX-512F, 16 fp32 lanes, vcvtph2ps",
        zero: "_mm512_setzero_ps()", splat: { "_mm512_set1_ps(\($0))" }, fma: { "_mm512_fmadd_ps(\($0), \($1), \($2))" },
        store: { "_mm512_storeu_ps(\($0), \($1));" },
        loadHalves: ["return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));"])

    static let neon = F16Dialect(
        lanes: 4, registers: 32, headers: ["arm_neon.h"], vector: "float32x4_t", note: "NEON, 4 fp32 lanes, fcvtl",
        zero: "vdupq_n_f32(0.0f)", splat: { "vdupq_n_f32(\($0))" }, fma: { "vfmaq_f32(\($2), \($0), \($1))" },
        store: { "vst1q_f32(\($0), \($1));" },
        loadHalves: ["return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));"])
}

/// Renders C for one point of gemm-f16.
///
/// The weights are packed once into panels of NR columns, `[k][NR]` halves each (columns past N zero).
/// Each thread takes a block of rows and whole panels; per panel the MR x NR register tile runs down k,
/// widening NR halves per step and adding x[r][k] * w[k] into MR * NR / LANES accumulators, in k order.
struct F16Template {
    let config: Configuration
    let templateVersion: Int

    var isa: ISATarget { ISATarget(rawValue: config.name("isa"))! }
    var mr: Int { config.int("mr") }
    var nr: Int { config.int("nr") }
    /// Software prefetch distance along the packed panel, bytes (0: none).
    var prefetch: Int { config.int("pf") }
    /// F16C's conversion in place of AVX2's integer widening (a record stored before version 3 lacks the
    /// parameter and runs the integer widening, as it did then).
    var f16c: Bool { config["halves"] == .name("f16c") }
    private var d: F16Dialect { F16Dialect.forTarget(isa)! }
    /// The attribute of the functions that widen halves: F16C's, where `halves=f16c`.
    private var widening: String { f16c ? "__attribute__((target(\"f16c\"))) " : "" }

    var variantName: String {
        "gemm_f16__\(isa.rawValue.replacingOccurrences(of: "-", with: ""))_mr\(mr)_nr\(nr)\(prefetch > 0 ? "_pf\(prefetch)" : "")\(f16c ? "_f16c" : "")"
    }

    func render() -> KernelSource {
        let name = variantName
        let vectors = nr / d.lanes
        var c = CSource()
        c.comment(lines: [
            "gemm-f16, template version \(templateVersion): \(name)",
            "Parameters: isa=\(isa.rawValue) mr=\(mr) nr=\(nr) pf=\(prefetch)\(f16c ? " halves=f16c" : "")",
            "",
            "Y[M][N] = X[M][K] . W[N][K]^T, W in fp16 (IEEE binary16 bits), X, Y and the sums in fp32. Each",
            "output is one fused multiply-add chain over k in ascending order, from 0.",
            "Weights are packed into panels of \(nr) columns, [K][\(nr)] halves each; a \(mr) x \(nr) register tile",
            "runs down K for every panel and row block. Vector code: \(f16c ? "AVX2 + FMA, 8 fp32 lanes; halves widened by F16C's vcvtph2ps" : d.note).",
            "",
            "Generated by lowbit. Threads are the caller's: each computes rows [m0, m1) x columns [n0, n1),",
            "n0 a multiple of \(nr).",
        ])
        c.include("stddef.h")
        c.include("stdint.h")
        c.include("string.h")
        for h in d.headers { c.include(h) }
        c.line()
        c.define("MR", mr)
        c.define("NR", nr)
        c.define("LANES", d.lanes)
        if prefetch > 0 { c.define("PREFETCH_BYTES", prefetch) }
        c.line()
        if d.lanes == 1 {
            c.comment(lines: [
                "An fp16 bit pattern as fp32: zero and subnormal halves are mantissa * 2^-24, infinities and",
                "NaNs stay so, normal halves get their exponent rebiased by 127 - 15; then the sign.",
            ])
            c.function("static inline float half_to_float(uint16_t h)") { c in
                c.declare("const uint32_t", "exponent", "(h >> 10) & 0x1fu")
                c.declare("const uint32_t", "mantissa", "h & 0x3ffu")
                c.declare("float", "f")
                c.ifBlock("exponent == 0", { c in
                    c.line("f = (float)mantissa * 0x1p-24f;")
                }, else: { c in
                    c.ifBlock("exponent == 31", { c in
                        c.line("f = mantissa != 0 ? NAN : INFINITY;")
                    }, else: { c in
                        c.declare("const uint32_t", "bits", "((exponent + 112u) << 23) | (mantissa << 13)")
                        c.line("memcpy(&f, &bits, sizeof f);")
                    })
                })
                c.line("return (h & 0x8000u) != 0 ? -f : f;")
            }
        }
        c.comment("LANES consecutive halves as fp32.")
        c.function("\(widening)static inline \(d.vector) load_halves(const uint16_t *p)") { c in c.lines(f16c ? F16Dialect.f16cHalves : d.loadHalves) }
        c.function("size_t \(name)_packed_bytes(int n, int k)") { c in
            c.line("return (size_t)((n + NR - 1) / NR) * (size_t)k * NR * sizeof(uint16_t);")
        }
        c.comment("Panel p holds columns [p * NR, p * NR + NR) of W [n][k] as [k][NR] halves; columns past n are 0.")
        c.function("void \(name)_pack(const uint16_t *w, int n, int k, void *packed)") { c in
            c.declare("uint16_t *", "dst", "(uint16_t *)packed")
            c.forLoop("int p = 0", "p * NR < n", "p++") { c in
                c.forLoop("int i = 0", "i < k", "i++") { c in
                    c.forLoop("int j = 0", "j < NR", "j++") { c in
                        c.declare("const int", "col", "p * NR + j")
                        c.line("*dst++ = col < n ? w[(size_t)col * k + i] : 0;")
                    }
                }
            }
        }
        renderTile(&c, vectors: vectors)
        c.function("void \(name)(const float *x, const void *packed, float *y, int n, int k, int m0, int m1, int n0, int n1)") { c in
            c.declare("const uint16_t *", "panels", "(const uint16_t *)packed")
            c.forLoop("int c0 = n0", "c0 < n1", "c0 += NR") { c in
                c.declare("const uint16_t *", "panel", "panels + (size_t)(c0 / NR) * k * NR")
                c.declare("const int", "cols", "n1 - c0 < NR ? n1 - c0 : NR")
                c.forLoop("int r0 = m0", "r0 < m1", "r0 += MR") { c in
                    c.declare("const int", "rows", "m1 - r0 < MR ? m1 - r0 : MR")
                    c.line("tile(x + (size_t)r0 * k, rows, k, panel, y + (size_t)r0 * n + c0, n, cols);")
                }
            }
        }
        return KernelSource(
            name: name, isa: isa, code: c.description,
            symbols: ["kernel": name, "pack": "\(name)_pack", "packed_bytes": "\(name)_packed_bytes"])
    }

    private func renderTile(_ c: inout CSource, vectors: Int) {
        let rows = 0..<mr, vs = 0..<vectors
        c.comment(lines: [
            "One MR x NR tile: `rows` (<= MR) rows of x (row stride k) against a packed panel, `cols` (<= NR)",
            "columns stored into y (row stride n). Rows past `rows` repeat the last row and are not stored.",
        ])
        c.function("\(widening)static void tile(const float *x, int rows, int k, const uint16_t *panel, float *y, int n, int cols)") { c in
            for r in rows {
                c.declare("const float *", "x\(r)", r == 0 ? "x" : "x + (size_t)(rows > \(r) ? \(r) : rows - 1) * k")
            }
            for r in rows { for v in vs { c.declare(d.vector, "a\(r)_\(v)", d.zero) } }
            c.forLoop("int i = 0", "i < k", "i++") { c in
                c.declare("const uint16_t *", "w", "panel + (size_t)i * NR")
                if prefetch > 0 {
                    // One prefetch per cache line of this step's NR halves, PREFETCH_BYTES ahead in the panel.
                    for line in stride(from: 0, to: max(nr * 2, 64), by: 64) {
                        c.line("__builtin_prefetch((const char *)w + \(line) + PREFETCH_BYTES);")
                    }
                }
                for v in vs { c.declare("const \(d.vector)", "w\(v)", "load_halves(w + \(v * d.lanes))") }
                for r in rows {
                    c.declare("const \(d.vector)", "b\(r)", d.splat("x\(r)[i]"))
                    for v in vs { c.line("a\(r)_\(v) = \(d.fma("b\(r)", "w\(v)", "a\(r)_\(v)"));") }
                }
            }
            c.declare("float", "partial[NR]")
            for r in rows {
                c.ifBlock("rows > \(r)") { c in
                    c.ifBlock("cols == NR", { c in
                        for v in vs { c.line(d.store("y + (size_t)\(r) * n + \(v * d.lanes)", "a\(r)_\(v)")) }
                    }, else: { c in
                        for v in vs { c.line(d.store("partial + \(v * d.lanes)", "a\(r)_\(v)")) }
                        c.line("memcpy(y + (size_t)\(r) * n, partial, (size_t)cols * sizeof(float));")
                    })
                }
            }
        }
    }
}
