// bench_step: times the C side of `make bench` (see bench/README.md).
//
//   --case train   one Stage I training step as stage1_step runs it: G1 forward
//                  (train-mode BN), D on Y then backward, D on Y1 then backward (one set
//                  of D activations), BCE losses, Adam on D, D on Y1 again, G loss =
//                  BCE(D(Y1), 1) + L1(Y1, Y), D backward to dY1 (D's weight gradients are
//                  skipped: net_backward_input), G1 backward, Adam on G1. Default shape
//                  T=32, 64x64, ngf=ndf=16, batch 4.
//   --case refine  one Stage II training step as mdgan-base serve and mdgan-refine train
//                  run it between them: the frozen G1 (inference layout, running BN
//                  statistics) makes Y1 from Y's first frame, then stage2_step (G2 forward,
//                  D2 on Y, Y1, Y2 with shared weights, BCE + Gram ranking loss, Adam on D2,
//                  D2 on the three again, G2 loss with L1 and ranking terms, Adam on G2),
//                  with refine.* defaults of the config (lambdas, rank_form, Adam).
//                  Default shape as train.
//   --case infer   G1 forward with running BatchNorm statistics, what `mdgan predict`
//                  runs. Default shape T=32, 128x128, ngf=32, batch 1.
//   --layers       instead of the step, each convolution of G1 and D at the shape alone,
//                  forward, input gradient (dX) and weight gradient (dW) apart, each beside
//                  the bare sgemm of the same product (the difference is vol2col / col2vol
//                  and the tiling).
//   --dump FILE    the first step's losses and outputs as text (bench/run.sh --both-modes
//                  compares two of them).
//
// Prints human-readable lines and, for bench/run.sh, lines starting with
//   ENV key=value, RESULT key=value ..., PHASE key=value ..., LAYER key=value ...
// One case per process, so ru_maxrss is the peak of that case alone.
#include <cblas.h>
#include <getopt.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "mdgan/adam.h"
#include "mdgan/cli.h"
#include "mdgan/config.h"
#include "mdgan/error.h"
#include "mdgan/loss.h"
#include "mdgan/net.h"
#include "mdgan/rng.h"
#include "mdgan/stage1.h"
#include "mdgan/stage2.h"

static const char *PROG = "bench_step";

typedef enum { CASE_TRAIN, CASE_REFINE, CASE_INFER } Case;
static const char *CASE_NAME[] = {"train", "refine", "infer"};

enum { SEED = 1234 }; // every case draws weights and inputs from it: --dump is reproducible

typedef struct {
    Case kase;
    int layers;      // per-layer profile instead of the step
    const char *only; // --layer NET:J: profile that one (G:3, GT:2, D:5), or NULL for all
    int T, S, nf, N; // frames, frame size, ngf = ndf, batch
    int threads, warmup, min_iters, max_iters;
    double min_time; // seconds of timed iterations at least (after min_iters)
    const char *dump; // --dump FILE or NULL
    FILE *dump_f;     // opened before anything runs, so that a bad path fails at once
} Opts;

static void usage(FILE *out) {
    fprintf(out,
            "usage: bench_step [--case train|refine|infer] [--layers] [--threads N] [--warmup N]\n"
            "                  [--iters N] [--max-iters N] [--min-time S] [--dump FILE]\n"
            "                  [--frames T] [--size S] [--nf F] [--batch N]\n"
            "  --case train   Stage I training step (default T=32, 64x64, nf=16, batch 4)\n"
            "  --case refine  frozen G1 forward + Stage II training step (stage2_step; default as train)\n"
            "  --case infer   G1 forward, running BN statistics (default T=32, 128x128, nf=32, batch 1)\n"
            "  --layers       time each convolution of G1 and D alone (forward, dX, dW), beside a bare sgemm\n"
            "                 (shape as train unless given, e.g. --frames 32 --size 128 --nf 32 --batch 1)\n"
            "  --layer NET:J  with --layers, only layer J of NET (G, GT for G's transposed half, or D),\n"
            "                 e.g. --layer D:3; the summary counts that layer alone\n"
            "  --threads N    OpenMP and OpenBLAS threads (default 2)\n"
            "  --warmup N     untimed iterations first (default 2)\n"
            "  --iters N      timed iterations at least (default 5)\n"
            "  --min-time S   keep timing until S seconds have passed too (default 0)\n"
            "  --max-iters N  stop after N timed iterations even before --min-time (default 1000)\n"
            "  --dump FILE    write the first step's losses, output means and 256 sampled values per\n"
            "                 output to FILE (text, 'mdgan-bench-dump 1' format); the step is then\n"
            "                 still timed (as a warm-up step, or the first timed one with --warmup 0)\n"
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

// OpenBLAS's own threads: 1 while the library's convolutions run (they call one-threaded
// sgemms inside their OpenMP loops, see cli_set_threads), n for a bare whole-matrix sgemm.
// Only the pthreads build has a pool of its own to set.
static void blas_threads(int n) {
    if (openblas_get_parallel() == 1 && openblas_get_num_threads() != n) openblas_set_num_threads(n);
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

// ---------------------------------------------------------------- --dump
// Text, one "name value" per line after a header naming the case, the shape and the
// threads: a reader can tell two dumps of different runs apart before it compares them.
// Means rather than sums, so that the rounding of a million terms stays far below the
// tolerance the comparison uses. Values computed after D's first Adam update are named
// "after_adam.*": Adam's first step moves every weight by about lr * sign(gradient), so
// a gradient near zero whose last bits differ (another sgemm kernel) moves its weight
// the other way, and those values differ by far more than the rounding of the values
// before it (bench/run.sh --both-modes reports them without failing on them).

static void dump_scalar(FILE *f, const char *name, double v) { fprintf(f, "%s %.9g\n", name, v); }

// mean, mean |x| and 256 values at evenly spaced flat indices (first and last included).
static void dump_tensor(FILE *f, const char *name, const float *x, size_t n) {
    double s = 0, sa = 0;
    for (size_t i = 0; i < n; i++) s += x[i], sa += fabs((double)x[i]);
    fprintf(f, "%s.mean %.9g\n%s.mean_abs %.9g\n", name, s / (double)n, name, sa / (double)n);
    const size_t K = n < 256 ? n : 256;
    for (size_t k = 0; k < K; k++) {
        size_t i = K > 1 ? k * (n - 1) / (K - 1) : 0;
        fprintf(f, "%s[%zu] %.9g\n", name, i, (double)x[i]);
    }
}

typedef void (*DumpFn)(void *ctx, FILE *f);

static int write_dump(const Opts *o, DumpFn fn, void *ctx) {
    FILE *f = o->dump_f;
    fprintf(f, "mdgan-bench-dump 1 case=%s T=%d H=%d W=%d nf=%d batch=%d threads=%d seed=%d\n", CASE_NAME[o->kase],
            o->T, o->S, o->S, o->nf, o->N, o->threads, SEED);
    fn(ctx, f);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        MDGAN_ERR("--dump %s: write failed", o->dump);
        return -1;
    }
    return 0;
}

// ---------------------------------------------------------------- the training step

enum { PH_G_FWD, PH_D_FWD2, PH_D_BWD2, PH_ADAM_D, PH_D_FWD1, PH_D_BWD1, PH_G_BWD, PH_ADAM_G, PH_LOSS,
       PH_G1_FROZEN, PH_STAGE2, NPHASE };
static const char *PHASE_NAME[NPHASE] = {"g_fwd", "d_fwd_x2", "d_bwd_x2", "adam_d", "d_fwd_g", "d_bwd_g",
                                         "g_bwd", "adam_g", "losses", "g1_fwd", "stage2"};
static const char *PHASE_DESC[NPHASE] = {
    "G1 forward (train BN)",       "D forward on Y and Y1",     "D backward x2 (no dx)",
    "Adam on D",                   "D forward on Y1 (G loss)",  "D backward to dY1 (+dW)",
    "G1 backward",                 "Adam on G1",                "BCE/L1 losses + zeroing",
    "frozen G1 forward (running BN)", "stage2_step (G2, D2 x6, Adam x2)"};

typedef struct {
    Net g, d;
    Acts ag, ad; // D's one set of activations, as stage1_step holds it
    float *ws, *x, *y, *dy1;
    float dlr[64], dlf[64], dlg[64];
    float logit_y[64], logit_y1[64], logit_g[64]; // D's logits of the three calls, for --dump
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
    if (acts_init(&b->ag, &b->g, o->N) != 0 || acts_init(&b->ad, &b->d, o->N) != 0) return -1;
    size_t ws = b->ag.ws_floats;
    if (b->ad.ws_floats > ws) ws = b->ad.ws_floats;
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
    acts_free(&b->ag), acts_free(&b->ad);
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
    // D step: BCE(D(Y), 1) + BCE(D(Y1), 0), Y1 detached (no dx); as stage1_step, each
    // call's backward right after it, through one set of activations
    const size_t bytes = (size_t)N * sizeof(float);
    net_zero_grad(&b->d);
    net_forward(&b->d, &b->ad, b->y, BN_TRAIN, b->ws);
    LAP(PH_D_FWD2);
    memcpy(b->logit_y, acts_output(&b->ad), bytes);
    b->loss_d = bce_logits_forward(b->logit_y, 1.0f, (size_t)N);
    memset(b->dlr, 0, sizeof b->dlr);
    bce_logits_backward(b->dlr, b->logit_y, 1.0f, (size_t)N, 1.0f);
    LAP(PH_LOSS);
    if (net_backward(&b->d, &b->ad, NULL, b->dlr, NULL, NULL, b->ws) != 0) return -1;
    LAP(PH_D_BWD2);
    net_forward(&b->d, &b->ad, y1, BN_TRAIN, b->ws);
    LAP(PH_D_FWD2);
    memcpy(b->logit_y1, acts_output(&b->ad), bytes);
    b->loss_d += bce_logits_forward(b->logit_y1, 0.0f, (size_t)N);
    memset(b->dlf, 0, sizeof b->dlf);
    bce_logits_backward(b->dlf, b->logit_y1, 0.0f, (size_t)N, 1.0f);
    LAP(PH_LOSS);
    if (net_backward(&b->d, &b->ad, NULL, b->dlf, NULL, NULL, b->ws) != 0) return -1;
    LAP(PH_D_BWD2);
    net_adam_step(&b->d, &b->adam);
    LAP(PH_ADAM_D);
    // G step: BCE(D(Y1), 1) + L1(Y1, Y) through the updated D
    net_forward(&b->d, &b->ad, y1, BN_TRAIN, b->ws);
    LAP(PH_D_FWD1);
    const float *lg = acts_output(&b->ad);
    memcpy(b->logit_g, lg, bytes);
    b->loss_g = bce_logits_forward(lg, 1.0f, (size_t)N) + l1_forward(y1, b->y, n);
    memset(b->dlg, 0, sizeof b->dlg);
    bce_logits_backward(b->dlg, lg, 1.0f, (size_t)N, 1.0f);
    memset(b->dy1, 0, n * sizeof(float));
    net_zero_grad(&b->d); // D's gradients from the G loss are discarded
    LAP(PH_LOSS);
    if (net_backward_input(&b->d, &b->ad, b->dy1, b->dlg, NULL, NULL, b->ws) != 0) return -1;
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

static void train_dump(void *ctx, FILE *f) {
    Train *b = ctx;
    // D's calls on Y and Y1 of its own step: before its update
    dump_scalar(f, "loss_d", b->loss_d), dump_scalar(f, "after_adam.loss_g", b->loss_g);
    dump_tensor(f, "y1", acts_output(&b->ag), acts_output_numel(&b->ag));
    dump_tensor(f, "d_logit_y", b->logit_y, (size_t)b->ag.N);
    dump_tensor(f, "d_logit_y1", b->logit_y1, (size_t)b->ag.N);
    dump_tensor(f, "after_adam.d_logit_y1", b->logit_g, (size_t)b->ag.N);
}

// ---------------------------------------------------------------- the Stage II step

typedef struct {
    Net g1;         // frozen, in the inference layout (no gradients, no Adam moments), as serve holds it
    Acts a1;        // acts_init_inference at batch N, as serve's G1 for a batch of N clips
    float *ws1;     // G1's own workspace: in the real pipeline it lives in another process
    float *x, *y;   // (N, 3, T, H, W): Y's first frame repeated, and the real clips Y
    Stage2 s;
    Stage2Losses loss;
    float lambda_l1, lambda_rank;
    RankForm form;
} Refine;

// G1 as a checkpoint would give it to mdgan-base serve: net_init_inference, then the
// values net_init would draw (conv weights N(0, 0.02), BN gamma N(1, 0.02), beta 0),
// with running statistics away from (0, 1) as a trained net has them (mean 0.1 N(0, 1),
// var 1 + 0.2 U(0, 1), as bench_torch.py sets them).
static int frozen_g1_init(Net *g, const Opts *o, Rng *rng) {
    if (net_init_inference(g, NET_G1, o->T, o->S, o->S, o->nf) != 0) return -1;
    for (int k = 0; k < g->ntable; k++) {
        const NetTensor *t = &g->table[k];
        float *p = net_tensor_data(g, t);
        const char *field = strrchr(t->name, '.') + 1;
        int is_bn = strstr(t->name, "BN") != NULL;
        for (size_t e = 0; e < t->numel; e++) {
            if (!strcmp(field, "running_mean")) p[e] = 0.1f * rng_normal(rng);
            else if (!strcmp(field, "running_var")) p[e] = 1.0f + 0.2f * (float)rng_uniform(rng);
            else if (!strcmp(field, "bias")) p[e] = 0.0f;
            else if (is_bn) p[e] = 1.0f + 0.02f * rng_normal(rng);
            else p[e] = 0.02f * rng_normal(rng);
        }
    }
    return 0;
}

static int refine_init(Refine *b, const Opts *o, Rng *rng) {
    memset(b, 0, sizeof *b);
    // the loss weights, the ranking form and Adam of a default run (config.h's table,
    // pipeline.conf), as train_refine.c passes them to stage2_init
    Config c;
    config_defaults(&c);
    if (rank_form_parse(c.refine.rank_form, &b->form) != 0) return -1;
    b->lambda_l1 = (float)c.refine.lambda_l1, b->lambda_rank = (float)c.refine.lambda_rank;
    const AdamConfig opt = {c.refine.lr, c.refine.beta1, c.refine.beta2, 1e-8};
    if (frozen_g1_init(&b->g1, o, rng) != 0 || acts_init_inference(&b->a1, &b->g1, o->N) != 0 ||
        stage2_init(&b->s, o->N, o->T, o->S, o->S, o->nf, o->nf, b->lambda_l1, b->lambda_rank, b->form, &opt, &opt,
                    rng) != 0)
        return -1;
    const size_t n = (size_t)o->N * 3 * o->T * o->S * o->S;
    b->ws1 = malloc(b->a1.ws_floats * sizeof(float));
    b->x = malloc(n * sizeof(float));
    b->y = malloc(n * sizeof(float));
    if (!b->ws1 || !b->x || !b->y) {
        MDGAN_ERR("out of memory for the inputs (%zu floats each)", n);
        return -1;
    }
    fill_uniform(b->y, n, rng);
    return 0;
}

static void refine_free(Refine *b) {
    stage2_free(&b->s);
    acts_free(&b->a1), net_free(&b->g1);
    free(b->ws1), free(b->x), free(b->y);
}

// What serve's g1_produce computes for a batch (without the copy into the reply: the
// transport is bench_wire's), then the Refine-Net's step on it.
static int refine_step(Refine *b, double ph[NPHASE]) {
    double t0 = omp_get_wtime();
    stage1_repeat_first_frame(b->x, b->y, b->s.N, b->s.T, b->s.H, b->s.W);
    net_forward(&b->g1, &b->a1, b->x, BN_RUNNING, b->ws1);
    double t1 = omp_get_wtime();
    ph[PH_G1_FROZEN] += t1 - t0;
    stage2_step(&b->s, b->y, acts_output(&b->a1), &b->loss);
    ph[PH_STAGE2] += omp_get_wtime() - t1;
    return 0;
}

static void refine_dump(void *ctx, FILE *f) {
    Refine *b = ctx;
    const Stage2Losses *l = &b->loss;
    // G2's output and L1 term come before any update; D2's activations left in ad[] are
    // those of the G2 step, after D2's update
    dump_scalar(f, "d_real", l->d_real), dump_scalar(f, "d_fake", l->d_fake), dump_scalar(f, "d_rank", l->d_rank);
    dump_scalar(f, "g_l1", l->g_l1);
    dump_scalar(f, "after_adam.g_adv", l->g_adv), dump_scalar(f, "after_adam.g_rank", l->g_rank);
    const size_t n = acts_output_numel(&b->a1);
    dump_tensor(f, "y1", acts_output(&b->a1), n);
    dump_tensor(f, "y2", stage2_output(&b->s), n);
    static const char *who[3] = {"after_adam.d2_logit_y", "after_adam.d2_logit_y1", "after_adam.d2_logit_y2"};
    for (int k = 0; k < 3; k++) dump_tensor(f, who[k], acts_output(&b->s.ad[k]), (size_t)b->s.N);
}

// ---------------------------------------------------------------- inference

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

static void infer_dump(void *ctx, FILE *f) {
    Infer *b = ctx;
    dump_tensor(f, "y1", acts_output(&b->a), acts_output_numel(&b->a));
}

// ---------------------------------------------------------------- timing loop

typedef struct {
    double *step;          // seconds per timed iteration
    double (*ph)[NPHASE];  // per phase, per timed iteration
    int iters;
    double other_cpus;     // average CPUs other processes kept busy while we timed (-1: unknown)
} Timing;

typedef int (*StepFn)(void *ctx, double ph[NPHASE]);

static int train_fn(void *ctx, double ph[NPHASE]) { return train_step(ctx, ph); }
static int refine_fn(void *ctx, double ph[NPHASE]) { return refine_step(ctx, ph); }

// dump (may be NULL): called once after the first step, outside any timing.
static int run_timed(Timing *tm, const Opts *o, StepFn fn, DumpFn dump, void *ctx) {
    double ph[NPHASE];
    for (int i = 0; i < o->warmup; i++) {
        memset(ph, 0, sizeof ph);
        if (fn(ctx, ph) != 0) return -1;
        if (i == 0 && o->dump && write_dump(o, dump, ctx) != 0) return -1;
    }
    tm->step = malloc((size_t)o->max_iters * sizeof *tm->step);
    tm->ph = malloc((size_t)o->max_iters * sizeof *tm->ph);
    if (!tm->step || !tm->ph) {
        MDGAN_ERR("out of memory for timings");
        return -1;
    }
    tm->iters = 0;
    double busy0 = machine_busy_s(), self0 = self_cpu_s(), dumped_s = 0;
    double start = omp_get_wtime();
    while (tm->iters < o->max_iters &&
           (tm->iters < o->min_iters || omp_get_wtime() - start - dumped_s < o->min_time)) {
        memset(ph, 0, sizeof ph);
        double t = omp_get_wtime();
        if (fn(ctx, ph) != 0) return -1;
        tm->step[tm->iters] = omp_get_wtime() - t;
        memcpy(tm->ph[tm->iters], ph, sizeof ph);
        if (tm->iters == 0 && o->warmup == 0 && o->dump) {
            double d = omp_get_wtime();
            if (write_dump(o, dump, ctx) != 0) return -1;
            dumped_s = omp_get_wtime() - d;
        }
        tm->iters++;
    }
    double wall = omp_get_wtime() - start - dumped_s, busy1 = machine_busy_s();
    tm->other_cpus = busy0 < 0 || busy1 < 0 ? -1 : (busy1 - busy0 - (self_cpu_s() - self0)) / wall;
    if (tm->other_cpus < 0 && busy0 >= 0) tm->other_cpus = 0; // tick rounding
    return 0;
}

// extra: more key=value pairs for the RESULT line ("" for none).
static void print_result(const Opts *o, const Timing *tm, double flops, double rss0, const char *extra) {
    static const char *WHAT[] = {"train step", "refine step", "inference"};
    double med = median(tm->step, tm->iters), mn = minimum(tm->step, tm->iters);
    double rss = max_rss_mib();
    printf("mdgan %s: T=%d %dx%d nf=%d batch=%d threads=%d: median %.4f s, min %.4f s over %d steps "
           "(%d warm-up); %.3f clips/s; %.2f GFLOP/step, %.1f GFLOP/s; max RSS %.1f MiB; other processes kept "
           "%.2f CPUs busy meanwhile\n",
           WHAT[o->kase], o->T, o->S, o->S, o->nf, o->N, o->threads, med, mn, tm->iters, o->warmup, o->N / med,
           flops / 1e9, flops / 1e9 / med, rss, tm->other_cpus);
    printf("RESULT side=mdgan case=%s T=%d H=%d W=%d nf=%d batch=%d threads=%d warmup=%d iters=%d "
           "median_s=%.6f min_s=%.6f clips_per_s=%.4f gflop=%.4f maxrss_mib=%.1f base_rss_mib=%.1f other_cpus=%.2f%s\n",
           CASE_NAME[o->kase], o->T, o->S, o->S, o->nf, o->N, o->threads, o->warmup, tm->iters, med, mn, o->N / med,
           flops / 1e9, rss, rss0, tm->other_cpus, extra);
    int k0 = 0, k1 = 0; // the case's phases [k0, k1)
    if (o->kase == CASE_TRAIN) k0 = 0, k1 = PH_LOSS + 1;
    else if (o->kase == CASE_REFINE) k0 = PH_G1_FROZEN, k1 = PH_STAGE2 + 1;
    if (k0 == k1) return;
    double v[1000], total = 0, meds[NPHASE];
    for (int k = k0; k < k1; k++) {
        for (int i = 0; i < tm->iters; i++) v[i] = tm->ph[i][k];
        meds[k] = median(v, tm->iters);
        total += meds[k];
    }
    printf("per phase (median over steps):\n");
    for (int k = k0; k < k1; k++) {
        printf("  %-32s %8.4f s  %5.1f%%\n", PHASE_DESC[k], meds[k], 100.0 * meds[k] / total);
        printf("PHASE side=mdgan case=%s name=%s median_s=%.6f\n", CASE_NAME[o->kase], PHASE_NAME[k], meds[k]);
    }
}

// ---------------------------------------------------------------- per-layer profile

// The library call, then the bare sgemms of the same products, for one convolution:
// the volume side vol (the conv's input, the transposed conv's output) and the column
// side col (the conv's output, the transposed conv's input), with their gradients.
typedef enum {
    JOB_CONV_FWD, JOB_CONV_DX, JOB_CONV_DW,    // conv3d_forward, conv3d_backward (dinp only, dw only)
    JOB_CONVT_FWD, JOB_CONVT_DX, JOB_CONVT_DW, // the same for the transposed convolution
    JOB_SG_WX,   // per sample (K, Ck) x (Ck, L): conv forward, convT input gradient
    JOB_SG_DYXT, // per sample (K, L) x (L, Ck): the weight gradient of both
    JOB_SG_WTDY, // per sample (Ck, K) x (K, L): conv input gradient, convT forward
} JobKind;

typedef struct {
    const ConvShape *s;
    float *vol, *col, *dvol, *dcol, *w, *dw, *ws;
    float *full; // a whole column matrix (Ck, L) of one sample for the bare sgemms
    JobKind which;
} LayerJob;

static void layer_job(void *ctx) {
    LayerJob *j = ctx;
    const ConvShape *s = j->s;
    const int Ck = s->C * s->kT * s->kH * s->kW, L = s->oT * s->oH * s->oW;
    // The library runs one-threaded sgemms on tiles inside its OpenMP loops; the bare
    // sgemms of the whole matrices get OpenBLAS's own threads, as a reference point.
    blas_threads(j->which >= JOB_SG_WX ? omp_get_max_threads() : 1);
    switch (j->which) {
    case JOB_CONV_FWD: conv3d_forward(j->col, j->vol, j->w, s, j->ws); break;
    case JOB_CONV_DX: conv3d_backward(j->dvol, NULL, j->dcol, j->vol, j->w, s, j->ws); break;
    case JOB_CONV_DW: conv3d_backward(NULL, j->dw, j->dcol, j->vol, j->w, s, j->ws); break;
    case JOB_CONVT_FWD: conv_transpose3d_forward(j->vol, j->col, j->w, s, j->ws); break;
    case JOB_CONVT_DX: conv_transpose3d_backward(j->dcol, NULL, j->dvol, j->col, j->w, s, j->ws); break;
    case JOB_CONVT_DW: conv_transpose3d_backward(NULL, j->dw, j->dvol, j->col, j->w, s, j->ws); break;
    case JOB_SG_WX:
        for (int n = 0; n < s->N; n++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->K, L, Ck, 1.0f, j->w, Ck, j->full, L, 0.0f,
                        j->col + (size_t)n * s->K * L, L);
        break;
    case JOB_SG_DYXT:
        for (int n = 0; n < s->N; n++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s->K, Ck, L, 1.0f, j->dcol + (size_t)n * s->K * L,
                        L, j->full, L, 1.0f, j->dw, Ck);
        break;
    case JOB_SG_WTDY:
        for (int n = 0; n < s->N; n++)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Ck, L, s->K, 1.0f, j->w, Ck,
                        j->dcol + (size_t)n * s->K * L, L, 0.0f, j->full, L);
        break;
    }
}

// A layer's buffers start on a cache line, as the nets' arenas (huge pages, tensors of
// whole lines) give them to the convolutions: malloc's 16-byte offset made the 32->64
// layer's weight gradient 40% slower, ours and OpenBLAS's alike.
static float *layer_buf(size_t n) { return aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64); }

// Best of at least min_reps for ours and for the bare sgemm, alternating after one warm
// call each, so that a burst of other work on the machine hits both alike; small layers
// repeat until LAYER_MIN_TIME has passed (up to LAYER_MAX_REPS): with 2 threads one
// descheduled thread doubles a call, and three tries were not always enough to see one
// call without it (the same shape then read 5 and 10 ms in two runs).
enum { LAYER_MAX_REPS = 50 };
static const double LAYER_MIN_TIME = 0.3; // seconds per (layer, direction), both sides

static void time_pair(LayerJob *j, JobKind ours, JobKind ref, int min_reps, double *t_ours, double *t_ref) {
    *t_ours = *t_ref = 1e30;
    const double start = omp_get_wtime();
    for (int r = -1; r < min_reps || (r < LAYER_MAX_REPS && omp_get_wtime() - start < LAYER_MIN_TIME); r++)
        for (int k = 0; k < 2; k++) {
            j->which = k ? ref : ours;
            double t = omp_get_wtime();
            layer_job(j);
            t = omp_get_wtime() - t;
            double *best = k ? t_ref : t_ours;
            if (r >= 0 && t < *best) *best = t;
        }
    blas_threads(1); // as the library expects it
}

enum { DIR_FWD, DIR_DX, DIR_DW, NDIR };
static const char *DIR_NAME[NDIR] = {"fwd", "dX", "dW"};
enum { KIND_G, KIND_GT, KIND_D, NKIND };
static const char *KIND_NAME[NKIND] = {"G", "G^T", "D"};

// --layer NET:J: whether layer idx of that kind is the one asked for (or all are).
static int layer_wanted(const Opts *o, int kind, int idx) {
    if (!o->only) return 1;
    static const char *SPELL[NKIND] = {"G", "GT", "D"};
    char want[16];
    snprintf(want, sizeof want, "%s:%d", SPELL[kind], idx);
    return strcmp(o->only, want) == 0;
}

// Every convolution of G1 and D at the shape, alone: each direction of the library call
// beside the bare sgemm of the same product. (G2 has G1's convolutions, D2 is D.)
static int profile_layers(const Opts *o, Rng *rng) {
    Net nets[2];
    Acts acts[2];
    const NetKind kinds[2] = {NET_G1, NET_D};
    int rc = -1, counted = 0, at80 = 0;
    double worst[NKIND][NDIR], sum_ours[NKIND][NDIR], sum_ref[NKIND][NDIR];
    int worst_at[NKIND][NDIR];
    for (int k = 0; k < NKIND; k++)
        for (int d = 0; d < NDIR; d++) worst[k][d] = 1e30, worst_at[k][d] = 0, sum_ours[k][d] = sum_ref[k][d] = 0;
    memset(nets, 0, sizeof nets), memset(acts, 0, sizeof acts);
    const double busy0 = machine_busy_s(), self0 = self_cpu_s(), start = omp_get_wtime();
    printf("per convolution at T=%d %dx%d nf=%d batch=%d, %d threads (best of 5 or more each, alternating with the "
           "sgemm): ms, GFLOP/s, and 'sg%%' = share of sgemm = time of the bare whole-matrix sgemm(s) of the same "
           "product (OpenBLAS's own threads: %d) / our time:\n",
           o->T, o->S, o->S, o->nf, o->N, o->threads, omp_get_max_threads());
    printf("  %-4s %-3s %-29s %-19s %8s %6s %4s %8s %6s %4s %8s %6s %4s\n", "net", "j",
           "shape C->K (T,H,W)->(oT,oH,oW)", "gemm M,N,K", "fwd ms", "GF/s", "sg%", "dX ms", "GF/s", "sg%", "dW ms",
           "GF/s", "sg%");
    for (int k = 0; k < 2; k++) {
        if (net_init(&nets[k], kinds[k], o->T, o->S, o->S, o->nf, rng) != 0 ||
            acts_init(&acts[k], &nets[k], o->N) != 0)
            goto out;
        for (int jl = 1; jl <= nets[k].L; jl++) {
            const ConvShape *s = &acts[k].conv[jl];
            size_t nv = conv_volume_numel(s), nc = conv_column_numel(s), nw = conv_weight_numel(s);
            LayerJob job = {.s = s};
            job.vol = layer_buf(nv), job.col = layer_buf(nc), job.dvol = layer_buf(nv), job.dcol = layer_buf(nc);
            job.w = layer_buf(nw), job.dw = layer_buf(nw), job.ws = layer_buf(conv_workspace_floats(s));
            if (job.dw) memset(job.dw, 0, nw * sizeof(float));
            const size_t nfull = (size_t)s->C * s->kT * s->kH * s->kW * s->oT * s->oH * s->oW;
            job.full = layer_buf(nfull);
            if (!job.vol || !job.col || !job.dvol || !job.dcol || !job.w || !job.dw || !job.ws || !job.full) {
                MDGAN_ERR("out of memory profiling layer %d", jl);
                free(job.vol), free(job.col), free(job.dvol), free(job.dcol), free(job.w), free(job.dw), free(job.ws);
                free(job.full);
                goto out;
            }
            fill_uniform(job.vol, nv, rng), fill_uniform(job.col, nc, rng), fill_uniform(job.w, nw, rng);
            fill_uniform(job.dvol, nv, rng), fill_uniform(job.dcol, nc, rng);
            for (size_t i = 0; i < nfull; i++) job.full[i] = 0.001f * (float)(i % 1000);
            const int Ck = s->C * s->kT * s->kH * s->kW, L = s->oT * s->oH * s->oW;
            const double fl = conv_flops(s); // each direction is one product of this size
            // encoder: the convolution; G's decoder runs the transpose of the same shape
            for (int tr = 0; tr < (kinds[k] == NET_D ? 1 : 2); tr++) {
                static const JobKind OURS[2][NDIR] = {{JOB_CONV_FWD, JOB_CONV_DX, JOB_CONV_DW},
                                                      {JOB_CONVT_FWD, JOB_CONVT_DX, JOB_CONVT_DW}};
                static const JobKind REF[2][NDIR] = {{JOB_SG_WX, JOB_SG_WTDY, JOB_SG_DYXT},
                                                     {JOB_SG_WTDY, JOB_SG_WX, JOB_SG_DYXT}};
                const int kind = tr ? KIND_GT : kinds[k] == NET_D ? KIND_D : KIND_G;
                const int idx = tr ? nets[k].L + 1 - jl : jl;
                if (!layer_wanted(o, kind, idx)) continue;
                double t[NDIR], tref[NDIR];
                for (int d = 0; d < NDIR; d++) time_pair(&job, OURS[tr][d], REF[tr][d], 5, &t[d], &tref[d]);
                char shape[64], gemm[32];
                snprintf(shape, sizeof shape, "%d->%d (%d,%d,%d)->(%d,%d,%d)", s->C, s->K, s->T, s->H, s->W, s->oT,
                         s->oH, s->oW);
                snprintf(gemm, sizeof gemm, "%d,%d,%d", s->K, L, Ck);
                printf("  %-4s %-3d %-29s %-19s", KIND_NAME[kind], idx, shape, gemm);
                for (int d = 0; d < NDIR; d++) {
                    double share = tref[d] / t[d];
                    printf(" %8.2f %6.1f %4.0f", t[d] * 1e3, fl / t[d] / 1e9, 100 * share);
                    if (share < worst[kind][d]) worst[kind][d] = share, worst_at[kind][d] = idx;
                    sum_ours[kind][d] += t[d], sum_ref[kind][d] += tref[d];
                    counted++, at80 += share >= 0.8;
                }
                printf("\n");
                printf("LAYER side=mdgan net=%s layer=%d C=%d K=%d M=%d N=%d K_gemm=%d gflop=%.4f", KIND_NAME[kind],
                       idx, s->C, s->K, s->K, L, Ck, fl / 1e9);
                for (int d = 0; d < NDIR; d++)
                    printf(" %s_ms=%.3f %s_sgemm_ms=%.3f %s_share=%.3f", DIR_NAME[d], t[d] * 1e3, DIR_NAME[d],
                           tref[d] * 1e3, DIR_NAME[d], tref[d] / t[d]);
                printf("\n");
            }
            free(job.vol), free(job.col), free(job.dvol), free(job.dcol), free(job.w), free(job.dw), free(job.ws);
            free(job.full);
        }
    }
    // (a kind --layer left out has no sums and is not printed)
    printf("worst share of sgemm per layer kind (layer):");
    const char *sep = "";
    for (int k = 0; k < NKIND; k++)
        for (int d = 0; d < NDIR; d++)
            if (sum_ours[k][d] > 0)
                printf("%s %s %s %.0f%% (%d)", sep, KIND_NAME[k], DIR_NAME[d], 100 * worst[k][d], worst_at[k][d]),
                    sep = ",";
    // the worst is often a layer of a fraction of a millisecond; the sums weigh by time
    printf("\nshare of sgemm over all layers of a kind (sum of sgemm times / sum of ours):");
    sep = "";
    for (int k = 0; k < NKIND; k++)
        for (int d = 0; d < NDIR; d++)
            if (sum_ours[k][d] > 0)
                printf("%s %s %s %.0f%%", sep, KIND_NAME[k], DIR_NAME[d], 100 * sum_ref[k][d] / sum_ours[k][d]),
                    sep = ",";
    printf("\nlayer-directions at >= 80%% of sgemm: %d of %d\n", at80, counted);
    printf("(G 1 dX is never needed in training: X takes no gradient; D 1 dX only in the generator's step)\n");
    // With another process on a core, a parallel region of 2 threads on 2 cores can wait
    // a scheduler slice (milliseconds), which swamps the small layers' times.
    const double busy1 = machine_busy_s(), wall = omp_get_wtime() - start;
    double other = busy0 < 0 || busy1 < 0 ? -1 : (busy1 - busy0 - (self_cpu_s() - self0)) / wall;
    if (other < 0 && busy0 >= 0) other = 0; // tick rounding
    printf("other processes kept %.2f CPUs busy meanwhile (%.1f s)\n", other, wall);
    printf("LAYERSUM side=mdgan T=%d H=%d nf=%d batch=%d threads=%d at80=%d of=%d other_cpus=%.2f", o->T, o->S, o->nf,
           o->N, o->threads, at80, counted, other);
    for (int k = 0; k < NKIND; k++)
        for (int d = 0; d < NDIR; d++)
            if (sum_ours[k][d] > 0)
                printf(" worst_%s_%s=%.3f sum_%s_%s=%.3f", k == KIND_GT ? "GT" : KIND_NAME[k], DIR_NAME[d], worst[k][d],
                   k == KIND_GT ? "GT" : KIND_NAME[k], DIR_NAME[d], sum_ref[k][d] / sum_ours[k][d]);
    printf("\n");
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
        {"batch", required_argument, 0, 'N'},   {"dump", required_argument, 0, 'd'},
        {"layer", required_argument, 0, 'y'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    int T = 0, S = 0, nf = 0, N = 0, c;
    *o = (Opts){.kase = CASE_TRAIN, .threads = 2, .warmup = 2, .min_iters = 5, .max_iters = 1000};
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", lo, NULL)) != -1) {
        int r = 0;
        switch (c) {
        case 'c':
            if (!strcmp(optarg, "train")) o->kase = CASE_TRAIN;
            else if (!strcmp(optarg, "refine")) o->kase = CASE_REFINE;
            else if (!strcmp(optarg, "infer")) o->kase = CASE_INFER;
            else {
                MDGAN_ERR("--case: '%s' is not train, refine or infer", optarg);
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
        case 'd':
            if (!*optarg) {
                MDGAN_ERR("--dump needs a file name");
                return -1;
            }
            o->dump = optarg;
            break;
        case 'y': {
            char net[4];
            int j, used = 0;
            if (sscanf(optarg, "%3[A-Z]:%d%n", net, &j, &used) != 2 || optarg[used] ||
                (strcmp(net, "G") && strcmp(net, "GT") && strcmp(net, "D")) || j < 1) {
                MDGAN_ERR("--layer: '%s' is not NET:J with NET one of G, GT, D and J a layer from 1", optarg);
                return -1;
            }
            o->only = optarg;
            break;
        }
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
    if (o->only && !o->layers) {
        MDGAN_ERR("--layer picks a layer of --layers: give --layers too");
        return -1;
    }
    if (o->layers && o->dump) {
        MDGAN_ERR("--dump writes a step's outputs: --layers runs no step");
        return -1;
    }
    if (o->max_iters < o->min_iters) o->max_iters = o->min_iters;
    const int small = o->kase != CASE_INFER; // the CPU training shape
    o->T = T ? T : 32;
    o->S = S ? S : small ? 64 : 128;
    o->nf = nf ? nf : small ? 16 : 32;
    o->N = N ? N : small ? 4 : 1;
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

static const double MiB = 1048576.0 / sizeof(float); // floats per MiB

static int run_train(const Opts *o, Rng *rng, double rss0) {
    Train b;
    Timing tm = {0};
    int rc = MDGAN_EXIT_OK;
    if (train_init(&b, o, rng) != 0 || run_timed(&tm, o, train_fn, train_dump, &b) != 0) {
        mdgan_errprint(PROG);
        rc = MDGAN_EXIT_RUNTIME;
    } else {
        Acts *ag = &b.ag, *ad = &b.ad;
        double flops = net_fwd_flops(&b.g, ag) + 3 * net_fwd_flops(&b.d, ad) + 2 * net_bwd_flops(&b.d, ad, 0) +
                       net_bwd_flops(&b.d, ad, 1) + net_bwd_flops(&b.g, ag, 0);
        print_result(o, &tm, flops, rss0, "");
        printf("last losses: D %.4f, G %.4f\n", b.loss_d, b.loss_g);
        printf("memory: G1 params %.1f MiB x4 (params, grads, Adam m, v), D params %.1f MiB x4; activations "
               "G1 %.1f MiB (of which gradients %.1f), D %.1f MiB (of which gradients %.1f); "
               "vol2col workspace %.1f MiB; inputs %.1f MiB x3\n",
               b.g.nparams / MiB, b.d.nparams / MiB, ag->arena_floats / MiB, ag->grad_floats / MiB,
               ad->arena_floats / MiB, ad->grad_floats / MiB,
               (ag->ws_floats > ad->ws_floats ? ag->ws_floats : ad->ws_floats) / MiB, acts_output_numel(ag) / MiB);
    }
    train_free(&b);
    free(tm.step), free(tm.ph);
    return rc;
}

static int run_refine(const Opts *o, Rng *rng, double rss0) {
    Refine b;
    Timing tm = {0};
    int rc = MDGAN_EXIT_OK;
    if (refine_init(&b, o, rng) != 0 || run_timed(&tm, o, refine_fn, refine_dump, &b) != 0) {
        mdgan_errprint(PROG);
        rc = MDGAN_EXIT_RUNTIME;
    } else {
        const Stage2 *s = &b.s;
        const Acts *ad = &s->ad[0];
        // G1 forward; G2 forward; D2 x3 twice; D2 backward x3 without dx (D2's step); D2
        // backward to dY2 (counted with dW, as the train case counts it); G2 backward.
        double flops = net_fwd_flops(&b.g1, &b.a1) + net_fwd_flops(&s->g, &s->ag) + 6 * net_fwd_flops(&s->d, ad) +
                       3 * net_bwd_flops(&s->d, ad, 0) + net_bwd_flops(&s->d, ad, 1) +
                       net_bwd_flops(&s->g, &s->ag, 0);
        char extra[128];
        snprintf(extra, sizeof extra, " lambda_l1=%g lambda_rank=%g rank_form=%s", b.lambda_l1, b.lambda_rank,
                 rank_form_name(b.form));
        print_result(o, &tm, flops, rss0, extra);
        const Stage2Losses *l = &b.loss;
        printf("last losses: D2 real %.4f fake %.4f rank %.4f; G2 adv %.4f L1 %.4f rank %.4f (lambda_l1 %g, "
               "lambda_rank %g, rank_form %s)\n",
               l->d_real, l->d_fake, l->d_rank, l->g_adv, l->g_l1, l->g_rank, b.lambda_l1, b.lambda_rank,
               rank_form_name(b.form));
        printf("memory: frozen G1 params %.1f MiB (inference layout), activations %.1f MiB; G2 params %.1f MiB x4, "
               "activations %.1f MiB (of which gradients %.1f); D2 params %.1f MiB x4, activations %.1f MiB x3 (of "
               "which gradients %.1f each); vol2col workspaces %.1f + %.1f MiB; inputs %.1f MiB x2\n",
               b.g1.nparams / MiB, b.a1.arena_floats / MiB, s->g.nparams / MiB, s->ag.arena_floats / MiB,
               s->ag.grad_floats / MiB, s->d.nparams / MiB, ad->arena_floats / MiB, ad->grad_floats / MiB,
               b.a1.ws_floats / MiB, (s->ag.ws_floats > ad->ws_floats ? s->ag.ws_floats : ad->ws_floats) / MiB,
               acts_output_numel(&s->ag) / MiB);
    }
    refine_free(&b);
    free(tm.step), free(tm.ph);
    return rc;
}

static int run_infer(const Opts *o, Rng *rng, double rss0) {
    Infer b = {0};
    Timing tm = {0};
    int rc = MDGAN_EXIT_OK;
    // the inference layout mdgan predict uses (ckpt_load_generator: net_init_inference,
    // acts_init_inference)
    if (frozen_g1_init(&b.g, o, rng) != 0 || acts_init_inference(&b.a, &b.g, o->N) != 0) {
        mdgan_errprint(PROG);
        rc = MDGAN_EXIT_RUNTIME;
    } else {
        size_t n = (size_t)o->N * 3 * o->T * o->S * o->S;
        b.ws = malloc(b.a.ws_floats * sizeof(float));
        b.x = malloc(n * sizeof(float));
        if (!b.ws || !b.x) {
            fprintf(stderr, "%s: out of memory\n", PROG);
            rc = MDGAN_EXIT_RUNTIME;
        } else {
            fill_repeated_frame(b.x, o->N, o->T, o->S, o->S, rng);
            if (run_timed(&tm, o, infer_fn, infer_dump, &b) != 0) {
                mdgan_errprint(PROG);
                rc = MDGAN_EXIT_RUNTIME;
            } else {
                print_result(o, &tm, net_fwd_flops(&b.g, &b.a), rss0, "");
                printf("memory: G1 params %.1f MiB (no gradients, no Adam moments); activations %.1f MiB "
                       "(inference layout); vol2col workspace %.1f MiB; input %.1f MiB\n",
                       b.g.nparams / MiB, b.a.arena_floats / MiB, b.a.ws_floats / MiB, n / MiB);
            }
        }
    }
    free(b.ws), free(b.x);
    acts_free(&b.a), net_free(&b.g);
    free(tm.step), free(tm.ph);
    return rc;
}

int main(int argc, char **argv) {
    Opts o;
    if (parse(argc, argv, &o) != 0) {
        mdgan_errprint(PROG);
        fprintf(stderr, "(see %s --help)\n", PROG);
        return MDGAN_EXIT_USAGE;
    }
    if (o.dump && !(o.dump_f = fopen(o.dump, "w"))) {
        MDGAN_ERR("--dump %s: cannot create it", o.dump);
        mdgan_errprint(PROG);
        return MDGAN_EXIT_USAGE;
    }
    double rss0 = max_rss_mib();
    cli_set_threads(o.threads);
    print_env(&o);
    Rng rng;
    rng_seed(&rng, SEED);
    if (o.layers) {
        if (profile_layers(&o, &rng) != 0) {
            mdgan_errprint(PROG);
            return MDGAN_EXIT_RUNTIME;
        }
        return MDGAN_EXIT_OK;
    }
    switch (o.kase) {
    case CASE_TRAIN: return run_train(&o, &rng, rss0);
    case CASE_REFINE: return run_refine(&o, &rng, rss0);
    case CASE_INFER: return run_infer(&o, &rng, rss0);
    }
    return MDGAN_EXIT_RUNTIME;
}
