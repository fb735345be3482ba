/* Config helpers shared by the engine, the CLI and the config fuzzer. */
#ifndef MOELAT_CONFIG_PARSE_H
#define MOELAT_CONFIG_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include "moelat/moelat.h"
#include "moelat/util.h"

/* The ranges of moelat/util.h, under the engine's own prefix. */
#define ML_RADIUS_RATIO_MIN MOELAT_RADIUS_RATIO_MIN
#define ML_RADIUS_RATIO_MAX MOELAT_RADIUS_RATIO_MAX
#define ML_BAND_RATIO_MIN MOELAT_BAND_RATIO_MIN
#define ML_BAND_RATIO_MAX MOELAT_BAND_RATIO_MAX
#define ML_MAX_CNF_STEPS MOELAT_MAX_CNF_STEPS
#define ML_MAX_THREADS MOELAT_MAX_THREADS

/* Parses "XxYxZ" (three positive integers, 'x' or 'X' between them) into
 * out[0..2]; out is untouched on error. Returns 0 or -1. */
int ml_parse_dims(const char *s, int32_t out[3], char *err, size_t errlen);

/* Checks a complete config (sizes positive, S even, floor(ode_hidden/4) <= S,
 * ode_hidden even, ratios ordered, strings terminated, ...). Returns 0 or -1
 * with the reason in err. */
int ml_config_validate(const moelat_config *cfg, char *err, size_t errlen);

/* Merges JSON text into cfg exactly as moelat_config_load_json() merges a
 * file; `name` stands for the file in messages. cfg is unchanged on error.
 * MOELAT_ERR_FORMAT: not JSON / not an object; MOELAT_ERR_INVALID: a key,
 * type or value is wrong, or the merged config fails ml_config_validate. */
moelat_status ml_config_load_string(const char *text, size_t len, const char *name,
                                    moelat_config *cfg, char *err, size_t errlen);

#endif
