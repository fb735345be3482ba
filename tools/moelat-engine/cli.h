/* moelat-engine: one function per subcommand, dispatched by main.c. Each
 * takes its own argv (argv[0] is the subcommand) and returns the exit code:
 * 0 success, 1 failure, 2 usage error. */
#ifndef MOELAT_CLI_H
#define MOELAT_CLI_H

int cmd_devices(int argc, char **argv);
int cmd_plugins(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_grad(int argc, char **argv);
int cmd_train(int argc, char **argv);

#endif
