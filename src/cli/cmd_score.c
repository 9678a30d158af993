/* cmd_score.c: `tutor score`. Not built yet: it says so and exits non-zero. */
#include <stdio.h>
#include <string.h>

#include "tutor/cli.h"

int cmd_score(int argc, char **argv) {
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: tutor score ...\n\nnot yet: this command arrives with a later issue\n");
        return 0;
    }
    fprintf(stderr, "tutor: score: not yet implemented\n");
    return 2;
}
