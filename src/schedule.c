/* Learning-rate schedules (formulas in backprop.h, above bp_schedule). */
#include <math.h>

#include "error.h"
#include "optim.h"

#define BPI_PI 3.14159265358979323846

double bpi_schedule_lr(const bp_optim_config *cfg, uint64_t t)
{
    double lr = cfg->lr;
    switch (cfg->schedule) {
    case BP_SCHED_STEP:
        return lr * pow(cfg->gamma, (double)(t / cfg->step_size));
    case BP_SCHED_COSINE: {
        if (t < cfg->warmup_steps)
            return lr * (double)(t + 1) / (double)cfg->warmup_steps;
        uint64_t span = cfg->total_steps - cfg->warmup_steps;
        double q = (double)(t - cfg->warmup_steps) / (double)(span > 0 ? span : 1);
        q = q < 1.0 ? q : 1.0;
        return cfg->min_lr + (lr - cfg->min_lr) * (1.0 + cos(BPI_PI * q)) / 2.0;
    }
    case BP_SCHED_CONSTANT:
        break;
    }
    return lr;
}

bp_status bpi_schedule_check(const bp_optim_config *cfg, const char *fn)
{
    switch (cfg->schedule) {
    case BP_SCHED_CONSTANT:
        return BP_OK;
    case BP_SCHED_STEP:
        if (cfg->step_size == 0)
            return bpi_fail(BP_EINVAL, "%s: step schedule needs step_size >= 1", fn);
        if (!isfinite(cfg->gamma) || cfg->gamma <= 0.0f)
            return bpi_fail(BP_EINVAL, "%s: step schedule gamma is %g (expected > 0)", fn,
                            (double)cfg->gamma);
        return BP_OK;
    case BP_SCHED_COSINE:
        if (cfg->total_steps < cfg->warmup_steps)
            return bpi_fail(BP_EINVAL, "%s: cosine schedule total_steps %llu < warmup_steps %llu",
                            fn, (unsigned long long)cfg->total_steps,
                            (unsigned long long)cfg->warmup_steps);
        if (!isfinite(cfg->min_lr) || cfg->min_lr < 0.0f)
            return bpi_fail(BP_EINVAL, "%s: cosine schedule min_lr is %g (expected >= 0)", fn,
                            (double)cfg->min_lr);
        return BP_OK;
    }
    return bpi_fail(BP_EINVAL, "%s: schedule is %d (not a bp_schedule)", fn, (int)cfg->schedule);
}
