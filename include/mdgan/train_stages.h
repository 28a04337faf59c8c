#ifndef MDGAN_TRAIN_STAGES_H
#define MDGAN_TRAIN_STAGES_H
// The two stages' tables for the shared training loop (mdgan/trainer.h).
#include "mdgan/trainer.h"

// Stage I: G1/D1 on the real clips of [data].
extern const TrainStage TRAIN_STAGE_BASE;

// Stage II: G2/D2 on (Y, Y1) pairs, Y1 from a serving Base-Net or from clips on disk.
extern const TrainStage TRAIN_STAGE_REFINE;

// mdgan-refine train's own options (TrainArgs.stage_args).
typedef struct {
    const char *base_endpoint;   // --base: a serving Base-Net (default: the config's / the run's socket)
    const char *base_outputs;    // --base-outputs: Y1 clips on disk instead
    const char *init_g2;         // --init-g2: a fresh run's G2 starts from these G1 (or G2) weights
} RefineArgs;

#endif
