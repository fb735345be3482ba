"""moelat/optim.h: AdamW and SGD with momentum over a flat float32
parameter vector, gradient clipping and a warm-up/cosine schedule.

moelat_optimizer_config has no struct_size: moelat/capi/_abi.py measures
the library's layout from the bytes moelat_optimizer_defaults writes (it
clears the whole struct) and checks the defaults land in the mirror's
fields.
"""
import ctypes as c

from ._common import F, P, STATUS, U64, D, fn

ADAMW = 0  # moelat_optimizer_kind
SGD = 1
KINDS = {"adamw": ADAMW, "sgd": SGD}


class OptimizerConfig(c.Structure):
    """Mirror of moelat_optimizer_config."""

    _fields_ = [
        ("kind", c.c_int32),
        ("lr", c.c_double),
        ("weight_decay", c.c_double),
        ("beta1", c.c_double),
        ("beta2", c.c_double),
        ("eps", c.c_double),
        ("momentum", c.c_double),
        ("clip_norm", c.c_double),
        ("warmup_steps", c.c_int64),
        ("total_steps", c.c_int64),
        ("min_lr", c.c_double),
    ]


_CFG = c.POINTER(OptimizerConfig)

defaults = fn("moelat_optimizer_defaults", None, _CFG, c.c_int)
create = fn("moelat_optimizer_create", STATUS, _CFG, c.c_size_t, c.POINTER(P), c.c_char_p, c.c_size_t)
destroy = fn("moelat_optimizer_destroy", None, P)
last_error = fn("moelat_optimizer_last_error", c.c_char_p, P)
step = fn("moelat_optimizer_step", STATUS, P, F, F, D)
steps = fn("moelat_optimizer_steps", c.c_uint64, P)
next_lr = fn("moelat_optimizer_next_lr", c.c_double, P)
param_count = fn("moelat_optimizer_param_count", c.c_size_t, P)
get_state = fn("moelat_optimizer_get_state", STATUS, P, U64, F, F)
set_state = fn("moelat_optimizer_set_state", STATUS, P, c.c_uint64, F, F)
save = fn("moelat_optimizer_save", STATUS, P, c.c_char_p, c.c_char_p, c.c_size_t)
load = fn("moelat_optimizer_load", STATUS, P, c.c_char_p, c.c_uint64, c.c_char_p, c.c_size_t)


def config(kind=ADAMW):
    """An OptimizerConfig with the library's defaults for kind."""
    cfg = OptimizerConfig()
    defaults(c.byref(cfg), kind)
    return cfg


def config_dict(cfg):
    """The config's fields as a dict (kind by name)."""
    out = {name: getattr(cfg, name) for name, _ in OptimizerConfig._fields_}
    out["kind"] = {v: k for k, v in KINDS.items()}.get(cfg.kind, cfg.kind)
    return out
