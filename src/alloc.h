/* 64-byte aligned allocation and overflow-checked size arithmetic. All
 * buffers of the library come from here, so a later allocator hook (for
 * failure injection or embedders) has one place to go. */
#ifndef BP_ALLOC_H
#define BP_ALLOC_H

#include <stddef.h>
#include <stdint.h>

#define BPI_ALIGN 64
/* Floats per alignment unit: tensor offsets inside blocks round up to this. */
#define BPI_ALIGN_FLOATS (BPI_ALIGN / sizeof(float))

/* From this size on, bpi_alloc advises transparent huge pages and aligns
 * the buffer to one (alloc.c). */
#define BPI_HUGE_MIN_BYTES ((size_t)2 << 20)
#define BPI_HUGE_PAGE_BYTES ((size_t)2 << 20)

/* Aligned, zero-filled allocation of `bytes` (> 0). NULL on failure, and
 * for the allocation bp_debug_fail_alloc() armed in this thread. */
void *bpi_alloc(size_t bytes);
/* bpi_alloc of n * size bytes; NULL also when the product overflows. */
void *bpi_alloc_array(size_t n, size_t size);
void bpi_free(void *p);

/* *out = a * b; returns 0 on overflow. */
static inline int bpi_mul(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a)
        return 0;
    *out = a * b;
    return 1;
}

/* *out = a + b; returns 0 on overflow. */
static inline int bpi_add(size_t a, size_t b, size_t *out)
{
    if (b > SIZE_MAX - a)
        return 0;
    *out = a + b;
    return 1;
}

/* Round a float count up to a multiple of BPI_ALIGN_FLOATS (no overflow
 * check: callers keep counts far below SIZE_MAX / 2). */
static inline size_t bpi_round_floats(size_t n)
{
    return (n + BPI_ALIGN_FLOATS - 1) / BPI_ALIGN_FLOATS * BPI_ALIGN_FLOATS;
}

#endif
