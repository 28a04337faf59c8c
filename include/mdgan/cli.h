#ifndef MDGAN_CLI_H
#define MDGAN_CLI_H
// Small helpers the executables share: checked number parsing for options and the
// thread setting that keeps OpenMP and OpenBLAS from oversubscribing the cores.

#include "mdgan/net.h"

// Parses an integer option value in [lo, hi]; -1 with "--opt: 'v' is not an integer
// from lo to hi" otherwise.
int cli_int(const char *opt, const char *value, long lo, long hi, int *out);
// --bn: "running" or "batch".
int cli_bn_mode(const char *value, BnMode *out);
// OpenMP and OpenBLAS each get n threads (n <= 0: the number of cores). Our OpenMP
// loops never call BLAS, and BLAS is never called from inside them, so the two pools
// take turns rather than compete.
void cli_set_threads(int n);
int cli_threads(void);

#endif
