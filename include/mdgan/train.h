#ifndef MDGAN_TRAIN_H
#define MDGAN_TRAIN_H
// What every training stage shares: the run folder, numbered checkpoints with their
// sha256 sidecars (keep the newest K, resume from the newest that verifies), a stop
// flag set by SIGINT/SIGTERM, and progress lines with rate and ETA.
#include <stddef.h>
#include <stdint.h>

// ---- signals ----
// SIGINT/SIGTERM set a flag the loop checks between steps; a second signal of the
// same kind restores the default action, so a stuck process can still be killed.
void train_install_signals(void);
int train_stop_signal(void);   // 0, or the signal number that asked to stop
// The same stop as if signal sig had arrived (the coordinator's STOP); from any thread.
void train_request_stop(int sig);
// Read end of a self-pipe the handler writes a byte to, so that a zmq_poll (or poll)
// that watches it wakes at once on SIGINT/SIGTERM. -1 before train_install_signals.
int train_signal_fd(void);
// Exit code for a run stopped by signal sig: 130 (SIGINT), 143 (SIGTERM), else 0.
int train_signal_exit_code(int sig);

// ---- data order ----
// The training clips of an epoch are a permutation of train[0..ntrain) seeded by
// (seed, epoch), so the batch of any step follows from the step alone: a resumed run,
// or a Refine-Net that asks for its batches ahead of time, needs no data state.
typedef struct {
    const int *train;
    int ntrain, N;
    uint64_t seed;
    long steps_per_epoch;     // ntrain / N (a partial last batch is dropped)
    long epoch[2];            // the two epochs cached (lookahead crosses one boundary)
    int *perm[2];
    int next;                 // cache slot to replace next
} BatchOrder;

int batch_order_init(BatchOrder *o, const int *train, int ntrain, int N, uint64_t seed);
void batch_order_free(BatchOrder *o);
// idx[0..N) = the clips of the batch of step (0-based).
void batch_order_get(BatchOrder *o, long step, int *idx);

// ---- checkpoint files: DIR/<stage>_step_<step>.safetensors (+ .sha256) ----
void train_ckpt_path(char *out, size_t n, const char *dir, const char *stage, long step);
// After writing `path`: its sidecar, then removal of all but the newest `keep`.
// sha256 (may be NULL) receives the file's digest.
int train_ckpt_commit(const char *path, const char *dir, const char *stage, int keep, char sha256[65]);
// Removes all but the newest `keep` checkpoints of stage in dir, each sidecar first (so
// one cut short is never taken for good); unsealed_only: only those without a sidecar,
// which a rotation that a kill cut short leaves (at a stage's start).
void train_ckpt_rotate(const char *dir, const char *stage, int keep, int unsealed_only);
// The newest checkpoint of `stage` in dir whose sha256 verifies (older ones are tried
// when the newest is damaged, each failure reported as a warning). -1 when none.
int train_ckpt_latest(char *out, size_t n, const char *dir, const char *stage);
// `arg` is a checkpoint file or a run/checkpoint folder; resolves to a file that
// verifies against its sidecar.
int train_ckpt_resolve(char *out, size_t n, const char *arg, const char *stage);
// Removes the temporaries "<prefix>....tmp.<pid>" in dir that a write killed before its
// rename left (their pid is gone); the count removed.
int train_remove_stale_temps(const char *dir, const char *prefix);

// ---- the metrics log: one JSON object per line, starting {"step": N, ----
// On resume from step N, drops the lines of steps after N (written by the part of
// the interrupted run that is lost and will run again) and a last line cut short by
// the crash, rewriting the file atomically; other lines it cannot read a step from
// are kept. *last_step: the step of the last line kept, -1 if none. A missing file
// is fine.
int train_log_truncate(const char *path, long step, long *last_step);

// ---- progress ----
typedef struct {
    const char *stage;
    long total_steps;
    long first_step;       // step at start (resume), for the rate
    double t_start, t_last_print;
    int tty;               // stderr is a terminal: one line rewritten in place
    long log_every;        // not a terminal: a plain line every log_every steps
    int line_open;         // a \r line is on screen
    double deadline;       // train_now() when a time budget ends (0: none), for the ETA
} Progress;

void progress_init(Progress *p, const char *stage, long first_step, long total_steps, long log_every);
// One update after `step` (1-based count of steps done); `fmt` adds the losses.
void progress_step(Progress *p, long step, int epoch, int epochs, int clips_per_step, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
// A message on its own line (ends an open \r line first).
void progress_note(Progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
double train_now(void);   // monotonic seconds
void format_duration(char *out, size_t n, double seconds);

#endif
