// bench_step: times the C side of `make bench` (see bench/README.md).
//
//   --case train   one Stage I training step: G1 forward (train-mode BN), D on Y and on
//                  Y1 (two calls, two Acts), BCE losses, D backward x2 + Adam on D, D on
//                  Y1 again, G loss = BCE(D(Y1), 1) + L1(Y1, Y), D backward to dY1 (D's
//                  weight gradients are skipped: net_backward_input, as stage1_step does), G1
//                  backward, Adam on G1. Default shape T=32, 64x64, ngf=ndf=16, batch 4.
//   --case infer   G1 forward with running BatchNorm statistics, what `mdgan predict`
//                  runs. Default shape T=32, 128x128, ngf=32, batch 1.
//   --layers       instead of the step, each convolution of the train case alone, beside
//                  a bare sgemm of the same size (the difference is vol2col / col2vol).
//
// Prints human-readable lines and, for bench/run.sh, lines starting with
//   ENV key=value, RESULT key=value ..., PHASE key=value ..., LAYER key=value ...
// One case per process, so ru_maxrss is the peak of that case alone.
#include <cblas.h>
#include <getopt.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "mdgan/adam.h"
#include "mdgan/cli.h"
#include "mdgan/error.h"
#include "mdgan/loss.h"
#include "mdgan/net.h"
#include "mdgan/rng.h"

static const char *PROG = "bench_step";

typedef struct {
    int train;       // 1: training step, 0: inference
    int layers;      // per-layer profile instead of the step
    int T, S, nf, N; // frames, frame size, ngf = ndf, batch
    int threads, warmup, min_iters, max_iters;
    double min_time; // seconds of timed iterations at least (after min_iters)
} Opts;

static void usage(FILE *out) {
    fprintf(out,
            "usage: bench_step [--case train|infer] [--layers] [--threads N] [--warmup N]\n"
            "                  [--iters N] [--max-iters N] [--min-time S]\n"
            "                  [--frames T] [--size S] [--nf F] [--batch N]\n"
            "  --case train   Stage I training step (default T=32, 64x64, nf=16, batch 4)\n"
            "  --case infer   G1 forward, running BN statistics (default T=32, 128x128, nf=32, batch 1)\n"
            "  --layers       time each convolution of the case alone, beside a bare sgemm\n"
            "  --threads N    OpenMP and OpenBLAS threads (default 2)\n"
            "  --warmup N     untimed iterations first (default 2)\n"
            "  --iters N      timed iterations at least (default 5)\n"
            "  --min-time S   keep timing until S seconds have passed too (default 0)\n"
            "  --max-iters N  stop after N timed iterations even before --min-time (default 1000)\n"
            "exit codes: 0 success, 1 runtime failure, 2 bad usage\n");
}

static double max_rss_mib(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return -1;
    return (double)ru.ru_maxrss / 1024.0; // Linux: KiB
}

// CPU seconds used by this process (all threads) so far.
static double self_cpu_s(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

// CPU seconds the whole machine spent busy (user, nice, system, irq, softirq, steal)
// since boot, from /proc/stat; -1 when unreadable. Minus our own CPU time over the same
// window, this tells how much other work shared the cores while we timed.
static double machine_busy_s(void) {
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return -1;
    unsigned long long v[8] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                   &v[6], &v[7]);
    fclose(f);
    if (n != 8) return -1;
    long hz = sysconf(_SC_CLK_TCK);
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)(hz > 0 ? hz : 100);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

// Median of n values (sorts a copy).
static double median(const double *v, int n) {
    double *s = malloc((size_t)n * sizeof *s);
    if (!s) return v[0];
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    double m = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    free(s);
    return m;
}

static double minimum(const double *v, int n) {
    double m = v[0];
    for (int i = 1; i < n; i++)
        if (v[i] < m) m = v[i];
    return m;
}

static void fill_uniform(float *x, size_t n, Rng *rng) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(2.0 * rng_uniform(rng) - 1.0);
}

// X: one random frame repeated T times, as Stage I feeds G1; (N, 3, T, H, W).
static void fill_repeated_frame(float *x, int N, int T, int H, int W, Rng *rng) {
    const size_t plane = (size_t)H * W;
    for (int n = 0; n < N; n++)
        for (int c = 0; c < 3; c++) {
            float *xc = x + ((size_t)n * 3 + c) * T * plane;
            fill_uniform(xc, plane, rng);
            for (int t = 1; t < T; t++) memcpy(xc + (size_t)t * plane, xc, plane * sizeof(float));
        }
}

// ---------------------------------------------------------------- nominal FLOPs
// 2 * multiply-adds of the sgemms: forward N*K*Ck*L each; a backward computes dW
// (same count) and, unless the input gradient is skipped, dinp (same count again).

static double conv_flops(const ConvShape *s) {
    return 2.0 * s->N * s->K * (double)s->C * s->kT * s->kH * s->kW * (double)s->oT * s->oH * s->oW;
}

static double net_fwd_flops(const Net *net, const Acts *a) {
    double f = 0;
    for (int j = 1; j <= net->L; j++) f += conv_flops(&a->conv[j]) * (net->kind == NET_D ? 1 : 2);
    return f;
}

// Backward with dx requested or not (the first encoder conv skips its dinp without it).
static double net_bwd_flops(const Net *net, const Acts *a, int with_dx) {
    return 2 * net_fwd_flops(net, a) - (with_dx ? 0 : conv_flops(&a->conv[1]));
}

// ---------------------------------------------------------------- the training step

enum { PH_G_FWD, PH_D_FWD2, PH_D_BWD2, PH_ADAM_D, PH_D_FWD1, PH_D_BWD1, PH_G_BWD, PH_ADAM_G, PH_LOSS, NPHASE };
static const char *PHASE_NAME[NPHASE] = {"g_fwd", "d_fwd_x2", "d_bwd_x2", "adam_d", "d_fwd_g",
                                         "d_bwd_g", "g_bwd", "adam_g", "losses"};
static const char *PHASE_DESC[NPHASE] = {
    "G1 forward (train BN)",       "D forward on Y and Y1",     "D backward x2 (no dx)",
    "Adam on D",                   "D forward on Y1 (G loss)",  "D backward to dY1 (+dW)",
    "G1 backward",                 "Adam on G1",                "BCE/L1 losses + zeroing"};

typedef struct {
    Net g, d;
    Acts ag, adr, adf, adg;
    float *ws, *x, *y, *dy1;
    float dlr[64], dlf[64], dlg[64];
    AdamConfig adam;
    float loss_d, loss_g;
} Train;

static int train_init(Train *b, const Opts *o, Rng *rng) {
    memset(b, 0, sizeof *b);
    b->adam = ADAM_DEFAULTS;
    if (o->N > 64) {
        MDGAN_ERR("--batch %d: at most 64 here", o->N);
        return -1;
    }
    if (net_init(&b->g, NET_G1, o->T, o->S, o->S, o->nf, rng) != 0 ||
        net_init(&b->d, NET_D, o->T, o->S, o->S, o->nf, rng) != 0)
        return -1;
    if (acts_init(&b->ag, &b->g, o->N) != 0 || acts_init(&b->adr, &b->d, o->N) != 0 ||
        acts_init(&b->adf, &b->d, o->N) != 0 || acts_init(&b->adg, &b->d, o->N) != 0)
        return -1;
    size_t ws = b->ag.ws_floats;
    if (b->adr.ws_floats > ws) ws = b->adr.ws_floats;
    size_t n = acts_output_numel(&b->ag);
    b->ws = malloc(ws * sizeof(float));
    b->x = malloc(n * sizeof(float));
    b->y = malloc(n * sizeof(float));
    b->dy1 = malloc(n * sizeof(float));
    if (!b->ws || !b->x || !b->y || !b->dy1) {
        MDGAN_ERR("out of memory for the inputs (%zu floats each)", n);
        return -1;
    }
    fill_repeated_frame(b->x, o->N, o->T, o->S, o->S, rng);
    fill_uniform(b->y, n, rng);
    return 0;
}

static void train_free(Train *b) {
    acts_free(&b->ag), acts_free(&b->adr), acts_free(&b->adf), acts_free(&b->adg);
    net_free(&b->g), net_free(&b->d);
    free(b->ws), free(b->x), free(b->y), free(b->dy1);
}

// One step; ph[k] += seconds spent in phase k.
static int train_step(Train *b, double ph[NPHASE]) {
    const int N = b->ag.N;
    const size_t n = acts_output_numel(&b->ag);
    double t0 = omp_get_wtime(), t1;
#define LAP(k) (t1 = omp_get_wtime(), ph[k] += t1 - t0, t0 = t1)
    net_forward(&b->g, &b->ag, b->x, BN_TRAIN, b->ws);
    const float *y1 = acts_output(&b->ag);
    LAP(PH_G_FWD);
    // D step: BCE(D(Y), 1) + BCE(D(Y1), 0), Y1 detached (no dx)
    net_forward(&b->d, &b->adr, b->y, BN_TRAIN, b->ws);
    net_forward(&b->d, &b->adf, y1, BN_TRAIN, b->ws);
    LAP(PH_D_FWD2);
    const float *lr = acts_output(&b->adr), *lf = acts_output(&b->adf);
    b->loss_d = bce_logits_forward(lr, 1.0f, (size_t)N) + bce_logits_forward(lf, 0.0f, (size_t)N);
    memset(b->dlr, 0, sizeof b->dlr), memset(b->dlf, 0, sizeof b->dlf);
    bce_logits_backward(b->dlr, lr, 1.0f, (size_t)N, 1.0f);
    bce_logits_backward(b->dlf, lf, 0.0f, (size_t)N, 1.0f);
    net_zero_grad(&b->d);
    LAP(PH_LOSS);
    if (net_backward(&b->d, &b->adr, NULL, b->dlr, NULL, NULL, b->ws) != 0 ||
        net_backward(&b->d, &b->adf, NULL, b->dlf, NULL, NULL, b->ws) != 0)
        return -1;
    LAP(PH_D_BWD2);
    net_adam_step(&b->d, &b->adam);
    LAP(PH_ADAM_D);
    // G step: BCE(D(Y1), 1) + L1(Y1, Y) through the updated D
    net_forward(&b->d, &b->adg, y1, BN_TRAIN, b->ws);
    LAP(PH_D_FWD1);
    const float *lg = acts_output(&b->adg);
    b->loss_g = bce_logits_forward(lg, 1.0f, (size_t)N) + l1_forward(y1, b->y, n);
    memset(b->dlg, 0, sizeof b->dlg);
    bce_logits_backward(b->dlg, lg, 1.0f, (size_t)N, 1.0f);
    memset(b->dy1, 0, n * sizeof(float));
    net_zero_grad(&b->d); // D's gradients from the G loss are discarded
    LAP(PH_LOSS);
    if (net_backward_input(&b->d, &b->adg, b->dy1, b->dlg, NULL, NULL, b->ws) != 0) return -1;
    LAP(PH_D_BWD1);
    l1_backward(b->dy1, y1, b->y, n, 1.0f);
    net_zero_grad(&b->g);
    LAP(PH_LOSS);
    if (net_backward(&b->g, &b->ag, NULL, b->dy1, NULL, NULL, b->ws) != 0) return -1;
    LAP(PH_G_BWD);
    net_adam_step(&b->g, &b->adam);
    LAP(PH_ADAM_G);
#undef LAP
    return 0;
}

// ---------------------------------------------------------------- timing loop

typedef struct {
    double *step;          // seconds per timed iteration
    double (*ph)[NPHASE];  // per phase, per timed iteration
    int iters;
    double other_cpus;     // average CPUs other processes kept busy while we timed (-1: unknown)
} Timing;

typedef int (*StepFn)(void *ctx, double ph[NPHASE]);

static int run_timed(Timing *tm, const Opts *o, StepFn fn, void *ctx) {
    double ph[NPHASE];
    for (int i = 0; i < o->warmup; i++) {
        memset(ph, 0, sizeof ph);
        if (fn(ctx, ph) != 0) return -1;
    }
    tm->step = malloc((size_t)o->max_iters * sizeof *tm->step);
    tm->ph = malloc((size_t)o->max_iters * sizeof *tm->ph);
    if (!tm->step || !tm->ph) {
        MDGAN_ERR("out of memory for timings");
        return -1;
    }
    tm->iters = 0;
    double busy0 = machine_busy_s(), self0 = self_cpu_s();
    double start = omp_get_wtime();
    while (tm->iters < o->max_iters && (tm->iters < o->min_iters || omp_get_wtime() - start < o->min_time)) {
        memset(ph, 0, sizeof ph);
        double t = omp_get_wtime();
        if (fn(ctx, ph) != 0) return -1;
        tm->step[tm->iters] = omp_get_wtime() - t;
        memcpy(tm->ph[tm->iters], ph, sizeof ph);
        tm->iters++;
    }
    double wall = omp_get_wtime() - start, busy1 = machine_busy_s();
    tm->other_cpus = busy0 < 0 || busy1 < 0 ? -1 : (busy1 - busy0 - (self_cpu_s() - self0)) / wall;
    if (tm->other_cpus < 0 && busy0 >= 0) tm->other_cpus = 0; // tick rounding
    return 0;
}

static int train_fn(void *ctx, double ph[NPHASE]) { return train_step(ctx, ph); }

typedef struct {
    Net g;
    Acts a;
    float *ws, *x;
} Infer;

static int infer_fn(void *ctx, double ph[NPHASE]) {
    Infer *b = ctx;
    double t = omp_get_wtime();
    net_forward(&b->g, &b->a, b->x, BN_RUNNING, b->ws);
    ph[PH_G_FWD] += omp_get_wtime() - t;
    return 0;
}

static void print_result(const Opts *o, const Timing *tm, double flops, double rss0) {
    double med = median(tm->step, tm->iters), mn = minimum(tm->step, tm->iters);
    double rss = max_rss_mib();
    printf("mdgan %s: T=%d %dx%d nf=%d batch=%d threads=%d: median %.4f s, min %.4f s over %d steps "
           "(%d warm-up); %.3f clips/s; %.2f GFLOP/step, %.1f GFLOP/s; max RSS %.1f MiB; other processes kept "
           "%.2f CPUs busy meanwhile\n",
           o->train ? "train step" : "inference", o->T, o->S, o->S, o->nf, o->N, o->threads, med, mn, tm->iters,
           o->warmup, o->N / med, flops / 1e9, flops / 1e9 / med, rss, tm->other_cpus);
    printf("RESULT side=mdgan case=%s T=%d H=%d W=%d nf=%d batch=%d threads=%d warmup=%d iters=%d "
           "median_s=%.6f min_s=%.6f clips_per_s=%.4f gflop=%.4f maxrss_mib=%.1f base_rss_mib=%.1f other_cpus=%.2f\n",
           o->train ? "train" : "infer", o->T, o->S, o->S, o->nf, o->N, o->threads, o->warmup, tm->iters, med, mn,
           o->N / med, flops / 1e9, rss, rss0, tm->other_cpus);
    if (!o->train) return;
    double v[1000], total = 0, meds[NPHASE];
    for (int k = 0; k < NPHASE; k++) {
        for (int i = 0; i < tm->iters; i++) v[i] = tm->ph[i][k];
        meds[k] = median(v, tm->iters);
        total += meds[k];
    }
    printf("per phase (median over steps):\n");
    for (int k = 0; k < NPHASE; k++) {
        printf("  %-26s %8.4f s  %5.1f%%\n", PHASE_DESC[k], meds[k], 100.0 * meds[k] / total);
        printf("PHASE side=mdgan name=%s median_s=%.6f\n", PHASE_NAME[k], meds[k]);
    }
}

// ---------------------------------------------------------------- per-layer profile

static double time_it(int reps, void (*fn)(void *), void *ctx) {
    fn(ctx); // warm
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t = omp_get_wtime();
        fn(ctx);
        t = omp_get_wtime() - t;
        if (t < best) best = t;
    }
    return best;
}

typedef struct {
    const ConvShape *s;
    float *vol, *col, *dvol, *dcol, *w, *dw, *ws;
    float *full; // a whole column matrix (Ck, L) for the bare sgemms
    int which; // 0 conv fwd, 1 conv bwd (dW + dinp), 2 convT fwd, 3 convT bwd, 4..6 bare sgemms
} LayerJob;

static void layer_job(void *ctx) {
    LayerJob *j = ctx;
    const ConvShape *s = j->s;
    const int Ck = s->C * s->kT * s->kH * s->kW, L = s->oT * s->oH * s->oW;
    // The library runs one-threaded sgemms on tiles inside its OpenMP loops; the bare
    // sgemms of the whole matrices get OpenBLAS's own threads, as a reference point.
    if (j->which >= 4) openblas_set_num_threads(omp_get_max_threads());
    switch (j->which) {
    case 0: conv3d_forward(j->col, j->vol, j->w, s, j->ws); break;
    case 1: conv3d_backward(j->dvol, j->dw, j->col, j->vol, j->w, s, j->ws); break;
    case 2: conv_transpose3d_forward(j->dvol, j->col, j->w, s, j->ws); break;
    case 3: conv_transpose3d_backward(j->dcol, j->dw, j->vol, j->col, j->w, s, j->ws); break;
    case 4: // the forward's sgemm alone, per sample: (K, Ck) x (Ck, L)
        for (int n = 0; n < s->N; n++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->K, L, Ck, 1.0f, j->w, Ck, j->full, L, 0.0f,
                        j->dcol + (size_t)n * s->K * L, L);
        break;
    case 5: // dW: (K, L) x (L, Ck)
        for (int n = 0; n < s->N; n++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s->K, Ck, L, 1.0f, j->col + (size_t)n * s->K * L,
                        L, j->full, L, 1.0f, j->dw, Ck);
        break;
    case 6: // W^T dy: (Ck, K) x (K, L)
        for (int n = 0; n < s->N; n++)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Ck, L, s->K, 1.0f, j->w, Ck,
                        j->col + (size_t)n * s->K * L, L, 0.0f, j->full, L);
        break;
    }
}

// Every convolution of G1 and D at the case's shape, alone: the library call and the
// bare sgemms it makes. conv - sgemm = vol2col/col2vol and their memory traffic.
static int profile_layers(const Opts *o, Rng *rng) {
    Net nets[2];
    Acts acts[2];
    const NetKind kinds[2] = {NET_G1, NET_D};
    int rc = -1;
    memset(nets, 0, sizeof nets), memset(acts, 0, sizeof acts);
    printf("per convolution (best of 3, ms; GFLOP/s of the sgemm flops; 'sgemm' = the same sgemm calls on "
           "their own):\n");
    printf("  %-4s %-3s %-28s %-20s %9s %9s %7s %9s %9s %7s\n", "net", "j", "shape C->K (T,H,W)->(oT,oH,oW)",
           "gemm M,N,K", "fwd", "sgemm", "GF/s", "bwd", "sgemm", "GF/s");
    for (int k = 0; k < 2; k++) {
        if (net_init(&nets[k], kinds[k], o->T, o->S, o->S, o->nf, rng) != 0 || acts_init(&acts[k], &nets[k], o->N) != 0)
            goto out;
        for (int jl = 1; jl <= nets[k].L; jl++) {
            const ConvShape *s = &acts[k].conv[jl];
            size_t nv = conv_volume_numel(s), nc = conv_column_numel(s), nw = conv_weight_numel(s);
            LayerJob job = {.s = s};
            job.vol = malloc(nv * sizeof(float)), job.col = malloc(nc * sizeof(float));
            job.dvol = calloc(nv, sizeof(float)), job.dcol = calloc(nc, sizeof(float));
            job.w = malloc(nw * sizeof(float)), job.dw = calloc(nw, sizeof(float));
            job.ws = malloc(conv_workspace_floats(s) * sizeof(float));
            const size_t nfull = (size_t)s->C * s->kT * s->kH * s->kW * s->oT * s->oH * s->oW;
            job.full = malloc(nfull * sizeof(float));
            if (!job.vol || !job.col || !job.dvol || !job.dcol || !job.w || !job.dw || !job.ws || !job.full) {
                MDGAN_ERR("out of memory profiling layer %d", jl);
                free(job.vol), free(job.col), free(job.dvol), free(job.dcol), free(job.w), free(job.dw), free(job.ws);
                free(job.full);
                goto out;
            }
            fill_uniform(job.vol, nv, rng), fill_uniform(job.col, nc, rng), fill_uniform(job.w, nw, rng);
            for (size_t i = 0; i < nfull; i++) job.full[i] = 0.001f * (float)(i % 1000);
            const int Ck = s->C * s->kT * s->kH * s->kW, L = s->oT * s->oH * s->oW;
            double fl = conv_flops(s);
            // encoder: conv forward / backward; G's decoder runs the transpose of the same shape
            for (int tr = 0; tr < (kinds[k] == NET_D ? 1 : 2); tr++) {
                job.which = tr ? 2 : 0;
                double f = time_it(3, layer_job, &job);
                job.which = tr ? 6 : 4;
                double fg = time_it(3, layer_job, &job);
                job.which = tr ? 3 : 1;
                double bw = time_it(3, layer_job, &job);
                job.which = 5;
                double bg = time_it(3, layer_job, &job);
                job.which = tr ? 4 : 6;
                bg += time_it(3, layer_job, &job);
                char shape[64], gemm[32];
                snprintf(shape, sizeof shape, "%d->%d (%d,%d,%d)->(%d,%d,%d)", s->C, s->K, s->T, s->H, s->W, s->oT,
                         s->oH, s->oW);
                snprintf(gemm, sizeof gemm, "%d,%d,%d", s->K, L, Ck);
                const char *kind = tr ? "G^T" : kinds[k] == NET_D ? "D" : "G";
                int idx = tr ? nets[k].L + 1 - jl : jl;
                printf("  %-4s %-3d %-28s %-20s %9.2f %9.2f %7.1f %9.2f %9.2f %7.1f\n", kind, idx, shape, gemm,
                       f * 1e3, fg * 1e3, fl / fg / 1e9, bw * 1e3, bg * 1e3, 2 * fl / bg / 1e9);
                printf("LAYER side=mdgan net=%s layer=%d C=%d K=%d M=%d N=%d K_gemm=%d fwd_ms=%.3f fwd_sgemm_ms=%.3f "
                       "bwd_ms=%.3f bwd_sgemm_ms=%.3f gflop_fwd=%.4f\n",
                       kind, idx, s->C, s->K, s->K, L, Ck, f * 1e3, fg * 1e3, bw * 1e3, bg * 1e3, fl / 1e9);
            }
            free(job.vol), free(job.col), free(job.dvol), free(job.dcol), free(job.w), free(job.dw), free(job.ws);
            free(job.full);
        }
    }
    rc = 0;
out:
    for (int k = 0; k < 2; k++) acts_free(&acts[k]), net_free(&nets[k]);
    return rc;
}

// ---------------------------------------------------------------- main

static int parse(int argc, char **argv, Opts *o) {
    static const struct option lo[] = {
        {"case", required_argument, 0, 'c'},   {"layers", no_argument, 0, 'l'},
        {"threads", required_argument, 0, 'j'}, {"warmup", required_argument, 0, 'w'},
        {"iters", required_argument, 0, 'i'},   {"max-iters", required_argument, 0, 'm'},
        {"min-time", required_argument, 0, 's'}, {"frames", required_argument, 0, 'T'},
        {"size", required_argument, 0, 'S'},    {"nf", required_argument, 0, 'f'},
        {"batch", required_argument, 0, 'N'},   {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int T = 0, S = 0, nf = 0, N = 0, c;
    *o = (Opts){.train = 1, .threads = 2, .warmup = 2, .min_iters = 5, .max_iters = 1000};
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        int r = 0;
        switch (c) {
        case 'c':
            if (!strcmp(optarg, "train")) o->train = 1;
            else if (!strcmp(optarg, "infer")) o->train = 0;
            else {
                MDGAN_ERR("--case: '%s' is neither train nor infer", optarg);
                return -1;
            }
            break;
        case 'l': o->layers = 1; break;
        case 'j': r = cli_int("--threads", optarg, 1, 1024, &o->threads); break;
        case 'w': r = cli_int("--warmup", optarg, 0, 1000, &o->warmup); break;
        case 'i': r = cli_int("--iters", optarg, 1, 1000, &o->min_iters); break;
        case 'm': r = cli_int("--max-iters", optarg, 1, 1000, &o->max_iters); break;
        case 's': {
            char *end;
            o->min_time = strtod(optarg, &end);
            if (*end || end == optarg || o->min_time < 0 || o->min_time > 3600) {
                MDGAN_ERR("--min-time: '%s' is not a number of seconds from 0 to 3600", optarg);
                return -1;
            }
            break;
        }
        case 'T': r = cli_int("--frames", optarg, 1, 4096, &T); break;
        case 'S': r = cli_int("--size", optarg, 2, 8192, &S); break;
        case 'f': r = cli_int("--nf", optarg, 1, 4096, &nf); break;
        case 'N': r = cli_int("--batch", optarg, 1, 64, &N); break;
        case 'h': usage(stdout); exit(0);
        case ':': MDGAN_ERR("option %s needs a value", argv[optind - 1]); return -1;
        default: MDGAN_ERR("unknown option '%s'", argv[optind - 1]); return -1;
        }
        if (r != 0) return -1;
    }
    if (optind < argc) {
        MDGAN_ERR("unexpected argument '%s'", argv[optind]);
        return -1;
    }
    if (o->max_iters < o->min_iters) o->max_iters = o->min_iters;
    o->T = T ? T : 32;
    o->S = S ? S : o->train ? 64 : 128;
    o->nf = nf ? nf : o->train ? 16 : 32;
    o->N = N ? N : o->train ? 4 : 1;
    return 0;
}

static void print_env(const Opts *o) {
    const char *ct = getenv("OPENBLAS_CORETYPE"), *l2 = getenv("OPENBLAS_L2_SIZE");
    printf("mdgan: %d threads (OpenMP max %d, OpenBLAS %d); OpenBLAS: %s\n", o->threads, omp_get_max_threads(),
           openblas_get_num_threads(), openblas_get_config());
    printf("ENV side=mdgan key=threads value=omp:%d,openblas:%d\n", omp_get_max_threads(),
           openblas_get_num_threads());
    printf("ENV side=mdgan key=openblas value=%s (core %s)\n", openblas_get_config(), openblas_get_corename());
    printf("ENV side=mdgan key=OPENBLAS_CORETYPE value=%s\n", ct ? ct : "(unset)");
    printf("ENV side=mdgan key=OPENBLAS_L2_SIZE value=%s\n", l2 ? l2 : "(unset)");
}

int main(int argc, char **argv) {
    Opts o;
    if (parse(argc, argv, &o) != 0) {
        mdgan_errprint(PROG);
        fprintf(stderr, "(see %s --help)\n", PROG);
        return MDGAN_EXIT_USAGE;
    }
    double rss0 = max_rss_mib();
    cli_set_threads(o.threads);
    print_env(&o);
    Rng rng;
    rng_seed(&rng, 1234);
    if (o.layers) {
        if (profile_layers(&o, &rng) != 0) {
            mdgan_errprint(PROG);
            return MDGAN_EXIT_RUNTIME;
        }
        return MDGAN_EXIT_OK;
    }
    Timing tm = {0};
    int rc = MDGAN_EXIT_OK;
    if (o.train) {
        Train b;
        if (train_init(&b, &o, &rng) != 0 || run_timed(&tm, &o, train_fn, &b) != 0) {
            mdgan_errprint(PROG);
            rc = MDGAN_EXIT_RUNTIME;
        } else {
            Acts *ag = &b.ag, *ad = &b.adr;
            double flops = net_fwd_flops(&b.g, ag) + 3 * net_fwd_flops(&b.d, ad) + 2 * net_bwd_flops(&b.d, ad, 0) +
                           net_bwd_flops(&b.d, ad, 1) + net_bwd_flops(&b.g, ag, 0);
            print_result(&o, &tm, flops, rss0);
            printf("last losses: D %.4f, G %.4f\n", b.loss_d, b.loss_g);
            const double MiB = 1048576.0 / sizeof(float);
            printf("memory: G1 params %.1f MiB x4 (params, grads, Adam m, v), D params %.1f MiB x4; activations "
                   "G1 %.1f MiB (of which gradients %.1f), D %.1f MiB x3 (of which gradients %.1f each); "
                   "vol2col workspace %.1f MiB; inputs %.1f MiB x3\n",
                   b.g.nparams / MiB, b.d.nparams / MiB, ag->arena_floats / MiB, ag->grad_floats / MiB,
                   ad->arena_floats / MiB, ad->grad_floats / MiB,
                   (ag->ws_floats > ad->ws_floats ? ag->ws_floats : ad->ws_floats) / MiB,
                   acts_output_numel(ag) / MiB);
        }
        train_free(&b);
    } else {
        Infer b = {0};
        if (net_init(&b.g, NET_G1, o.T, o.S, o.S, o.nf, &rng) != 0 || acts_init(&b.a, &b.g, o.N) != 0) {
            mdgan_errprint(PROG);
            rc = MDGAN_EXIT_RUNTIME;
        } else {
            size_t n = (size_t)o.N * 3 * o.T * o.S * o.S;
            b.ws = malloc(b.a.ws_floats * sizeof(float));
            b.x = malloc(n * sizeof(float));
            if (!b.ws || !b.x) {
                fprintf(stderr, "%s: out of memory\n", PROG);
                rc = MDGAN_EXIT_RUNTIME;
            } else {
                fill_repeated_frame(b.x, o.N, o.T, o.S, o.S, &rng);
                if (run_timed(&tm, &o, infer_fn, &b) != 0) {
                    mdgan_errprint(PROG);
                    rc = MDGAN_EXIT_RUNTIME;
                } else {
                    const double MiB = 1048576.0 / sizeof(float);
                    print_result(&o, &tm, net_fwd_flops(&b.g, &b.a), rss0);
                    printf("memory: G1 params %.1f MiB x4 (allocated, only params touched); activations %.1f MiB "
                           "(of which gradients %.1f, untouched); vol2col workspace %.1f MiB; input %.1f MiB\n",
                           b.g.nparams / MiB, b.a.arena_floats / MiB, b.a.grad_floats / MiB, b.a.ws_floats / MiB,
                           n / MiB);
                }
            }
        }
        free(b.ws), free(b.x);
        acts_free(&b.a), net_free(&b.g);
    }
    free(tm.step), free(tm.ph);
    return rc;
}
