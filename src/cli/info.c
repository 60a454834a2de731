/* backprop info: what the library sees and uses on this machine. */
#include <stdio.h>

#include "cli.h"

int cli_info(const cli_args *a)
{
    bp_ctx *ctx;
    bp_topology_info t;
    bp_status s = bp_ctx_create(&ctx, a->threads);
    if (s != BP_OK)
        return cli_fail("context", s);
    bp_ctx_topology(ctx, &t);
    unsigned f = bp_build_features();
    printf("backprop %s\n", bp_version_string());
    printf("simd: %s\n", bp_ctx_isa(ctx));
    printf("openmp: %s, threads %d\n", f & BP_FEATURE_OPENMP ? "yes" : "no", bp_ctx_threads(ctx));
    printf("topology (%s): %d packages, %d NUMA nodes, %d cores, %d PUs\n",
           t.hwloc_used ? "hwloc" : "fallback, no hwloc", t.n_packages, t.n_numa_nodes,
           t.n_cores, t.n_pus);
    printf("caches as used: L1d %zu KiB, L2 %zu KiB (%d cores each), L3 %zu KiB (%d cores each)\n",
           t.l1d_bytes / 1024, t.l2_bytes / 1024, t.cores_per_l2, t.l3_bytes / 1024,
           t.cores_per_l3);
    bp_ctx_destroy(ctx);
    return 0;
}

/* backprop plan: the backward planner's decision, for people to read. */
int cli_plan(const cli_args *a)
{
    size_t widths[CLI_MAX_LAYERS + 2], n = 0;
    widths[n++] = a->plan_in;
    for (size_t i = 0; i < a->n_hidden; i++)
        widths[n++] = a->hidden[i];
    widths[n++] = a->plan_out;
    static char text[1 << 16];
    size_t needed;
    bp_status s = bp_backward_plan_text(widths, n, a->batch, a->threads, a->topology,
                                        a->topology_xml, text, sizeof text, &needed);
    if (s != BP_OK)
        return cli_fail("plan", s);
    fputs(text, stdout);
    if (needed > sizeof text)
        printf("... (%zu more bytes)\n", needed - sizeof text);
    return 0;
}
