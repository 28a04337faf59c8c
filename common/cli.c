#include "mdgan/cli.h"

#include <cblas.h>
#include <errno.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "mdgan/error.h"

int cli_int(const char *opt, const char *value, long lo, long hi, int *out) {
    char *end = NULL;
    errno = 0;
    long v = value ? strtol(value, &end, 10) : 0;
    if (!value || !*value || *end || errno || v < lo || v > hi) {
        MDGAN_ERR("%s: '%s' is not an integer from %ld to %ld", opt, value ? value : "", lo, hi);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int cli_bn_mode(const char *value, BnMode *out) {
    if (!strcmp(value, "running")) *out = BN_RUNNING;
    else if (!strcmp(value, "batch")) *out = BN_BATCH;
    else {
        MDGAN_ERR("--bn: '%s' is not 'running' or 'batch'", value);
        return -1;
    }
    return 0;
}

static int threads_set;

void cli_set_threads(int n) {
    if (n <= 0) n = omp_get_num_procs();
    // The convolutions run one-threaded sgemm calls inside their own OpenMP loops: a
    // second, OpenBLAS, thread pool would only spin against the first one. The
    // OpenMP build of OpenBLAS (openblas_get_parallel() == 2) has no pool of its own,
    // runs one-threaded inside a parallel region, and its openblas_set_num_threads
    // sets OpenMP's count too: leave it alone.
    if (openblas_get_parallel() == 1) openblas_set_num_threads(1);
    omp_set_num_threads(n);
    threads_set = n;
}

int cli_threads(void) { return threads_set ? threads_set : omp_get_max_threads(); }
