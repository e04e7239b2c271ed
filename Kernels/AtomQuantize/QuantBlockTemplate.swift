import KernelKit

/// gather=transpose (AVX2): eight rows at a time, one row per fp32 lane. The rows are transposed into
/// `xt[K][8]` in the thread's stage, so that one vector load at `xt + 8 * perm[j]` takes reordered
/// channel j of all eight rows: the lane-by-lane gather of the row-by-row code (about a cycle per
/// element on Zen 3, whichever way the lanes are built) becomes one load per eight elements. Each
/// lane then goes through the row-by-row code's operations in the same order (the RMS scale, y, the
/// maximum, the scale, the quotient, the clamp), so codes, scales and sums are the same bits.
extension AtomQuantizeTemplate {
    func blockFunctions(_ c: inout CSource) {
        let rms = op == .rmsnormReorderQuantize
        c.comment(lines: [
            "gather=transpose: blocks of eight rows, one row per lane, through xt[K][8], the rows transposed",
            "into the stage: xt + 8 * c holds channel c of the eight rows, so a reordered channel of all",
            "eight is one vector load. Rows left over go row by row (gather_lanes).",
            "",
            "The 8 x 8 floats r[0..7] transposed in place: afterwards r[i] holds lane i of each input vector.",
        ])
        c.function("static inline void transpose8(__m256 r[8])") { c in
            for i in stride(from: 0, to: 8, by: 2) {
                c.line("const __m256 t\(i) = _mm256_unpacklo_ps(r[\(i)], r[\(i + 1)]), t\(i + 1) = _mm256_unpackhi_ps(r[\(i)], r[\(i + 1)]);")
            }
            // u(2p), u(2p + 1): the low and the high 64-bit halves of t pairs (0, 2), (1, 3), (4, 6), (5, 7).
            for (p, pair) in [(0, 2), (1, 3), (4, 6), (5, 7)].enumerated() {
                c.line("const __m256 u\(2 * p) = _mm256_shuffle_ps(t\(pair.0), t\(pair.1), 0x44), u\(2 * p + 1) = _mm256_shuffle_ps(t\(pair.0), t\(pair.1), 0xEE);")
            }
            for i in 0..<4 {
                c.line("r[\(i)] = _mm256_permute2f128_ps(u\(i), u\(i + 4), 0x20);")
            }
            for i in 0..<4 {
                c.line("r[\(i + 4)] = _mm256_permute2f128_ps(u\(i), u\(i + 4), 0x31);")
            }
        }
        c.comment("xt[c * 8 + i] = x[i * k + c]: channels [0, k) of the eight rows at x (row stride k).")
        c.function("static void transpose_rows(const float *x, int k, float *restrict xt)") { c in
            c.declare("int", "c", "0")
            c.forLoop("", "c + 8 <= k", "c += 8") { c in
                c.declare("__m256", "v[8]")
                c.forLoop("int i = 0", "i < 8", "i++") { c in c.line("v[i] = _mm256_loadu_ps(x + (size_t)i * k + c);") }
                c.line("transpose8(v);")
                c.forLoop("int i = 0", "i < 8", "i++") { c in c.line("_mm256_storeu_ps(xt + (size_t)(c + i) * 8, v[i]);") }
            }
            c.forLoop("", "c < k", "c++") { c in
                c.forLoop("int i = 0", "i < 8", "i++") { c in c.line("xt[(size_t)c * 8 + i] = x[(size_t)i * k + c];") }
            }
        }
        c.comment("What the eight rows' y needs.")
        c.block("typedef struct", trailer: " block_inputs;") { c in
            c.line("const float *xt;      /* the rows transposed, [K][8] */")
            c.line("const int32_t *perm;  /* source channel of each position [K] */")
            if rms {
                c.line("const float *wp;      /* norm weight in reordered order, w[perm] [K] */")
                c.line("__m256 r;             /* each row's 1 / sqrt(mean(x^2) + eps) */")
            }
        }
        c.line()
        c.comment("y[j] of the eight rows")
        c.function("static inline __m256 block_y(const block_inputs *b, int j)") { c in
            c.declare("const __m256", "x", "_mm256_loadu_ps(b->xt + (size_t)b->perm[j] * 8)")
            c.line(rms ? "return _mm256_mul_ps(_mm256_mul_ps(x, b->r), _mm256_broadcast_ss(b->wp + j));" : "return x;")
        }
        c.comment(lines: [
            "Each row's codes clamp(rne(y / s), lo, hi) of the eight values y. The quotient goes by the",
            "reciprocal only when every row's s >= 2^-100; both ways give the rounded quotient. Rows whose s",
            "is 0 get clamped garbage here, which the callers clear (`live` has those lanes clear).",
        ])
        c.function("static inline __m256i block_codes(__m256 y, __m256 s, __m256 r, int by_reciprocal, int lo, int hi)") { c in
            c.declare("const __m256i", "q", "_mm256_cvtps_epi32(divide(y, s, r, by_reciprocal))")
            c.line("return _mm256_min_epi32(_mm256_max_epi32(q, _mm256_set1_epi32(lo)), _mm256_set1_epi32(hi));")
        }
        c.comment("Per row: 1 / s, whether every s allows the reciprocal, and the rows whose s is not 0.")
        c.function("static inline void block_scale_setup(__m256 s, __m256 *r, int *by_reciprocal, __m256i *live)") { c in
            c.line("*r = _mm256_div_ps(_mm256_set1_ps(1.0f), s);")
            c.line("*by_reciprocal = _mm256_movemask_ps(_mm256_cmp_ps(s, _mm256_set1_ps(0x1p-100f), _CMP_GE_OQ)) == 0xFF;")
            c.line("*live = _mm256_castps_si256(_mm256_cmp_ps(s, _mm256_setzero_ps(), _CMP_NEQ_OQ));")
        }
        c.comment(lines: [
            "Group [j0, j0 + GROUP) of the eight rows: pass A stages y[GROUP][8] and takes each row's",
            "maximum; s = absmax * CLIP / 7 per row; pass B makes the codes and their sums. Eight channels'",
            "codes make one 32-bit word per row, nibble e at bits 4e: the codes are added shifted, each biased",
            "by 8 so that no nibble borrows ((q & 15) == (q + 8) ^ 8 for q in [-8, 7]); eight words,",
            "transposed, are 32 bytes of each row. Row i's codes at codes + i * code_stride, its scale and",
            "sum at scales[i * groups], sums[i * groups].",
        ])
        c.function("static void block_group(const block_inputs *restrict b, int j0, uint8_t *codes, size_t code_stride, float *scales, int32_t *sums, int groups)") { c in
            c.declare("_Alignas(32) float", "y[GROUP * 8]")
            c.declare("const __m256", "sign", "_mm256_set1_ps(-0.0f)")
            c.line("__m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;")
            c.forLoop("int j = 0", "j < GROUP", "j += 4") { c in
                for a in 0..<4 {
                    let j = a == 0 ? "j" : "j + \(a)"
                    c.declare("const __m256", "v\(a)", "block_y(b, j0 + \(j))")
                    c.line("_mm256_store_ps(y + \(a == 0 ? "j" : "(\(j))") * 8, v\(a));")
                    c.line("a\(a) = _mm256_max_ps(a\(a), _mm256_andnot_ps(sign, v\(a)));")
                }
            }
            c.declare("const __m256", "amax", "_mm256_max_ps(_mm256_max_ps(a0, a1), _mm256_max_ps(a2, a3))")
            c.declare("const __m256", "s", "_mm256_div_ps(_mm256_mul_ps(amax, _mm256_set1_ps(CLIP)), _mm256_set1_ps(7.0f))")
            c.declare("__m256", "r")
            c.declare("int", "by_reciprocal")
            c.declare("__m256i", "live")
            c.line("block_scale_setup(s, &r, &by_reciprocal, &live);")
            c.declare("const __m256i", "bias", "_mm256_set1_epi32((int)0x88888888u)")
            c.declare("__m256i", "total", "_mm256_setzero_si256()")
            c.forLoop("int jb = 0", "jb < GROUP", "jb += 64") { c in
                c.declare("__m256", "words[8]")
                c.forLoop("int w = 0", "w < 8", "w++") { c in
                    c.declare("__m256i", "word", "bias")
                    c.forLoop("int e = 0", "e < 8", "e++") { c in
                        c.declare("const __m256i", "q", "block_codes(_mm256_load_ps(y + (jb + w * 8 + e) * 8), s, r, by_reciprocal, -8, 7)")
                        c.line("total = _mm256_add_epi32(total, q);")
                        c.line("word = _mm256_add_epi32(word, _mm256_slli_epi32(q, 4 * e));")
                    }
                    c.line("words[w] = _mm256_castsi256_ps(_mm256_and_si256(_mm256_xor_si256(word, bias), live));")
                }
                c.line("transpose8(words);")
                c.forLoop("int i = 0", "i < 8", "i++") { c in
                    c.line("_mm256_storeu_ps((float *)(codes + i * code_stride + jb / 2), words[i]);")
                }
            }
            c.declare("_Alignas(32) float", "sv[8]")
            c.declare("_Alignas(32) int32_t", "tv[8]")
            c.line("_mm256_store_ps(sv, s);")
            c.line("_mm256_store_si256((__m256i *)tv, _mm256_and_si256(total, live));")
            c.forLoop("int i = 0", "i < 8", "i++") { c in
                c.line("scales[i * groups] = sv[i];")
                c.line("sums[i * groups] = tv[i];")
            }
        }
        c.comment(lines: [
            "The `count` outlier channels from j0 of the eight rows: y staged in stage[count][8],",
            "s8 = absmax / 127 per row, INT8 codes to row i's codes + i * count.",
        ])
        c.function("static void block_outliers(const block_inputs *restrict b, int j0, int count, int8_t *codes, float *scales, float *restrict stage)") { c in
            c.declare("__m256", "amax", "_mm256_setzero_ps()")
            c.forLoop("int j = 0", "j < count", "j++") { c in
                c.declare("const __m256", "v", "block_y(b, j0 + j)")
                c.line("_mm256_storeu_ps(stage + (size_t)j * 8, v);")
                c.line("amax = _mm256_max_ps(amax, _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v));")
            }
            c.declare("const __m256", "s", "_mm256_div_ps(amax, _mm256_set1_ps(127.0f))")
            c.declare("__m256", "r")
            c.declare("int", "by_reciprocal")
            c.declare("__m256i", "live")
            c.line("block_scale_setup(s, &r, &by_reciprocal, &live);")
            c.declare("_Alignas(32) int32_t", "q[8]")
            c.forLoop("int j = 0", "j < count", "j++") { c in
                c.line("_mm256_store_si256((__m256i *)q, _mm256_and_si256(block_codes(_mm256_loadu_ps(stage + (size_t)j * 8), s, r, by_reciprocal, -127, 127), live));")
                c.forLoop("int i = 0", "i < 8", "i++") { c in c.line("codes[(size_t)i * count + j] = (int8_t)q[i];") }
            }
            c.declare("_Alignas(32) float", "sv[8]")
            c.line("_mm256_store_ps(sv, s);")
            c.forLoop("int i = 0", "i < 8", "i++") { c in c.line("scales[i] = sv[i];") }
        }
        let inputs = rms ? "const float *x, const float *wp, const int32_t *perm, float eps" : "const float *x, const int32_t *perm"
        c.comment(lines: [
            "Rows m0 ... m0 + 7, all K channels; stage: K * 8 floats for xt, then O * 8 for the outliers' y.",
            "(Prefetching the next block's rows while the groups run was tried: slower, hot and cold, on Zen 3.)",
        ])
        c.function("""
            static void quantize_block(\(inputs), int k, int outliers, int m0,
                 uint8_t *codes, float *scales, int32_t *group_sums, int8_t *outlier_codes, float *outlier_scales,
                 float *stage)
            """) { c in
            c.declare("const int", "normal", "k - outliers")
            c.declare("const int", "groups", "normal / GROUP")
            c.declare("const float *", "rows", "x + (size_t)m0 * k")
            if rms {
                c.declare("_Alignas(32) float", "r[8]")
                c.forLoop("int i = 0", "i < 8", "i++") { c in c.line("r[i] = rms_scale(rows + (size_t)i * k, k, eps);") }
            }
            c.line("transpose_rows(rows, k, stage);")
            c.declare("const block_inputs", "b", rms ? "{.xt = stage, .perm = perm, .wp = wp, .r = _mm256_load_ps(r)}" : "{.xt = stage, .perm = perm}")
            c.forLoop("int g = 0", "g < groups", "g++") { c in
                c.line("block_group(&b, g * GROUP, codes + (size_t)m0 * (normal / 2) + g * (GROUP / 2), (size_t)(normal / 2),")
                c.line("            scales + (size_t)m0 * groups + g, group_sums + (size_t)m0 * groups + g, groups);")
            }
            c.ifBlock("outliers > 0") { c in
                c.line("block_outliers(&b, normal, outliers, outlier_codes + (size_t)m0 * outliers, outlier_scales + m0, stage + (size_t)k * 8);")
            } else: { c in
                c.forLoop("int i = 0", "i < 8", "i++") { c in c.line("outlier_scales[m0 + i] = 0.0f;") }
            }
        }
    }
}
