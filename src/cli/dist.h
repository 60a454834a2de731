/* MPI in the tool. MPI starts only when the process was launched by
 * mpirun/mpiexec (or an --mpi-* option asks for it), so a plain run never
 * touches MPI. Without MPI in the build every function is a no-op for one
 * process of rank 0. */
#ifndef BP_CLI_DIST_H
#define BP_CLI_DIST_H

#include "cli.h"

/* Initialise MPI (MPI_THREAD_FUNNELED) when wanted. Prints and returns
 * non-zero on error. */
int cli_dist_init(const cli_args *a);
/* This process's rank (0 without MPI) and the rank count (1). */
int cli_dist_rank(void);
int cli_dist_size(void);
/* Train ctx's net over MPI_COMM_WORLD with the options of `a`: set the
 * communicator, broadcast rank 0's net and optimizer. Prints on error. */
int cli_dist_setup(bp_ctx *ctx, bp_net *net, bp_optim *opt, const cli_args *a);
/* flag OR-ed over the ranks (e.g. Ctrl-C on any rank stops every rank). */
int cli_dist_any(int flag);
/* Rank 0 prints where the distributed steps spent their time. */
void cli_dist_report(const bp_ctx *ctx);
/* End of the command with exit code rc: a failed rank (rc other than 0 and
 * 130) ends the whole job with MPI_Abort, so no rank waits forever for it;
 * otherwise MPI_Finalize. Returns rc. */
int cli_dist_finish(int rc);

#endif
