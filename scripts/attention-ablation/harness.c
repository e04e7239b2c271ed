/*
 * Times attention-decode kernels compiled alone (lowbit gen + the system compiler), outside lowbit's
 * worker, so variants with parts of their arithmetic removed (ablate.py) can be compared in one process.
 *
 * usage: harness BATCH HKV CTX REPS lib.so [lib.so ...]
 * environment: PAGE (tokens per page, default 64), HEADS (KV heads per unit, default 32); both must
 * match the parameters the kernels were generated with.
 *
 * The cache is filled with random codes and sane parameters (scale 0.01-0.1, zero point 0-15), pages in a
 * shuffled order on transparent huge pages. Each library's exported symbol is its file's stem
 * (run.sh renames it); "read" in place of a library reads the whole pool in order, the ceiling. Prints the
 * best time of REPS calls, the KV bytes (codes and parameters of every token's K and V rows) per second,
 * TSC ticks per token and head, and the normwise difference of each output from the first library's
 * (the ablated variants are expected to differ: they compute less).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <immintrin.h>
#include <x86intrin.h>

typedef void (*kernel_fn)(const float *, const void *, const int32_t *, int, const int32_t *, int, const float *,
                          const float *, float *, float *, int *, int, int, int, int, int, void *);
typedef size_t (*page_bytes_fn)(int, int);

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static float uniform(void) { return (float)rand() / (float)RAND_MAX; }

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: %s BATCH HKV CTX REPS lib.so [lib.so ...]\n", argv[0]);
        return 2;
    }
    const int batch = atoi(argv[1]), hkv = atoi(argv[2]), ctx = atoi(argv[3]), reps = atoi(argv[4]);
    const int d = 128, hq = hkv;
    const int page = getenv("PAGE") ? atoi(getenv("PAGE")) : 64;
    const int heads = getenv("HEADS") ? atoi(getenv("HEADS")) : 32;
    const int max_pages = (ctx + page - 1) / page;
    srand(1);

    const size_t outputs = (size_t)batch * hq * d;
    float *q = malloc(sizeof(float) * outputs), *out = malloc(sizeof(float) * outputs);
    float *first = malloc(sizeof(float) * outputs); /* the first kernel's output, which the others are compared with */
    int have_first = 0;
    for (size_t i = 0; i < outputs; i++) q[i] = 2.0f * uniform() - 1.0f;
    float *rope_cos = malloc(sizeof(float) * (size_t)ctx * d / 2), *rope_sin = malloc(sizeof(float) * (size_t)ctx * d / 2);
    for (int p = 0; p < ctx; p++) {
        for (int i = 0; i < d / 2; i++) {
            const double angle = p * pow(10000.0, -2.0 * i / d);
            rope_cos[(size_t)p * d / 2 + i] = (float)cos(angle);
            rope_sin[(size_t)p * d / 2 + i] = (float)sin(angle);
        }
    }
    /* the first sequence holds ctx tokens, the others ctx/2 to ctx, as the family's workloads do */
    int32_t *lengths = malloc(sizeof(int32_t) * batch);
    long tokens = 0;
    for (int s = 0; s < batch; s++) {
        lengths[s] = s == 0 ? ctx : ctx / 2 + rand() % (ctx / 2 + 1);
        tokens += lengths[s];
    }
    const int pages = batch * max_pages;
    int32_t *page_table = malloc(sizeof(int32_t) * pages);
    for (int i = 0; i < pages; i++) page_table[i] = i;
    for (int i = pages - 1; i > 0; i--) {
        const int j = rand() % (i + 1), t = page_table[i];
        page_table[i] = page_table[j];
        page_table[j] = t;
    }
    void *workspace = aligned_alloc(64, 1 << 22);
    memset(workspace, 0, 1 << 22);

    /* the INT4 layout (KVPageLayout): per KV head a K and a V block of PAGE rows of d/2 bytes, then the
     * (scale, zero) pairs from a 16-byte boundary, padded to 64 bytes */
    const size_t rows = (size_t)page * d / 2, params = (rows + 15) / 16 * 16;
    const size_t block = (params + (size_t)page * 8 + 63) / 64 * 64, pool_page = 2 * (size_t)hkv * block;
    const size_t huge = 2u << 20, pool_bytes = pool_page * pages, mapped = (pool_bytes + huge - 1) / huge * huge;
    unsigned char *pool = aligned_alloc(huge, mapped);
    madvise(pool, mapped, MADV_HUGEPAGE);
    for (size_t i = 0; i < pool_bytes; i++) pool[i] = (unsigned char)rand();
    for (size_t b = 0; b < pool_bytes / block; b++) {
        float *pairs = (float *)(pool + b * block + params);
        for (int t = 0; t < page; t++) {
            pairs[2 * t] = 0.01f + 0.09f * uniform();
            pairs[2 * t + 1] = (float)(rand() % 16);
        }
    }
    const double token_heads = (double)tokens * hkv, kv_bytes = token_heads * 2 * (d / 2 + 8);

    for (int lib = 5; lib < argc; lib++) {
        if (strcmp(argv[lib], "read") == 0) {
            /* the ceiling: the whole pool read in order, 32 bytes a load, summed so the loads stay */
            double best = 1e30;
            __m256i sink = _mm256_setzero_si256();
            for (int r = 0; r < reps; r++) {
                const double s0 = seconds();
                __m256i acc = _mm256_setzero_si256();
                for (size_t i = 0; i < pool_bytes; i += 64) {
                    acc = _mm256_add_epi64(acc, _mm256_sad_epu8(_mm256_load_si256((const __m256i *)(pool + i)), _mm256_setzero_si256()));
                    acc = _mm256_add_epi64(acc, _mm256_sad_epu8(_mm256_load_si256((const __m256i *)(pool + i + 32)), _mm256_setzero_si256()));
                }
                const double s = seconds() - s0;
                sink = _mm256_add_epi64(sink, acc);
                if (s < best) best = s;
            }
            printf("%-12s %9.3f ms  %6.2f GB/s  (the pool, %.1f MB, read in order; sum %lld)\n", "read", best * 1e3,
                   pool_bytes / best * 1e-9, pool_bytes * 1e-6, (long long)_mm256_extract_epi64(sink, 0) & 1);
            continue;
        }
        void *handle = dlopen(argv[lib], RTLD_NOW);
        if (!handle) {
            fprintf(stderr, "%s\n", dlerror());
            return 1;
        }
        char name[512];
        const char *file = strrchr(argv[lib], '/');
        snprintf(name, sizeof name, "%s", file ? file + 1 : argv[lib]);
        *strrchr(name, '.') = 0;
        char page_name[600];
        snprintf(page_name, sizeof page_name, "%s_page_bytes", name);
        kernel_fn kernel = (kernel_fn)dlsym(handle, name);
        page_bytes_fn page_bytes = (page_bytes_fn)dlsym(handle, page_name);
        if (!kernel || !page_bytes) {
            fprintf(stderr, "%s: no symbol %s or %s\n", argv[lib], name, page_name);
            return 1;
        }
        if (page_bytes(hkv, d) != pool_page) {
            fprintf(stderr, "%s: pages of %zu bytes, not the INT4 layout's %zu: generate it with cache=int4 and page=PAGE\n", argv[lib],
                    page_bytes(hkv, d), pool_page);
            return 1;
        }
        const int units = (hkv + heads - 1) / heads * batch;
        kernel(q, pool, page_table, max_pages, lengths, batch, rope_cos, rope_sin, out, NULL, NULL, hq, hkv, d, 0, units, workspace);
        const int is_first = !have_first;
        if (is_first) {
            memcpy(first, out, sizeof(float) * outputs);
            have_first = 1;
        }
        double error = 0, norm = 0;
        for (size_t i = 0; i < outputs; i++) {
            error += (out[i] - first[i]) * (out[i] - first[i]);
            norm += first[i] * first[i];
        }
        double best = 1e30;
        unsigned long long best_ticks = ~0ull;
        for (int r = 0; r < reps; r++) {
            const unsigned long long t0 = __rdtsc();
            const double s0 = seconds();
            kernel(q, pool, page_table, max_pages, lengths, batch, rope_cos, rope_sin, out, NULL, NULL, hq, hkv, d, 0, units, workspace);
            const double s = seconds() - s0;
            const unsigned long long ticks = __rdtsc() - t0;
            if (s < best) best = s;
            if (ticks < best_ticks) best_ticks = ticks;
        }
        char difference[64] = "the first";
        if (!is_first && norm > 0) snprintf(difference, sizeof difference, "%.1e from the first", sqrt(error / norm));
        printf("%-12s %9.3f ms  %6.2f GB/s  %6.1f ticks per token and head  (output: %s)\n", name, best * 1e3,
               kv_bytes / best * 1e-9, (double)best_ticks / token_heads, difference);
    }
    return 0;
}
