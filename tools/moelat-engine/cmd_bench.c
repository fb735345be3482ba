/* placeholder until the bench command lands */
#include <stdio.h>
#include "cli.h"
int cmd_bench(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "bench: not implemented yet\n"); return 1; }
