// Stage II's parts of the shared training loop: G2/D2 on (Y, Y1), with Y1 from a
// serving Base-Net over the data plane or from Base-Net clips on disk.
#include "mdgan/train_stages.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdgan/dataplane.h"
#include "mdgan/error.h"
#include "mdgan/stage2.h"
#include "mdgan/wire.h"

typedef struct {
    const TrainEnv *env;
    const RefineArgs *args;
    Stage2 s;
    size_t clip;                 // floats of one clip
    float *y, *y1;               // (N, 3, T, H, W) the batch
    float *val_y, *val_y1;       // (1, 3, T, H, W) one validation clip
    float *dist;                 // (2, N) the batch's d(Y1, Y) and d(Y2, Y)
    // Y1 from a Base-Net service
    char endpoint[1024];
    DpClient *dp;
    DataIdentity id;
    char g1_sha256[65];          // the G1 this run trains against ("" until the first HELLO)
    long requested;              // training steps [.., requested) are queued
    uint64_t eval_tag;
    // or from clips on disk
    Dataset y1ds;
    int *y1_of;                  // (nclips) real clip -> Y1 clip
    // D2 at batch 1 on running statistics, for the validation Gram distances
    Acts dval[3];
    RankShape rank1;
    float *rank1_ws;
    double step_s, wait_s;       // time in training steps, and the part spent waiting for Y1
    int init_from_served_g1;     // a fresh run with refine.init = g1: G2 starts as the served G1
} RefineTrain;

enum { L_D_REAL, L_D_FAKE, L_D_RANK, L_G_ADV, L_G_L1, L_G_RANK, L_DIST_Y1, L_DIST_Y2, NLOSSES };
static const char *const loss_names[NLOSSES] = {"d_real", "d_fake", "d_rank", "g_adv",
                                                "g_l1",   "g_rank", "batch_gram_y1", "batch_gram_y2"};
static const char *const output_names[] = {"y1", "y2"};
enum { E_GRAM_Y1, E_GRAM_Y2, NEXTRAS };
static const char *const extra_names[NEXTRAS] = {"gram_y1", "gram_y2"};

// Training batches are tagged with their step; validation requests count up from 2^62.
#define EVAL_TAG_BASE (1ull << 62)

static void schedule(const Config *c, TrainSchedule *out) {
    *out = (TrainSchedule){c->refine.batch, c->refine.epochs, c->refine.ckpt_every, c->refine.sample_every,
                           c->refine.keep};
}

static void destroy(void *self) {
    RefineTrain *r = self;
    dataplane_close(r->dp);
    dataset_close(&r->y1ds);
    free(r->y1_of);
    for (int k = 0; k < 3; k++) acts_free(&r->dval[k]);
    free(r->rank1_ws);
    stage2_free(&r->s);
    free(r->y), free(r->y1), free(r->val_y), free(r->val_y1), free(r->dist);
    free(r);
}

// Pairs every real clip with the Y1 clip of the same <video>/<clip> and window.
static int open_base_outputs(RefineTrain *r, const char *dir) {
    const Dataset *ds = r->env->ds;
    fprintf(stderr, "refine: reading Base-Net clips from %s\n", dir);
    if (dataset_open(&r->y1ds, dir, ds->T, ds->H, ds->W, NULL, NULL) != 0) return -1;
    if (!(r->y1_of = malloc((size_t)ds->nclips * sizeof(int)))) {
        MDGAN_ERR("out of memory");
        return -1;
    }
    int j = 0; // both lists are sorted by (video, clip, window)
    for (int i = 0; i < ds->nclips; i++) {
        const DatasetClip *a = &ds->clips[i];
        int cmp = 1;
        while (j < r->y1ds.nclips) {
            const DatasetClip *b = &r->y1ds.clips[j];
            cmp = dataset_name_cmp(b->video, a->video);
            if (!cmp) cmp = dataset_name_cmp(b->clip, a->clip);
            if (!cmp) cmp = b->window - a->window;
            if (cmp >= 0) break;
            j++;
        }
        if (cmp != 0) {
            MDGAN_ERR("--base-outputs %s has no Base-Net clip for %s/%s window %d of %s (frames %d..%d): run "
                      "`mdgan-base infer` over the same data, with the same data.frames and data.size", dir, a->video,
                      a->clip, a->window, ds->root, a->window * ds->T, (a->window + 1) * ds->T - 1);
            return -1;
        }
        r->y1_of[i] = j;
    }
    return 0;
}

// G2 has G1's layers (without its two outermost skips), so G1's weights are a start
// that already knows the scenes; a resumed run's checkpoint overrides them.
static int init_g2(RefineTrain *r, const char *path) {
    StFile f;
    if (st_open(&f, path) != 0) return -1;
    const char *prefix = ckpt_has_net(&f, "G2", NET_G2) ? "G2" : ckpt_has_net(&f, "G1", NET_G1) ? "G1" : "";
    int rc = ckpt_load_net(&f, &r->s.g, prefix, 0);
    if (rc == 0) fprintf(stderr, "refine: G2 starts from the %s weights of %s\n", *prefix ? prefix : "bare", path);
    else mdgan_errctx("--init-g2");
    st_close(&f);
    return rc;
}

static void *create(const TrainEnv *env, Rng *rng) {
    const Config *c = env->cfg;
    const int T = c->data.frames, S = c->data.size, N = c->refine.batch;
    RefineTrain *r = calloc(1, sizeof *r);
    if (!r) {
        MDGAN_ERR("out of memory");
        return NULL;
    }
    r->env = env, r->args = env->args;
    r->clip = (size_t)3 * T * S * S;
    const AdamConfig opt = {c->refine.lr, c->refine.beta1, c->refine.beta2, 1e-8};
    RankForm form;
    if (rank_form_parse(c->refine.rank_form, &form) != 0 ||
        stage2_init(&r->s, N, T, S, S, c->refine.ngf, c->refine.ndf, (float)c->refine.lambda_l1,
                    (float)c->refine.lambda_rank, form, &opt, &opt, rng) != 0) {
        free(r);
        return NULL;
    }
    int ok = (r->y = malloc((size_t)N * r->clip * sizeof(float))) && (r->y1 = malloc((size_t)N * r->clip * sizeof(float))) &&
             (r->val_y = malloc(r->clip * sizeof(float))) && (r->val_y1 = malloc(r->clip * sizeof(float))) &&
             (r->dist = malloc((size_t)2 * N * sizeof(float)));
    for (int k = 0; k < 3 && ok; k++) ok = acts_init(&r->dval[k], &r->s.d, 1) == 0;
    if (ok) {
        r->rank1 = r->s.rank;
        r->rank1.N = 1;
        ok = (r->rank1_ws = malloc(rank_loss_workspace_floats(&r->rank1) * sizeof(float))) != NULL;
    }
    if (!ok) {
        if (!mdgan_errmsg()[0]) MDGAN_ERR("out of memory for Stage II buffers");
        destroy(r);
        return NULL;
    }
    if (r->args && r->args->init_g2 && !env->resuming && init_g2(r, r->args->init_g2) != 0) {
        destroy(r);
        return NULL;
    }
    // refine.init = g1 takes G1 from the Base-Net at start(); from disk there is none
    r->init_from_served_g1 = !env->resuming && !(r->args && r->args->init_g2) && !strcmp(c->refine.init, "g1");
    if (r->init_from_served_g1 && r->args && r->args->base_outputs) {
        MDGAN_ERR("refine.init = g1 takes G1's weights from a serving Base-Net, and --base-outputs has none: give "
                  "--init-g2 FILE (the Base-Net checkpoint), or set refine.init=random");
        destroy(r);
        return NULL;
    }
    if (r->args && r->args->base_outputs) {
        if (open_base_outputs(r, r->args->base_outputs) != 0) {
            destroy(r);
            return NULL;
        }
    } else {
        if (dataplane_endpoint(r->endpoint, sizeof r->endpoint, c, r->args ? r->args->base_endpoint : NULL) != 0) {
            destroy(r);
            return NULL;
        }
        dataplane_identity(env->ds, &r->id);
    }
    return r;
}

static int load(void *self, const StFile *ck) {
    RefineTrain *r = self;
    if (ckpt_load_net(ck, &r->s.g, "G2", 1) != 0 || ckpt_load_net(ck, &r->s.d, "D2", 1) != 0) return -1;
    const char *g1 = st_meta_get(ck, "g1_sha256");
    if (g1) snprintf(r->g1_sha256, sizeof r->g1_sha256, "%s", g1);
    // Y1 comes from where it came from: a resumed run that switched would train on
    // other inputs (8-bit PNG clips instead of G1's floats, or the other way round)
    const char *disk = st_meta_get(ck, "base_outputs"), *now = r->args ? r->args->base_outputs : NULL;
    if (!disk != !now || (disk && strcmp(disk, now) != 0)) {
        if (disk) MDGAN_ERR("%s was trained from --base-outputs %s: resume it with the same", ck->path, disk);
        else MDGAN_ERR("%s was trained from a serving Base-Net: resume it without --base-outputs", ck->path);
        return -1;
    }
    return 0;
}

static int save(void *self, CkptNet *nets, CkptMeta *meta, int *nmeta) {
    RefineTrain *r = self;
    nets[0] = (CkptNet){&r->s.g, "G2", 1};
    nets[1] = (CkptNet){&r->s.d, "D2", 1};
    *nmeta = 0;
    if (r->g1_sha256[0]) meta[(*nmeta)++] = (CkptMeta){"g1_sha256", r->g1_sha256};
    if (r->args && r->args->base_outputs) meta[(*nmeta)++] = (CkptMeta){"base_outputs", r->args->base_outputs};
    return 2;
}

// Connects to the Base-Net (after load, so that a resumed run asks for its own G1).
static int start(void *self) {
    RefineTrain *r = self;
    if (r->dp || r->y1_of) return 0;
    const Config *c = r->env->cfg;
    fprintf(stderr, "refine: connecting to the Base-Net at %s\n", r->endpoint);
    r->dp = dataplane_connect(r->endpoint, &r->id, r->g1_sha256, c->transport.timeout_s, c->transport.inflight,
                              (size_t)c->transport.max_message_mb << 20, c->transport.curve_server_key);
    if (!r->dp) return -1;
    fprintf(stderr, "refine: Base-Net at %s serves G1 %.12s... on the same %d clips\n", r->endpoint, r->g1_sha256,
            r->id.clips);
    if (!r->init_from_served_g1) return 0;
    Net g1;
    if (dataplane_fetch_g1(r->dp, r->s.T, r->s.H, &g1) != 0) return -1;
    int rc = net_copy_weights(&r->s.g, &g1);
    net_free(&g1);
    if (rc == 0) fprintf(stderr, "refine: G2 starts from the served G1's weights (refine.init = g1)\n");
    return rc;
}

// Y and Y1 of clips idx[0..n) into y, y1, from whichever source the run has.
static int fetch_disk(RefineTrain *r, const int *idx, int n, float *y, float *y1) {
    for (int i = 0; i < n; i++) {
        dataset_clip(r->env->ds, idx[i], y + (size_t)i * r->clip);
        dataset_clip(&r->y1ds, r->y1_of[idx[i]], y1 + (size_t)i * r->clip);
    }
    return 0;
}

static int step(void *self, long step, const int *idx, float *losses) {
    RefineTrain *r = self;
    const int N = r->s.N;
    const double t0 = train_now();
    if (r->dp) {
        // keep `inflight` batches asked for ahead, so the Base-Net works while we do
        if (r->requested <= step) r->requested = step;
        int ahead[256];
        while (r->requested < step + r->env->cfg->transport.inflight) {
            batch_order_get(r->env->order, r->requested, ahead);
            if (dataplane_request(r->dp, (uint64_t)r->requested, ahead, N) != 0) return -1;
            r->requested++;
        }
        const double w0 = train_now();
        if (dataplane_wait(r->dp, (uint64_t)step, r->y, r->y1) != 0) return -1;
        r->wait_s += train_now() - w0;
    } else {
        fetch_disk(r, idx, N, r->y, r->y1);
    }
    Stage2Losses l;
    stage2_step(&r->s, r->y, r->y1, &l);
    losses[L_D_REAL] = l.d_real, losses[L_D_FAKE] = l.d_fake, losses[L_D_RANK] = l.d_rank;
    losses[L_G_ADV] = l.g_adv, losses[L_G_L1] = l.g_l1, losses[L_G_RANK] = l.g_rank;
    // The Gram distances G2's step saw: D2's features of that step are still in its
    // activations (after D2's update, before G2's).
    const float *feat[2][3];
    for (int k = 0; k < 3; k++) feat[0][k] = acts_feature(&r->s.ad[k], 1), feat[1][k] = acts_feature(&r->s.ad[k], 3);
    rank_loss_features(NULL, r->dist, feat, &r->s.rank, r->s.rank_form, 0.0f, r->s.rank_ws);
    double d1 = 0, d2 = 0;
    for (int n = 0; n < N; n++) d1 += r->dist[n], d2 += r->dist[N + n];
    losses[L_DIST_Y1] = (float)(d1 / N), losses[L_DIST_Y2] = (float)(d2 / N);
    r->step_s += train_now() - t0;
    return 0;
}

static int eval(void *self, int clip, float *real, const float **outputs, double *extras) {
    RefineTrain *r = self;
    if (r->dp) {
        const uint64_t tag = EVAL_TAG_BASE + r->eval_tag++;
        if (dataplane_request(r->dp, tag, &clip, 1) != 0 || dataplane_wait(r->dp, tag, r->val_y, r->val_y1) != 0)
            return -1;
    } else {
        fetch_disk(r, &clip, 1, r->val_y, r->val_y1);
    }
    memcpy(real, r->val_y, r->clip * sizeof(float));
    const float *y2 = stage2_predict(&r->s, r->val_y1);
    // Gram distances as D2 sees the clips at inference (running statistics)
    const float *in[3] = {r->val_y, r->val_y1, y2}, *feat[2][3];
    for (int k = 0; k < 3; k++) {
        net_forward(&r->s.d, &r->dval[k], in[k], BN_RUNNING, r->s.ws);
        feat[0][k] = acts_feature(&r->dval[k], 1), feat[1][k] = acts_feature(&r->dval[k], 3);
    }
    float dist[2];
    rank_loss_features(NULL, dist, feat, &r->rank1, r->s.rank_form, 0.0f, r->rank1_ws);
    extras[E_GRAM_Y1] = dist[0], extras[E_GRAM_Y2] = dist[1];
    outputs[0] = r->val_y1, outputs[1] = y2;
    return 0;
}

// Share of the training steps' time spent waiting for the Base-Net.
static double wait_share(const RefineTrain *r) { return r->step_s > 0 ? r->wait_s / r->step_s : 0; }

static void describe(void *self, const float *l, char *buf, size_t n) {
    RefineTrain *r = self;
    int at = snprintf(buf, n, "D %.3f  G adv %.3f  L1 %.4f  rank %.3f  d(Y1,Y) %.4g  d(Y2,Y) %.4g",
                      l[L_D_REAL] + l[L_D_FAKE], l[L_G_ADV], l[L_G_L1], l[L_G_RANK], l[L_DIST_Y1], l[L_DIST_Y2]);
    if (r->dp && at < (int)n) snprintf(buf + at, n - at, "  wait %.1f%%", 100 * wait_share(r));
}

static void summary(void *self, char *buf, size_t n) {
    RefineTrain *r = self;
    if (r->dp)
        snprintf(buf, n, "steps waited for the Base-Net %.1f%% of their time (%.1f of %.1f s), %d reconnection(s)",
                 100 * wait_share(r), r->wait_s, r->step_s, dataplane_reconnects(r->dp));
}

const TrainStage TRAIN_STAGE_REFINE = {
    .name = "refine",
    .section = "[refine]",
    .other_section = "[base]",
    .loss_names = loss_names,
    .nlosses = NLOSSES,
    .output_names = output_names,
    .noutputs = 2,
    .extra_names = extra_names,
    .nextras = NEXTRAS,
    .schedule = schedule,
    .create = create,
    .load = load,
    .start = start,
    .save = save,
    .step = step,
    .eval = eval,
    .describe = describe,
    .summary = summary,
    .destroy = destroy,
};
