#ifndef MDGAN_TRAINER_H
#define MDGAN_TRAINER_H
// The training loop both stages share: configuration and resume, the run folder, the
// dataset and its split, the seeded data order, checkpoints (with the RNG, the data
// cursor and the last losses), evaluation with samples and metrics, progress, signals,
// time budgets. A stage brings only its own parts, as a TrainStage table: its models,
// its step, what it saves, and the clips it shows for a validation clip. The loop
// never calls into stages/: the tables live in common/ (train_base.c, train_refine.c).
//
// Files of stage S in <run.dir>/<run.name>/:
//   checkpoints/S_step_N.safetensors (+ .sha256)   samples/S_step_N.png, .gif
//   samples/S_metrics_step_N.json                   S_metrics.jsonl
#include <getopt.h>
#include <stddef.h>
#include <stdio.h>

#include "mdgan/ckpt.h"
#include "mdgan/config.h"
#include "mdgan/dataset.h"
#include "mdgan/rng.h"
#include "mdgan/safetensors.h"
#include "mdgan/train.h"

#define TRAIN_MAX_LOSSES 12
#define TRAIN_MAX_OUTPUTS 3      // validation clips a stage shows besides the real one
#define TRAIN_MAX_EXTRAS 4
#define TRAIN_MAX_META 4
#define TRAIN_SAMPLE_CLIPS 4     // clips on a contact sheet

// The schedule keys of a stage's config section.
typedef struct {
    int batch, epochs, ckpt_every, sample_every, keep;
} TrainSchedule;

// What the loop hands a stage when it builds it.
typedef struct {
    const Config *cfg;
    const Dataset *ds;           // the real clips
    const int *val;              // validation clip indices (nval)
    int nval;
    BatchOrder *order;           // the batch of any step (for a stage that reads ahead)
    const char *run_dir;
    void *args;                  // the stage's own command-line options (trainer_main's)
    int resuming;                // load() follows: the checkpoint sets every weight
} TrainEnv;

typedef struct TrainStage {
    const char *name;                     // "base", "refine": file names, messages, metadata
    const char *section;                  // its config section, "[base]"
    const char *other_section;            // the other stage's section (free to differ on resume)
    const char *legacy_log;               // the metrics log's name in older versions (renamed on resume), or NULL
    const char *const *loss_names;        // per step, in this order (checkpoint "losses", logs)
    int nlosses;
    const char *const *output_names;      // per validation clip, after the real one ("y1", "y2");
    int noutputs;                         // the last one is the stage's own output
    const char *const *extra_names;       // per validation clip, numbers beside the metrics
    int nextras;
    void (*schedule)(const Config *c, TrainSchedule *out);
    // Builds the models (weights from rng) and opens the stage's data; NULL on error.
    void *(*create)(const TrainEnv *env, Rng *rng);
    // Resume: fills the models and the stage's own state from a checkpoint.
    int (*load)(void *self, const StFile *ck);
    // After create (and load, resuming): connect to peers (NULL: nothing to do). A
    // failure here is the user's to fix (exit 2): a peer that is not there or disagrees.
    int (*start)(void *self);
    // What a checkpoint holds: nets (with Adam) and extra metadata (keys and values
    // stay valid until the next call). Returns the number of nets, -1 on error.
    int (*save)(void *self, CkptNet *nets, CkptMeta *meta, int *nmeta);
    // One training step on the clips idx[0..batch) of the batch of `step` (0-based);
    // losses[0..nlosses). -1 with a message on error (not for a diverged loss), and
    // then before anything of the step changed the models (the loop saves that state).
    int (*step)(void *self, long step, const int *idx, float *losses);
    // Validation clip `clip`: the real clip (3, T, S, S) into real, and pointers to the
    // stage's outputs (valid until the next call), extras[0..nextras).
    int (*eval)(void *self, int clip, float *real, const float **outputs, double *extras);
    // The losses part of a progress line.
    void (*describe)(void *self, const float *losses, char *buf, size_t n);
    // A line for the end of the run (e.g. the share of time spent waiting for data).
    void (*summary)(void *self, char *buf, size_t n);
    void (*destroy)(void *self);
} TrainStage;

// The options every `train` command takes:
//   --config FILE --set k=v ... --resume CKPT|DIR --steps N --minutes M --log-every N
//   --control ENDPOINT
typedef struct {
    const char *config_path;
    const char *sets[256];
    int nsets;
    const char *resume;
    long max_steps;
    double minutes;
    long log_every;
    const char *control;         // --control ENDPOINT: report to the coordinator there
    void *stage_args;            // passed to the stage as TrainEnv.args
} TrainArgs;

// A stage's extra options: getopt_long entries (val >= 256) and their handler
// (0, or -1 with a message).
typedef struct {
    const struct option *opts;
    int (*parse)(void *stage_args, int opt, const char *arg);
} TrainExtraOpts;

// Parses argv (argv[0] = "train"); usage is printed for --help (exit 0).
// -1 with a message on a bad option.
int trainer_parse_args(TrainArgs *a, int argc, char **argv, const TrainExtraOpts *extra, void (*usage)(FILE *));

// The whole `train` command; returns the exit code (0, 1, 2, 130, 143) and leaves a
// message for 1 and 2.
int trainer_run(const TrainStage *stage, const TrainArgs *a);

// A config taken from a checkpoint's metadata (no --config) is outside input: a place
// it names that a command writes to (what, e.g. the run folder) must lie in the run
// folder the checkpoint lies in (<run>/checkpoints/FILE). 0, or -1 naming both places.
int trainer_metadata_place(const char *ckpath, const char *what, const char *path);
// 1 when one of sets is "key=...".
int trainer_set_given(const char *const *sets, int nsets, const char *key);

// The config of a run: --config (or, resuming, the checkpoint's own), then --set, then
// validated. For commands that are not training (serve): ck may be NULL.
int trainer_load_config(Config *c, const char *config_path, const char *const *sets, int nsets, const StFile *ck,
                        const char *ckpath);

#endif
