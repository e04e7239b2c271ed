#!/usr/bin/env python3
"""Writes ablated copies of a generated attention-decode kernel (INT4 cache, dot=i8, AVX2).

usage: ablate.py SOURCE.c OUTDIR

Writes OUTDIR/full.c (the kernel as generated), norope.c (the scores without RoPE: one vpmaddubsw of the
codes against q per 32 bytes and the zero point as one scalar per token, the arithmetic a cache of keys
quantized after RoPE would need), nov.c (the V accumulation returns at once; its rows are still
prefetched) and norope_nov.c (both). The ablated kernels compute less, not the same thing: they bound what
removing that arithmetic could give. The patterns below follow the generated text of attention-decode's
template 11 and fail loudly when it changes.
"""
import sys

CHUNK_START = "        for (int c = 0; c < chunks; c++) {\n            const q_chunk *qv = qc + c;"
CHUNK_END = "        sums[j] = total;"
NO_ROPE_CHUNK = """        for (int c = 0; c < chunks; c++) {
            const q_chunk *qv = qc + c;
            const __m256i bytes = _mm256_loadu_si256((const __m256i *)(row + 32 * c));
            const __m256i pairs = _mm256_add_epi16(_mm256_maddubs_epi16(low_nibbles(bytes), _mm256_loadu_si256((const __m256i *)qv->a[0])),
                                                   _mm256_maddubs_epi16(high_nibbles(bytes), _mm256_loadu_si256((const __m256i *)qv->a[1])));
            const __m256i dots = _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
            total = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dots), _mm256_set1_ps(qscale[c]), total);
        }
        (void)zv;
        (void)rope;
        zeros[j] = params[1];
"""
VECTOR_STORE = "_mm256_storeu_ps(scores + j, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(factors + j), unit), hsum_lanes(sums + j)));"
NO_ROPE_VECTOR_STORE = "_mm256_storeu_ps(scores + j, _mm256_mul_ps(_mm256_loadu_ps(factors + j), _mm256_fnmadd_ps(_mm256_loadu_ps(zeros + j), unit, hsum_lanes(sums + j))));"
SCALAR_STORE = "scores[j] = factors[j] * (1.0f / 16384.0f) * hsum(sums[j]);"
NO_ROPE_SCALAR_STORE = "scores[j] = factors[j] * (hsum(sums[j]) - zeros[j] * (1.0f / 16384.0f));"
FACTORS = "    float factors[TB];\n    for (int j = 0; j < n; j++) {"
ACCUMULATE = "static inline __attribute__((always_inline)) void accumulate_int_d("


def replace_once(text, old, new, what):
    if text.count(old) != 1:
        sys.exit(f"ablate.py: {what}: expected the pattern once, found it {text.count(old)} times (the template changed?)")
    return text.replace(old, new)


def no_rope(text):
    start = text.find(CHUNK_START)
    end = text.find(CHUNK_END, start)
    if start < 0 or end < 0:
        sys.exit("ablate.py: the score loop's chunk body was not found (the template changed?)")
    text = text[:start] + NO_ROPE_CHUNK + text[end:]
    text = replace_once(text, FACTORS, "    float factors[TB];\n    float zeros[TB];\n    for (int j = 0; j < n; j++) {", "factors")
    text = replace_once(text, VECTOR_STORE, NO_ROPE_VECTOR_STORE, "vector score store")
    return replace_once(text, SCALAR_STORE, NO_ROPE_SCALAR_STORE, "scalar score store")


def no_v(text):
    at = text.find(ACCUMULATE)
    brace = text.find("{", at)
    if at < 0 or brace < 0:
        sys.exit("ablate.py: accumulate_int_d was not found (the template changed?)")
    early = ("\n    (void)acc; (void)alpha; (void)p; (void)base; (void)slots; (void)v_offset; (void)n; (void)d;"
             "\n    return;\n#if 0")
    end = text.find("\n}\n", brace)
    return text[:brace + 1] + early + text[brace + 1:end] + "\n#endif" + text[end:]


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: ablate.py SOURCE.c OUTDIR")
    source = open(sys.argv[1]).read()
    if "score_int_d" not in source:
        sys.exit("ablate.py: not an attention-decode kernel with dot=i8 (generate it with --param dot=i8)")
    variants = {"full": source, "norope": no_rope(source), "nov": no_v(source), "norope_nov": no_v(no_rope(source))}
    for name, text in variants.items():
        with open(f"{sys.argv[2]}/{name}.c", "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
