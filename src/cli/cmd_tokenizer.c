/* cmd_tokenizer.c: `tutor tokenizer`. Not built yet: it says so and exits non-zero. */
#include <stdio.h>
#include <string.h>

#include "tutor/cli.h"

int cmd_tokenizer(int argc, char **argv) {
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: tutor tokenizer ...\n\nnot yet: this command arrives with a later issue\n");
        return 0;
    }
    fprintf(stderr, "tutor: tokenizer: not yet implemented\n");
    return 2;
}
