/* placeholder until the check command lands */
#include <stdio.h>
#include "cli.h"
int cmd_check(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "check: not implemented yet\n"); return 1; }
