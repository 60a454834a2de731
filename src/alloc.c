#include <stdlib.h>
#include <string.h>

#include "alloc.h"

void *bpi_alloc(size_t bytes)
{
    if (bytes == 0)
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

void bpi_free(void *p)
{
    free(p);
}
