// CPU feature probing that needs instructions (cpuid, xgetbv) or kernel macros (hwcaps).
// Each function is safe to call on any architecture: on the wrong one it reports nothing.
#ifndef LOWBIT_CPU_FEATURES_H
#define LOWBIT_CPU_FEATURES_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Raw x86 CPUID registers for one leaf/subleaf. Returns 0 when the leaf is not supported
// (or on non-x86 builds), 1 otherwise.
int lowbit_cpuid(uint32_t leaf, uint32_t subleaf,
                 uint32_t *eax, uint32_t *ebx, uint32_t *ecx, uint32_t *edx);

// XCR0 as read by xgetbv(0): which register states the OS saves and restores.
// Returns 0 when OSXSAVE is not set (or on non-x86 builds).
uint64_t lowbit_xgetbv0(void);

// aarch64 hwcaps (getauxval AT_HWCAP / AT_HWCAP2). 0 elsewhere.
uint64_t lowbit_hwcap(void);
uint64_t lowbit_hwcap2(void);

// Bit positions of the aarch64 hwcaps lowbit reads, taken from the kernel's headers where
// they exist so the Swift side never hard-codes them.
uint64_t lowbit_hwcap_asimd(void);
uint64_t lowbit_hwcap_asimddp(void);
uint64_t lowbit_hwcap_sve(void);
uint64_t lowbit_hwcap2_i8mm(void);
uint64_t lowbit_hwcap2_bf16(void);

// Writes back and invalidates every cache line of [p, p + bytes) in the whole coherence domain
// (x86 clflush, aarch64 dc civac), then waits for completion. Returns 1, or 0 where the
// architecture has no such instruction (nothing is flushed then).
int lowbit_flush_cache_lines(const void *p, uint64_t bytes);

// Runs `rounds` rounds of eight dependent integer adds of 1 to `start` and returns the result
// (start + 8 * rounds). On x86-64 and aarch64 the adds are inline assembly, one cycle each, so the
// time they take gives the clock this thread runs at, with whatever a hypervisor takes away;
// elsewhere a plain C chain (a lower bound on the clock).
uint64_t lowbit_dependent_adds(uint64_t start, uint64_t rounds);

// Runs `rounds` rounds of independent 8- or 16-bit multiply-add chains (inline assembly) and returns
// the integer operations done, two per product, or 0 where this architecture has no such loop.
// The time they take gives the vector throughput this thread gets: a core shared with another
// hardware thread (a co-tenant on a virtual machine) loses it while its clock, which
// lowbit_dependent_adds measures, stays the same. x86-64: vpmaddubsw on 256-bit registers when
// `wide` is nonzero (the caller has checked AVX2), else pmaddwd (SSE2); aarch64: NEON mla on bytes.
uint64_t lowbit_vector_madds(uint64_t rounds, int wide);

// Follows `steps` links of the chain next[at] from `start` and returns where it ends: each load
// waits for the one before, so the time per step is the latency of wherever the chain lives.
uint64_t lowbit_chase(const uint64_t *next, uint64_t start, uint64_t steps);

// Reads two words of every 64-byte line of p[0 .. words) and returns their sum.
uint64_t lowbit_read_lines(const uint64_t *p, uint64_t words);

#ifdef __cplusplus
}
#endif

#endif
