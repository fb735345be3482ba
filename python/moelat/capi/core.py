"""moelat/moelat.h: the lattice, its config, report, files, checkpoints,
slabs and weights, the log, and the ABI queries (status names, version,
struct sizes).

The struct mirrors moelat_config, moelat_report, moelat_hidden_size and
moelat_path_stats are moelat/_lib.py's (Config, Report, HiddenSize,
PathStats), which checks them against the library; the functions are
declared here again, all of them, on function objects of their own.
"""
import ctypes as c

from .. import _lib
from ._common import F, P, STATUS, U64, fn

VERSION = "0.1.0"
ABI_VERSION = 1
BANDS = 3
EXT_SIZE = 16
MAX_PLUGIN_PATHS = 8
MAX_FALLBACK_REASONS = 8
RESUME_KEEP_WEIGHTS = 1

# moelat_status, as moelat.h numbers it; moelat/capi/_abi.py checks each
# name against moelat_status_name() at import.
OK = 0
ERR_INVALID = 1
ERR_IO = 2
ERR_FORMAT = 3
ERR_NOMEM = 4
ERR_DEVICE = 5
ERR_PLUGIN = 6
ERR_NONFINITE = 7
ERR_MISMATCH = 8
STATUS_NAMES = {number: name for name, number in _lib.STATUS.items()}  # moelat/_lib.py's table

MODE_PERCELL, MODE_BATCH, MODE_AUTO = 0, 1, 2  # moelat_mode
CNF_EULER, CNF_LIPSCHITZ = 0, 1  # moelat_cnf_mode

HiddenSize = _lib.HiddenSize
Config = _lib.Config
PathStats = _lib.PathStats
Report = _lib.Report
LOG_CALLBACK = _lib.LOG_CALLBACK  # moelat_log_callback
PLANES_READY = c.CFUNCTYPE(None, c.c_void_p)  # moelat_planes_ready

_CFG = c.POINTER(Config)


def config_init(cfg):
    """moelat_config_init (header-inline): zeroes cfg and sets its
    struct_size where the mirror has one."""
    c.memset(c.byref(cfg), 0, c.sizeof(cfg))
    if hasattr(type(cfg), "struct_size"):
        cfg.struct_size = c.sizeof(cfg)
    return cfg


def report_init(rep):
    """moelat_report_init (header-inline)."""
    c.memset(c.byref(rep), 0, c.sizeof(rep))
    if hasattr(type(rep), "struct_size"):
        rep.struct_size = c.sizeof(rep)
    return rep


# ABI queries
status_name = fn("moelat_status_name", c.c_char_p, c.c_int)
version = fn("moelat_version", c.c_char_p)
struct_size = fn("moelat_struct_size", c.c_uint32, c.c_char_p)

# config
band_name = fn("moelat_band_name", c.c_char_p, c.c_int)
config_preset = fn("moelat_config_preset", STATUS, c.c_char_p, _CFG, c.c_char_p, c.c_size_t)
config_load_json = fn("moelat_config_load_json", STATUS, c.c_char_p, _CFG, c.c_char_p, c.c_size_t)
config_hidden = fn("moelat_config_hidden", c.c_int32, _CFG, c.c_char_p, c.c_int32)
config_set_hidden = fn("moelat_config_set_hidden", STATUS, _CFG, c.c_char_p, c.c_int32)
config_radius = fn("moelat_config_radius", c.c_double, _CFG)

# logging
set_log_callback = fn("moelat_set_log_callback", None, LOG_CALLBACK, c.c_void_p)
set_log_level = fn("moelat_set_log_level", STATUS, c.c_char_p, c.c_int)

# the lattice
lattice_create = fn("moelat_lattice_create", STATUS, _CFG, c.POINTER(P), c.c_char_p, c.c_size_t)
lattice_destroy = fn("moelat_lattice_destroy", None, P)
last_error = fn("moelat_last_error", c.c_char_p, P)
lattice_config = fn("moelat_lattice_config", _CFG, P)
cell_count = fn("moelat_cell_count", c.c_size_t, P)
state_size = fn("moelat_state_size", c.c_int32, P)
step_count = fn("moelat_step_count", c.c_uint64, P)
step = fn("moelat_step", STATUS, P, c.c_int)
get_states = fn("moelat_get_states", STATUS, P, F, c.c_size_t)
set_states = fn("moelat_set_states", STATUS, P, F, c.c_size_t)
set_external_input = fn("moelat_set_external_input", STATUS, P, F, c.c_size_t)
get_outputs = fn("moelat_get_outputs", STATUS, P, F, c.c_size_t)
load_weights = fn("moelat_load_weights", STATUS, P, c.c_char_p)
save_weights = fn("moelat_save_weights", STATUS, P, c.c_char_p)
load_states = fn("moelat_load_states", STATUS, P, c.c_char_p)
save_states = fn("moelat_save_states", STATUS, P, c.c_char_p)
set_mode = fn("moelat_set_mode", STATUS, P, c.c_int)
get_mode = fn("moelat_get_mode", c.c_int, P)
upgrade_to_batch = fn("moelat_upgrade_to_batch", STATUS, P)
device_name = fn("moelat_device_name", c.c_char_p, P)
get_report = fn("moelat_get_report", STATUS, P, c.POINTER(Report))
reset_report = fn("moelat_reset_report", None, P)

# checkpoints
save_checkpoint = fn("moelat_save_checkpoint", STATUS, P, c.c_char_p)
resume_checkpoint = fn("moelat_resume_checkpoint", STATUS, P, c.c_char_p)
resume_checkpoint_ex = fn("moelat_resume_checkpoint_ex", STATUS, P, c.c_char_p, c.c_uint)
checkpoint_config = fn("moelat_checkpoint_config", STATUS, c.c_char_p, _CFG, U64, c.c_char_p, c.c_size_t)
weights_digest = fn("moelat_weights_digest", c.c_uint64, P)

# slabs
lattice_set_active_planes = fn("moelat_lattice_set_active_planes", STATUS, P, c.c_int32, c.c_int32)
lattice_active_planes = fn("moelat_lattice_active_planes", None, P, c.POINTER(c.c_int32), c.POINTER(c.c_int32))
lattice_get_planes = fn("moelat_lattice_get_planes", STATUS, P, c.c_int32, c.c_int32, F, c.c_size_t)
lattice_set_planes = fn("moelat_lattice_set_planes", STATUS, P, c.c_int32, c.c_int32, F, c.c_size_t)
lattice_deliver_planes = fn("moelat_lattice_deliver_planes", STATUS, P, c.c_int32, c.c_int32, F, c.c_size_t,
                            PLANES_READY, c.c_void_p)
lattice_halo_depth = fn("moelat_lattice_halo_depth", c.c_int32, P)

# weights as one flat array
weights_count = fn("moelat_weights_count", c.c_size_t, P)
get_weights = fn("moelat_get_weights", STATUS, P, F, c.c_size_t)
set_weights = fn("moelat_set_weights", STATUS, P, F, c.c_size_t)

__all__ = [n for n in dir() if not n.startswith("_") and n not in ("c", "fn", "F", "P", "STATUS", "U64")]
