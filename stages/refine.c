// mdgan-refine: Stage II (Refine-Net G2/D2): train, infer.
// Training arrives with its issue; today this executable answers --help.
#include <stdio.h>
#include <string.h>

#include "mdgan/error.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: mdgan-refine COMMAND [options]\n"
            "\n"
            "Stage II of MD-GAN: the Refine-Net generator G2 and its discriminator D2.\n"
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
    if (argc >= 2) fprintf(stderr, "mdgan-refine: unknown command '%s' (see mdgan-refine --help)\n", argv[1]);
    else usage(stderr);
    return MDGAN_EXIT_USAGE;
}
