/* Logging to stderr with a level per module (see log.h). The filter is
 * parsed from MOELAT_LOG once; it is read-only afterwards. */
#include "log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MAX_RULES 16

typedef struct log_rule {
    char module[32];
    int level;
} log_rule;

static int g_default_level = MOELAT_LOG_WARN;
static log_rule g_rules[MAX_RULES];
static int g_n_rules;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static const char *level_names[] = {"error", "warn", "info", "debug"};

static int parse_level(const char *s, size_t n) {
    for (int i = 0; i < 4; i++)
        if (strlen(level_names[i]) == n && strncasecmp(s, level_names[i], n) == 0)
            return i;
    if (n == 7 && strncasecmp(s, "warning", 7) == 0)
        return MOELAT_LOG_WARN;
    return -1;
}

static void parse_env(void) {
    const char *env = getenv("MOELAT_LOG");
    if (!env)
        return;
    const char *p = env;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        if (eq) {
            size_t mlen = (size_t)(eq - p);
            int lvl = parse_level(eq + 1, len - mlen - 1);
            if (lvl >= 0 && g_n_rules < MAX_RULES && mlen < sizeof g_rules[0].module) {
                memcpy(g_rules[g_n_rules].module, p, mlen);
                g_rules[g_n_rules].module[mlen] = '\0';
                g_rules[g_n_rules].level = lvl;
                g_n_rules++;
            }
        } else {
            int lvl = parse_level(p, len);
            if (lvl >= 0)
                g_default_level = lvl;
        }
        p += len;
        if (*p == ',')
            p++;
    }
}

int ml_log_enabled(int level, const char *module) {
    pthread_once(&g_once, parse_env);
    int limit = g_default_level;
    for (int i = 0; i < g_n_rules; i++)
        if (module && strcmp(g_rules[i].module, module) == 0)
            limit = g_rules[i].level;
    return level <= limit;
}

void ml_vlog(int level, const char *module, const char *fmt, va_list ap) {
    if (level < 0)
        level = 0;
    if (level > MOELAT_LOG_DEBUG)
        level = MOELAT_LOG_DEBUG;
    if (!ml_log_enabled(level, module))
        return;
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (level == MOELAT_LOG_DEBUG) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        fprintf(stderr, "%02d:%02d:%02d.%03ld moelat debug [%s] %s\n", tm.tm_hour, tm.tm_min,
                tm.tm_sec, ts.tv_nsec / 1000000, module ? module : "-", msg);
    } else {
        fprintf(stderr, "moelat %s [%s]: %s\n", level_names[level], module ? module : "-", msg);
    }
}

void ml_log(int level, const char *module, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    ml_vlog(level, module, fmt, ap);
    va_end(ap);
}
