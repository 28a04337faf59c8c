#ifndef MDGAN_CLI_H
#define MDGAN_CLI_H
// Small helpers the executables share: checked number parsing for options and the
// thread setting that keeps OpenMP and OpenBLAS from oversubscribing the cores.

#include <stdio.h>

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

// An executable's commands: main() = cli_main(PROG, argc, argv, COMMANDS, usage).
typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);   // argv[0] = the command; returns the exit code
} CliCommand;
// Runs the command argv[1] (cmds ends with {NULL, NULL}); --help/-h/help prints usage.
// A failing command's message is printed as "prog: message" (exit 1 and 2).
int cli_main(const char *prog, int argc, char **argv, const CliCommand *cmds, void (*usage)(FILE *));

// The options of a stage's `infer` command:
//   --checkpoint FILE --<input_opt> DIR --out DIR [--frames T] [--size S]
//   [--bn running|batch] [--threads N] [--help]
typedef struct {
    const char *checkpoint, *input, *out;
    int frames, size, threads;   // 0: not given
    BnMode bn;                   // BN_RUNNING unless given
} CliInferArgs;
// Returns -1 to go on, else the exit code to return: 0 after --help (printed with
// usage), 2 with a message naming the bad or missing option.
int cli_parse_infer(CliInferArgs *a, int argc, char **argv, const char *input_opt, const char *prog,
                    void (*usage)(FILE *));

#endif
