#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "backprop.h"

/* Allocations still to go before the injected failure in this thread, 0 if
 * none is armed (bp_debug_fail_alloc). Thread-local: arming it in one
 * thread never makes another thread's allocations fail. */
static _Thread_local long fail_countdown;

void bp_debug_fail_alloc(long n)
{
    fail_countdown = n > 0 ? n : 0;
}

long bp_debug_fail_alloc_pending(void)
{
    return fail_countdown;
}

void *bpi_alloc(size_t bytes)
{
    if (bytes == 0)
        return NULL;
    if (fail_countdown > 0 && --fail_countdown == 0)
        return NULL;
    /* aligned_alloc wants a multiple of the alignment. */
    size_t rounded;
    if (!bpi_add(bytes, BPI_ALIGN - 1, &rounded))
        return NULL;
    rounded = rounded / BPI_ALIGN * BPI_ALIGN;
    void *p = aligned_alloc(BPI_ALIGN, rounded);
    if (p)
        memset(p, 0, rounded);
    return p;
}

void *bpi_alloc_array(size_t n, size_t size)
{
    size_t bytes;
    return bpi_mul(n, size, &bytes) ? bpi_alloc(bytes) : NULL;
}

void bpi_free(void *p)
{
    free(p);
}
