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

int dist_gather_bytes(const char *buf, size_t n, char **all, size_t **lens) {
    *all = NULL;
    if (lens) *lens = NULL;
#ifdef TUTOR_MPI
    if (g_size > 1) {
        if (n > (size_t)1 << 30) return tt_err("dist_gather_bytes: %zu bytes from one rank (at most 2^30)", n);
        long long mine = (long long)n, *each = g_rank == 0 ? malloc(sizeof(long long) * (size_t)g_size) : NULL;
        if (g_rank == 0 && !each) return tt_err("out of memory");
        if (MPI_Gather(&mine, 1, MPI_LONG_LONG, each, 1, MPI_LONG_LONG, 0, MPI_COMM_WORLD) != MPI_SUCCESS) {
            free(each);
            return tt_err("MPI_Gather failed");
        }
        int *counts = NULL, *displs = NULL;
        char *out = NULL;
        int rc = 0;
        if (g_rank == 0) {
            counts = malloc(sizeof(int) * (size_t)g_size), displs = malloc(sizeof(int) * (size_t)g_size);
            long long total = 0;
            for (int r = 0; r < g_size && counts && displs; r++) counts[r] = (int)each[r], displs[r] = (int)total, total += each[r];
            if (total > (long long)1 << 31) rc = tt_err("dist_gather_bytes: %lld bytes in all", total);
            out = rc ? NULL : malloc((size_t)total + 1);
            if (!rc && (!counts || !displs || !out)) rc = tt_err("out of memory");
        }
        if (MPI_Gatherv(buf, (int)n, MPI_CHAR, out, counts, displs, MPI_CHAR, 0, MPI_COMM_WORLD) != MPI_SUCCESS && !rc)
            rc = tt_err("MPI_Gatherv failed");
        free(counts), free(displs);
        if (rc) {
            free(out), free(each);
            return -1;
        }
        if (g_rank == 0) {
            *all = out;
            if (lens) {
                *lens = malloc(sizeof(size_t) * (size_t)g_size);
                for (int r = 0; *lens && r < g_size; r++) (*lens)[r] = (size_t)each[r];
            }
        }
        free(each);
        return 0;
    }
#endif
    *all = malloc(n + 1);
    if (!*all) return tt_err("out of memory");
    memcpy(*all, buf, n);
    if (lens) {
        *lens = malloc(sizeof(size_t));
        if (*lens) (*lens)[0] = n;
    }
    return 0;
}
