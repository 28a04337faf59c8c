// Stage I's parts of the shared training loop: G1/D1 on the real clips.
#include "mdgan/train_stages.h"

#include <stdio.h>
#include <stdlib.h>

#include "mdgan/error.h"
#include "mdgan/stage1.h"

typedef struct {
    const TrainEnv *env;
    Stage1 s;
    float *batch;   // (N, 3, T, H, W)
} BaseTrain;

enum { L_D_REAL, L_D_FAKE, L_G_ADV, L_G_L1, NLOSSES };
static const char *const loss_names[NLOSSES] = {"d_real", "d_fake", "g_adv", "g_l1"};
static const char *const output_names[] = {"y1"};

static void schedule(const Config *c, TrainSchedule *out) {
    *out = (TrainSchedule){c->base.batch, c->base.epochs, c->base.ckpt_every, c->base.sample_every, c->base.keep};
}

static void destroy(void *self) {
    BaseTrain *b = self;
    stage1_free(&b->s);
    free(b->batch);
    free(b);
}

static void *create(const TrainEnv *env, Rng *rng) {
    const Config *c = env->cfg;
    const int T = c->data.frames, S = c->data.size, N = c->base.batch;
    BaseTrain *b = calloc(1, sizeof *b);
    if (!b) {
        MDGAN_ERR("out of memory");
        return NULL;
    }
    b->env = env;
    const AdamConfig og = {c->base.lr, c->base.beta1, c->base.beta2, 1e-8};
    if (stage1_init(&b->s, N, T, S, S, c->base.ngf, c->base.ndf, (float)c->base.lambda_l1, &og, &og, rng) != 0) {
        free(b);
        return NULL;
    }
    if (!(b->batch = malloc((size_t)N * 3 * T * S * S * sizeof(float)))) {
        MDGAN_ERR("out of memory for a batch of %d clips", N);
        destroy(b);
        return NULL;
    }
    return b;
}

static int load(void *self, const StFile *ck) {
    BaseTrain *b = self;
    return ckpt_load_net(ck, &b->s.g, "G1", 1) != 0 || ckpt_load_net(ck, &b->s.d, "D1", 1) != 0 ? -1 : 0;
}

static int save(void *self, CkptNet *nets, CkptMeta *meta, int *nmeta) {
    BaseTrain *b = self;
    (void)meta;
    *nmeta = 0;
    nets[0] = (CkptNet){&b->s.g, "G1", 1};
    nets[1] = (CkptNet){&b->s.d, "D1", 1};
    return 2;
}

static int step(void *self, long step, const int *idx, float *losses) {
    BaseTrain *b = self;
    (void)step;
    Stage1Losses l;
    dataset_batch(b->env->ds, idx, b->s.N, b->batch);
    stage1_step(&b->s, b->batch, &l);
    losses[L_D_REAL] = l.d_real, losses[L_D_FAKE] = l.d_fake, losses[L_G_ADV] = l.g_adv, losses[L_G_L1] = l.g_l1;
    return 0;
}

static int eval(void *self, int clip, float *real, const float **outputs, double *extras) {
    BaseTrain *b = self;
    (void)extras;
    dataset_clip(b->env->ds, clip, real);
    outputs[0] = stage1_predict(&b->s, real);
    return 0;
}

static void describe(void *self, const float *l, char *buf, size_t n) {
    (void)self;
    snprintf(buf, n, "D %.3f  G adv %.3f  L1 %.4f", l[L_D_REAL] + l[L_D_FAKE], l[L_G_ADV], l[L_G_L1]);
}

const TrainStage TRAIN_STAGE_BASE = {
    .name = "base",
    .section = "[base]",
    .other_section = "[refine]",
    .legacy_log = "metrics.jsonl",
    .loss_names = loss_names,
    .nlosses = NLOSSES,
    .output_names = output_names,
    .noutputs = 1,
    .schedule = schedule,
    .create = create,
    .load = load,
    .save = save,
    .step = step,
    .eval = eval,
    .describe = describe,
    .destroy = destroy,
};
