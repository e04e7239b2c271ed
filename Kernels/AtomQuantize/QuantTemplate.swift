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
    /// How reordered elements are loaded (nil: the op does not reorder).
    let gather: AtomQuantize.Gather?
    /// How the row-by-row code loads them: gather=transpose's leftover rows take `insert`.
    var rowGather: AtomQuantize.Gather? { gather == .transpose ? .insert : gather }
    let templateVersion: Int

    init(op: AtomQuantize.Op, config: Configuration, templateVersion: Int) {
        self.op = op
        isa = ISATarget(rawValue: config.name("isa"))!
        gather = op.reorders ? AtomQuantize.Gather(rawValue: config.name("gather")) : nil
        self.templateVersion = templateVersion
    }

    /// What, then how. Threads are applied by the caller and do not change the code.
    var variantName: String {
        let isaPart = isa.rawValue.replacingOccurrences(of: "-", with: "")
        let base = "atom_\(op.rawValue.replacingOccurrences(of: "-", with: "_"))__\(isaPart)"
        return gather.map { "\(base)_gather\($0.rawValue)" } ?? base
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
        d.helpers(&c)
        if op == .rmsnormReorderQuantize { rmsHelpers(&c, d) }
        if op == .siluMulQuantize {
            expFunction(&c, QuantDialect.scalar)
            if simd { expFunction(&c, d) }
        }
        rowInputs(&c)
        yFunction(&c, withLoads: !gathersToBuffer(d))
        if simd {
            divideFunction(&c, d)
            if gathersToBuffer(d) { gatherFunction(&c) }
            if rowGather == .insert { d.laneGather!(&c) }
            quantizeGroupVector(&c, d)
            quantizeOutliersVector(&c, d)
            if gather == .transpose { blockFunctions(&c) }
        } else {
            quantizeGroupScalar(&c)
            quantizeOutliersScalar(&c)
        }
        kernel(&c, d, name: name)
        return KernelSource(name: name, isa: isa, code: c.description, symbols: ["kernel": name])
    }

    private func suffix(_ d: QuantDialect) -> String { d.lanes > 1 ? "vector" : "scalar" }

    // MARK: Header

    private func header(_ c: inout CSource, name: String, dialect d: QuantDialect) {
        var params = "isa=\(isa.rawValue)"
        if let gather { params += " gather=\(gather.rawValue)" }
        let definition: [String] =
            switch op {
            case .rmsnormReorderQuantize:
                [
                    "y[j] = x[perm[j]] * r * wp[j] (in that order), where wp = w[perm] is the norm weight in reordered",
                    "order (permuted once, offline) and r = 1 / sqrtf(ss / K + eps), where ss is the",
                    "sum of x^2 over the row in a fixed order: 32 interleaved partial sums p[j % 32] += x[j] * x[j]",
                    "in index order, then halved until one is left, p[i] = p[i] + p[i + h] for h = 16, 8, 4, 2, 1.",
                ]
            case .reorderQuantize:
                ["y[j] = x[perm[j]]."]
            case .siluMulQuantize:
                [
                    "y[j] = gate[j] / (1 + exp(-gate[j])) * up[j] (in that order), no reorder. exp is the family's own,",
                    "the same in every variant: x clamped to [EXP_MIN, EXP_MAX], n = rne(x * LOG2E),",
                    "r = fma(-n, LN2_LO, fma(-n, LN2_HI, x)), p = Horner(EXP_P0..EXP_P5) in r by fused multiply-adds,",
                    "exp = (fma(p, r^2, r) + 1) * 2^n.",
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
        switch gather {
        case .vector?: lines.append("Reordered loads use the hardware gather.")
        case .insert?: lines.append("Reordered loads are one scalar load per lane, inserted into the vector (gather_lanes).")
        case .transpose?:
            lines.append("Reordered loads: eight rows at a time from their transposed copy, one vector load per channel")
            lines.append("(quantize_block); rows left over one scalar load per lane (gather_lanes).")
        case .scalar?:
            lines.append("Reordered loads are one scalar load per element\(d.lanes > 1 ? ", into a buffer the vector code reads" : "").")
        case nil: break
        }
        lines += [
            "",
            "Generated by lowbit. Threads are the caller's: each call quantizes units [u0, u1) (rows, or",
            "parts of rows); `stage` holds O floats for this thread.",
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

    /// The family's exp of a clamped `x` as steps `variable = expression`, in order, written once for
    /// `exp_vector` (one vector) and `silu_mul_wide` (each step across its vectors). `at` names a
    /// variable's value (`x`, or `x[v]` in the wide form); the result is the last `p`.
    private func expSteps(_ d: QuantDialect, at: (String) -> String) -> [(variable: String, value: String)] {
        var steps = [
            ("n", d.round(d.mul(at("x"), d.splat("LOG2E")))),
            ("r", d.fma(at("n"), d.splat("-LN2_HI"), at("x"))),
            ("r", d.fma(at("n"), d.splat("-LN2_LO"), at("r"))),
            ("z", d.mul(at("r"), at("r"))),
            ("p", d.splat("EXP_P0")),
        ]
        for i in 1..<AtomQuantizeReference.ExpConstants.polynomial.count {
            steps.append(("p", d.fma(at("p"), at("r"), d.splat("EXP_P\(i)"))))
        }
        steps.append(("p", d.mul(d.add(d.fma(at("p"), at("z"), at("r")), d.splat("1.0f")), d.pow2(d.toInt(at("n"))))))
        return steps.map { (variable: $0.0, value: $0.1) }
    }

    private func expFunction(_ c: inout CSource, _ d: QuantDialect) {
        let s = suffix(d)
        if d.lanes == 1 {
            c.comment("exp on [EXP_MIN, EXP_MAX] (clamped): Cody-Waite reduction, degree-5 polynomial in Horner order (fused multiply-adds), 2^n by exponent bits.")
        }
        c.function("static inline \(d.vec) exp_\(s)(\(d.vec) x)") { c in
            c.line("x = \(d.min(d.max("x", d.splat("EXP_MIN")), d.splat("EXP_MAX")));")
            var declared: Set<String> = []
            for step in expSteps(d, at: { $0 }) {
                if declared.insert(step.variable).inserted {
                    c.declare(d.vec, step.variable, step.value)
                } else {
                    c.line("\(step.variable) = \(step.value);")
                }
            }
            c.line("return p;")
        }
        if d.lanes == 1 { c.comment("silu(g) * u = g / (1 + exp(-g)) * u") }
        c.function("static inline \(d.vec) silu_mul_\(s)(\(d.vec) g, \(d.vec) u)") { c in
            c.declare("const \(d.vec)", "e", "exp_\(s)(\(d.neg("g")))")
            c.line("return \(d.mul(d.div("g", d.add(d.splat("1.0f"), "e")), "u"));")
        }
        if d.lanes > 1 { siluMulWide(&c, d) }
    }

    /// Vectors per call of `silu_mul_wide`: pass A's step (4 vectors).
    static let wideVectors = 4

    /// `silu_mul_wide`: silu_mul_vector for `wideVectors` consecutive vectors, each step of exp done for
    /// all of them before the next. Same operations per lane, so the same bits; the point is the order:
    /// exp is one long dependency chain per vector (about 50 cycles), and with the chains one after
    /// another a core's scheduler cannot reach far enough ahead to overlap them (on Zen 3 the kernel
    /// ran 18-25% slower that way, with gcc and with clang).
    private func siluMulWide(_ c: inout CSource, _ d: QuantDialect) {
        let n = Self.wideVectors
        c.comment(lines: [
            "silu_mul_vector for the \(n) vectors at gate and up, y[v] for gate + v * LANES: each step of exp for",
            "all \(n) before the next, so that their dependency chains interleave (the same operations per lane).",
        ])
        c.function("static inline void silu_mul_wide(const float *gate, const float *up, \(d.vec) y[\(n)])") { c in
            c.declare(d.vec, "g[\(n)], x[\(n)], n[\(n)], r[\(n)], z[\(n)], p[\(n)]")
            func each(_ lines: String...) {
                c.forLoop("int v = 0", "v < \(n)", "v++") { c in
                    for line in lines { c.line(line) }
                }
            }
            each("g[v] = \(d.load("gate", "v * LANES"));", "x[v] = \(d.min(d.max(d.neg("g[v]"), d.splat("EXP_MIN")), d.splat("EXP_MAX")));")
            for step in expSteps(d, at: { "\($0)[v]" }) { each("\(step.variable)[v] = \(step.value);") }
            c.comment("p = exp(-g); y = g / (1 + p) * up")
            each("y[v] = \(d.mul(d.div("g[v]", d.add(d.splat("1.0f"), "p[v]")), d.load("up", "v * LANES")));")
        }
    }

    private func rowInputs(_ c: inout CSource) {
        c.comment("What one row's y needs.")
        c.block("typedef struct", trailer: " row_inputs;") { c in
            switch op {
            case .rmsnormReorderQuantize:
                c.line("const float *x;       /* the row, K values */")
                c.line("const float *wp;      /* norm weight in reordered order, w[perm] [K] */")
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

    /// The scalar y: the portable code's, and every target's tails.
    private func yFunction(_ c: inout CSource, withLoads: Bool) {
        if op.reorders {
            c.comment("y[j] from x[perm[j]]")
            c.function("static inline float y_from_x(const row_inputs *in, float x, int j)") { c in
                if op == .rmsnormReorderQuantize {
                    c.line("return x * in->r * in->wp[j];")
                } else {
                    c.line("(void)in;")
                    c.line("(void)j;")
                    c.line("return x;")
                }
            }
            guard withLoads else { return }
            c.comment("y[j]")
            c.function("static inline float y_scalar(const row_inputs *in, int j)") { c in
                c.line("return y_from_x(in, in->x[in->perm[j]], j);")
            }
        } else {
            c.comment("y[j]")
            c.function("static inline float y_scalar(const row_inputs *in, int j)") { c in
                c.line("return silu_mul_scalar(in->gate[j], in->up[j]);")
            }
        }
    }

    /// Whether reordered elements are first gathered into a buffer by scalar loads (SIMD targets
    /// without the hardware gather, or with it switched off).
    private func gathersToBuffer(_ d: QuantDialect) -> Bool { rowGather == .scalar && d.lanes > 1 }

    private func gatherFunction(_ c: inout CSource) {
        c.comment(lines: [
            "dst[i] = x[perm[i]] for i < n, one scalar load each: on many x86 cores two loads a cycle beat",
            "vgatherdps. Loads bound it, so the indices come two at a time in one 64-bit load (little-endian:",
            "perm[i] is the low half). Kept scalar (the vectorizer would turn it into the hardware gather).",
        ])
        c.function("static void gather_x(const float *x, const int32_t *perm, int n, float *dst)") { c in
            c.declare("int", "i", "0")
            c.line("#if defined(__clang__)")
            c.line("#pragma clang loop vectorize(disable)")
            c.line("#endif")
            c.forLoop("", "i + 2 <= n", "i += 2") { c in
                c.declare("uint64_t", "pair")
                c.line("memcpy(&pair, perm + i, sizeof pair);")
                c.line("dst[i] = x[(int32_t)(uint32_t)pair];")
                c.line("dst[i + 1] = x[(int32_t)(uint32_t)(pair >> 32)];")
            }
            c.ifBlock("i < n") { c in c.line("dst[i] = x[perm[i]];") }
        }
    }

    /// y[j], ..., y[j + LANES - 1] as a vector expression; `xs` holds x[perm[...]] gathered at `i`.
    private func yVector(_ d: QuantDialect, j: String, gathered xs: String, at i: String) -> String {
        switch op {
        case .rmsnormReorderQuantize, .reorderQuantize:
            let x: String
            switch rowGather {
            case .vector?: x = d.vectorGather!("in->x", "in->perm", j)
            case .insert?: x = "gather_lanes(in->x, in->perm + \(j))"
            case .scalar?, .transpose?, nil: x = d.load(xs, i)
            }
            return op == .reorderQuantize ? x : d.mul(d.mul(x, d.splat("in->r")), d.load("in->wp", j))
        case .siluMulQuantize:
            return "silu_mul_vector(\(d.load("in->gate", j)), \(d.load("in->up", j)))"
        }
    }

    private func divideFunction(_ c: inout CSource, _ d: QuantDialect) {
        c.comment(lines: [
            "y / s, correctly rounded: through the reciprocal r = 1 / s when s >= 2^-100 (no overflow or",
            "underflow on the way), otherwise by division.",
        ])
        c.function("static inline \(d.vec) divide(\(d.vec) y, \(d.vec) s, \(d.vec) r, int by_reciprocal)") { c in
            c.ifBlock("by_reciprocal") { c in c.line("return \(d.reciprocalQuotient!("y", "s", "r"));") }
            c.line("return \(d.div("y", "s"));")
        }
    }

    /// Clamped codes of y[j ...] / s as int32 lanes.
    private func codes(_ d: QuantDialect, _ buffer: String, _ j: String, _ lo: Int, _ hi: Int) -> String {
        let q = "divide(\(d.load(buffer, j)), vs, vr, by_reciprocal)"
        return d.imin(d.imax(d.roundToInt(q), d.isplat("\(lo)")), d.isplat("\(hi)"))
    }

    private func scaleSetup(_ c: inout CSource, _ d: QuantDialect) {
        c.declare("const \(d.vec)", "vs", d.splat("s"))
        c.declare("const \(d.vec)", "vr", d.splat("1.0f / s"))
        c.declare("const int", "by_reciprocal", "s >= 0x1p-100f")
    }

    /// Where a group's y lives for pass B: the gathered buffer itself when nothing is applied to
    /// x[perm] (reorder-quantize with the scalar gather), else the y buffer pass A stages.
    private func stagesY(_ d: QuantDialect) -> Bool { !(gathersToBuffer(d) && op == .reorderQuantize) }

    /// The vector targets quantize a group in two passes, so that the kernel can overlap one group's
    /// scale (a reduction, then a division: a long dependency chain) with another group's codes.
    private func quantizeGroupVector(_ c: inout CSource, _ d: QuantDialect) {
        let step = d.lanes * d.nibbleVectors
        let buffered = gathersToBuffer(d)
        let staging = stagesY(d)
        c.comment(lines: [
            staging
                ? "Pass A of the group of GROUP channels from j0: y staged in y[], returns s = absmax * CLIP / 7."
                : "Pass A of a group of GROUP channels: y is the gathered xg itself; returns s = absmax * CLIP / 7.",
        ] + (buffered ? ["xg holds the group's x[perm[j]], gathered by the caller."] : []))
        // What y needs: the gathered group alone (reorder), or the row's inputs and the group's first channel too.
        // restrict: the stores to y cannot change *in, so the row's pointers and scale stay in registers
        // (without it they are loaded again after every store).
        let inputs =
            !staging
            ? "const float *xg"
            : buffered ? "const row_inputs *restrict in, const float *xg, int j0, float *restrict y" : "const row_inputs *restrict in, int j0, float *restrict y"
        c.function("static float group_scale(\(inputs))") { c in
            if op == .siluMulQuantize {
                siluGroupScale(&c, d)
                return
            }
            c.comment("four running maxima: the lanes' dependency chains overlap")
            c.line("\(d.vec) \((0..<4).map { "a\($0) = \(d.zero)" }.joined(separator: ", "));")
            c.forLoop("int j = 0", "j < GROUP", "j += 4 * LANES") { c in
                for a in 0..<4 {
                    let j = a == 0 ? "j" : "j + \(a) * LANES"
                    c.declare("const \(d.vec)", "v\(a)", yVector(d, j: "j0 + \(j)", gathered: "xg", at: j))
                    if staging { c.line(d.store("y", j, "v\(a)")) }
                    c.line("a\(a) = \(d.max("a\(a)", d.abs("v\(a)")));")
                }
            }
            c.line("return \(d.hmax(d.max(d.max("a0", "a1"), d.max("a2", "a3")))) * CLIP / 7.0f;")
        }
        c.comment("Pass B: the group's codes from y and s, packed straight from registers, and their sum.")
        c.function("static void group_codes(const float *y, float s, uint8_t *codes, float *scale, int32_t *sum)") { c in
            c.line("*scale = s;")
            c.ifBlock("s == 0.0f") { c in
                c.line("memset(codes, 0, GROUP / 2);")
                c.line("*sum = 0;")
                c.line("return;")
            }
            scaleSetup(&c, d)
            c.declare(d.ivec, "total", d.izero)
            c.forLoop("int j = 0", "j < GROUP", "j += \(step)") { c in
                for v in 0..<d.nibbleVectors {
                    let at = v == 0 ? "j" : "j + \(v * d.lanes)"
                    c.declare("const \(d.ivec)", "c\(v)", codes(d, "y", at, -8, 7))
                }
                for v in 0..<d.nibbleVectors { c.line("total = \(d.iadd("total", "c\(v)"));") }
                c.line("store_nibbles(codes + j / 2, \((0..<d.nibbleVectors).map { "c\($0)" }.joined(separator: ", ")));")
            }
            c.line("*sum = \(d.hsum("total"));")
        }
    }

    /// silu-mul-quantize's pass A: y by `silu_mul_wide`, one running maximum (a tree of maxima per
    /// step: the four accumulators of the other kernels would not fit in AVX2's 16 registers beside
    /// the exp chains, and max is exact in any order).
    private func siluGroupScale(_ c: inout CSource, _ d: QuantDialect) {
        let n = Self.wideVectors
        c.declare(d.vec, "amax", d.zero)
        c.forLoop("int j = 0", "j < GROUP", "j += \(n) * LANES") { c in
            c.declare(d.vec, "v[\(n)]")
            c.line("silu_mul_wide(in->gate + j0 + j, in->up + j0 + j, v);")
            c.forLoop("int k = 0", "k < \(n)", "k++") { c in c.line(d.store("y", "j + k * LANES", "v[k]")) }
            var level = (0..<n).map { d.abs("v[\($0)]") }
            while level.count > 1 {
                level = stride(from: 0, to: level.count, by: 2).map { d.max(level[$0], level[$0 + 1]) }
            }
            c.line("amax = \(d.max("amax", level[0]));")
        }
        c.line("return \(d.hmax("amax")) * CLIP / 7.0f;")
    }

    private func quantizeOutliersVector(_ c: inout CSource, _ d: QuantDialect) {
        let t = QuantDialect.scalar
        let buffered = gathersToBuffer(d)
        c.comment("The `count` outlier channels from j0: y staged in `stage`, s8 = absmax / 127, INT8 codes.")
        c.function("static void quantize_outliers(const row_inputs *restrict in, int j0, int count, int8_t *codes, float *scale, float *restrict stage)") { c in
            if buffered { c.line("gather_x(in->x, in->perm + j0, count, stage);") }
            c.declare(d.vec, "amax", d.zero)
            c.declare("int", "j", "0")
            loop(&c, d, "", "count") { c in
                c.declare("const \(d.vec)", "v", yVector(d, j: "j0 + j", gathered: "stage", at: "j"))
                c.line(d.store("stage", "j", "v"))
                c.line("amax = \(d.max("amax", d.abs("v")));")
            }
            c.declare("float", "absmax", d.hmax("amax"))
            loop(&c, t, "", "count") { c in
                c.declare("const float", "v", buffered ? "y_from_x(in, stage[j], j0 + j)" : "y_scalar(in, j0 + j)")
                c.line("stage[j] = v;")
                c.line("absmax = \(t.max("absmax", t.abs("v")));")
            }
            c.declare("const float", "s", "absmax / 127.0f")
            c.line("*scale = s;")
            c.ifBlock("s == 0.0f") { c in
                c.line("memset(codes, 0, (size_t)count);")
                c.line("return;")
            }
            scaleSetup(&c, d)
            loop(&c, d, "j = 0", "count") { c in
                c.line(d.storeCodes("codes", "j", codes(d, "stage", "j", -127, 127)))
            }
            loop(&c, t, "", "count") { c in
                c.line(t.storeCodes("codes", "j", clamp(t, t.round(t.div("stage[j]", "s")), "-127.0f", "127.0f")))
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

    // MARK: Portable (one element at a time)

    private func quantizeGroupScalar(_ c: inout CSource) {
        let d = QuantDialect.scalar
        c.comment(lines: [
            "One group of GROUP channels from j0: y staged in y[], s = absmax * CLIP / 7, the codes (one per",
            "byte in q[], then packed), and their sum.",
        ])
        c.function("static void quantize_group(const row_inputs *in, int j0, uint8_t *codes, float *scale, int32_t *sum)") { c in
            c.declare("float", "y[GROUP]")
            c.declare("int8_t", "q[GROUP]")
            c.declare("float", "amax", "0.0f")
            loop(&c, d, "int j = 0", "GROUP") { c in
                c.declare("const float", "v", "y_scalar(in, j0 + j)")
                c.line("y[j] = v;")
                c.line("amax = \(d.max("amax", d.abs("v")));")
            }
            c.declare("const float", "s", "amax * CLIP / 7.0f")
            c.line("*scale = s;")
            c.ifBlock("s == 0.0f") { c in
                c.line("memset(codes, 0, GROUP / 2);")
                c.line("*sum = 0;")
                c.line("return;")
            }
            c.declare("int32_t", "total", "0")
            loop(&c, d, "int j = 0", "GROUP") { c in
                c.declare("const int32_t", "code", d.toInt(clamp(d, d.round(d.div("y[j]", "s")), "-8.0f", "7.0f")))
                c.line("total += code;")
                c.line("q[j] = (int8_t)code;")
            }
            c.line("*sum = total;")
            c.line("pack_group(q, codes);")
        }
    }

    private func quantizeOutliersScalar(_ c: inout CSource) {
        let d = QuantDialect.scalar
        c.comment("The `count` outlier channels from j0: y staged in `stage`, s8 = absmax / 127, INT8 codes.")
        c.function("static void quantize_outliers(const row_inputs *restrict in, int j0, int count, int8_t *codes, float *scale, float *restrict stage)") { c in
            c.declare("float", "amax", "0.0f")
            loop(&c, d, "int j = 0", "count") { c in
                c.declare("const float", "v", "y_scalar(in, j0 + j)")
                c.line("stage[j] = v;")
                c.line("amax = \(d.max("amax", d.abs("v")));")
            }
            c.declare("const float", "s", "amax / 127.0f")
            c.line("*scale = s;")
            c.ifBlock("s == 0.0f") { c in
                c.line("memset(codes, 0, (size_t)count);")
                c.line("return;")
            }
            loop(&c, d, "int j = 0", "count") { c in
                c.line(d.storeCodes("codes", "j", clamp(d, d.round(d.div("stage[j]", "s")), "-127.0f", "127.0f")))
            }
        }
    }

    // MARK: Kernel

    /// This group's share of the next row's lines (the reordering kernels).
    private func prefetchNextRow(_ c: inout CSource) {
        guard op.reorders else { return }
        c.ifBlock("next") { c in
            c.declare("const size_t", "first", "(size_t)g * lines_per_group")
            c.forLoop("size_t l = first", "l < first + lines_per_group && l < row_lines", "l++") { c in
                c.line("__builtin_prefetch(next + l * 64, 0, 3);")
            }
        }
    }

    /// The groups of one row, software-pipelined: while group g's codes are made (pass B), group g + 1's
    /// y and scale (pass A) are computed, and with the scalar gather group g + 2 is gathered, so the
    /// chains of one group overlap the work of the others.
    private func pipelinedGroups(_ c: inout CSource, _ d: QuantDialect, buffered: Bool) {
        let staging = stagesY(d)
        func passA(first: Bool) -> String {
            let (j0, xg, y) = first ? ("g0 * GROUP", "staged[g0 % 3]", "ys[g0 % 2]") : ("(g + 1) * GROUP", "staged[(g + 1) % 3]", "ys[(g + 1) % 2]")
            if !staging { return "group_scale(\(xg))" }
            return buffered ? "group_scale(&in, \(xg), \(j0), \(y))" : "group_scale(&in, \(j0), \(y))"
        }
        c.comment(lines: [
            "Pipelined: while group g's codes are made, group g + 1's y and scale are computed"
                + (buffered ? " and group g + 2" : ""),
        ] + (buffered ? [
            "is gathered (its scalar stores have left the store buffer when the vector loads read them back);",
            "the scale's reduction and division overlap the other work.",
        ] : ["(the scale's reduction and division overlap the codes)."]))
        c.declare("float", "s_next", "0.0f")
        c.ifBlock("g0 < g1") { c in
            if buffered { c.line("gather_x(in.x, perm + g0 * GROUP, GROUP, staged[g0 % 3]);") }
            c.line("s_next = \(passA(first: true));")
        }
        if buffered {
            c.ifBlock("g0 + 1 < g1") { c in c.line("gather_x(in.x, perm + (g0 + 1) * GROUP, GROUP, staged[(g0 + 1) % 3]);") }
        }
        c.forLoop("int g = g0", "g < g1", "g++") { c in
            c.declare("const float", "s", "s_next")
            if buffered {
                c.ifBlock("g + 2 < g1") { c in c.line("gather_x(in.x, perm + (g + 2) * GROUP, GROUP, staged[(g + 2) % 3]);") }
            }
            c.ifBlock("g + 1 < g1") { c in c.line("s_next = \(passA(first: false));") }
            prefetchNextRow(&c)
            let y = staging ? "ys[g % 2]" : "staged[g % 3]"
            c.line("group_codes(\(y), s, row_codes + g * (GROUP / 2), row_scales + g, row_sums + g);")
        }
    }

    private func kernel(_ c: inout CSource, _ d: QuantDialect, name: String) {
        let buffered = gathersToBuffer(d)
        let simd = d.lanes > 1
        let inputs: String
        let rowInit: String
        switch op {
        case .rmsnormReorderQuantize:
            inputs = "const float *x, const float *wp, const int32_t *perm, float eps"
            rowInit = "{.x = x + (size_t)m * k, .wp = wp, .perm = perm, .r = rms_scale(x + (size_t)m * k, k, eps)}"
        case .reorderQuantize:
            inputs = "const float *x, const int32_t *perm"
            rowInit = "{.x = x + (size_t)m * k, .perm = perm}"
        case .siluMulQuantize:
            inputs = "const float *gate, const float *up"
            rowInit = "{.gate = gate + (size_t)m * k, .up = up + (size_t)m * k}"
        }
        c.comment(lines: [
            "Units [u0, u1) of the [M][K] input(s): each row is `parts` units, unit u = m * parts + part",
            "covering groups [groups * part / parts, groups * (part + 1) / parts) of row m, the last part",
            "the outlier channels too (parts > 1 lets the threads share fewer rows than there are threads).",
            "Outputs for all M rows: codes [M][K' / 2], scales and group_sums [M][K' / GROUP],",
            "outlier_codes [M][O], outlier_scales [M]; stage: O floats\(gather == .transpose ? " (K * 8 + O * 8 for the blocks)" : "").",
        ])
        c.function("""
            void \(name)(\(inputs), int k, int outliers, int parts, int u0, int u1,
                 uint8_t *codes, float *scales, int32_t *group_sums, int8_t *outlier_codes, float *outlier_scales,
                 float *stage)
            """) { c in
            c.declare("const int", "normal", "k - outliers")
            c.declare("const int", "groups", "normal / GROUP")
            if buffered { c.declare("_Alignas(64) float", "staged[3][GROUP]") }
            if stagesY(d) && simd { c.declare("_Alignas(64) float", "ys[2][GROUP]") }
            if gather == .transpose {
                c.comment("Whole rows: blocks of eight first, the rest row by row below.")
                c.ifBlock("parts == 1") { c in
                    c.forLoop("", "u0 + 8 <= u1", "u0 += 8") { c in
                        let args = op == .rmsnormReorderQuantize ? "x, wp, perm, eps" : "x, perm"
                        c.line("quantize_block(\(args), k, outliers, u0, codes, scales, group_sums, outlier_codes, outlier_scales, stage);")
                    }
                }
            }
            if op.reorders {
                c.comment(lines: [
                    "The reordered reads jump around the row, which the hardware prefetcher cannot follow: each",
                    "group asks for its share of the next row's lines, so that row is in cache when its turn comes.",
                ])
                c.declare("const size_t", "row_lines", "((size_t)k * sizeof(float) + 63) / 64")
                c.declare("const size_t", "lines_per_group", "(row_lines + (size_t)groups - 1) / (size_t)groups")
                c.ifBlock("u0 < u1") { c in
                    c.forLoop("size_t l = 0", "l < row_lines", "l++") { c in
                        c.line("__builtin_prefetch((const char *)(x + (size_t)(u0 / parts) * k) + l * 64, 0, 3);")
                    }
                }
            }
            c.forLoop("int u = u0", "u < u1", "u++") { c in
                c.declare("const int", "m", "u / parts")
                c.declare("const int", "part", "u % parts")
                c.declare("const int", "g0", "(int)((long)groups * part / parts)")
                c.declare("const int", "g1", "(int)((long)groups * (part + 1) / parts)")
                c.declare("const row_inputs", "in", rowInit)
                c.declare("uint8_t *", "row_codes", "codes + (size_t)m * (normal / 2)")
                c.declare("float *", "row_scales", "scales + (size_t)m * groups")
                c.declare("int32_t *", "row_sums", "group_sums + (size_t)m * groups")
                if op.reorders {
                    c.comment("the next row, when this thread's next unit starts it")
                    c.declare("const char *", "next", "u + 1 < u1 && part == parts - 1 ? (const char *)(x + (size_t)(m + 1) * k) : NULL")
                }
                if simd {
                    pipelinedGroups(&c, d, buffered: buffered)
                } else {
                    c.forLoop("int g = g0", "g < g1", "g++") { c in
                        prefetchNextRow(&c)
                        c.line("quantize_group(&in, g * GROUP, row_codes + g * (GROUP / 2), row_scales + g, row_sums + g);")
                    }
                }
                c.ifBlock("part == parts - 1") { c in
                    c.ifBlock("outliers > 0") { c in
                        c.line("quantize_outliers(&in, normal, outliers, outlier_codes + (size_t)m * outliers, outlier_scales + m, stage);")
                    } else: { c in
                        c.line("outlier_scales[m] = 0.0f;")
                    }
                }
            }
        }
    }
}
