#include "mdgan/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Thread-local so that OpenMP workers or a transport thread cannot garble the
// message of another thread.
static _Thread_local char err_msg[1024];
static _Thread_local const char *err_src_file;
static _Thread_local int err_src_line;

void mdgan_seterr_at(const char *src_file, int src_line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_msg, sizeof err_msg, fmt, ap);
    va_end(ap);
    err_src_file = src_file;
    err_src_line = src_line;
}

void mdgan_errctx(const char *fmt, ...) {
    char ctx[512], old[sizeof err_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof ctx, fmt, ap);
    va_end(ap);
    memcpy(old, err_msg, sizeof old);
    // build "ctx: old" piecewise; a message longer than the buffer is cut, never overrun
    size_t n = strlen(ctx);
    if (n > sizeof err_msg - 3) n = sizeof err_msg - 3;
    memcpy(err_msg, ctx, n);
    memcpy(err_msg + n, ": ", 2);
    size_t room = sizeof err_msg - n - 3, m = strlen(old);
    if (m > room) m = room;
    memcpy(err_msg + n + 2, old, m);
    err_msg[n + 2 + m] = '\0';
}

const char *mdgan_errmsg(void) { return err_msg; }

void mdgan_errclear(void) {
    err_msg[0] = '\0';
    err_src_file = NULL;
    err_src_line = 0;
}

void mdgan_errprint(const char *prog) {
    const char *msg = err_msg[0] ? err_msg : "unknown error";
    if (getenv("MDGAN_DEBUG") && err_src_file)
        fprintf(stderr, "%s: %s (at %s:%d)\n", prog, msg, err_src_file, err_src_line);
    else
        fprintf(stderr, "%s: %s\n", prog, msg);
}

void mdgan_loop_fail(MdganLoopError *e, long item) {
#pragma omp critical(mdgan_loop_error)
    if (e->item < 0 || item < e->item) {
        snprintf(e->msg, sizeof e->msg, "%s", err_msg[0] ? err_msg : "failed");
#pragma omp atomic write
        e->item = item;
    }
}

int mdgan_loop_skip(const MdganLoopError *e, long item) {
    long failed;
#pragma omp atomic read
    failed = e->item;
    return failed >= 0 && failed < item;
}

int mdgan_loop_error(const MdganLoopError *e) {
    if (e->item < 0) return 0;
    MDGAN_ERR("%s", e->msg);
    return -1;
}
