/* Flush-to-zero inside the library's kernels. Arithmetic on denormal
 * (subnormal) floats takes a microcode assist on x86 that costs about a
 * hundred cycles per instruction, so a net whose activations or gradients
 * drift into the denormal range would train many times slower. Every
 * parallel region and kernel of the library brackets its work with
 *
 *     bpi_fpmode fp = bpi_fpmode_enter();  ...  bpi_fpmode_leave(&fp);
 *
 * on each thread that runs it: enter turns on flush-to-zero (results) and
 * denormals-are-zero (inputs) -- MXCSR.FTZ and MXCSR.DAZ on x86-64,
 * FPCR.FZ on aarch64 -- and leave puts that thread's previous mode back
 * (keeping any exception flags raised meanwhile), so neither the caller's
 * thread nor OpenMP's pooled threads are left changed. Loops run under the
 * same mode whatever the thread count, so results stay bitwise identical
 * across thread counts. Elsewhere the functions do nothing. */
#ifndef BP_FPMODE_H
#define BP_FPMODE_H

#include <stdint.h>

/* Compilers do not model the mode register as an input of arithmetic: a
 * memory barrier keeps the work's loads and stores on the right side of
 * each mode switch. */
#define BPI_FPMODE_FENCE() __asm__ __volatile__("" : : : "memory")

typedef struct bpi_fpmode {
    uint64_t saved; /* the thread's mode bits before enter */
    int once;       /* 1 until leave: lets BPI_OMP_FOR use it as a loop guard */
} bpi_fpmode;

#if defined(__x86_64__) || (defined(__i386__) && defined(__SSE__))
#include <xmmintrin.h>

#define BPI_FPMODE_BITS 0x8040u /* MXCSR bit 15 FTZ, bit 6 DAZ */

static inline bpi_fpmode bpi_fpmode_enter(void)
{
    unsigned csr = _mm_getcsr();
    bpi_fpmode m = {csr & BPI_FPMODE_BITS, 1};
    if (m.saved != BPI_FPMODE_BITS)
        _mm_setcsr(csr | BPI_FPMODE_BITS);
    BPI_FPMODE_FENCE();
    return m;
}

static inline void bpi_fpmode_leave(bpi_fpmode *m)
{
    BPI_FPMODE_FENCE();
    if (m->saved != BPI_FPMODE_BITS)
        _mm_setcsr((_mm_getcsr() & ~BPI_FPMODE_BITS) | (unsigned)m->saved);
    m->once = 0;
}

#elif defined(__aarch64__)

#define BPI_FPMODE_BITS ((uint64_t)1 << 24) /* FPCR.FZ */

static inline uint64_t bpi_fpcr_get(void)
{
    uint64_t v;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(v));
    return v;
}

static inline void bpi_fpcr_set(uint64_t v)
{
    __asm__ __volatile__("msr fpcr, %0" : : "r"(v));
}

static inline bpi_fpmode bpi_fpmode_enter(void)
{
    uint64_t cr = bpi_fpcr_get();
    bpi_fpmode m = {cr & BPI_FPMODE_BITS, 1};
    if (!m.saved)
        bpi_fpcr_set(cr | BPI_FPMODE_BITS);
    BPI_FPMODE_FENCE();
    return m;
}

static inline void bpi_fpmode_leave(bpi_fpmode *m)
{
    BPI_FPMODE_FENCE();
    if (!m->saved)
        bpi_fpcr_set(bpi_fpcr_get() & ~BPI_FPMODE_BITS);
    m->once = 0;
}

#else

static inline bpi_fpmode bpi_fpmode_enter(void)
{
    bpi_fpmode m = {0, 1};
    return m;
}

static inline void bpi_fpmode_leave(bpi_fpmode *m)
{
    m->once = 0;
}

#endif

#endif
