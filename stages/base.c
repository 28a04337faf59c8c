// mdgan-base: Stage I (Base-Net G1/D1): train, serve, infer.
// Training arrives with its issue; today this executable answers --help.
#include <stdio.h>
#include <string.h>

#include "mdgan/error.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: mdgan-base COMMAND [options]\n"
            "\n"
            "Stage I of MD-GAN: the Base-Net generator G1 and its discriminator D1.\n"
            "No command is available yet in this version; use 'mdgan predict' to run a\n"
            "trained or converted model.\n"
            "\n"
            "exit codes: 0 success, 1 runtime failure, 2 bad usage or input\n");
}

int main(int argc, char **argv) {
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help"))) {
        usage(stdout);
        return MDGAN_EXIT_OK;
    }
    if (argc >= 2) fprintf(stderr, "mdgan-base: unknown command '%s' (see mdgan-base --help)\n", argv[1]);
    else usage(stderr);
    return MDGAN_EXIT_USAGE;
}
