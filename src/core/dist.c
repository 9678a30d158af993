/* dist.c: the processes of a data-parallel run (MPI, issue 14). Built with TUTOR_MPI when
 * OpenMPI is installed; MPI starts only when the program runs under mpirun (OpenMPI's or a
 * PMI environment), so a plain `tutor` never touches it. Without MPI, or outside mpirun, this
 * is one process of rank 0: every function is then what a single process needs. */
#include <stdlib.h>
#include <string.h>

#include "tutor/core.h"

#ifdef TUTOR_MPI
#include <mpi.h>
static int g_mpi;
#endif
static int g_rank, g_size = 1;

int dist_init(int *argc, char ***argv) {
#ifdef TUTOR_MPI
    const char *launched = getenv("OMPI_COMM_WORLD_SIZE");
    if (!launched) launched = getenv("PMI_SIZE");
    if (!launched) launched = getenv("PMIX_RANK");
    if (launched) {
        int provided = 0;
        if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
            return tt_err("MPI_Init failed");
        g_mpi = 1;
        MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
        MPI_Comm_size(MPI_COMM_WORLD, &g_size);
        /* only rank 0 talks */
        if (g_rank != 0) tt_log_set_level(0);
    }
#else
    (void)argc, (void)argv;
#endif
    return 0;
}

void dist_finalize(void) {
#ifdef TUTOR_MPI
    if (g_mpi) MPI_Finalize();
    g_mpi = 0;
#endif
}

int dist_rank(void) { return g_rank; }
int dist_size(void) { return g_size; }

int dist_sum_f32(float *buf, size_t n) {
#ifdef TUTOR_MPI
    if (g_size > 1) {
        /* in pieces below 2^31 elements */
        for (size_t off = 0; off < n; off += (size_t)1 << 30) {
            int cnt = (int)(n - off < ((size_t)1 << 30) ? n - off : ((size_t)1 << 30));
            if (MPI_Allreduce(MPI_IN_PLACE, buf + off, cnt, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS)
                return tt_err("MPI_Allreduce failed");
        }
    }
#else
    (void)buf, (void)n;
#endif
    return 0;
}

int dist_sum_f64(double *buf, size_t n) {
#ifdef TUTOR_MPI
    if (g_size > 1 && MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS)
        return tt_err("MPI_Allreduce failed");
#else
    (void)buf, (void)n;
#endif
    return 0;
}

int dist_bcast_f64(double *buf, size_t n) {
#ifdef TUTOR_MPI
    if (g_size > 1 && MPI_Bcast(buf, (int)n, MPI_DOUBLE, 0, MPI_COMM_WORLD) != MPI_SUCCESS)
        return tt_err("MPI_Bcast failed");
#else
    (void)buf, (void)n;
#endif
    return 0;
}
