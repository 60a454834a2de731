/* The one error idiom of the library: a failing function records a message
 * in a thread-local buffer and returns its status, in one expression:
 *
 *     if (B == 0) return bpi_fail(BP_EINVAL, "bp_net_forward: B is 0");
 */
#ifndef BP_ERROR_H
#define BP_ERROR_H

#include "backprop.h"

#if defined(__GNUC__)
#define BPI_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define BPI_PRINTF(f, a)
#endif

/* Record the message (printf format) and return `status`. */
bp_status bpi_fail(bp_status status, const char *fmt, ...) BPI_PRINTF(2, 3);

/* Propagate a failure unchanged (its message is already recorded). */
#define BPI_TRY(expr)                       \
    do {                                    \
        bp_status bpi_try_s_ = (expr);      \
        if (bpi_try_s_ != BP_OK)            \
            return bpi_try_s_;              \
    } while (0)

#endif
