/* MPI in the tool: start, attach the context, stop or abort the job. */
#include <stdio.h>
#include <stdlib.h>

#include "dist.h"

#if BP_CLI_MPI
#include <mpi.h>

#include "backprop_mpi.h"

static int active, world_rank, world_size = 1;

/* Launched by a process manager: Open MPI's mpirun, or a PMI/PMIx one
 * (MPICH's hydra, Slurm's srun). */
static int launched_by_mpirun(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

int cli_dist_init(const cli_args *a)
{
    if (!launched_by_mpirun() && !a->mpi_exact && !a->mpi_shards)
        return 0;
    int provided = MPI_THREAD_SINGLE;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "backprop: MPI_Init_thread failed\n");
        return 1;
    }
    active = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    if (provided < MPI_THREAD_FUNNELED) {
        fprintf(stderr, "backprop: rank %d: MPI provides no MPI_THREAD_FUNNELED\n", world_rank);
        return 1;
    }
    return 0;
}

int cli_dist_rank(void) { return world_rank; }
int cli_dist_size(void) { return world_size; }

int cli_dist_setup(bp_ctx *ctx, bp_net *net, bp_optim *opt, const cli_args *a)
{
    if (!active)
        return 0;
    bp_mpi_options o;
    bp_mpi_options_default(&o);
    o.exact = a->mpi_exact;
    o.shards = (int)a->mpi_shards;
    /* For benchmarks: BP_MPI_OVERLAP=0 reduces everything after the
     * backward; BP_MPI_LAYER_UPDATES=0 updates after every reduction is
     * done; BP_MPI_BUCKET_KB sets the bucket size. */
    const char *ov = getenv("BP_MPI_OVERLAP"), *kb = getenv("BP_MPI_BUCKET_KB");
    const char *lu = getenv("BP_MPI_LAYER_UPDATES");
    if (ov && *ov)
        o.overlap = atoi(ov) != 0;
    if (lu && *lu)
        o.layer_updates = atoi(lu) != 0;
    if (kb && atol(kb) > 0)
        o.bucket_bytes = (size_t)atol(kb) * 1024;
    bp_status s = bp_ctx_set_comm(ctx, MPI_COMM_WORLD, &o);
    if (s == BP_OK)
        s = bp_mpi_prepare(net, opt);
    return s == BP_OK ? 0 : cli_fail("MPI", s);
}

int cli_dist_any(int flag)
{
    if (!active || world_size == 1)
        return flag;
    MPI_Allreduce(MPI_IN_PLACE, &flag, 1, MPI_INT, MPI_LOR, MPI_COMM_WORLD);
    return flag;
}

void cli_dist_report(const bp_ctx *ctx)
{
    bp_mpi_stats st;
    if (!active || world_rank != 0 || bp_mpi_get_stats(ctx, &st) != BP_OK || st.steps == 0)
        return;
    printf("mpi: %d ranks, %llu steps, %llu reductions: per step compute %.3f ms, "
           "exposed communication %.3f ms, update %.3f ms; %llu layer updates\n",
           world_size, (unsigned long long)st.steps, (unsigned long long)st.reductions,
           1e3 * st.compute_seconds / (double)st.steps, 1e3 * st.wait_seconds / (double)st.steps,
           1e3 * st.update_seconds / (double)st.steps, (unsigned long long)st.layer_updates);
}

int cli_dist_finish(int rc)
{
    if (!active)
        return rc;
    if (rc != 0 && rc != EXIT_INTERRUPTED && world_size > 1) {
        fprintf(stderr, "backprop: rank %d of %d failed (exit %d): aborting the job\n",
                world_rank, world_size, rc);
        fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, rc);
    }
    MPI_Finalize();
    return rc;
}

#else /* built without MPI */

int cli_dist_init(const cli_args *a)
{
    if (!a->mpi_exact && !a->mpi_shards)
        return 0;
    fprintf(stderr, "backprop: --mpi-exact and --mpi-shards need a build with MPI "
                    "(meson option mpi)\n");
    return 1;
}

int cli_dist_rank(void) { return 0; }
int cli_dist_size(void) { return 1; }

int cli_dist_setup(bp_ctx *ctx, bp_net *net, bp_optim *opt, const cli_args *a)
{
    (void)ctx, (void)net, (void)opt, (void)a;
    return 0;
}

int cli_dist_any(int flag) { return flag; }
void cli_dist_report(const bp_ctx *ctx) { (void)ctx; }
int cli_dist_finish(int rc) { return rc; }

#endif
