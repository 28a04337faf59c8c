#include "mdgan/cli.h"

#include <cblas.h>
#include <errno.h>
#include <getopt.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "mdgan/error.h"
#include "mdgan/mem.h"

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

// The pthread build of OpenBLAS starts its pool when it is loaded, and each idle worker
// spins on sched_yield for about 2^28 cycles (0.1 s) before it sleeps: against our two
// OpenMP threads on two cores that was a third runnable thread, and predict's load and
// G1 took 0.06 and 0.13 s instead of 0.04 and 0.07. Not in cblas.h, and not in every
// build of OpenBLAS: weak, called only where it exists.
extern int blas_thread_shutdown_(void) __attribute__((weak));

void cli_set_threads(int n) {
    if (n <= 0) n = omp_get_num_procs();
    // The convolutions run one-threaded sgemm calls inside their own OpenMP loops: a
    // second, OpenBLAS, thread pool would only spin against the first one. The
    // OpenMP build of OpenBLAS (openblas_get_parallel() == 2) has no pool of its own,
    // runs one-threaded inside a parallel region, and its openblas_set_num_threads
    // sets OpenMP's count too: leave it alone.
    if (openblas_get_parallel() == 1) {
        openblas_set_num_threads(1);
        // its sgemm then runs on the calling thread; the idle pool is joined (a call
        // that wanted threads again would start it anew)
        if (blas_thread_shutdown_) blas_thread_shutdown_();
    }
    omp_set_num_threads(n);
    threads_set = n;
}

int cli_threads(void) { return threads_set ? threads_set : omp_get_max_threads(); }

int cli_parse_infer(CliInferArgs *a, int argc, char **argv, const char *input_opt, const char *prog,
                    void (*usage)(FILE *)) {
    memset(a, 0, sizeof *a);
    a->bn = BN_RUNNING;
    const struct option opts[] = {
        {"checkpoint", required_argument, 0, 'c'}, {input_opt, required_argument, 0, 'i'},
        {"out", required_argument, 0, 'o'},        {"frames", required_argument, 0, 'T'},
        {"size", required_argument, 0, 'S'},       {"bn", required_argument, 0, 'b'},
        {"threads", required_argument, 0, 'j'},    {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int opt;
    optind = 1, opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': a->checkpoint = optarg; break;
        case 'i': a->input = optarg; break;
        case 'o': a->out = optarg; break;
        case 'T': if (cli_int("--frames", optarg, 1, 4096, &a->frames) != 0) return MDGAN_EXIT_USAGE; break;
        case 'S': if (cli_int("--size", optarg, 8, 4096, &a->size) != 0) return MDGAN_EXIT_USAGE; break;
        case 'j': if (cli_int("--threads", optarg, 1, 1024, &a->threads) != 0) return MDGAN_EXIT_USAGE; break;
        case 'b': if (cli_bn_mode(optarg, &a->bn) != 0) return MDGAN_EXIT_USAGE; break;
        case 'h': usage(stdout); return MDGAN_EXIT_OK;
        case ':': MDGAN_ERR("infer: option %s needs a value", argv[optind - 1]); return MDGAN_EXIT_USAGE;
        default:
            MDGAN_ERR("infer: unknown option '%s' (see %s infer --help)", argv[optind - 1], prog);
            return MDGAN_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        MDGAN_ERR("infer: unexpected argument '%s'", argv[optind]);
        return MDGAN_EXIT_USAGE;
    }
    if (!a->checkpoint || !a->input || !a->out) {
        MDGAN_ERR("infer needs --checkpoint, --%s and --out (see %s infer --help)", input_opt, prog);
        return MDGAN_EXIT_USAGE;
    }
    return -1;
}

int cli_main(const char *prog, int argc, char **argv, const CliCommand *cmds, void (*usage)(FILE *)) {
    mem_keep_freed();
    if (argc < 2) {
        usage(stderr);
        return MDGAN_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return MDGAN_EXIT_OK;
    }
    for (int k = 0; cmds[k].name; k++) {
        if (strcmp(cmd, cmds[k].name) != 0) continue;
        int rc = cmds[k].run(argc - 1, argv + 1);
        if ((rc == MDGAN_EXIT_USAGE || rc == MDGAN_EXIT_RUNTIME) && mdgan_errmsg()[0]) mdgan_errprint(prog);
        return rc;
    }
    fprintf(stderr, "%s: unknown command '%s' (see %s --help)\n", prog, cmd, prog);
    return MDGAN_EXIT_USAGE;
}
