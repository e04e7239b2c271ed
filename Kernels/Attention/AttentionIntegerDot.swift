import KernelKit

/// attention-decode's integer path (`dot=i8`: INT4 cache, AVX2), rendered into the same file as the
/// rest of the template.
///
/// The fp32 path spends about three vector instructions per element of K (widen, convert, dequantize,
/// rotate, multiply-add) and this VM issues about three a cycle whatever the mix, so it is bound by
/// instruction count, not by memory. Here the arithmetic is integer:
/// - q is quantized once per unit: per chunk of 32 RoPE pairs (elements i and i + d/2), int8 with the
///   scale max|q| / 127. For a pair of codes (c_lo, c_hi), `vpmaddubsw` with (q_lo, q_hi) gives
///   A = q_lo c_lo + q_hi c_hi and with (q_hi, -q_lo) gives B = q_hi c_lo - q_lo c_hi, 16 pairs an
///   instruction. RoPE then is q . rope_t(k) = sum_i cos_i A_i + sin_i B_i, which `vpmaddwd` takes with
///   the cos/sin tables in Q14 (int16, 2^14 = 1): 32-bit sums, exact.
/// - The zero point enters as z * sum_i (cos_i (q_lo + q_hi)_i + sin_i (q_hi - q_lo)_i), the same
///   `vpmaddwd` on q's sums and differences, so the token's score is
///   s * 2^-14 * sum_chunks qscale_c * (P_c - z * Z_c).
/// - V: the weights w_j = s_j p_j of each group of 8 token pairs become 16-bit integers (the group's
///   largest -> 65535) split in a high and a low byte; `vpmaddubsw` takes two tokens' codes at once
///   against a byte of each of their weights into 16-bit sums (8 * 2 * 255 * 15 < 2^16), added into fp32
///   per group.
///
/// The integer results are exact; what differs from the fp32 path is q rounded to 8 bits per chunk (the
/// reference does the same rounding, `AttentionReference.integerDot`), cos/sin to Q14 (likewise) and
/// each V weight to 16 bits (within the fp32 tolerance; not modelled).
extension AttentionTemplate {
    func renderIntegerDot(_ c: inout CSource) {
        c.comment(lines: [
            "Integer path. A chunk is 32 RoPE pairs (elements i and i + d/2 for i in [32c, 32c + 32)), one",
            "32-byte load of codes; unpacking its low and high nibbles byte by byte gives two vectors of",
            "16 (c_lo, c_hi) pairs: half 0 holds pairs [0, 8) and [16, 24), half 1 pairs [8, 16) and [24, 32)",
            "(lane k of half p: pair 8p + k for k < 8, 8p + k + 8 above). q and the RoPE tables are stored in",
            "that order.",
        ])
        c.line("typedef struct {")
        c.line("    int8_t a[2][32];    /* (q_lo, q_hi) of each pair: with (c_lo, c_hi), A = q_lo c_lo + q_hi c_hi */")
        c.line("    int8_t b[2][32];    /* (q_hi, -q_lo): B = q_hi c_lo - q_lo c_hi */")
        c.line("    int16_t sum[2][16]; /* q_lo + q_hi, for the zero point */")
        c.line("    int16_t diff[2][16]; /* q_hi - q_lo */")
        c.line("} q_chunk;")
        c.line()
        c.comment("cos and sin of one position in Q14 (16384 = 1), in chunk order.")
        c.line("typedef struct {")
        c.line("    int16_t cs[2][16];")
        c.line("    int16_t sn[2][16];")
        c.line("} rope_chunk;")
        c.line()
        c.comment("The pair of chunk lane k of half p (see above).")
        c.function("static inline int chunk_pair(int p, int k)") { c in c.line("return 8 * p + (k < 8 ? k : k + 8);") }
        c.comment("The low and the high nibbles of 32 code bytes, each in a byte.")
        c.function("static inline __m256i low_nibbles(__m256i bytes)") { c in c.line("return _mm256_and_si256(bytes, _mm256_set1_epi8(15));") }
        c.function("static inline __m256i high_nibbles(__m256i bytes)") { c in
            c.line("return _mm256_and_si256(_mm256_srli_epi16(bytes, 4), _mm256_set1_epi8(15));")
        }
        renderQuantizeQ(&c)
        renderConvertRope(&c)
        renderIntegerScores(&c)
        renderIntegerAccumulate(&c)
    }

    private func renderQuantizeQ(_ c: inout CSource) {
        c.comment(lines: [
            "q of one head (already times 1/sqrt(d)) as int8 per chunk: scale[c] = max |q| / 127 over the",
            "chunk's 64 elements, codes rint(q * 127 / max) (ties to even).",
        ])
        c.function("static void quantize_q(const float *q, int d, q_chunk *out, float *scale)") { c in
            c.declare("const int", "half", "d / 2")
            c.forLoop("int c = 0", "c < d / 64", "c++") { c in
                c.declare("float", "m", "0.0f")
                c.forLoop("int i = 32 * c", "i < 32 * c + 32", "i++") { c in
                    c.line("m = fmaxf(m, fmaxf(fabsf(q[i]), fabsf(q[half + i])));")
                }
                c.declare("const float", "inv", "m > 0.0f ? 127.0f / m : 0.0f")
                c.line("scale[c] = m / 127.0f;")
                c.forLoop("int p = 0", "p < 2", "p++") { c in
                    c.forLoop("int k = 0", "k < 16", "k++") { c in
                        c.declare("const int", "i", "32 * c + chunk_pair(p, k)")
                        c.declare("const int", "lo", "(int)rintf(q[i] * inv)")
                        c.declare("const int", "hi", "(int)rintf(q[half + i] * inv)")
                        c.line("out[c].a[p][2 * k] = (int8_t)lo;")
                        c.line("out[c].a[p][2 * k + 1] = (int8_t)hi;")
                        c.line("out[c].b[p][2 * k] = (int8_t)hi;")
                        c.line("out[c].b[p][2 * k + 1] = (int8_t)-lo;")
                        c.line("out[c].sum[p][k] = (int16_t)(lo + hi);")
                        c.line("out[c].diff[p][k] = (int16_t)(hi - lo);")
                    }
                }
            }
        }
    }

    private func renderConvertRope(_ c: inout CSource) {
        c.comment(lines: [
            "x[0 .. 31] in Q14 (rounded to nearest, ties to even), half 0 and half 1 of the chunk order:",
            "packing lanes [0, 8) with [16, 24) interleaves 4-lane groups, which the 64-bit permute undoes.",
        ])
        c.function("static inline void q14_halves(const float *x, int16_t *half0, int16_t *half1)") { c in
            c.declare("const __m256", "one", "_mm256_set1_ps(16384.0f)")
            for k in 0..<4 {
                c.declare("const __m256i", "x\(k)", "_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + \(8 * k)), one))")
            }
            c.line("_mm256_storeu_si256((__m256i *)half0, _mm256_permute4x64_epi64(_mm256_packs_epi32(x0, x2), 0xD8));")
            c.line("_mm256_storeu_si256((__m256i *)half1, _mm256_permute4x64_epi64(_mm256_packs_epi32(x1, x3), 0xD8));")
        }
        c.comment("One position's cos/sin rows [d / 2] as rope_chunks (once per block, shared by the unit's heads).")
        c.function("static void convert_rope(const float *cs, const float *sn, int d, rope_chunk *out)") { c in
            c.forLoop("int c = 0", "c < d / 64", "c++") { c in
                c.line("q14_halves(cs + 32 * c, out[c].cs[0], out[c].cs[1]);")
                c.line("q14_halves(sn + 32 * c, out[c].sn[0], out[c].sn[1]);")
            }
        }
    }

    private func renderIntegerScores(_ c: inout CSource) {
        c.comment(lines: [
            "scores[j] = q . rope_{t + j}(k_j) for the n tokens of a block from the codes: per chunk, the",
            "32-bit sums P = sum cos A + sin B and Z = sum cos (q_lo + q_hi) + sin (q_hi - q_lo), then",
            "score = s * 2^-14 * sum_c scale[c] * (P_c - z Z_c). rope[j * chunks + c] is token j's table."
                + (prefetch ? " next (NULL: none), next_slots, next_offset: the tokens prefetched (see prefetch_token)." : ""),
        ])
        let nextParameter = prefetch ? " const unsigned char *const *next, const int *next_slots, size_t next_offset," : ""
        let nextArguments = prefetch ? " next, next_slots, next_offset," : ""
        c.function("""
            static inline __attribute__((always_inline)) void score_int_d(const q_chunk *qc, const float *qscale,
                 const unsigned char *const *base,\(nextParameter) const int *slots, size_t k_offset, int n, int d,
                 const rope_chunk *rope, float *restrict scores)
            """) { c in
            c.declare("const int", "chunks", "d / 64")
            c.declare("__m256", "sums[TB]")
            c.declare("float", "factors[TB]")
            c.forLoop("int j = 0", "j < n", "j++") { c in
                if prefetch {
                    c.ifBlock("next && next[j]") { c in c.line("prefetch_token(next[j], next_slots[j], next_offset, d);") }
                }
                c.declare("const unsigned char *", "block", "base[j] + k_offset")
                c.declare("const unsigned char *", "row", "block + (size_t)slots[j] * row_bytes(d)")
                c.declare("const float *", "params", "(const float *)(block + params_offset(d)) + 2 * slots[j]")
                c.declare("const __m256", "zv", "_mm256_set1_ps(params[1])")
                c.line("factors[j] = params[0];")
                c.declare("__m256", "total", "_mm256_setzero_ps()")
                c.forLoop("int c = 0", "c < chunks", "c++") { c in
                    c.declare("const q_chunk *", "qv", "qc + c")
                    c.declare("const rope_chunk *", "r", "rope + (size_t)j * chunks + c")
                    c.declare("const __m256i", "bytes", "_mm256_loadu_si256((const __m256i *)(row + 32 * c))")
                    c.declare("const __m256i", "lo", "low_nibbles(bytes)")
                    c.declare("const __m256i", "hi", "high_nibbles(bytes)")
                    c.declare("const __m256i", "pairs0", "_mm256_unpacklo_epi8(lo, hi)")
                    c.declare("const __m256i", "pairs1", "_mm256_unpackhi_epi8(lo, hi)")
                    c.declare("const __m256i", "cs0", "_mm256_loadu_si256((const __m256i *)r->cs[0])")
                    c.declare("const __m256i", "cs1", "_mm256_loadu_si256((const __m256i *)r->cs[1])")
                    c.declare("const __m256i", "sn0", "_mm256_loadu_si256((const __m256i *)r->sn[0])")
                    c.declare("const __m256i", "sn1", "_mm256_loadu_si256((const __m256i *)r->sn[1])")
                    func load(_ field: String, _ p: Int) -> String { "_mm256_loadu_si256((const __m256i *)qv->\(field)[\(p)])" }
                    func dot(_ pairs: String, _ field: String, _ p: Int, _ table: String) -> String {
                        "_mm256_madd_epi16(_mm256_maddubs_epi16(\(pairs), \(load(field, p))), \(table))"
                    }
                    c.declare("__m256i", "dots", dot("pairs0", "a", 0, "cs0"))
                    c.line("dots = _mm256_add_epi32(dots, \(dot("pairs0", "b", 0, "sn0")));")
                    c.line("dots = _mm256_add_epi32(dots, \(dot("pairs1", "a", 1, "cs1")));")
                    c.line("dots = _mm256_add_epi32(dots, \(dot("pairs1", "b", 1, "sn1")));")
                    c.declare("__m256i", "zs", "_mm256_madd_epi16(cs0, \(load("sum", 0)))")
                    c.line("zs = _mm256_add_epi32(zs, _mm256_madd_epi16(sn0, \(load("diff", 0))));")
                    c.line("zs = _mm256_add_epi32(zs, _mm256_madd_epi16(cs1, \(load("sum", 1))));")
                    c.line("zs = _mm256_add_epi32(zs, _mm256_madd_epi16(sn1, \(load("diff", 1))));")
                    c.declare("const __m256", "part", "_mm256_fnmadd_ps(_mm256_cvtepi32_ps(zs), zv, _mm256_cvtepi32_ps(dots))")
                    c.line("total = _mm256_fmadd_ps(part, _mm256_set1_ps(qscale[c]), total);")
                }
                c.line("sums[j] = total;")
            }
            c.comment("scores = s * 2^-14 * (sum of the lanes), LANES tokens at a time")
            c.declare("const __m256", "unit", "_mm256_set1_ps(1.0f / 16384.0f)")
            c.declare("int", "j", "0")
            c.forLoop("", "j + LANES <= n", "j += LANES") { c in
                c.line("_mm256_storeu_ps(scores + j, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(factors + j), unit), hsum_lanes(sums + j)));")
            }
            c.forLoop("", "j < n", "j++") { c in c.line("scores[j] = factors[j] * (1.0f / 16384.0f) * hsum(sums[j]);") }
        }
        specialized(&c, signature: """
            static void score_int(const q_chunk *qc, const float *qscale, const unsigned char *const *base,\(nextParameter)
                 const int *slots, size_t k_offset, int n, int d, const rope_chunk *rope, float *scores)
            """, call: { "score_int_d(qc, qscale, base,\(nextArguments) slots, k_offset, n, \($0), rope, scores);" })
    }

    private func renderIntegerAccumulate(_ c: inout CSource) {
        c.comment(lines: [
            "acc = alpha * acc + sum_j p[j] * v_j over the n tokens of a block, from the codes. Per group of 8",
            "token pairs (what 16-bit sums hold), the weights w_j = s_j p[j] become integers",
            "W_j = round(w_j * 65535 / w_max), w_max the group's largest, so sum_j w_j (c - z_j) is taken as",
            "(w_max / 65535) * (sum_j W_j c - sum_j W_j z_j): the first sum in integers, two tokens and one byte of",
            "their weights per vpmaddubsw, the second once per group.",
        ])
        c.function("""
            static inline __attribute__((always_inline)) void accumulate_int_d(float *restrict acc, float alpha,
                 const float *restrict p, const unsigned char *const *base, const int *slots, size_t v_offset, int n, int d)
            """) { c in
            c.declare("const int", "half", "d / 2")
            c.declare("const unsigned char *", "rows[TB + 1]")
            c.declare("float", "weights[TB + 1]")
            c.declare("float", "zeros[TB + 1]")
            c.forLoop("int j = 0", "j < n", "j++") { c in
                c.declare("const unsigned char *", "block", "base[j] + v_offset")
                c.line("rows[j] = block + (size_t)slots[j] * row_bytes(d);")
                c.declare("const float *", "params", "(const float *)(block + params_offset(d)) + 2 * slots[j]")
                c.line("weights[j] = params[0] * p[j];")
                c.line("zeros[j] = params[1];")
            }
            c.comment("an odd block's last token pairs with itself at weight 0")
            c.line("rows[n] = rows[n - 1];")
            c.line("weights[n] = 0.0f;")
            c.line("zeros[n] = 0.0f;")
            c.declare("const int", "pairs", "(n + 1) / 2")
            c.declare("uint16_t", "high[TB / 2 + 1]")
            c.declare("uint16_t", "low[TB / 2 + 1]")
            c.declare("float", "steps[TB / 16 + 1]")
            c.declare("float", "offset", "0.0f")
            c.forLoop("int k0 = 0", "k0 < pairs", "k0 += 8") { c in
                c.declare("const int", "k1", "min_int(pairs, k0 + 8)")
                c.declare("float", "largest", "0.0f")
                c.forLoop("int j = 2 * k0", "j < 2 * k1", "j++") { c in c.line("largest = weights[j] > largest ? weights[j] : largest;") }
                c.declare("const float", "inv", "largest > 0.0f ? 65535.0f / largest : 0.0f")
                c.declare("float", "sum", "0.0f")
                c.forLoop("int k = k0", "k < k1", "k++") { c in
                    c.declare("const int", "w0", "(int)(weights[2 * k] * inv + 0.5f)")
                    c.declare("const int", "w1", "(int)(weights[2 * k + 1] * inv + 0.5f)")
                    c.comment("byte 0 of each 16-bit lane multiplies token 2k's code, byte 1 token 2k + 1's")
                    c.line("high[k] = (uint16_t)((w0 >> 8) | (w1 & 0xff00));")
                    c.line("low[k] = (uint16_t)((w0 & 0xff) | ((w1 & 0xff) << 8));")
                    c.line("sum += (float)w0 * zeros[2 * k] + (float)w1 * zeros[2 * k + 1];")
                }
                c.line("steps[k0 / 8] = largest / 65535.0f;")
                c.line("offset += sum * steps[k0 / 8];")
            }
            c.declare("const __m256", "av", "_mm256_set1_ps(alpha)")
            c.declare("const __m256", "ov", "_mm256_set1_ps(offset)")
            c.forLoop("int i = 0", "i < d", "i += LANES") { c in
                c.line("_mm256_storeu_ps(acc + i, _mm256_fmsub_ps(_mm256_loadu_ps(acc + i), av, ov));")
            }
            c.comment("32 bytes of each row (32 low-half and 32 high-half elements) at a time, 8 token pairs at most between flushes")
            c.forLoop("int at = 0", "at < half", "at += 32") { c in
                c.forLoop("int k0 = 0", "k0 < pairs", "k0 += 8") { c in
                    c.declare("const __m256", "sv", "_mm256_set1_ps(steps[k0 / 8])")
                    c.declare("const __m256", "hv", "_mm256_set1_ps(256.0f * steps[k0 / 8])")
                    c.declare("__m256i", "h[4]")
                    c.declare("__m256i", "l[4]")
                    c.forLoop("int v = 0", "v < 4", "v++") { c in
                        c.line("h[v] = _mm256_setzero_si256();")
                        c.line("l[v] = _mm256_setzero_si256();")
                    }
                    c.forLoop("int k = k0", "k < pairs && k < k0 + 8", "k++") { c in
                        c.declare("const __m256i", "wh", "_mm256_set1_epi16((short)high[k])")
                        c.declare("const __m256i", "wl", "_mm256_set1_epi16((short)low[k])")
                        c.declare("const __m256i", "b0", "_mm256_loadu_si256((const __m256i *)(rows[2 * k] + at))")
                        c.declare("const __m256i", "b1", "_mm256_loadu_si256((const __m256i *)(rows[2 * k + 1] + at))")
                        c.declare("const __m256i", "lo0", "low_nibbles(b0)")
                        c.declare("const __m256i", "lo1", "low_nibbles(b1)")
                        c.declare("const __m256i", "hi0", "high_nibbles(b0)")
                        c.declare("const __m256i", "hi1", "high_nibbles(b1)")
                        c.comment("x[0], x[1]: low-half elements in chunk order (halves 0 and 1); x[2], x[3]: the high half")
                        c.declare("const __m256i", "x[4]", """
                            {_mm256_unpacklo_epi8(lo0, lo1), _mm256_unpackhi_epi8(lo0, lo1),
                                                  _mm256_unpacklo_epi8(hi0, hi1), _mm256_unpackhi_epi8(hi0, hi1)}
                            """)
                        c.forLoop("int v = 0", "v < 4", "v++") { c in
                            c.line("h[v] = _mm256_add_epi16(h[v], _mm256_maddubs_epi16(wh, x[v]));")
                            c.line("l[v] = _mm256_add_epi16(l[v], _mm256_maddubs_epi16(wl, x[v]));")
                        }
                    }
                    c.comment("unsigned 16-bit sums to fp32: lanes 0-7 of vector v hold elements e .. e + 7, lanes 8-15 e + 16 ..")
                    c.forLoop("int v = 0", "v < 4", "v++") { c in
                        c.declare("float *", "out", "acc + at + 8 * (v & 1) + (v >> 1) * half")
                        c.declare("const __m256", "h0", "_mm256_cvtepi32_ps(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(h[v])))")
                        c.declare("const __m256", "h1", "_mm256_cvtepi32_ps(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(h[v], 1)))")
                        c.declare("const __m256", "l0", "_mm256_cvtepi32_ps(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(l[v])))")
                        c.declare("const __m256", "l1", "_mm256_cvtepi32_ps(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(l[v], 1)))")
                        c.line("_mm256_storeu_ps(out, _mm256_fmadd_ps(l0, sv, _mm256_fmadd_ps(h0, hv, _mm256_loadu_ps(out))));")
                        c.line("_mm256_storeu_ps(out + 16, _mm256_fmadd_ps(l1, sv, _mm256_fmadd_ps(h1, hv, _mm256_loadu_ps(out + 16))));")
                    }
                }
            }
        }
        specialized(&c, signature: """
            static void accumulate_int(float *acc, float alpha, const float *p, const unsigned char *const *base,
                 const int *slots, size_t v_offset, int n, int d)
            """, call: { "accumulate_int_d(acc, alpha, p, base, slots, v_offset, n, \($0));" })
    }
}
