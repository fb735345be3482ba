/* Engine logging: levels and per-module filters from MOELAT_LOG.
 *   MOELAT_LOG=debug                     every module at debug
 *   MOELAT_LOG=batch=debug,scheduler=info,warn   per module, then the default
 * Lines go to stderr (debug lines carry a timestamp and the module), or to
 * the callback of moelat_set_log_callback (moelat.h). */
#ifndef MOELAT_LOG_H
#define MOELAT_LOG_H

#include <stdarg.h>
#include "moelat/expert_abi.h" /* enum moelat_log_level */

void ml_log(int level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void ml_vlog(int level, const char *module, const char *fmt, va_list ap);
int ml_log_enabled(int level, const char *module);

#define ML_ERROR(mod, ...) ml_log(MOELAT_LOG_ERROR, mod, __VA_ARGS__)
#define ML_WARN(mod, ...) ml_log(MOELAT_LOG_WARN, mod, __VA_ARGS__)
#define ML_INFO(mod, ...) ml_log(MOELAT_LOG_INFO, mod, __VA_ARGS__)
#define ML_DEBUG(mod, ...) ml_log(MOELAT_LOG_DEBUG, mod, __VA_ARGS__)

#endif
