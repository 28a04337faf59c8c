#include "mdgan/train.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mdgan/error.h"
#include "mdgan/fileio.h"
#include "mdgan/rng.h"

// ---- signals ----

static volatile sig_atomic_t stop_signal;
static int signal_pipe[2] = {-1, -1};

static void on_signal(int sig) {
    if (stop_signal == sig) signal(sig, SIG_DFL); // second time: let it kill us
    stop_signal = sig;
    if (signal_pipe[1] >= 0) {
        int saved = errno; // a handler must not change errno under the code it interrupted
        char c = 1;
        ssize_t w = write(signal_pipe[1], &c, 1); // a full pipe already wakes the poller
        (void)w;
        errno = saved;
    }
}

void train_install_signals(void) {
    if (signal_pipe[0] < 0 && pipe2(signal_pipe, O_NONBLOCK | O_CLOEXEC) != 0)
        signal_pipe[0] = signal_pipe[1] = -1; // the flag alone still stops the loop between steps
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int train_stop_signal(void) { return stop_signal; }

void train_request_stop(int sig) {
    if (stop_signal) return;
    stop_signal = sig;
    if (signal_pipe[1] >= 0) {
        char c = 1;
        ssize_t w = write(signal_pipe[1], &c, 1);
        (void)w;
    }
}
int train_signal_fd(void) { return signal_pipe[0]; }
int train_signal_exit_code(int sig) { return sig == SIGINT ? 130 : sig == SIGTERM ? 143 : 0; }

// ---- data order ----

int batch_order_init(BatchOrder *o, const int *train, int ntrain, int N, uint64_t seed) {
    memset(o, 0, sizeof *o);
    o->train = train, o->ntrain = ntrain, o->N = N, o->seed = seed;
    o->steps_per_epoch = N > 0 ? ntrain / N : 0;
    o->epoch[0] = o->epoch[1] = -1;
    o->perm[0] = malloc((size_t)(ntrain > 0 ? ntrain : 1) * sizeof(int));
    o->perm[1] = malloc((size_t)(ntrain > 0 ? ntrain : 1) * sizeof(int));
    if (!o->perm[0] || !o->perm[1] || o->steps_per_epoch < 1) {
        if (o->steps_per_epoch < 1) MDGAN_ERR("%d training clips are fewer than one batch of %d", ntrain, N);
        else MDGAN_ERR("out of memory for the data order");
        batch_order_free(o);
        return -1;
    }
    return 0;
}

void batch_order_free(BatchOrder *o) {
    free(o->perm[0]), free(o->perm[1]);
    memset(o, 0, sizeof *o);
}

void batch_order_get(BatchOrder *o, long step, int *idx) {
    long epoch = step / o->steps_per_epoch, b = step % o->steps_per_epoch;
    int k = o->epoch[0] == epoch ? 0 : o->epoch[1] == epoch ? 1 : -1;
    if (k < 0) {
        // Fisher-Yates over the training clips, seeded by (seed, epoch)
        k = o->next, o->next ^= 1, o->epoch[k] = epoch;
        Rng r;
        rng_seed(&r, o->seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)(epoch + 1)));
        int *p = o->perm[k];
        memcpy(p, o->train, (size_t)o->ntrain * sizeof(int));
        for (int i = o->ntrain - 1; i > 0; i--) {
            int j = (int)rng_below(&r, (uint64_t)i + 1), t = p[i];
            p[i] = p[j], p[j] = t;
        }
    }
    memcpy(idx, o->perm[k] + b * o->N, (size_t)o->N * sizeof(int));
}

// ---- checkpoint files ----

void train_ckpt_path(char *out, size_t n, const char *dir, const char *stage, long step) {
    snprintf(out, n, "%s/%s_step_%08ld.safetensors", dir, stage, step);
}

// Steps of the checkpoints of `stage` in dir, newest first; returns the count (<= max).
static int list_steps(const char *dir, const char *stage, long *steps, int max) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    char prefix[128];
    snprintf(prefix, sizeof prefix, "%s_step_", stage);
    size_t plen = strlen(prefix);
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d)) && count < max) {
        if (strncmp(e->d_name, prefix, plen) != 0) continue;
        char *end;
        long step = strtol(e->d_name + plen, &end, 10);
        if (end == e->d_name + plen || strcmp(end, ".safetensors") != 0) continue;
        steps[count++] = step;
    }
    closedir(d);
    for (int i = 1; i < count; i++) // insertion sort, descending
        for (int j = i; j > 0 && steps[j] > steps[j - 1]; j--) {
            long t = steps[j];
            steps[j] = steps[j - 1], steps[j - 1] = t;
        }
    return count;
}

int train_ckpt_commit(const char *path, const char *dir, const char *stage, int keep, char sha256[65]) {
    if (fio_write_sha256_sidecar(path, sha256) != 0) return -1;
    train_ckpt_rotate(dir, stage, keep, 0);
    return 0;
}

void train_ckpt_rotate(const char *dir, const char *stage, int keep, int unsealed_only) {
    long steps[4096];
    int n = list_steps(dir, stage, steps, 4096);
    for (int i = keep; i < n; i++) {
        char old[4096], side[4200];
        train_ckpt_path(old, sizeof old, dir, stage, steps[i]);
        snprintf(side, sizeof side, "%s.sha256", old);
        if (unsealed_only && access(side, F_OK) == 0) continue;
        // sidecar first: a checkpoint without one is never taken for a good one
        if ((unlink(side) != 0 && access(side, F_OK) == 0) || (unlink(old) != 0 && access(old, F_OK) == 0))
            fprintf(stderr, "mdgan: warning: could not remove old checkpoint %s\n", old);
    }
}

int train_ckpt_latest(char *out, size_t n, const char *dir, const char *stage) {
    long steps[4096];
    int count = list_steps(dir, stage, steps, 4096);
    for (int i = 0; i < count; i++) {
        train_ckpt_path(out, n, dir, stage, steps[i]);
        if (fio_verify_sha256_sidecar(out) == 0) return 0;
        fprintf(stderr, "mdgan: warning: skipping checkpoint: %s\n", mdgan_errmsg());
    }
    MDGAN_ERR("no %s checkpoint that verifies in %s", stage, dir);
    return -1;
}

int train_ckpt_resolve(char *out, size_t n, const char *arg, const char *stage) {
    struct stat st;
    if (stat(arg, &st) != 0) {
        MDGAN_ERR("--resume %s: no such file or folder", arg);
        return -1;
    }
    if (S_ISDIR(st.st_mode)) {
        // a run folder holds checkpoints/; a checkpoint folder holds them directly
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/checkpoints", arg);
        if (stat(sub, &st) == 0 && S_ISDIR(st.st_mode)) return train_ckpt_latest(out, n, sub, stage);
        return train_ckpt_latest(out, n, arg, stage);
    }
    snprintf(out, n, "%s", arg);
    if (fio_verify_sha256_sidecar(out) != 0) return -1;
    return 0;
}

int train_remove_stale_temps(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        const char *tmp = strstr(e->d_name, ".tmp.");
        char *end;
        const long pid = tmp ? strtol(tmp + 5, &end, 10) : 0;
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0 || pid <= 0 || *end ||
            kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        n += unlink(path) == 0;
    }
    if (d) closedir(d);
    return n;
}

// ---- progress ----

double train_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void format_duration(char *out, size_t n, double s) {
    if (!(s >= 0) || s > 1e8) {
        snprintf(out, n, "?");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(out, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60) snprintf(out, n, "%ldm%02lds", t / 60, t % 60);
    else snprintf(out, n, "%lds", t);
}

void progress_init(Progress *p, const char *stage, long first_step, long total_steps, long log_every) {
    memset(p, 0, sizeof *p);
    p->stage = stage, p->first_step = first_step, p->total_steps = total_steps;
    p->log_every = log_every > 0 ? log_every : 10;
    p->tty = isatty(STDERR_FILENO);
    p->t_start = p->t_last_print = train_now();
}

void progress_step(Progress *p, long step, int epoch, int epochs, int clips_per_step, const char *fmt, ...) {
    double now = train_now();
    int last = step == p->total_steps;
    if (p->tty ? (now - p->t_last_print < 0.2 && !last) : (step % p->log_every != 0 && !last)) return;
    p->t_last_print = now;
    long done = step - p->first_step;
    double elapsed = now - p->t_start;
    double rate = elapsed > 0 ? done / elapsed : 0; // steps/s
    char eta[32], losses[256];
    double left = rate > 0 ? (p->total_steps - step) / rate : -1;
    if (p->deadline > 0 && (left < 0 || p->deadline - now < left)) left = p->deadline > now ? p->deadline - now : 0;
    format_duration(eta, sizeof eta, left);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(losses, sizeof losses, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s%s: epoch %d/%d step %ld/%ld | %.2f clips/s | ETA %s | %s%s", p->tty ? "\r" : "", p->stage,
            epoch, epochs, step, p->total_steps, rate * clips_per_step, eta, losses, p->tty ? "\033[K" : "\n");
    p->line_open = p->tty;
    fflush(stderr);
}

void progress_note(Progress *p, const char *fmt, ...) {
    if (p && p->line_open) fputc('\n', stderr), p->line_open = 0;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
}

int train_log_truncate(const char *path, long step, long *last_step) {
    unsigned char *buf;
    size_t len;
    struct stat st;
    *last_step = -1;
    if (stat(path, &st) != 0 && errno == ENOENT) return 0;
    if (fio_read_all(path, &buf, &len) != 0) return -1;
    // compact the buffer over the dropped lines
    size_t out = 0, dropped = 0;
    for (size_t i = 0; i < len;) {
        size_t end = i;
        while (end < len && buf[end] != '\n') end++;
        if (end == len) { // no newline: the append was cut short
            dropped++;
            break;
        }
        end++;
        static const char key[] = "{\"step\": ";
        const char *num = (const char *)buf + i + sizeof key - 1;
        char *num_end = NULL;
        long s = end - i > sizeof key && !memcmp(buf + i, key, sizeof key - 1) ? strtol(num, &num_end, 10) : 0;
        int has_step = num_end && num_end != num;
        if (has_step && s > step) {
            dropped++;
        } else {
            if (has_step) *last_step = s;
            memmove(buf + out, buf + i, end - i);
            out += end - i;
        }
        i = end;
    }
    int rc = 0;
    if (dropped) {
        const void *bufs[1] = {buf};
        rc = fio_write_atomic(path, bufs, &out, 1);
    }
    free(buf);
    return rc;
}
