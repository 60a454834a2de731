/* Which micro-kernels this CPU can run, and which one a context uses.
 *
 * The CPU's features are detected once per process (the library's only
 * mutable global state, an atomic cache); the choice among the kernels is
 * made per context, at bp_ctx_create, so tests can run every kernel in one
 * process and BP_ISA can be changed between contexts. */
#ifndef BP_CPU_H
#define BP_CPU_H

#include <stddef.h>

#include "backprop.h"
#include "ukr.h"

/* Feature bits: what a kernel needs from the CPU and the OS. */
#define BPI_CPU_AVX2 1u    /* AVX2 + FMA, YMM state enabled by the OS */
#define BPI_CPU_AVX512 2u  /* AVX-512F (+ AVX2), opmask and ZMM state enabled */
#define BPI_CPU_NEON 4u    /* aarch64 Advanced SIMD */

/* Features of this CPU, as a mask of BPI_CPU_*; detected on the first call. */
unsigned bpi_cpu_features(void);

/* Kernels built into this library, best first; the last is the scalar one.
 * i in [0, bpi_ukr_count()). */
size_t bpi_ukr_count(void);
const bpi_ukr *bpi_ukr_at(size_t i);

/* 1 if this CPU (and OS) can run kernel u. */
int bpi_ukr_runs_here(const bpi_ukr *u);

/* The kernel for a new context: the best one this CPU runs, or the one the
 * environment variable BP_ISA names (scalar, avx2, avx512, neon). Fails
 * with BP_EUNSUPPORTED, naming `fn` and the reason, if BP_ISA names an ISA
 * that is unknown, not built into this library or not supported here. */
bp_status bpi_ukr_choose(const bpi_ukr **out, const char *fn);

#endif
