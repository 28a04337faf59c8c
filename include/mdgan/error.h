#ifndef MDGAN_ERROR_H
#define MDGAN_ERROR_H
// One error channel for the whole library: a failing function leaves a message
// here and returns -1 (or NULL); only main() decides to print and exit.
// The message is meant for the user: name the file, tensor, line or field at fault.
// The source location (file:line of the code that failed) is kept beside it and
// printed when MDGAN_DEBUG is set in the environment.

#include <stdarg.h>

// Exit codes every executable uses.
enum { MDGAN_EXIT_OK = 0, MDGAN_EXIT_RUNTIME = 1, MDGAN_EXIT_USAGE = 2 };

void mdgan_seterr_at(const char *src_file, int src_line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define MDGAN_ERR(...) mdgan_seterr_at(__FILE__, __LINE__, __VA_ARGS__)

// Prepend context to the current message: "ctx: old message".
void mdgan_errctx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

const char *mdgan_errmsg(void);     // "" when no error was set
void mdgan_errclear(void);
// Print "prog: message" (and the source location under MDGAN_DEBUG) on stderr.
void mdgan_errprint(const char *prog);

// The failure of a parallel loop's items, reported as the failure of the loop: the
// lowest failing item's message (whichever thread ran it, and whenever), so the error
// does not depend on the thread count. Start with MDGAN_LOOP_ERROR_INIT; a failing item
// calls mdgan_loop_fail(&e, item) with its message set (thread-safe); an item may skip
// its work when mdgan_loop_skip(&e, item) (an earlier item failed: the lowest failing
// item always runs). After the loop, mdgan_loop_error(&e) sets the calling thread's
// message and returns -1, or returns 0 when no item failed.
typedef struct {
    long item; // lowest failing item, -1 for none
    char msg[1024];
} MdganLoopError;
#define MDGAN_LOOP_ERROR_INIT {-1, ""}
void mdgan_loop_fail(MdganLoopError *e, long item);
int mdgan_loop_skip(const MdganLoopError *e, long item);
int mdgan_loop_error(const MdganLoopError *e);

#endif
