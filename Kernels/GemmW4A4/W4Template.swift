import KernelKit

/// Renders C for one point of gemm-w4a4 (KERNELS.md section 2), or of gemm-w4a4-kv: the same packing and
/// micro-kernel with the KV-cache epilogue in place of the fp32 store.
struct GemmW4A4Template {
    /// What the driver does with a finished block of Y.
    enum Epilogue: Equatable {
        /// Stores Y, fp32 `[M][N]` (gemm-w4a4).
        case fp32
        /// Quantizes each (token, head) row of d values into a paged cache (gemm-w4a4-kv).
        case kvCache(KVCacheFormat, page: Int)
    }

    let config: Configuration
    let templateVersion: Int
    var epilogue: Epilogue = .fp32

    var isa: ISATarget { ISATarget(rawValue: config.name("isa"))! }
    var mr: Int { config.int("mr") }
    var nr: Int { config.int("nr") }
    var unpack: String { config.name("unpack") }
    /// Software prefetch distance along the packed weight panel, bytes (0: none).
    var prefetch: Int { config.int("pf") }
    /// The tile's fp32 sums stay in the `partial` buffer (L1) instead of registers, which leaves the
    /// registers to the integer group sums of a taller tile.
    var memoryAccumulators: Bool { config.name("acc") == "memory" }
    /// Each group's scales follow its codes in the packed panel (one stream) instead of all scales
    /// after all codes; a configuration without `layout` (stored before version 6) is split.
    var interleaved: Bool { config["layout"] == .name("interleaved") }
    /// Y stored as IEEE binary16 (gemm-w4a4 `out=fp16`): each fp32 result rounded to nearest even.
    var halfOutput: Bool { epilogue == .fp32 && config["out"] == .name("fp16") }
    /// The C element type of Y.
    private var yType: String { halfOutput ? "uint16_t" : "float" }
    /// AVX2's int32 group-sum path (`gsum=int32`).
    var int32Sums: Bool { config["gsum"] == .name("int32") }
    /// The target's micro-kernel spelling (nil: portable C).
    var dialect: W4Dialect? { W4Dialect.forTarget(isa, groupSums: config["gsum"]?.description) }
    /// How the packed panel stores the normal codes and how the tile unpacks them (a function of the
    /// target and `unpack`; see `NibbleForm`).
    var nibbles: NibbleForm { NibbleForm(isa: isa, unpack: unpack) }

    static let codeParameters = ["isa", "mr", "nr", "kc", "mc", "nc", "unpack", "pf", "acc", "gsum", "layout"]

    var variantName: String {
        let tile = "\(isa.rawValue.replacingOccurrences(of: "-", with: ""))_mr\(mr)_nr\(nr)_kc\(config.int("kc"))_mc\(config.int("mc"))_nc\(config.int("nc"))_\(unpack)_pf\(prefetch)\(memoryAccumulators ? "_accmem" : "")\(int32Sums ? "_g32" : "")\(interleaved ? "_il" : "")"
        switch epilogue {
        case .fp32: return "gemm_w4a4__\(tile)\(halfOutput ? "_yf16" : "")"
        case .kvCache(let format, let page): return "gemm_w4a4_kv__\(tile)_\(format.rawValue)_p\(page)"
        }
    }

    /// The family's name and parameters in the header comment.
    private var header: [String] {
        switch epilogue {
        case .fp32:
            return [
                "gemm-w4a4, template version \(templateVersion): \(variantName)",
                "Parameters: " + (Self.codeParameters + ["out"]).compactMap { p in config[p].map { "\(p)=\($0)" } }.joined(separator: " "),
            ]
        case .kvCache(let format, let page):
            return [
                "gemm-w4a4-kv, template version \(templateVersion): \(variantName)",
                "Parameters: " + Self.codeParameters.map { "\($0)=\(config[$0]!)" }.joined(separator: " ") + " cache=\(format.rawValue) page=\(page)",
            ]
        }
    }

    func render() -> KernelSource {
        let name = variantName
        let d = dialect
        var c = CSource()
        c.comment(lines: header + [
            "",
            "Y[m][n] = sum over groups g of K' = K - O channels of sa[m][g] * sw[n][g] * sum_{k in g} a[m][k] * w[n][k]",
            "        + sa8[m] * sw8[n] * sum over the O outlier channels of a8[m][k] * w8[n][k]",
            "INT4 codes in [-8, 7], groups of 128, INT8 outliers in [-127, 127]. Each group's integer sum is exact;",
            "it is scaled in fp32 and added to one fp32 accumulator, groups in order, outliers last.",
        ] + (halfOutput ? ["Y is stored as IEEE binary16: each fp32 result rounded to nearest even (overflow to infinity)."] : []) + [
            "Group sums: " + (d?.note ?? "plain C loops over int32 accumulators") + ".",
            "",
        ] + epilogueComment)
        let math = epilogue == .fp32 ? [] : ["math.h"]
        for h in math + ["stddef.h", "stdint.h", "string.h"] + (d?.headers ?? []) { c.include(h) }
        c.line()
        c.define("MR", mr)
        c.define("NR", nr)
        c.define("KC", config.int("kc"))
        c.define("MC", config.int("mc"))
        c.define("NC", config.int("nc"))
        c.define("G", 128)
        if prefetch > 0 { c.define("PREFETCH_BYTES", prefetch) }
        if case .kvCache(let format, let page) = epilogue {
            c.define("PAGE", page)
            if format.isQuantized { c.define("MAX_CODE", "\(format.maxCode).0f") }
        }
        c.line()
        renderPacking(&c, name: name)
        renderHelpers(&c, simd: d != nil)
        if let d { renderSIMDTile(&c, d) } else { renderPortableTile(&c) }
        var symbols = ["kernel": name, "pack": "\(name)_pack", "packed_bytes": "\(name)_packed_bytes", "workspace_bytes": "\(name)_workspace_bytes"]
        if case .kvCache(let format, _) = epilogue {
            KVPageLayout.renderHelpers(&c, format: format)
            c.function("size_t \(name)_page_bytes(int hkv, int d)") { c in c.line("return page_bytes(hkv, d);") }
            symbols["page_bytes"] = "\(name)_page_bytes"
            KVQuantization.renderStoreRow(&c, format: format)
            renderCacheDriver(&c, name: name, format: format)
        } else {
            renderDriver(&c, name: name)
        }
        return KernelSource(name: name, isa: isa, code: c.description, symbols: symbols)
    }

    private var epilogueComment: [String] {
        switch epilogue {
        case .fp32:
            return [
                "Generated by lowbit. Threads and their layout are the caller's: each thread computes a block",
                "[m0, m1) x [n0, n1) of Y, with n0 a multiple of NR.",
            ]
        case .kvCache(let format, _):
            let rule =
                format.isQuantized
                ? [
                    "The row is quantized asymmetrically to \(format.bits) bits with the SIGNED minimum and maximum:",
                    "  s = (max - min) / \(format.maxCode), z = rne(-min / s), q = clamp(rne(x / s) + z, 0, \(format.maxCode));",
                    "  a constant row takes s = max(|max|, |min|) (it dequantizes exactly), a row of zeros s = z = q = 0.",
                ]
                : ["The row is stored as fp32, unchanged."]
            return [
                "Epilogue: Y has N = 2 * hkv * d columns, the K heads then the V heads of the K and V projections.",
                "Each token row m and head h of Y is one cache row (K before RoPE), written to slot row_pos[m] % PAGE",
                "of the page the page table gives for (row_seq[m], row_pos[m] / PAGE).",
            ] + rule + [
                "Y itself is written only when y is not NULL (a debugging copy).",
                "",
                "Generated by lowbit. Threads and their layout are the caller's: each thread computes a block",
                "[m0, m1) x [n0, n1) of Y, with n0 and n1 multiples of lcm(NR, d) (or n1 = N): whole heads.",
            ]
        }
    }

    private func renderPacking(_ c: inout CSource, name: String) {
        c.comment(lines: [
            "Packed weights, one panel per NR output channels:",
            "  normal codes [K' / 8][NR][4] bytes: byte (j, t) of chunk q holds w[j][8q + t] in its low nibble",
            !nibbles.storesUnsigned
                ? "    and w[j][8q + 4 + t] in its high nibble (signed 4-bit, zero padded past N);"
                : "    and w[j][8q + 4 + t] in its high nibble, each as w + 8 in [0, 15] (8 past N);",
            "  group scales [K' / G][NR] fp32;",
            interleaved
                ? "  (interleaved: each group's G / 8 chunks of codes, then that group's NR scales, group after group)"
                : "  (split: all the codes, then all the scales)",
            "  outlier codes [ceil(O / 4)][NR][4] int8; outlier scales [NR] fp32; 128 * sum of outlier codes [NR] int32;",
            "  padded to 64 bytes.",
        ])
        c.function("static size_t panel_bytes(int k, int outliers)") { c in
            c.declare("const int", "normal", "k - outliers")
            c.declare("const size_t", "codes", "(size_t)normal / 2 * NR")
            c.declare("const size_t", "scales", "(size_t)(normal / G) * NR * sizeof(float)")
            c.declare("const size_t", "outlier_codes", "(size_t)((outliers + 3) / 4) * NR * 4")
            c.declare("const size_t", "bytes", "codes + scales + outlier_codes + NR * sizeof(float) + NR * sizeof(int32_t)")
            c.line("return (bytes + 63) / 64 * 64;")
        }
        c.comment("Byte offsets in a panel: group g's codes and scales, and the outlier block after the last group.")
        c.function("static inline size_t group_codes(int g)") { c in
            c.line(interleaved ? "return (size_t)g * ((size_t)(G / 2) * NR + NR * sizeof(float));" : "return (size_t)g * (G / 2) * NR;")
        }
        c.function("static inline size_t group_scales(int g, int normal)") { c in
            if interleaved {
                c.line("(void)normal;")
                c.line("return group_codes(g) + (size_t)(G / 2) * NR;")
            } else {
                c.line("return (size_t)normal / 2 * NR + (size_t)g * NR * sizeof(float);")
            }
        }
        c.function("static inline size_t outlier_block(int normal)") { c in
            c.line("return (size_t)normal / 2 * NR + (size_t)(normal / G) * NR * sizeof(float);")
        }
        c.function("size_t \(name)_packed_bytes(int n, int k, int outliers)") { c in
            c.line("return (size_t)((n + NR - 1) / NR) * panel_bytes(k, outliers);")
        }
        if epilogue == .fp32 {
            c.function("size_t \(name)_workspace_bytes(void)") { c in
                c.comment("an MC x KC block of unpacked activations, then fp32 partial sums of an MC x NC block")
                c.line("return (size_t)MC * KC + (size_t)MC * NC * sizeof(float);")
            }
        } else {
            c.comment(lines: [
                "The N block of the cache epilogue: NC rounded down to whole heads and whole panels, a multiple of",
                "lcm(NR, d), at least one such unit, so every head row of a block is complete when the block is.",
            ])
            c.function("static int head_block(int d)") { c in
                c.declare("int", "a", "d")
                c.declare("int", "b", "NR")
                c.block("while (b != 0)") { c in
                    c.declare("const int", "t", "a % b")
                    c.line("a = b;")
                    c.line("b = t;")
                }
                c.declare("const int", "unit", "d / a * NR")
                c.line("return NC >= unit ? NC / unit * unit : unit;")
            }
            c.function("size_t \(name)_workspace_bytes(int d)") { c in
                c.comment("an MC x KC block of unpacked activations, fp32 partial sums (then Y) of an MC x N block, one row of it")
                c.line("return (size_t)MC * KC + ((size_t)MC + 1) * head_block(d) * sizeof(float);")
            }
        }
        c.comment("Signed 4-bit code i of a packed row (low nibble first).")
        c.function("static inline int8_t nibble(const uint8_t *row, int i)") { c in
            c.declare("const uint8_t", "byte", "row[i / 2]")
            c.line("return (int8_t)((int8_t)((i % 2 ? byte >> 4 : byte & 0x0F) << 4) >> 4);")
        }
        c.function("""
            void \(name)_pack(const uint8_t *w_codes, const float *w_scales, const int8_t *w_outliers,
                 const float *w_outlier_scales, int n, int k, int outliers, void *packed)
            """) { c in
            c.declare("const int", "normal", "k - outliers")
            c.declare("const int", "groups", "normal / G")
            c.forLoop("int p = 0", "p < (n + NR - 1) / NR", "p++") { c in
                c.declare("uint8_t *", "panel", "(uint8_t *)packed + (size_t)p * panel_bytes(k, outliers)")
                c.declare("int8_t *", "outlier_codes", "(int8_t *)(panel + outlier_block(normal))")
                c.declare("float *", "outlier_scales", "(float *)(outlier_codes + (size_t)((outliers + 3) / 4) * NR * 4)")
                c.declare("int32_t *", "outlier_colsum128", "(int32_t *)(outlier_scales + NR)")
                c.forLoop("int j = 0", "j < NR", "j++") { c in
                    c.declare("const int", "col", "p * NR + j")
                    c.declare("const uint8_t *", "row", "w_codes + (size_t)(col < n ? col : 0) * (normal / 2)")
                    c.forLoop("int q = 0", "q < normal / 8", "q++") { c in
                        c.forLoop("int t = 0", "t < 4", "t++") { c in
                            c.declare("const int", "lo", "col < n ? nibble(row, 8 * q + t) : 0")
                            c.declare("const int", "hi", "col < n ? nibble(row, 8 * q + 4 + t) : 0")
                            let byte = !nibbles.storesUnsigned ? "(uint8_t)((lo & 0x0F) | ((hi & 0x0F) << 4))" : "(uint8_t)((lo + 8) | ((hi + 8) << 4))"
                            c.line("panel[group_codes(q / (G / 8)) + ((size_t)(q % (G / 8)) * NR + j) * 4 + t] = \(byte);")
                        }
                    }
                    c.forLoop("int g = 0", "g < groups", "g++") { c in
                        c.line("((float *)(panel + group_scales(g, normal)))[j] = col < n ? w_scales[(size_t)col * groups + g] : 0.0f;")
                    }
                    c.declare("int32_t", "sum", "0")
                    c.forLoop("int o = 0", "o < (outliers + 3) / 4 * 4", "o++") { c in
                        c.declare("const int8_t", "v", "(col < n && o < outliers) ? w_outliers[(size_t)col * outliers + o] : 0")
                        c.line("outlier_codes[((size_t)(o / 4) * NR + j) * 4 + o % 4] = v;")
                        c.line("sum += v;")
                    }
                    c.line("outlier_scales[j] = col < n && outliers > 0 ? w_outlier_scales[col] : 0.0f;")
                    c.line("outlier_colsum128[j] = 128 * sum;")
                }
            }
        }
    }

    private func renderHelpers(_ c: inout CSource, simd: Bool) {
        c.minIntHelper()
        if simd { c.load4Helper() }
        if halfOutput {
            Self.renderHalfFromFloat(&c)
            if let d = dialect { c.lines(d.halfHelpers) }
        }
    }

    /// IEEE binary16 bits of x, rounded to nearest even (subnormals, overflow to infinity, quiet NaN):
    /// the portable target's store and every target's partial tiles.
    static func renderHalfFromFloat(_ c: inout CSource) {
        c.comment("IEEE binary16 of x, rounded to nearest even; beyond 65504 (after rounding) infinity, NaN stays NaN.")
        c.function("static uint16_t half_from_float(float x)") { c in
            c.declare("uint32_t", "bits", "0")
            c.line("memcpy(&bits, &x, sizeof bits);")
            c.declare("const uint16_t", "sign", "(uint16_t)((bits >> 16) & 0x8000u)")
            c.declare("const uint32_t", "magnitude", "bits & 0x7FFFFFFFu")
            c.ifBlock("magnitude > 0x7F800000u") { c in c.line("return (uint16_t)(sign | 0x7E00u);") }
            c.ifBlock("magnitude >= 0x477FF000u") { c in
                c.comment("65520 and up round to infinity (and infinity stays)")
                c.line("return (uint16_t)(sign | 0x7C00u);")
            }
            c.ifBlock("magnitude >= 0x38800000u") { c in
                c.comment("a normal half: rebias the exponent, round the 13 dropped bits to nearest even")
                c.declare("const uint32_t", "rounded", "magnitude + 0x0FFFu + ((magnitude >> 13) & 1u)")
                c.line("return (uint16_t)(sign | ((rounded - 0x38000000u) >> 13));")
            }
            c.ifBlock("magnitude <= 0x33000000u") { c in
                c.comment("at most 2^-25, half the smallest subnormal: rounds to (even) zero")
                c.line("return sign;")
            }
            c.comment("a subnormal half: the 24-bit significand shifted to units of 2^-24, rounded to nearest even")
            c.declare("const int", "shift", "126 - (int)(magnitude >> 23)")
            c.declare("const uint32_t", "significand", "(magnitude & 0x007FFFFFu) | 0x00800000u")
            c.declare("uint32_t", "units", "significand >> shift")
            c.declare("const uint32_t", "rest", "significand & ((1u << shift) - 1u)")
            c.declare("const uint32_t", "half_unit", "1u << (shift - 1)")
            c.ifBlock("rest > half_unit || (rest == half_unit && (units & 1u))") { c in c.line("units += 1;") }
            c.line("return (uint16_t)(sign | units);")
        }
    }

    private var tileSignature: String {
        """
        static void tile(const int8_t *a, int rows, const uint8_t *panel, int k, int outliers, int k0, int kc,
                         int first, int last, float *partial, const float *a_scales, const int32_t *a_sums,
                         const int8_t *a_outliers, const float *a_outlier_scales, \(yType) *y, int ldy, int cols)
        """
    }

    private var tileComment: [String] {
        [
            "One MR x NR tile of Y over the groups in [k0, k0 + kc) of the normal channels, then (in the last",
            "block) the outliers. `a` is the unpacked activation block (rows KC apart); rows past `rows` repeat",
            "the last valid row and are not stored; fp32 sums wait in `partial` between blocks.",
        ]
    }

    private func renderSIMDTile(_ c: inout CSource, _ d: W4Dialect) {
        let vectors = nr / d.lanes
        let rows = 0..<mr, cols = 0..<vectors
        func rowIndex(_ i: Int) -> String { i == 0 ? "0" : "(rows > \(i) ? \(i) : rows - 1)" }
        c.comment(lines: tileComment)
        c.function(tileSignature) { c in
            c.declare("const int", "normal", "k - outliers")
            c.declare("const int", "groups", "normal / G")
            for i in rows { c.declare("const int8_t *", "a\(i)", "a + (size_t)\(rowIndex(i)) * KC") }
            c.lines(d.constants(nibbles))
            if !d.offsetWeights { c.line("(void)a_sums; /* signed x signed dot products need no correction */") }
            c.lines(d.fixedConstants)
            c.lines(d.outlierConstants)
            if memoryAccumulators {
                c.comment("fp32 sums live in partial[MR][NR] (L1): each group adds its scaled sum there")
                c.ifBlock("first") { c in
                    for i in rows { for j in cols { c.line(d.storeFloat(fsum(i, j, d), d.splatFloat("0.0f"))) } }
                }
            } else {
                c.line("\(d.floatVector) \(rows.flatMap { i in cols.map { "f\(i)_\($0)" } }.joined(separator: ", "));")
                c.ifBlock("first") { c in
                    for i in rows { for j in cols { c.line("f\(i)_\(j) = \(d.splatFloat("0.0f"));") } }
                } else: { c in
                    for i in rows { for j in cols { c.line("f\(i)_\(j) = \(d.loadFloat(fsum(i, j, d)));") } }
                }
            }
            c.forLoop("int g = 0", "g < kc / G", "g++") { c in
                c.declare("const int", "group", "k0 / G + g")
                c.declare("const uint8_t *", "bg", "panel + group_codes(group)")
                for i in rows { c.declare("const int", "r\(i)", rowIndex(i)) }
                c.line("\(d.intVector) \(rows.flatMap { i in cols.map { "c\(i)_\($0)" } }.joined(separator: ", "));")
                // Group sums of w + 8 start at -8 * sum(a) instead of subtracting it per row and column vector
                // after the group (AVX2's int16 sums at -4 * sum(a) in each lane of a pair).
                if d.offsetWeights {
                    if nibbles == .unsignedScaledHigh {
                        c.comment(lines: [
                            "The sums start at -128 * sum(a) of the row's group: 16 times the offset of w + 8, subtracted up",
                            "front (every product is 16 times its term: the high nibble is taken in place, the activations",
                            "that meet the low nibble are stored times 16).",
                        ])
                    } else if d.int16Groups {
                        c.comment(lines: [
                            "The sums start at -8 * sum(a) of the row's group, the offset of w + 8, subtracted up front: -4 * sum(a)",
                            "in each int16 lane, the two lanes of a pair added when widened (|-4 * sum(a)| <= 4096, so a lane",
                            "stays within 7680 + 4096 of zero).",
                        ])
                    } else {
                        c.comment("The sums start at -8 * sum(a) of the row's group: the offset of w + 8, subtracted up front.")
                    }
                    let offset = nibbles == .unsignedScaledHigh ? "-128" : d.int16Groups ? "-4" : "-8"
                    for i in rows {
                        let start = "\(offset) * a_sums[(size_t)r\(i) * groups + group]"
                        c.declare("const \(d.intVector)", "offset\(i)", d.int16Groups ? d.splatInt16!(start) : d.splatInt(start))
                        for j in cols { c.line("c\(i)_\(j) = offset\(i);") }
                    }
                } else {
                    for i in rows { for j in cols { c.line("c\(i)_\(j) = \(d.zero);") } }
                }
                c.forLoop("int q = 0", "q < G / 8", "q++") { c in
                    for j in cols { c.lines(d.unpack(nibbles, "bg + ((size_t)q * NR + \(j * d.lanes)) * 4", "wlo\(j)", "whi\(j)")) }
                    if prefetch > 0 {
                        // One prefetch per cache line this step reads (NR * 4 bytes), PREFETCH_BYTES ahead in the panel.
                        for line in stride(from: 0, to: max(nr * 4, 64), by: 64) {
                            c.line("__builtin_prefetch(bg + ((size_t)q * NR) * 4 + \(line) + PREFETCH_BYTES);")
                        }
                    }
                    for i in rows {
                        c.declare("const \(d.intVector)", "alo\(i)", d.broadcast("load4(a\(i) + g * G + 8 * q)"))
                        c.declare("const \(d.intVector)", "ahi\(i)", d.broadcast("load4(a\(i) + g * G + 8 * q + 4)"))
                        for j in cols {
                            c.line("c\(i)_\(j) = \(d.accumulate(d.accumulate("c\(i)_\(j)", "wlo\(j)", "alo\(i)"), "whi\(j)", "ahi\(i)"));")
                        }
                    }
                }
                c.declare("const float *", "w_scale", "(const float *)(panel + group_scales(group, normal))")
                for j in cols { c.declare("const \(d.floatVector)", "ws\(j)", d.loadFloat("w_scale + \(j * d.lanes)")) }
                for i in rows {
                    c.declare("const \(d.floatVector)", "as\(i)", d.splatFloat("a_scales[(size_t)r\(i) * groups + group]"))
                    for j in cols {
                        var sum = d.widen("c\(i)_\(j)")
                        if nibbles == .unsignedScaledHigh { sum = d.shiftRight4(sum) }
                        addScaled(&c, d, i, j, d.mulFloat(d.toFloat(sum), d.mulFloat("as\(i)", "ws\(j)")))
                    }
                }
            }
            c.ifBlock("!last") { c in
                if !memoryAccumulators {
                    for i in rows { for j in cols { c.line(d.storeFloat(fsum(i, j, d), "f\(i)_\(j)")) } }
                }
                c.line("return;")
            }
            c.ifBlock("outliers > 0") { c in
                c.declare("const int8_t *", "ob", "(const int8_t *)(panel + outlier_block(normal))")
                c.declare("const float *", "outlier_scales", "(const float *)(ob + (size_t)((outliers + 3) / 4) * NR * 4)")
                c.line("\(d.intVector) \(rows.flatMap { i in cols.map { "o\(i)_\($0)" } }.joined(separator: ", "));")
                for i in rows { for j in cols { c.line("o\(i)_\(j) = \(d.zero);") } }
                c.forLoop("int q = 0", "q < outliers / 4", "q++") { c in
                    for j in cols { c.declare("const \(d.intVector)", "b\(j)", d.loadBytes("ob + ((size_t)q * NR + \(j * d.lanes)) * 4")) }
                    for i in rows {
                        let r = i == 0 ? "0" : "(rows > \(i) ? \(i) : rows - 1)"
                        c.lines(d.outlierRow("x\(i)", d.broadcast("load4(a_outliers + (size_t)\(r) * outliers + 4 * q)")))
                        for j in cols { c.line("o\(i)_\(j) = \(d.outlierAccumulate("o\(i)_\(j)", "x\(i)", "b\(j)"));") }
                    }
                }
                if d.outlierOffset { c.declare("const int32_t *", "colsum128", "(const int32_t *)(outlier_scales + NR)") }
                for j in cols {
                    c.declare("const \(d.floatVector)", "os\(j)", d.loadFloat("outlier_scales + \(j * d.lanes)"))
                    if d.outlierOffset { c.declare("const \(d.intVector)", "cs\(j)", d.loadInt("colsum128 + \(j * d.lanes)")) }
                }
                for i in rows {
                    c.declare("const \(d.floatVector)", "xs\(i)", d.splatFloat("a_outlier_scales[\(rowIndex(i))]"))
                    for j in cols {
                        let sum = d.outlierOffset ? d.subInt("o\(i)_\(j)", "cs\(j)") : "o\(i)_\(j)"
                        addScaled(&c, d, i, j, d.mulFloat(d.toFloat(sum), d.mulFloat("xs\(i)", "os\(j)")))
                    }
                }
            }
            let result = { (i: Int, j: Int) in memoryAccumulators ? d.loadFloat(fsum(i, j, d)) : "f\(i)_\(j)" }
            if halfOutput {
                c.ifBlock("rows == MR && cols == NR") { c in
                    for i in rows { for j in cols { c.line(d.storeHalves("y + (size_t)\(i) * ldy + \(j * d.lanes)", result(i, j))) } }
                    c.line("return;")
                }
                c.comment("A partial tile: through fp32, element by element.")
                c.declare("float", "spill[MR * NR]")
                for i in rows { for j in cols { c.line(d.storeFloat("spill + \(i) * NR + \(j * d.lanes)", result(i, j))) } }
                c.forLoop("int i = 0", "i < rows", "i++") { c in
                    c.forLoop("int j = 0", "j < cols", "j++") { c in c.line("y[(size_t)i * ldy + j] = half_from_float(spill[i * NR + j]);") }
                }
                return
            }
            c.declare("float", "spill[MR * NR]")
            c.declare("const int", "direct", "rows == MR && cols == NR")
            c.declare("float *", "out", "direct ? y : spill")
            c.declare("const int", "ldo", "direct ? ldy : NR")
            for i in rows {
                for j in cols {
                    c.line(d.storeFloat("out + \(i) * ldo + \(j * d.lanes)", result(i, j)))
                }
            }
            c.ifBlock("!direct") { c in
                c.forLoop("int i = 0", "i < rows", "i++") { c in
                    c.line("memcpy(y + (size_t)i * ldy, spill + i * NR, (size_t)cols * sizeof(float));")
                }
            }
        }
    }

    /// Where the fp32 sum of tile row i, vector j waits between K blocks (and lives, with memory accumulators).
    private func fsum(_ i: Int, _ j: Int, _ d: W4Dialect) -> String { "partial + \(i) * NR + \(j * d.lanes)" }

    /// f[i][j] += term, in a register or in `partial`; the same fp32 operations either way.
    private func addScaled(_ c: inout CSource, _ d: W4Dialect, _ i: Int, _ j: Int, _ term: String) {
        if memoryAccumulators {
            c.line(d.storeFloat(fsum(i, j, d), d.addFloat(d.loadFloat(fsum(i, j, d)), term)))
        } else {
            c.line("f\(i)_\(j) = \(d.addFloat("f\(i)_\(j)", term));")
        }
    }

    private func renderPortableTile(_ c: inout CSource) {
        c.comment(lines: tileComment)
        c.function(tileSignature) { c in
            c.line("(void)a_sums; /* signed x signed products need no correction */")
            c.declare("const int", "normal", "k - outliers")
            c.declare("const int", "groups", "normal / G")
            c.declare("float", "acc[MR][NR]")
            c.ifBlock("first") { c in c.line("memset(acc, 0, sizeof acc);") } else: { c in c.line("memcpy(acc, partial, sizeof acc);") }
            c.forLoop("int g = 0", "g < kc / G", "g++") { c in
                c.declare("const int", "group", "k0 / G + g")
                c.declare("const uint8_t *", "bg", "panel + group_codes(group)")
                c.declare("const float *", "w_scale", "(const float *)(panel + group_scales(group, normal))")
                if prefetch > 0 {
                    c.forLoop("int line = 0", "line < G / 2 * NR", "line += 64") { c in c.line("__builtin_prefetch(bg + line + PREFETCH_BYTES);") }
                }
                c.forLoop("int i = 0", "i < MR", "i++") { c in
                    c.declare("const int", "r", "i < rows ? i : rows - 1")
                    c.declare("const int8_t *", "ai", "a + (size_t)r * KC + g * G")
                    c.forLoop("int j = 0", "j < NR", "j++") { c in
                        c.declare("int32_t", "sum", "0")
                        c.forLoop("int q = 0", "q < G / 8", "q++") { c in
                            c.forLoop("int t = 0", "t < 4", "t++") { c in
                                c.declare("const uint8_t", "byte", "bg[((size_t)q * NR + j) * 4 + t]")
                                c.declare("const int8_t", "lo", "(int8_t)((int8_t)(byte << 4) >> 4)")
                                c.declare("const int8_t", "hi", "(int8_t)((int8_t)byte >> 4)")
                                c.line("sum += ai[8 * q + t] * lo + ai[8 * q + 4 + t] * hi;")
                            }
                        }
                        c.line("acc[i][j] = acc[i][j] + (float)sum * (a_scales[(size_t)r * groups + group] * w_scale[j]);")
                    }
                }
            }
            c.ifBlock("!last") { c in
                c.line("memcpy(partial, acc, sizeof acc);")
                c.line("return;")
            }
            c.ifBlock("outliers > 0") { c in
                c.declare("const int8_t *", "ob", "(const int8_t *)(panel + outlier_block(normal))")
                c.declare("const float *", "outlier_scales", "(const float *)(ob + (size_t)((outliers + 3) / 4) * NR * 4)")
                c.forLoop("int i = 0", "i < rows", "i++") { c in
                    c.forLoop("int j = 0", "j < NR", "j++") { c in
                        c.declare("int32_t", "sum", "0")
                        c.forLoop("int o = 0", "o < outliers", "o++") { c in
                            c.line("sum += a_outliers[(size_t)i * outliers + o] * ob[((size_t)(o / 4) * NR + j) * 4 + o % 4];")
                        }
                        c.line("acc[i][j] = acc[i][j] + (float)sum * (a_outlier_scales[i] * outlier_scales[j]);")
                    }
                }
            }
            c.forLoop("int i = 0", "i < rows", "i++") { c in
                c.forLoop("int j = 0", "j < cols", "j++") { c in
                    c.line(halfOutput ? "y[(size_t)i * ldy + j] = half_from_float(acc[i][j]);" : "y[(size_t)i * ldy + j] = acc[i][j];")
                }
            }
        }
    }

    private func renderDriver(_ c: inout CSource, name: String) {
        c.comment(lines: [
            "Y[m0:m1][n0:n1] from quantized activations (codes [M][K'/2], scales and code sums [M][K'/G],",
            "outlier codes [M][O] and scales [M]) and packed weights; Y has N columns\(halfOutput ? " of binary16" : ""). `workspace` holds",
            "\(name)_workspace_bytes() bytes for this thread.",
        ])
        c.function("""
            void \(name)(const uint8_t *a_codes, const float *a_scales, const int32_t *a_sums, const int8_t *a_outliers,
                 const float *a_outlier_scales, const void *packed, \(yType) *y, int n, int k, int outliers, int m0, int m1,
                 int n0, int n1, void *workspace)
            """) { c in
            c.declare("const int", "normal", "k - outliers")
            c.declare("const int", "groups", "normal / G")
            c.declare("int8_t *", "block", "(int8_t *)workspace")
            c.declare("float *", "partials", "(float *)((char *)workspace + (size_t)MC * KC)")
            c.declare("const size_t", "panel_size", "panel_bytes(k, outliers)")
            renderBlocks(&c, width: "NC", target: "y + (size_t)row * n + jc + jr, n")
        }
    }

    /// The blocked loops over N (blocks of `width` columns), M and K, each (N, M) block's tiles writing to
    /// `target` (a pointer and its row stride); `finish` runs when the block is done.
    private func renderBlocks(_ c: inout CSource, width: String, target: String, finish: ((inout CSource) -> Void)? = nil) {
        c.forLoop("int jc = n0", "jc < n1", "jc += \(width)") { c in
            c.declare("const int", "nc", "min_int(\(width), n1 - jc)")
            c.forLoop("int ic = m0", "ic < m1", "ic += MC") { c in
                c.declare("const int", "mc", "min_int(MC, m1 - ic)")
                c.forLoop("int pc = 0", "pc < normal", "pc += KC") { c in
                    c.declare("const int", "kc", "min_int(KC, normal - pc)")
                    if nibbles == .unsignedScaledHigh {
                        c.comment(lines: [
                            "Unpack this block of activation codes to one byte each (pc and kc are even: whole bytes); the",
                            "codes that meet the weights' low nibbles (k % 8 < 4: bytes i with i % 4 < 2) times 16, in [-128, 112].",
                        ])
                    } else {
                        c.comment("Unpack this block of activation codes to one byte each (pc and kc are even: whole bytes).")
                    }
                    c.forLoop("int r = 0", "r < mc", "r++") { c in
                        c.declare("const uint8_t *", "codes", "a_codes + (size_t)(ic + r) * (normal / 2) + pc / 2")
                        c.declare("int8_t *", "unpacked", "block + (size_t)r * KC")
                        c.forLoop("int i = 0", "i < kc / 2", "i++") { c in
                            if nibbles == .unsignedScaledHigh {
                                c.declare("const int", "scale", "i % 4 < 2 ? 16 : 1")
                                c.line("unpacked[2 * i] = (int8_t)(((int8_t)(codes[i] << 4) >> 4) * scale);")
                                c.line("unpacked[2 * i + 1] = (int8_t)(((int8_t)codes[i] >> 4) * scale);")
                            } else {
                                c.line("unpacked[2 * i] = (int8_t)((int8_t)(codes[i] << 4) >> 4);")
                                c.line("unpacked[2 * i + 1] = (int8_t)((int8_t)codes[i] >> 4);")
                            }
                        }
                    }
                    c.forLoop("int jr = 0", "jr < nc", "jr += NR") { c in
                        c.declare("const uint8_t *", "panel", "(const uint8_t *)packed + (size_t)((jc + jr) / NR) * panel_size")
                        c.forLoop("int ir = 0", "ir < mc", "ir += MR") { c in
                            c.declare("const int", "row", "ic + ir")
                            c.declare("float *", "partial", "partials + ((size_t)(ir / MR) * (\(width) / NR) + jr / NR) * MR * NR")
                            c.line("tile(block + (size_t)ir * KC, min_int(MR, mc - ir), panel, k, outliers, pc, kc, pc == 0,")
                            c.line("     pc + kc >= normal, partial, a_scales + (size_t)row * groups, a_sums + (size_t)row * groups,")
                            c.line("     a_outliers + (size_t)row * outliers, a_outlier_scales + row, \(target),")
                            c.line("     min_int(NR, nc - jr));")
                        }
                    }
                }
                finish?(&c)
            }
        }
    }

    private func renderCacheDriver(_ c: inout CSource, name: String, format: KVCacheFormat) {
        c.comment(lines: [
            "The K and V rows of tokens [m0, m1) for heads [n0 / d, n1 / d) of Y = the K and V projections, from",
            "quantized activations (codes [M][K'/2], scales and code sums [M][K'/G], outlier codes [M][O] and",
            "scales [M]) and packed weights (N = 2 * hkv * d rows), quantized into the cache `pool`: token m is",
            "position row_pos[m] of sequence row_seq[m], whose logical page p is physical page",
            "page_table[row_seq[m] * max_pages + p]. `workspace` holds \(name)_workspace_bytes(d) bytes for this",
            "thread; y, when not NULL, receives Y [M][N] fp32 as well.",
        ])
        c.function("""
            void \(name)(const uint8_t *a_codes, const float *a_scales, const int32_t *a_sums, const int8_t *a_outliers,
                 const float *a_outlier_scales, const void *packed, const int32_t *row_seq, const int32_t *row_pos,
                 const int32_t *page_table, int max_pages, void *pool, float *y, int hkv, int d, int k, int outliers,
                 int m0, int m1, int n0, int n1, void *workspace)
            """) { c in
            c.declare("const int", "n", "2 * hkv * d")
            c.declare("const int", "normal", "k - outliers")
            c.declare("const int", "groups", "normal / G")
            c.declare("const int", "nb", "head_block(d)")
            c.declare("int8_t *", "block", "(int8_t *)workspace")
            c.declare("float *", "partials", "(float *)((char *)workspace + (size_t)MC * KC)")
            c.declare("float *", "x", "partials + (size_t)MC * nb")
            c.declare("const size_t", "panel_size", "panel_bytes(k, outliers)")
            c.declare("const size_t", "page_size", "page_bytes(hkv, d)")
            c.declare("const size_t", "kv_block", "block_bytes(d)")
            c.comment("The last K block of a tile leaves its Y in place of its partial sums (MR x NR, rows NR apart).")
            renderBlocks(&c, width: "nb", target: "partial, NR") { c in
                c.comment("The block's rows of Y are final: quantize each (token, head) row into its cache slot.")
                c.forLoop("int r = 0", "r < mc", "r++") { c in
                    c.comment("Gather row r from its tiles (the last panel of N may be narrower than NR).")
                    c.declare("const float *", "tiles", "partials + (size_t)(r / MR) * (nb / NR) * MR * NR + (size_t)(r % MR) * NR")
                    c.forLoop("int p = 0", "p < nc", "p += NR") { c in
                        c.line("memcpy(x + p, tiles + (size_t)p * MR, (size_t)min_int(NR, nc - p) * sizeof(float));")
                    }
                    KVPageLayout.renderSlotLookup(&c, row: "ic + r")
                    c.ifBlock("y") { c in c.line("memcpy(y + (size_t)(ic + r) * n + jc, x, (size_t)nc * sizeof(float));") }
                    c.forLoop("int col = 0", "col < nc", "col += d") { c in
                        c.comment("heads 0 .. hkv-1 of Y are K, the next hkv are V; a cache page interleaves them per head")
                        c.declare("const int", "head", "(jc + col) / d")
                        c.declare("const int", "cache_head", "head < hkv ? 2 * head : 2 * (head - hkv) + 1")
                        c.declare("unsigned char *", "dst", "base + (size_t)cache_head * kv_block")
                        c.line("store_row(x + col, d, dst + slot * row_bytes(d), (float *)(dst + params_offset(d)) + 2 * slot);")
                    }
                }
            }
        }
    }
}
