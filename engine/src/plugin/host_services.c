/* The services table every expert plugin receives (see expert_abi.h).
 * Plugins never link against libmoelat, so logging and allocation reach
 * the engine only through these pointers. */
#include <stdarg.h>
#include <stdlib.h>

#include"plugin/host_ext.h"
#include "base/log.h"
#include"plugin/plugin_loader.h"

static void host_log(int level, const char *module, const char *fmt, ...) {
    if (!fmt)
        return;
    va_list ap;
    va_start(ap, fmt);
    ml_vlog(level, module ? module : "expert", fmt, ap);
    va_end(ap);
}

static void *host_alloc(size_t bytes) {
    return malloc(bytes);
}

static void host_free(void *ptr) {
    free(ptr);
}

static const moelat_host_services g_services = {
    .struct_size = sizeof(moelat_host_services),
    .log = host_log,
    .alloc = host_alloc,
    .free = host_free,
    .get_extension = ml_host_extension,
};

const moelat_host_services *ml_host_services(void) {
    return &g_services;
}
