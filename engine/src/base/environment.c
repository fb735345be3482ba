/* Every environment variable of the library but MOELAT_LOG (environment.h). */
#include "base/environment.h"

#include <stdio.h>
#include <stdlib.h>

const char *ml_env_device(void) { return getenv("MOELAT_DEVICE"); }
const char *ml_env_host_optimizer(void) { return getenv("MOELAT_HOST_OPTIMIZER"); }

const char *ml_env_host_grad_sum(void) { return getenv("MOELAT_HOST_GRAD_SUM"); }

const char *ml_env_plugin_path(void) { return getenv("MOELAT_PLUGIN_PATH"); }

const char *ml_env_cache_dir(char *buf, size_t len) {
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    int n;
    /* The XDG spec says a relative XDG_CACHE_HOME is invalid: ignore it. */
    if (xdg && xdg[0] == '/')
        n = snprintf(buf, len, "%s/moelat", xdg);
    else if (home && *home)
        n = snprintf(buf, len, "%s/.cache/moelat", home);
    else
        return NULL;
    if (n < 0 || (size_t)n >= len)
        return NULL;
    return buf;
}

#ifdef MOELAT_TEST_HOOKS
const char *ml_env_test_fault(void) { return getenv("MOELAT_FAULT"); }
const char *ml_env_test_kill_before_rename(void) { return getenv("MOELAT_TEST_KILL_BEFORE_RENAME"); }
#else
const char *ml_env_test_fault(void) { return NULL; }
const char *ml_env_test_kill_before_rename(void) { return NULL; }
#endif
