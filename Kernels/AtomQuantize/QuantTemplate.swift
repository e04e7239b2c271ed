import KernelKit

/// Renders C for one point of an Atom quantize family (KERNELS.md section 3).
///
/// Every target shares the structure: per row, (RMS scale,) then per group of 128 channels: y staged
/// in a 512-byte buffer while its absolute maximum is taken, the scale, the codes and their sum, the
/// nibble packing; then the outlier channels into a per-thread stage buffer and INT8 codes. The
/// targets differ only in the spelling of the vector operations (`QuantDialect`); their row tails use
/// the scalar spelling, which is also the portable target.
struct AtomQuantizeTemplate {
    let op: AtomQuantize.Op
    let isa: ISATarget
    let vectorGather: Bool
    let templateVersion: Int

    init(op: AtomQuantize.Op, config: Configuration, templateVersion: Int) {
        self.op = op
        isa = ISATarget(rawValue: config.name("isa"))!
        vectorGather = op.reorders && config.name("gather") == AtomQuantize.Gather.vector.rawValue
        self.templateVersion = templateVersion
    }

    /// What, then how. Threads are applied by the caller and do not change the code.
    var variantName: String {
        let isaPart = isa.rawValue.replacingOccurrences(of: "-", with: "")
        let base = "atom_\(op.rawValue.replacingOccurrences(of: "-", with: "_"))__\(isaPart)"
        return op.reorders ? "\(base)_gather\(vectorGather ? "vector" : "scalar")" : base
    }

    /// A float constant as C text with exactly the Swift value (the shortest round-trip decimal).
    static func cFloat(_ v: Float) -> String { v < 0 ? "(\(v)f)" : "\(v)f" }

    func render() -> KernelSource {
        let d = QuantDialect.forTarget(isa)!
        let simd = d.lanes > 1
        let name = variantName
        var c = CSource()
        header(&c, name: name, dialect: d)
        for h in ["stddef.h", "stdint.h", "string.h", "math.h"] + d.headers { c.include(h) }
        c.line()
        c.define("GROUP", AtomQuantization.groupSize)
        c.line("#define CLIP \(Self.cFloat(AtomQuantization.activationClip)) /* activation clip of the group maximum */")
        if simd { c.define("LANES", d.lanes) }
        if op == .rmsnormReorderQuantize {
            c.line("#define PARTIALS \(AtomQuantizeReference.partials) /* interleaved partial sums of squares */")
        }
        if op == .siluMulQuantize {
            let e = AtomQuantizeReference.ExpConstants.self
            c.line("#define EXP_MIN \(Self.cFloat(e.minimum)) /* exp's input clamp: 2^n stays a normal number */")
            c.define("EXP_MAX", Self.cFloat(e.maximum))
            c.define("LOG2E", Self.cFloat(e.log2e))
            c.line("#define LN2_HI \(Self.cFloat(e.ln2Hi)) /* ln 2 = LN2_HI + LN2_LO; n * LN2_HI is exact */")
            c.define("LN2_LO", Self.cFloat(e.ln2Lo))
            for (i, p) in e.polynomial.enumerated() { c.define("EXP_P\(i)", Self.cFloat(p)) }
        }
        c.line()
        scalarHelpers(&c)
        d.helpers(&c, op.reorders && !vectorGather)
        if op == .rmsnormReorderQuantize { rmsHelpers(&c, d) }
        if op == .siluMulQuantize {
            expFunction(&c, QuantDialect.scalar)
            if simd { expFunction(&c, d) }
        }
        rowInputs(&c)
        yFunction(&c, QuantDialect.scalar)
        if simd { yFunction(&c, d) }
        quantizeGroup(&c, d)
        quantizeOutliers(&c, d)
        kernel(&c, name: name)
        return KernelSource(name: name, isa: isa, code: c.description, symbols: ["kernel": name])
    }

    private func suffix(_ d: QuantDialect) -> String { d.lanes > 1 ? "vector" : "scalar" }

    // MARK: Header

    private func header(_ c: inout CSource, name: String, dialect d: QuantDialect) {
        var params = "isa=\(isa.rawValue)"
        if op.reorders { params += " gather=\(vectorGather ? "vector" : "scalar")" }
        let definition: [String] =
            switch op {
            case .rmsnormReorderQuantize:
                [
                    "y[j] = x[perm[j]] * r * w[perm[j]] (in that order), r = 1 / sqrtf(ss / K + eps), where ss is the",
                    "sum of x^2 over the row in a fixed order: 32 interleaved partial sums p[j % 32] += x[j] * x[j]",
                    "in index order, then halved until one is left, p[i] = p[i] + p[i + h] for h = 16, 8, 4, 2, 1.",
                ]
            case .reorderQuantize:
                ["y[j] = x[perm[j]]."]
            case .siluMulQuantize:
                [
                    "y[j] = gate[j] / (1 + exp(-gate[j])) * up[j] (in that order), no reorder. exp is the family's own,",
                    "the same in every variant: x clamped to [EXP_MIN, EXP_MAX], n = rne(x * LOG2E),",
                    "r = x - n * LN2_HI - n * LN2_LO, p = Horner(EXP_P0..EXP_P5) in r, exp = (p * r^2 + r + 1) * 2^n.",
                    "Its error against glibc's expf is at most \(AtomQuantizeReference.ExpConstants.maxUlpError) ulp (measured by the tests).",
                ]
            }
        var lines = [
            "\(op.rawValue), template version \(templateVersion): \(name)",
            "Parameters: \(params)",
            "",
        ]
        lines += definition
        lines += [
            "Then, per row, the Atom format (AtomQuantization): the first K' = K - O channels of y in groups",
            "of 128: s = absmax * CLIP / 7, q = clamp(rne(y / s), -8, 7), packed two per byte (element 2i in",
            "the low nibble), and the int32 sum of each group's codes; the last O channels: s8 = absmax / 127,",
            "q8 = clamp(rne(y / s8), -127, 127). A group of zeros gets scale 0 and codes 0. Every float",
            "operation happens in the order above, so codes and scales match the Swift reference bit for bit.",
            "Instructions: \(d.note).",
        ]
        if op.reorders {
            lines.append(vectorGather ? "Reordered loads use the hardware gather." : "Reordered loads are one scalar load per element.")
        }
        lines += [
            "",
            "Generated by lowbit. Threads are the caller's: each call quantizes rows [m0, m1); `stage` holds",
            "O floats for this thread.",
        ]
        c.comment(lines: lines)
    }

    // MARK: Helpers

    private func scalarHelpers(_ c: inout CSource) {
        c.function("static inline float maxf(float a, float b)") { c in c.line("return a > b ? a : b;") }
        c.function("static inline float minf(float a, float b)") { c in c.line("return a < b ? a : b;") }
        if op == .siluMulQuantize {
            c.comment("2^n for n in [-126, 127], through the exponent bits.")
            c.function("static inline float pow2f(int32_t n)") { c in
                c.declare("const uint32_t", "bits", "(uint32_t)(n + 127) << 23")
                c.declare("float", "f")
                c.line("memcpy(&f, &bits, sizeof f);")
                c.line("return f;")
            }
        }
    }

    private func rmsHelpers(_ c: inout CSource, _ d: QuantDialect) {
        c.comment("The fixed fold: halve the partial sums until one is left.")
        c.function("static float fold_partials(float *p)") { c in
            c.forLoop("int half = PARTIALS / 2", "half >= 1", "half /= 2") { c in
                c.forLoop("int i = 0", "i < half", "i++") { c in c.line("p[i] = p[i] + p[i + half];") }
            }
            c.line("return p[0];")
        }
        c.comment("Sum of x^2 over the row: p[j % PARTIALS] += x[j] * x[j] in index order, then the fold.")
        c.function("static float sum_of_squares(const float *x, int k)") { c in
            if d.lanes == 1 {
                c.declare("float", "p[PARTIALS]", "{0.0f}")
                c.declare("int", "j", "0")
                c.forLoop("", "j + PARTIALS <= k", "j += PARTIALS") { c in
                    c.forLoop("int i = 0", "i < PARTIALS", "i++") { c in c.line("p[i] += x[j + i] * x[j + i];") }
                }
            } else {
                let count = AtomQuantizeReference.partials / d.lanes
                c.comment("accumulator a holds the partial sums a * LANES ... a * LANES + LANES - 1")
                c.line("\(d.vec) \((0..<count).map { "acc\($0) = \(d.zero)" }.joined(separator: ", "));")
                c.declare("int", "j", "0")
                c.forLoop("", "j + PARTIALS <= k", "j += PARTIALS") { c in
                    for a in 0..<count {
                        let index = a == 0 ? "j" : "j + \(a * d.lanes)"
                        c.declare("const \(d.vec)", "v\(a)", d.load("x", index))
                        c.line("acc\(a) = \(d.add("acc\(a)", d.mul("v\(a)", "v\(a)")));")
                    }
                }
                c.declare("float", "p[PARTIALS]")
                for a in 0..<count { c.line(d.store("p", "\(a * d.lanes)", "acc\(a)")) }
            }
            c.forLoop("", "j < k", "j++") { c in c.line("p[j % PARTIALS] += x[j] * x[j];") }
            c.line("return fold_partials(p);")
        }
        c.function("static float rms_scale(const float *x, int k, float eps)") { c in
            c.declare("const float", "mean", "sum_of_squares(x, k) / (float)k")
            c.line("return 1.0f / sqrtf(mean + eps);")
        }
    }

    private func expFunction(_ c: inout CSource, _ d: QuantDialect) {
        let s = suffix(d)
        if d.lanes == 1 {
            c.comment("exp on [EXP_MIN, EXP_MAX] (clamped): Cody-Waite reduction, degree-5 polynomial in Horner order, 2^n by exponent bits.")
        }
        c.function("static inline \(d.vec) exp_\(s)(\(d.vec) x)") { c in
            c.line("x = \(d.min(d.max("x", d.splat("EXP_MIN")), d.splat("EXP_MAX")));")
            c.declare("const \(d.vec)", "n", d.round(d.mul("x", d.splat("LOG2E"))))
            c.declare(d.vec, "r", d.sub("x", d.mul("n", d.splat("LN2_HI"))))
            c.line("r = \(d.sub("r", d.mul("n", d.splat("LN2_LO"))));")
            c.declare("const \(d.vec)", "z", d.mul("r", "r"))
            c.declare(d.vec, "p", d.splat("EXP_P0"))
            for i in 1..<AtomQuantizeReference.ExpConstants.polynomial.count {
                c.line("p = \(d.add(d.mul("p", "r"), d.splat("EXP_P\(i)")));")
            }
            c.declare("const \(d.vec)", "y", d.add(d.add(d.mul("p", "z"), "r"), d.splat("1.0f")))
            c.line("return \(d.mul("y", d.pow2(d.toInt("n"))));")
        }
        if d.lanes == 1 { c.comment("silu(g) * u = g / (1 + exp(-g)) * u") }
        c.function("static inline \(d.vec) silu_mul_\(s)(\(d.vec) g, \(d.vec) u)") { c in
            c.declare("const \(d.vec)", "e", "exp_\(s)(\(d.neg("g")))")
            c.line("return \(d.mul(d.div("g", d.add(d.splat("1.0f"), "e")), "u"));")
        }
    }

    private func rowInputs(_ c: inout CSource) {
        c.comment("What one row's y needs.")
        c.block("typedef struct", trailer: " row_inputs;") { c in
            switch op {
            case .rmsnormReorderQuantize:
                c.line("const float *x;       /* the row, K values */")
                c.line("const float *w;       /* norm weight [K] */")
                c.line("const int32_t *perm;  /* source channel of each position [K] */")
                c.line("float r;              /* 1 / sqrt(mean(x^2) + eps) */")
            case .reorderQuantize:
                c.line("const float *x;       /* the row, K values */")
                c.line("const int32_t *perm;  /* source channel of each position [K] */")
            case .siluMulQuantize:
                c.line("const float *gate;    /* the row of gate, K values */")
                c.line("const float *up;      /* the row of up, K values */")
            }
        }
        c.line()
    }

    private func yFunction(_ c: inout CSource, _ d: QuantDialect) {
        let s = suffix(d)
        let gather = (d.lanes > 1 && vectorGather) ? d.vectorGather! : d.scalarGather
        c.comment(d.lanes == 1 ? "y[j]" : "y[j], ..., y[j + LANES - 1]")
        c.function("static inline \(d.vec) y_\(s)(const row_inputs *in, int j)") { c in
            switch op {
            case .rmsnormReorderQuantize:
                c.line("return \(d.mul(d.mul(gather("in->x", "in->perm", "j"), d.splat("in->r")), gather("in->w", "in->perm", "j")));")
            case .reorderQuantize:
                c.line("return \(gather("in->x", "in->perm", "j"));")
            case .siluMulQuantize:
                c.line("return silu_mul_\(s)(\(d.load("in->gate", "j")), \(d.load("in->up", "j")));")
            }
        }
    }

    private func loop(_ c: inout CSource, _ d: QuantDialect, _ initial: String, _ bound: String, _ body: (inout CSource) -> Void) {
        if d.lanes == 1 {
            c.forLoop(initial, "j < \(bound)", "j++", body)
        } else {
            c.forLoop(initial, "j + LANES <= \(bound)", "j += LANES", body)
        }
    }

    private func clamp(_ d: QuantDialect, _ v: String, _ lo: String, _ hi: String) -> String {
        d.min(d.max(v, d.splat(lo)), d.splat(hi))
    }

    private func quantizeGroup(_ c: inout CSource, _ d: QuantDialect) {
        let s = suffix(d)
        c.comment(lines: [
            "One group of GROUP channels from j0: y staged in y[], s = absmax * CLIP / 7, the codes (one per",
            "byte in q[], then packed), and their sum.",
        ])
        c.function("static void quantize_group(const row_inputs *in, int j0, uint8_t *codes, float *scale, int32_t *sum)") { c in
            c.declare("_Alignas(64) float", "y[GROUP]")
            c.declare("_Alignas(64) int8_t", "q[GROUP]")
            c.declare(d.vec, "amax", d.zero)
            loop(&c, d, "int j = 0", "GROUP") { c in
                c.declare("const \(d.vec)", "v", "y_\(s)(in, j0 + j)")
                c.line(d.store("y", "j", "v"))
                c.line("amax = \(d.max("amax", d.abs("v")));")
            }
            c.declare("const float", "s", "\(d.hmax("amax")) * CLIP / 7.0f")
            c.line("*scale = s;")
            c.ifBlock("s == 0.0f") { c in
                c.line("memset(codes, 0, GROUP / 2);")
                c.line("*sum = 0;")
                c.line("return;")
            }
            c.declare("const \(d.vec)", "vs", d.splat("s"))
            c.declare(d.ivec, "total", d.izero)
            loop(&c, d, "int j = 0", "GROUP") { c in
                c.declare("const \(d.ivec)", "code", d.toInt(clamp(d, d.round(d.div(d.load("y", "j"), "vs")), "-8.0f", "7.0f")))
                c.line("total = \(d.iadd("total", "code"));")
                c.line(d.storeCodes("q", "j", "code"))
            }
            c.line("*sum = \(d.hsum("total"));")
            c.line("pack_group(q, codes);")
        }
    }

    private func quantizeOutliers(_ c: inout CSource, _ d: QuantDialect) {
        let t = QuantDialect.scalar
        let simd = d.lanes > 1
        c.comment("The `count` outlier channels from j0: y staged in `stage`, s8 = absmax / 127, INT8 codes.")
        c.function("static void quantize_outliers(const row_inputs *in, int j0, int count, int8_t *codes, float *scale, float *stage)") { c in
            c.declare(d.vec, "amax", d.zero)
            c.declare("int", "j", "0")
            loop(&c, d, "", "count") { c in
                c.declare("const \(d.vec)", "v", "y_\(suffix(d))(in, j0 + j)")
                c.line(d.store("stage", "j", "v"))
                c.line("amax = \(d.max("amax", d.abs("v")));")
            }
            if simd {
                c.declare("float", "absmax", d.hmax("amax"))
                loop(&c, t, "", "count") { c in
                    c.declare("const float", "v", "y_scalar(in, j0 + j)")
                    c.line("stage[j] = v;")
                    c.line("absmax = \(t.max("absmax", t.abs("v")));")
                }
            }
            c.declare("const float", "s", "\(simd ? "absmax" : "amax") / 127.0f")
            c.line("*scale = s;")
            c.ifBlock("s == 0.0f") { c in
                c.line("memset(codes, 0, (size_t)count);")
                c.line("return;")
            }
            c.declare("const \(d.vec)", "vs", d.splat("s"))
            loop(&c, d, "j = 0", "count") { c in
                c.line(d.storeCodes("codes", "j", d.toInt(clamp(d, d.round(d.div(d.load("stage", "j"), "vs")), "-127.0f", "127.0f"))))
            }
            if simd {
                loop(&c, t, "", "count") { c in
                    c.line(t.storeCodes("codes", "j", clamp(t, t.round(t.div("stage[j]", "s")), "-127.0f", "127.0f")))
                }
            }
        }
    }

    // MARK: Kernel

    private func kernel(_ c: inout CSource, name: String) {
        let inputs: String
        let rowInit: String
        switch op {
        case .rmsnormReorderQuantize:
            inputs = "const float *x, const float *w, const int32_t *perm, float eps"
            rowInit = "{.x = x + (size_t)m * k, .w = w, .perm = perm, .r = rms_scale(x + (size_t)m * k, k, eps)}"
        case .reorderQuantize:
            inputs = "const float *x, const int32_t *perm"
            rowInit = "{.x = x + (size_t)m * k, .perm = perm}"
        case .siluMulQuantize:
            inputs = "const float *gate, const float *up"
            rowInit = "{.gate = gate + (size_t)m * k, .up = up + (size_t)m * k}"
        }
        c.comment(lines: [
            "Rows [m0, m1) of the [M][K] input(s). Outputs for all M rows: codes [M][K' / 2], scales and",
            "group_sums [M][K' / GROUP], outlier_codes [M][O], outlier_scales [M]; stage: O floats.",
        ])
        c.function("""
            void \(name)(\(inputs), int k, int outliers, int m0, int m1,
                 uint8_t *codes, float *scales, int32_t *group_sums, int8_t *outlier_codes, float *outlier_scales,
                 float *stage)
            """) { c in
            c.declare("const int", "normal", "k - outliers")
            c.declare("const int", "groups", "normal / GROUP")
            c.forLoop("int m = m0", "m < m1", "m++") { c in
                c.declare("const row_inputs", "in", rowInit)
                c.declare("uint8_t *", "row_codes", "codes + (size_t)m * (normal / 2)")
                c.declare("float *", "row_scales", "scales + (size_t)m * groups")
                c.declare("int32_t *", "row_sums", "group_sums + (size_t)m * groups")
                c.forLoop("int g = 0", "g < groups", "g++") { c in
                    c.line("quantize_group(&in, g * GROUP, row_codes + g * (GROUP / 2), row_scales + g, row_sums + g);")
                }
                c.ifBlock("outliers > 0") { c in
                    c.line("quantize_outliers(&in, normal, outliers, outlier_codes + (size_t)m * outliers, outlier_scales + m, stage);")
                } else: { c in
                    c.line("outlier_scales[m] = 0.0f;")
                }
            }
        }
    }
}
