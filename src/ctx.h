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
};

/* Fill *topo from hwloc (when built with it) or with fallbacks, with cache
 * sizes clamped to sane ranges. Never fails. */
void bpi_topology_detect(bp_topology_info *topo);


#endif
