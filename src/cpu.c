/* CPU feature detection and the choice of micro-kernel.
 *
 * x86-64: a kernel compiled with -mavx2 or -mavx512f may only run when the
 * CPU has the instructions (CPUID) AND the OS saves the wider registers on
 * context switches (XCR0, read with XGETBV, only allowed once CPUID.1:ECX
 * reports OSXSAVE). XCR0 bits: 1 SSE, 2 YMM upper halves; 5 opmask k0-k7,
 * 6 upper halves of zmm0-15, 7 zmm16-31. A kernel whose state the OS does
 * not enable would corrupt registers at the first context switch.
 * aarch64: getauxval(AT_HWCAP) & HWCAP_ASIMD (ASIMD is mandatory in ARMv8-A,
 * but the kernel says so explicitly).
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bp_config.h"
#include "cpu.h"
#include "error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define BPI_X86 1
#elif defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#define BPI_AARCH64 1
#endif

/* ------------------------------------------------------------ detection */

#if BPI_X86
/* CPUID leaf 1, ECX bits. */
#define CPUID1_ECX_FMA (1u << 12)
#define CPUID1_ECX_OSXSAVE (1u << 27)
#define CPUID1_ECX_AVX (1u << 28)
/* CPUID leaf 7 subleaf 0, EBX bits. */
#define CPUID7_EBX_AVX2 (1u << 5)
#define CPUID7_EBX_AVX512F (1u << 16)
/* XCR0 state components. */
#define XCR0_SSE_YMM 0x06u             /* bits 1, 2 */
#define XCR0_AVX512 0xe0u              /* bits 5, 6, 7 */

/* XCR0 via XGETBV with ECX = 0; encoded as bytes so no -mxsave is needed. */
static uint64_t read_xcr0(void)
{
    uint32_t lo, hi;
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static unsigned detect(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    unsigned need1 = CPUID1_ECX_FMA | CPUID1_ECX_OSXSAVE | CPUID1_ECX_AVX;
    if ((c & need1) != need1)
        return 0;
    uint64_t xcr0 = read_xcr0();
    if ((xcr0 & XCR0_SSE_YMM) != XCR0_SSE_YMM)
        return 0;
    if (__get_cpuid_max(0, NULL) < 7)
        return 0;
    __cpuid_count(7, 0, a, b, c, d);
    if (!(b & CPUID7_EBX_AVX2))
        return 0;
    unsigned f = BPI_CPU_AVX2;
    if ((b & CPUID7_EBX_AVX512F) && (xcr0 & XCR0_AVX512) == XCR0_AVX512)
        f |= BPI_CPU_AVX512;
    return f;
}
#elif BPI_AARCH64
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1ul << 1) /* <asm/hwcap.h> on aarch64 Linux */
#endif
static unsigned detect(void)
{
    return (getauxval(AT_HWCAP) & HWCAP_ASIMD) ? BPI_CPU_NEON : 0u;
}
#else
static unsigned detect(void)
{
    return 0;
}
#endif

/* Bit 31 marks "detected", so 0 means "not yet". Threads racing on the
 * first call compute the same value and store it; relaxed order suffices
 * because the value is self-contained (no other data is published). */
#define DETECTED (1u << 31)
static _Atomic unsigned cpu_cache;

unsigned bpi_cpu_features(void)
{
    unsigned v = atomic_load_explicit(&cpu_cache, memory_order_relaxed);
    if (!(v & DETECTED)) {
        v = detect() | DETECTED;
        atomic_store_explicit(&cpu_cache, v, memory_order_relaxed);
    }
    return v & ~DETECTED;
}

/* --------------------------------------------------------------- table */

typedef struct ukr_entry {
    const bpi_ukr *ukr;
    unsigned needs;     /* BPI_CPU_* bits the kernel needs */
} ukr_entry;

/* Best first: the first entry this CPU runs is the default. */
static const ukr_entry ukr_table[] = {
#if BP_HAVE_AVX512
    { &bpi_ukr_avx512_8x48, BPI_CPU_AVX512 },
#endif
#if BP_HAVE_AVX2
    { &bpi_ukr_avx2_6x16, BPI_CPU_AVX2 },
#endif
#if BP_HAVE_NEON
    { &bpi_ukr_neon_8x12, BPI_CPU_NEON },
#endif
    { &bpi_ukr_scalar_4x8, 0 },
};

#define N_UKR (sizeof ukr_table / sizeof ukr_table[0])

size_t bpi_ukr_count(void)
{
    return N_UKR;
}

const bpi_ukr *bpi_ukr_at(size_t i)
{
    return i < N_UKR ? ukr_table[i].ukr : NULL;
}

static const ukr_entry *entry_of(const bpi_ukr *u)
{
    for (size_t i = 0; i < N_UKR; i++)
        if (ukr_table[i].ukr == u)
            return &ukr_table[i];
    return NULL;
}

int bpi_ukr_runs_here(const bpi_ukr *u)
{
    const ukr_entry *e = entry_of(u);
    return e && (bpi_cpu_features() & e->needs) == e->needs;
}

/* Every ISA name BP_ISA accepts, built here or not. */
static int known_isa(const char *name)
{
    static const char *const names[] = {"scalar", "avx2", "avx512", "neon"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(name, names[i]) == 0)
            return 1;
    return 0;
}

bp_status bpi_ukr_choose(const bpi_ukr **out, const char *fn)
{
    const char *want = getenv("BP_ISA");
    if (want && *want == '\0')
        want = NULL;
    for (size_t i = 0; i < N_UKR; i++) {
        const bpi_ukr *u = ukr_table[i].ukr;
        /* Without BP_ISA: the first one that runs (scalar always does). */
        if (want ? strcmp(want, u->isa) != 0 : !bpi_ukr_runs_here(u))
            continue;
        if (!bpi_ukr_runs_here(u))
            return bpi_fail(BP_EUNSUPPORTED, "%s: BP_ISA=%s: this CPU (or its OS) does "
                            "not support %s", fn, want, want);
        *out = u;
        return BP_OK;
    }
    if (!known_isa(want))
        return bpi_fail(BP_EUNSUPPORTED, "%s: BP_ISA=%s is not an ISA name (expected "
                        "scalar, avx2, avx512 or neon)", fn, want);
    return bpi_fail(BP_EUNSUPPORTED, "%s: BP_ISA=%s: this library was built without "
                    "%s kernels (meson option simd)", fn, want, want);
}
