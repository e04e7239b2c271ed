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
    // round, and the loop counter's decrement and branch beside them.
#if defined(__x86_64__)
    __asm__ volatile(
        "1:\n\t"
        "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
        "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
        "dec %1\n\tjnz 1b"
        : "+r"(x), "+r"(rounds)
        :
        : "cc");
#elif defined(__aarch64__)
    __asm__ volatile(
        "1:\n\t"
        "add %0, %0, #1\n\tadd %0, %0, #1\n\tadd %0, %0, #1\n\tadd %0, %0, #1\n\t"
        "add %0, %0, #1\n\tadd %0, %0, #1\n\tadd %0, %0, #1\n\tadd %0, %0, #1\n\t"
        "subs %1, %1, #1\n\tb.ne 1b"
        : "+r"(x), "+r"(rounds)
        :
        : "cc");
#else
    for (uint64_t r = 0; r < rounds; r++) {
        volatile uint64_t v = x;
        for (int i = 0; i < 8; i++) v = v + 1;
        x = v;
    }
#endif
    return x;
}
