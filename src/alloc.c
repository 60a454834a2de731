#define _DEFAULT_SOURCE /* madvise, MADV_HUGEPAGE */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

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

/* Large buffers (a dataset, a wide layer's parameters) ask for transparent
 * huge pages where the kernel leaves that to madvise (Debian's default):
 * their first touch, the zeroing below, then faults once per 2 MiB
 * instead of once per 4 KiB. On the Zen 5 VMs a fault costs several
 * microseconds (a paravirtualised guest: 37 % of the time of loading
 * Fashion-MNIST went to the fault path). Measured there: loading its
 * 188 MB of training images 0.72-0.82 s -> 0.12-0.49 s, `backprop train`
 * 4.90 -> 4.54 s (medians of 4 alternating runs). On a KVM guest (Zen 1),
 * where faults are cheap, it made no measurable difference. madvise wants
 * a page-aligned start: the pages wholly inside the buffer are advised.
 * Advice only: where it fails or huge pages are off, nothing changes.
 * Such buffers start on a 2 MiB boundary and span whole 2 MiB pages, so
 * that no part of them is left to small pages: the GEMM workspaces of a
 * context and of a backward plan (2.1-4.2 MB each on the VMs) took 3500
 * faults of 4 KiB, 30-50 ms of creating a context and a net, when only
 * buffers from 4 MiB were advised and only their inner pages were huge. */
static void advise_huge(void *p, size_t bytes)
{
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0)
        return;
    uintptr_t pg = (uintptr_t)page;
    uintptr_t lo = ((uintptr_t)p + pg - 1) / pg * pg;
    uintptr_t hi = ((uintptr_t)p + bytes) / pg * pg;
#ifdef MADV_HUGEPAGE
    if (hi > lo)
        (void)madvise((void *)lo, (size_t)(hi - lo), MADV_HUGEPAGE);
#else
    (void)lo, (void)hi;
#endif
}

void *bpi_alloc(size_t bytes)
{
    if (bytes == 0)
        return NULL;
    if (fail_countdown > 0 && --fail_countdown == 0)
        return NULL;
    /* aligned_alloc wants a multiple of the alignment: the zeroed bytes
     * (`rounded`) to BPI_ALIGN, the span allocated to its alignment. */
    size_t rounded, span;
    if (!bpi_add(bytes, BPI_ALIGN - 1, &rounded))
        return NULL;
    rounded = rounded / BPI_ALIGN * BPI_ALIGN;
    int huge = rounded >= BPI_HUGE_MIN_BYTES;
    size_t align = huge ? BPI_HUGE_PAGE_BYTES : BPI_ALIGN;
    if (!bpi_add(rounded, align - 1, &span))
        return NULL;
    span = span / align * align;
    void *p = aligned_alloc(align, span);
    if (p && huge)
        advise_huge(p, span);
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
