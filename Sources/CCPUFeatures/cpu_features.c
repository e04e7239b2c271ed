#include "cpu_features.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

int lowbit_cpuid(uint32_t leaf, uint32_t subleaf,
                 uint32_t *eax, uint32_t *ebx, uint32_t *ecx, uint32_t *edx) {
    unsigned int max_leaf = __get_cpuid_max(leaf & 0x80000000u, 0);
    if (max_leaf == 0 || leaf > max_leaf) {
        *eax = *ebx = *ecx = *edx = 0;
        return 0;
    }
    unsigned int a, b, c, d;
    __cpuid_count(leaf, subleaf, a, b, c, d);
    *eax = a;
    *ebx = b;
    *ecx = c;
    *edx = d;
    return 1;
}

uint64_t lowbit_xgetbv0(void) {
    uint32_t a, b, c, d;
    if (!lowbit_cpuid(1, 0, &a, &b, &c, &d) || !(c & (1u << 27))) {
        return 0;  // no OSXSAVE: the OS enables no extended state
    }
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

#else

int lowbit_cpuid(uint32_t leaf, uint32_t subleaf,
                 uint32_t *eax, uint32_t *ebx, uint32_t *ecx, uint32_t *edx) {
    (void)leaf;
    (void)subleaf;
    *eax = *ebx = *ecx = *edx = 0;
    return 0;
}

uint64_t lowbit_xgetbv0(void) { return 0; }

#endif

#if defined(__aarch64__) && defined(__linux__)
#include <asm/hwcap.h>
#include <sys/auxv.h>

uint64_t lowbit_hwcap(void) { return getauxval(AT_HWCAP); }
uint64_t lowbit_hwcap2(void) { return getauxval(AT_HWCAP2); }
uint64_t lowbit_hwcap_asimd(void) { return HWCAP_ASIMD; }
uint64_t lowbit_hwcap_asimddp(void) { return HWCAP_ASIMDDP; }
uint64_t lowbit_hwcap_sve(void) { return HWCAP_SVE; }
uint64_t lowbit_hwcap2_i8mm(void) { return HWCAP2_I8MM; }
uint64_t lowbit_hwcap2_bf16(void) { return HWCAP2_BF16; }

#else

uint64_t lowbit_hwcap(void) { return 0; }
uint64_t lowbit_hwcap2(void) { return 0; }
uint64_t lowbit_hwcap_asimd(void) { return 0; }
uint64_t lowbit_hwcap_asimddp(void) { return 0; }
uint64_t lowbit_hwcap_sve(void) { return 0; }
uint64_t lowbit_hwcap2_i8mm(void) { return 0; }
uint64_t lowbit_hwcap2_bf16(void) { return 0; }

#endif

int lowbit_flush_cache_lines(const void *p, uint64_t bytes) {
    const uintptr_t line = 64;  // flushing at 64-byte steps also covers machines with 128-byte lines
    uintptr_t a = (uintptr_t)p & ~(line - 1);
    const uintptr_t end = (uintptr_t)p + bytes;
#if defined(__x86_64__) || defined(__i386__)
    for (; a < end; a += line) __asm__ volatile("clflush (%0)" : : "r"(a) : "memory");
    __asm__ volatile("mfence" : : : "memory");
    return 1;
#elif defined(__aarch64__)
    for (; a < end; a += line) __asm__ volatile("dc civac, %0" : : "r"(a) : "memory");
    __asm__ volatile("dsb ish" : : : "memory");
    return 1;
#else
    (void)a;
    (void)end;
    return 0;
#endif
}

uint64_t lowbit_dependent_adds(uint64_t start, uint64_t rounds) {
    uint64_t x = start;
    if (rounds == 0) return x;
    // The whole loop is assembly, so the chain is the same at any optimization level: eight adds a
    // round, and the loop counter's decrement and branch beside them. The adds take the 1 from a
    // register, not an immediate: Intel cores since Golden Cove fold chains of adds of immediates in
    // the renamer, and on an Emerald Rapids Xeon `add $1` chains read 5 to 10 "GHz".
    const uint64_t one = 1;
#if defined(__x86_64__)
    __asm__ volatile(
        "1:\n\t"
        "add %2, %0\n\tadd %2, %0\n\tadd %2, %0\n\tadd %2, %0\n\t"
        "add %2, %0\n\tadd %2, %0\n\tadd %2, %0\n\tadd %2, %0\n\t"
        "dec %1\n\tjnz 1b"
        : "+r"(x), "+r"(rounds)
        : "r"(one)
        : "cc");
#elif defined(__aarch64__)
    __asm__ volatile(
        "1:\n\t"
        "add %0, %0, %2\n\tadd %0, %0, %2\n\tadd %0, %0, %2\n\tadd %0, %0, %2\n\t"
        "add %0, %0, %2\n\tadd %0, %0, %2\n\tadd %0, %0, %2\n\tadd %0, %0, %2\n\t"
        "subs %1, %1, #1\n\tb.ne 1b"
        : "+r"(x), "+r"(rounds)
        : "r"(one)
        : "cc");
#else
    for (uint64_t r = 0; r < rounds; r++) {
        volatile uint64_t v = x;
        for (int i = 0; i < 8; i++) v = v + one;
        x = v;
    }
#endif
    return x;
}

uint64_t lowbit_vector_madds(uint64_t rounds, int wide) {
    if (rounds == 0) return 0;
    const uint64_t n = rounds;  // the loops count `rounds` down to zero
    // Independent chains, more of them than an instruction's latency times the units that issue it
    // on the cores lowbit knows (5 cycles x 2 units on x86, 4 x 4 on aarch64), so the loop runs at
    // the core's throughput; the loop's decrement and branch run on the integer side beside them.
#if defined(__x86_64__)
    if (wide) {
        // vpmaddubsw: 32 byte products summed in pairs per instruction (64 operations). Unsigned
        // bytes of 1 times signed bytes of 1 give 16-bit lanes of 2, read as bytes 2 and 0 by the
        // next round: the chains stay at 2 and never saturate.
        __asm__ volatile(
            "vpcmpeqb %%ymm12, %%ymm12, %%ymm12\n\t"
            "vpabsb %%ymm12, %%ymm12\n\t"
            "vmovdqa %%ymm12, %%ymm0\n\tvmovdqa %%ymm12, %%ymm1\n\tvmovdqa %%ymm12, %%ymm2\n\t"
            "vmovdqa %%ymm12, %%ymm3\n\tvmovdqa %%ymm12, %%ymm4\n\tvmovdqa %%ymm12, %%ymm5\n\t"
            "vmovdqa %%ymm12, %%ymm6\n\tvmovdqa %%ymm12, %%ymm7\n\tvmovdqa %%ymm12, %%ymm8\n\t"
            "vmovdqa %%ymm12, %%ymm9\n\tvmovdqa %%ymm12, %%ymm10\n\tvmovdqa %%ymm12, %%ymm11\n\t"
            "1:\n\t"
            "vpmaddubsw %%ymm12, %%ymm0, %%ymm0\n\tvpmaddubsw %%ymm12, %%ymm1, %%ymm1\n\t"
            "vpmaddubsw %%ymm12, %%ymm2, %%ymm2\n\tvpmaddubsw %%ymm12, %%ymm3, %%ymm3\n\t"
            "vpmaddubsw %%ymm12, %%ymm4, %%ymm4\n\tvpmaddubsw %%ymm12, %%ymm5, %%ymm5\n\t"
            "vpmaddubsw %%ymm12, %%ymm6, %%ymm6\n\tvpmaddubsw %%ymm12, %%ymm7, %%ymm7\n\t"
            "vpmaddubsw %%ymm12, %%ymm8, %%ymm8\n\tvpmaddubsw %%ymm12, %%ymm9, %%ymm9\n\t"
            "vpmaddubsw %%ymm12, %%ymm10, %%ymm10\n\tvpmaddubsw %%ymm12, %%ymm11, %%ymm11\n\t"
            "dec %0\n\tjnz 1b\n\t"
            "vzeroupper"
            : "+r"(rounds)
            :
            : "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12");
        return n * 12 * 64;
    }
    // pmaddwd (SSE2, every x86-64): 8 16-bit products summed in pairs (16 operations); lanes of 1
    // give 32-bit lanes of 2, read as 16-bit 2 and 0 by the next round.
    __asm__ volatile(
        "pcmpeqw %%xmm12, %%xmm12\n\t"
        "psrlw $15, %%xmm12\n\t"
        "movdqa %%xmm12, %%xmm0\n\tmovdqa %%xmm12, %%xmm1\n\tmovdqa %%xmm12, %%xmm2\n\t"
        "movdqa %%xmm12, %%xmm3\n\tmovdqa %%xmm12, %%xmm4\n\tmovdqa %%xmm12, %%xmm5\n\t"
        "movdqa %%xmm12, %%xmm6\n\tmovdqa %%xmm12, %%xmm7\n\tmovdqa %%xmm12, %%xmm8\n\t"
        "movdqa %%xmm12, %%xmm9\n\tmovdqa %%xmm12, %%xmm10\n\tmovdqa %%xmm12, %%xmm11\n\t"
        "1:\n\t"
        "pmaddwd %%xmm12, %%xmm0\n\tpmaddwd %%xmm12, %%xmm1\n\tpmaddwd %%xmm12, %%xmm2\n\t"
        "pmaddwd %%xmm12, %%xmm3\n\tpmaddwd %%xmm12, %%xmm4\n\tpmaddwd %%xmm12, %%xmm5\n\t"
        "pmaddwd %%xmm12, %%xmm6\n\tpmaddwd %%xmm12, %%xmm7\n\tpmaddwd %%xmm12, %%xmm8\n\t"
        "pmaddwd %%xmm12, %%xmm9\n\tpmaddwd %%xmm12, %%xmm10\n\tpmaddwd %%xmm12, %%xmm11\n\t"
        "dec %0\n\tjnz 1b"
        : "+r"(rounds)
        :
        : "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12");
    return n * 12 * 16;
#elif defined(__aarch64__)
    (void)wide;
    // mla on 16 bytes: 16 byte products added (32 operations); the chains wrap harmlessly.
    __asm__ volatile(
        "movi v16.16b, #1\n\t"
        "mov v0.16b, v16.16b\n\tmov v1.16b, v16.16b\n\tmov v2.16b, v16.16b\n\tmov v3.16b, v16.16b\n\t"
        "mov v4.16b, v16.16b\n\tmov v5.16b, v16.16b\n\tmov v6.16b, v16.16b\n\tmov v7.16b, v16.16b\n\t"
        "mov v8.16b, v16.16b\n\tmov v9.16b, v16.16b\n\tmov v10.16b, v16.16b\n\tmov v11.16b, v16.16b\n\t"
        "mov v12.16b, v16.16b\n\tmov v13.16b, v16.16b\n\tmov v14.16b, v16.16b\n\tmov v15.16b, v16.16b\n\t"
        "1:\n\t"
        "mla v0.16b, v16.16b, v16.16b\n\tmla v1.16b, v16.16b, v16.16b\n\tmla v2.16b, v16.16b, v16.16b\n\t"
        "mla v3.16b, v16.16b, v16.16b\n\tmla v4.16b, v16.16b, v16.16b\n\tmla v5.16b, v16.16b, v16.16b\n\t"
        "mla v6.16b, v16.16b, v16.16b\n\tmla v7.16b, v16.16b, v16.16b\n\tmla v8.16b, v16.16b, v16.16b\n\t"
        "mla v9.16b, v16.16b, v16.16b\n\tmla v10.16b, v16.16b, v16.16b\n\tmla v11.16b, v16.16b, v16.16b\n\t"
        "mla v12.16b, v16.16b, v16.16b\n\tmla v13.16b, v16.16b, v16.16b\n\tmla v14.16b, v16.16b, v16.16b\n\t"
        "mla v15.16b, v16.16b, v16.16b\n\t"
        "subs %0, %0, #1\n\tb.ne 1b"
        : "+r"(rounds)
        :
        : "cc", "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10", "v11", "v12", "v13", "v14", "v15", "v16");
    return n * 16 * 32;
#else
    (void)wide;
    return 0;
#endif
}

uint64_t lowbit_chase(const uint64_t *next, uint64_t start, uint64_t steps) {
    uint64_t at = start;
    for (uint64_t s = 0; s < steps; s++) at = next[at];
    return at;
}

uint64_t lowbit_read_lines(const uint64_t *p, uint64_t words) {
    // Two words of each 64-byte line, in two running sums: the loads of successive lines are
    // independent, so the loop runs at the bandwidth the memory system gives one thread.
    uint64_t a = 0, b = 0;
    for (uint64_t i = 0; i + 8 <= words; i += 8) {
        a += p[i];
        b += p[i + 4];
    }
    return a + b;
}
