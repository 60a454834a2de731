/* The context: threads, what the machine looks like, and the GEMM engine's
 * set-up (blocking and packing workspace) derived from it. */
#ifndef BP_CTX_H
#define BP_CTX_H

#include "backprop.h"
#include "gemm.h"

struct bp_ctx {
    int n_threads;
    bp_topology_info topo;
    bpi_gemm_env gemm;      /* workspace owned by the context */
    struct bpi_dist *dist;  /* MPI training state (src/mpi.c); NULL without a communicator */
    bp_backward_mode backward;
    struct bpi_topo_desc *cores; /* the cores for the backward planner */
    void *hwloc;            /* the machine's hwloc topology, loaded once: the
                               cache sizes, the cores and the executor's
                               binding all read it (hwloc_topology_t; NULL
                               without hwloc or when it failed) */
};

/* Fill *topo from `hwloc` (a loaded hwloc_topology_t, or NULL) or with
 * fallbacks, with cache sizes clamped to sane ranges. Never fails. */
void bpi_topology_detect(bp_topology_info *topo, void *hwloc);

/* The machine's hwloc topology, loaded (hwloc honours HWLOC_SYNTHETIC and
 * HWLOC_XMLFILE), or NULL without hwloc or when it fails; free with
 * bpi_hwloc_unload. Each load costs 6-11 ms on the development VMs (hwloc
 * opens its plugins and reads sysfs), so a context loads it once. */
void *bpi_hwloc_load(void);
void bpi_hwloc_unload(void *hwloc);


#endif
