/* Logging with a level per module (see log.h), to stderr or to the
 * callback of moelat_set_log_callback. The filter starts from MOELAT_LOG,
 * parsed once; moelat_set_log_level changes it later, so it is read and
 * written under a lock (a log call is rare next to a step's work). */
#include "base/log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "moelat/moelat.h"

#define MAX_RULES 32

typedef struct log_rule {
    char module[32];
    int level;
} log_rule;

static int g_default_level = MOELAT_LOG_WARN;
static log_rule g_rules[MAX_RULES];
static int g_n_rules;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static moelat_log_callback g_callback;
static void *g_callback_arg;

static const char *level_names[] = {"error", "warn", "info", "debug"};

static int parse_level(const char *s, size_t n) {
    for (int i = 0; i < 4; i++)
        if (strlen(level_names[i]) == n && strncasecmp(s, level_names[i], n) == 0)
            return i;
    if (n == 7 && strncasecmp(s, "warning", 7) == 0)
        return MOELAT_LOG_WARN;
    return -1;
}

/* Sets module's rule (the caller holds the lock or runs once). 0, or -1
 * when the table is full. */
static int set_rule(const char *module, size_t mlen, int level) {
    for (int i = 0; i < g_n_rules; i++)
        if (strlen(g_rules[i].module) == mlen && strncmp(g_rules[i].module, module, mlen) == 0) {
            g_rules[i].level = level;
            return 0;
        }
    if (g_n_rules >= MAX_RULES)
        return -1;
    memcpy(g_rules[g_n_rules].module, module, mlen);
    g_rules[g_n_rules].module[mlen] = '\0';
    g_rules[g_n_rules].level = level;
    g_n_rules++;
    return 0;
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
            if (lvl >= 0 && mlen < sizeof g_rules[0].module)
                set_rule(p, mlen, lvl);
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
    pthread_mutex_lock(&g_lock);
    int limit = g_default_level;
    for (int i = 0; i < g_n_rules; i++)
        if (module && strcmp(g_rules[i].module, module) == 0)
            limit = g_rules[i].level;
    pthread_mutex_unlock(&g_lock);
    return level <= limit;
}

moelat_status moelat_set_log_level(const char *module, int level) {
    if (level < -1 || level > MOELAT_LOG_DEBUG)
        return MOELAT_ERR_INVALID;
    size_t mlen = module ? strlen(module) : 0;
    if (mlen >= sizeof g_rules[0].module)
        return MOELAT_ERR_INVALID;
    pthread_once(&g_once, parse_env); /* MOELAT_LOG first, so this overrides it */
    pthread_mutex_lock(&g_lock);
    int rc = 0;
    if (mlen == 0)
        g_default_level = level;
    else
        rc = set_rule(module, mlen, level);
    pthread_mutex_unlock(&g_lock);
    return rc == 0 ? MOELAT_OK : MOELAT_ERR_INVALID;
}

void moelat_set_log_callback(moelat_log_callback fn, void *arg) {
    pthread_mutex_lock(&g_lock);
    g_callback = fn;
    g_callback_arg = arg;
    pthread_mutex_unlock(&g_lock);
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
    /* Called outside the lock: the callback may log or change settings. */
    pthread_mutex_lock(&g_lock);
    moelat_log_callback fn = g_callback;
    void *arg = g_callback_arg;
    pthread_mutex_unlock(&g_lock);
    if (fn) {
        fn(arg, module ? module : "-", level, msg);
        return;
    }
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
