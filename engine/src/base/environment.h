/* The environment variables the library reads, in one place (log.c reads
 * MOELAT_LOG itself, before anything else runs). Tuning knobs are not
 * here: they arrive in moelat_config.tuning, which the CLI fills from the
 * MOELAT_* tuning variables. */
#ifndef MOELAT_ENVIRONMENT_H
#define MOELAT_ENVIRONMENT_H

#include <stddef.h>

/* MOELAT_DEVICE: the device when the config names none, or NULL. */
const char *ml_env_device(void);
/* MOELAT_HOST_OPTIMIZER: set and not "0" keeps training's optimizer on
 * the host (train_optim.c). */
const char *ml_env_host_optimizer(void);
/* MOELAT_HOST_GRAD_SUM: "1" (not "0"): with the device optimizer, each
 * sample's dL/dW is read back and the mini-batch summed on the host, then
 * uploaded (the path before the sum stayed on the device), or NULL. */
const char *ml_env_host_grad_sum(void);
/* MOELAT_PLUGIN_PATH: extra plugin paths, colon-separated, or NULL. */
const char *ml_env_plugin_path(void);
/* The kernel cache directory: $XDG_CACHE_HOME/moelat (absolute only, as
 * the XDG spec says), else $HOME/.cache/moelat; NULL when neither is set
 * or buf is too small. */
const char *ml_env_cache_dir(char *buf, size_t len);

/* Test-only hooks, compiled in with the CMake option MOELAT_TEST_HOOKS
 * (on by default, since the test suite needs them); NULL without it. */
/* MOELAT_FAULT: OpenCL calls to fail (cl_fault.c). */
const char *ml_env_test_fault(void);
/* MOELAT_TEST_KILL_BEFORE_RENAME: kill before renaming a file whose name
 * contains it (atomic_file.c). */
const char *ml_env_test_kill_before_rename(void);

#endif
