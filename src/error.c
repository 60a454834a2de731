#include <stdarg.h>
#include <stdio.h>

#include "error.h"

/* The last failure's message, per thread: the library keeps no other
 * mutable state that callers could race on. */
static _Thread_local char last_error[512];

bp_status bpi_fail(bp_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}

const char *bp_last_error(void)
{
    return last_error;
}

const char *bp_status_str(bp_status status)
{
    switch (status) {
    case BP_OK: return "success";
    case BP_EINVAL: return "invalid argument";
    case BP_ENOMEM: return "out of memory";
    case BP_EIO: return "input/output error";
    case BP_EFORMAT: return "malformed file or data";
    case BP_ENUMERIC: return "non-finite value (NaN or infinity)";
    case BP_EUNSUPPORTED: return "not supported by this build or CPU";
    case BP_ESTATE: return "call out of order";
    }
    return "unknown status";
}
