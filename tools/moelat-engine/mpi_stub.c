/* Built without MPI (MOELAT_MPI off): say so when started by mpirun,
 * rather than have every rank step the whole lattice on its own. */
#include <stdio.h>
#include <stdlib.h>

#include "run_slabs.h"
#include "train_ranks.h"

int run_mpi_launched(void) { return getenv("OMPI_COMM_WORLD_SIZE") != NULL || getenv("PMI_SIZE") != NULL; }

int run_mpi(const moelat_config *cfg, const run_opts *o) {
    (void)cfg;
    (void)o;
    fprintf(stderr, "moelat-engine run: started by mpirun, but this build has no MPI support "
                    "(configure with -DMOELAT_MPI=ON and an MPI library installed)\n");
    return 2;
}

int train_ranks_begin(moelat_train_params *p) {
    if (run_mpi_launched()) {
        fprintf(stderr, "moelat-engine train: started by mpirun, but this build has no MPI support "
                        "(configure with -DMOELAT_MPI=ON and an MPI library installed)\n");
        return -1;
    }
    p->rank = 0;
    p->ranks = 1;
    return 0;
}

void train_ranks_end(int rc) { (void)rc; }
