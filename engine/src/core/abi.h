/* The public structs that carry a struct_size (moelat.h, "Versioned
 * structs"): which sizes the library accepts, and the copies between a
 * caller's struct and the library's own layout. */
#ifndef MOELAT_CORE_ABI_H
#define MOELAT_CORE_ABI_H

#include <stddef.h>
#include <stdint.h>

#include "moelat/moelat.h"

typedef enum ml_abi_struct {
    ML_ABI_CONFIG,
    ML_ABI_REPORT,
    ML_ABI_DEVICE_INFO,
    ML_ABI_SLAB_INFO,
    ML_ABI_COUNT
} ml_abi_struct;

/* The bytes of the caller's struct the library may read and write: the end
 * of the largest layout within struct_size. 0 when struct_size is below
 * the first layout or above the library's, with err naming the struct. */
size_t ml_abi_size(ml_abi_struct which, uint32_t struct_size, char *err, size_t errlen);

/* Writes the library's filled struct src into the caller's dst: the first
 * n bytes (from ml_abi_size), dst's struct_size kept. */
void ml_abi_export(void *dst, const void *src, size_t n);

/* The caller's cfg in the library's layout: the fields within its
 * struct_size, the later ones zero (their defaults), struct_size the
 * library's. MOELAT_ERR_INVALID with err when cfg is NULL or its
 * struct_size is refused. */
moelat_status ml_config_import(moelat_config *full, const moelat_config *cfg, char *err, size_t errlen);
/* Writes full back into the caller's cfg. MOELAT_ERR_INVALID (cfg
 * unchanged) when full sets a field cfg's struct_size does not hold. */
moelat_status ml_config_export(moelat_config *cfg, const moelat_config *full, char *err, size_t errlen);

#endif
