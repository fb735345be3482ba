"""Finds libmoelat and declares its public C API for ctypes.

ctypes rather than cffi or a compiled module: the API is a small set of
plain C functions and structs, ctypes ships with every Python, and nothing
has to be compiled for the package itself, so Debian's python3 can import
it straight from the source tree.

The library is looked up, first found wins:
  1. MOELAT_LIBRARY: the path of libmoelat.so;
  2. the path recorded when the package was pip-installed (_build_config);
  3. the repository's build tree beside this package (../../build/engine);
  4. MOELAT_PREFIX/lib*/ and the system's search path (an installed engine,
     `cmake --install`: /usr/local/lib is searched by ld.so.conf on Debian).
"""
import ctypes
import ctypes.util
import glob
import os

BANDS = 3
EXT_SIZE = 16
MAX_PLUGIN_PATHS = 8
MAX_FALLBACK_REASONS = 8

_HERE = os.path.dirname(os.path.abspath(__file__))


def _candidates():
    env = os.environ.get("MOELAT_LIBRARY")
    if env:
        yield env, "MOELAT_LIBRARY"
        return  # an explicit choice is never second-guessed
    try:
        from . import _build_config  # written by setup.py at install time

        if _build_config.LIBRARY:
            yield _build_config.LIBRARY, "recorded at install"
    except ImportError:
        pass
    yield os.path.join(_HERE, "..", "..", "build", "engine", "libmoelat.so"), "build tree"
    prefix = os.environ.get("MOELAT_PREFIX")
    if prefix:
        for lib in sorted(glob.glob(os.path.join(prefix, "lib*", "**", "libmoelat.so*"), recursive=True)):
            yield lib, "MOELAT_PREFIX"
    for prefix in ("/usr/local", "/usr"):
        for lib in sorted(glob.glob(os.path.join(prefix, "lib*", "**", "libmoelat.so*"), recursive=True)):
            yield lib, "installed prefix"
    found = ctypes.util.find_library("moelat")
    if found:
        yield found, "system search path"


def _load():
    tried = []
    for path, why in _candidates():
        if why != "system search path" and not os.path.exists(path):
            tried.append(f"{path} ({why}: absent)")
            continue
        try:
            return ctypes.CDLL(path), os.path.realpath(path) if os.path.exists(path) else path
        except OSError as e:
            tried.append(f"{path} ({why}: {e})")
    raise ImportError(
        "moelat: libmoelat.so not found; build it (tools/scripts/setup.sh) or set MOELAT_LIBRARY. Tried: "
        + "; ".join(tried)
    )


lib, LIBRARY_PATH = _load()


class HiddenSize(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char * 32), ("value", ctypes.c_int32)]


class _Versioned(ctypes.Structure):
    """A versioned struct (moelat.h): struct_size, first, is this mirror's
    size unless given, so the library fills exactly this layout."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("struct_size", ctypes.sizeof(type(self)))
        super().__init__(*args, **kwargs)


class Config(_Versioned):
    """Mirror of moelat_config (moelat.h); field order and types must match."""

    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("preset", ctypes.c_char * 32),
        ("dims", ctypes.c_int32 * 3),
        ("state_size", ctypes.c_int32),
        ("radius_ratio", ctypes.c_double),
        ("band_ratio", ctypes.c_double * 3),
        ("hidden", HiddenSize * 16),
        ("n_hidden", ctypes.c_int32),
        ("expert", (ctypes.c_char * 64) * BANDS),
        ("cnf_mode", ctypes.c_int32),
        ("cnf_steps", ctypes.c_int32),
        ("seed", ctypes.c_uint64),
        ("threads", ctypes.c_int32),
        ("mode", ctypes.c_int32),
        ("batch_threshold", ctypes.c_int32),
        ("chunk", ctypes.c_int32 * 3),
        ("queues", ctypes.c_int32),
        ("profile", ctypes.c_int32),
        ("device", ctypes.c_char * 128),
        ("plugin_paths", (ctypes.c_char * 512) * MAX_PLUGIN_PATHS),
        ("n_plugin_paths", ctypes.c_int32),
        ("tuning", ctypes.c_char * 512),
    ]


class PathStats(ctypes.Structure):
    _fields_ = [
        ("chunks", ctypes.c_uint64),
        ("total_cells", ctypes.c_uint64),
        ("total_time_ms", ctypes.c_double),
        ("avg_time_ms", ctypes.c_double),
        ("avg_cells", ctypes.c_double),
        ("avg_cells_per_ms", ctypes.c_double),
    ]


class Report(_Versioned):
    """Mirror of moelat_report (moelat.h)."""

    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("steps", ctypes.c_uint64),
        ("total_chunks_processed", ctypes.c_uint64),
        ("batch_chunks", ctypes.c_uint64),
        ("percell_chunks", ctypes.c_uint64),
        ("batch_stats", PathStats),
        ("percell_stats", PathStats),
        ("speedup", ctypes.c_double),
        ("expert_name", (ctypes.c_char * 64) * BANDS),
        ("expert_calls", ctypes.c_uint64 * BANDS),
        ("expert_device_ms", ctypes.c_double * BANDS),
        ("aggregate_device_ms", ctypes.c_double),
        ("gate_device_ms", ctypes.c_double),
        ("precompute_device_ms", ctypes.c_double),
        ("profiled", ctypes.c_int32),
        ("fallbacks", ctypes.c_uint64),
        ("n_fallback_reasons", ctypes.c_int32),
        ("fallback_reason", (ctypes.c_char * 256) * MAX_FALLBACK_REASONS),
        ("fallback_count", ctypes.c_uint64 * MAX_FALLBACK_REASONS),
        ("routed_cells", ctypes.c_uint64),
        ("gate_weight_mean", ctypes.c_double * BANDS),
        ("gate_top_share", ctypes.c_double * BANDS),
        ("path", ctypes.c_char * 16),
        ("path_reason", ctypes.c_char * 256),
        ("grad_builds", ctypes.c_uint64),
        ("grad_recording_allocs", ctypes.c_uint64),
    ]


LOG_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p)

_c = ctypes
_P = ctypes.c_void_p  # moelat_lattice *
_F = ctypes.POINTER(ctypes.c_float)
_S = ctypes.c_int  # moelat_status


def _fn(name, restype, *argtypes):
    try:
        f = getattr(lib, name)
    except AttributeError:
        raise ImportError(f"moelat: {LIBRARY_PATH} has no {name}: an older libmoelat than this package") from None
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


band_name = _fn("moelat_band_name", _c.c_char_p, _c.c_int)
config_preset = _fn("moelat_config_preset", _S, _c.c_char_p, _c.POINTER(Config), _c.c_char_p, _c.c_size_t)
config_load_json = _fn("moelat_config_load_json", _S, _c.c_char_p, _c.POINTER(Config), _c.c_char_p, _c.c_size_t)
config_set_hidden = _fn("moelat_config_set_hidden", _S, _c.POINTER(Config), _c.c_char_p, _c.c_int32)
config_radius = _fn("moelat_config_radius", _c.c_double, _c.POINTER(Config))
lattice_create = _fn("moelat_lattice_create", _S, _c.POINTER(Config), _c.POINTER(_P), _c.c_char_p, _c.c_size_t)
lattice_destroy = _fn("moelat_lattice_destroy", None, _P)
last_error = _fn("moelat_last_error", _c.c_char_p, _P)
lattice_config = _fn("moelat_lattice_config", _c.POINTER(Config), _P)
cell_count = _fn("moelat_cell_count", _c.c_size_t, _P)
state_size = _fn("moelat_state_size", _c.c_int32, _P)
step_count = _fn("moelat_step_count", _c.c_uint64, _P)
step = _fn("moelat_step", _S, _P, _c.c_int)
get_states = _fn("moelat_get_states", _S, _P, _F, _c.c_size_t)
set_states = _fn("moelat_set_states", _S, _P, _F, _c.c_size_t)
set_external_input = _fn("moelat_set_external_input", _S, _P, _F, _c.c_size_t)
get_outputs = _fn("moelat_get_outputs", _S, _P, _F, _c.c_size_t)
load_weights = _fn("moelat_load_weights", _S, _P, _c.c_char_p)
save_weights = _fn("moelat_save_weights", _S, _P, _c.c_char_p)
load_states = _fn("moelat_load_states", _S, _P, _c.c_char_p)
save_states = _fn("moelat_save_states", _S, _P, _c.c_char_p)
set_mode = _fn("moelat_set_mode", _S, _P, _c.c_int)
get_mode = _fn("moelat_get_mode", _c.c_int, _P)
upgrade_to_batch = _fn("moelat_upgrade_to_batch", _S, _P)
device_name = _fn("moelat_device_name", _c.c_char_p, _P)
get_report = _fn("moelat_get_report", _S, _P, _c.POINTER(Report))
reset_report = _fn("moelat_reset_report", None, _P)
save_checkpoint = _fn("moelat_save_checkpoint", _S, _P, _c.c_char_p)
resume_checkpoint = _fn("moelat_resume_checkpoint", _S, _P, _c.c_char_p)
checkpoint_config = _fn(
    "moelat_checkpoint_config", _S, _c.c_char_p, _c.POINTER(Config), _c.POINTER(_c.c_uint64), _c.c_char_p, _c.c_size_t
)
weights_count = _fn("moelat_weights_count", _c.c_size_t, _P)
get_weights = _fn("moelat_get_weights", _S, _P, _F, _c.c_size_t)
set_weights = _fn("moelat_set_weights", _S, _P, _F, _c.c_size_t)
set_log_callback = _fn("moelat_set_log_callback", None, LOG_CALLBACK, _c.c_void_p)
set_log_level = _fn("moelat_set_log_level", _S, _c.c_char_p, _c.c_int)
struct_size = _fn("moelat_struct_size", _c.c_uint32, _c.c_char_p)
status_name = _fn("moelat_status_name", _c.c_char_p, _c.c_int)
version = _fn("moelat_version", _c.c_char_p)

# moelat_status by name (moelat.h), and the exception class of each error
# (errors.py): both checked against the library at import.
STATUS = {
    "MOELAT_OK": 0,
    "MOELAT_ERR_INVALID": 1,
    "MOELAT_ERR_IO": 2,
    "MOELAT_ERR_FORMAT": 3,
    "MOELAT_ERR_NOMEM": 4,
    "MOELAT_ERR_DEVICE": 5,
    "MOELAT_ERR_PLUGIN": 6,
    "MOELAT_ERR_NONFINITE": 7,
    "MOELAT_ERR_MISMATCH": 8,
}
_STATUS_CLASSES = {
    "MOELAT_ERR_INVALID": "InvalidArgumentError",
    "MOELAT_ERR_IO": "MoelatIOError",
    "MOELAT_ERR_FORMAT": "FormatError",
    "MOELAT_ERR_NOMEM": "OutOfMemoryError",
    "MOELAT_ERR_DEVICE": "DeviceError",
    "MOELAT_ERR_PLUGIN": "PluginError",
    "MOELAT_ERR_NONFINITE": "NonFiniteError",
    "MOELAT_ERR_MISMATCH": "MismatchError",
}


def _check_abi():
    """ImportError naming every struct whose mirror's size differs from the
    library's, and every status whose number differs."""
    from . import errors

    problems = []
    for cname, mirror in (("moelat_config", Config), ("moelat_report", Report),
                          ("moelat_hidden_size", HiddenSize), ("moelat_path_stats", PathStats)):
        theirs = struct_size(cname.encode())
        if theirs != ctypes.sizeof(mirror):
            problems.append(f"{cname} is {theirs} bytes in the library, {ctypes.sizeof(mirror)} in its mirror "
                            f"moelat._lib.{mirror.__name__}")
    theirs = {}
    while True:
        name = status_name(len(theirs))
        if name is None:
            break
        theirs[name.decode()] = len(theirs)
    for name in sorted(set(theirs) | set(STATUS), key=lambda n: theirs.get(n, STATUS.get(n))):
        if theirs.get(name) != STATUS.get(name):
            problems.append(f"status {name} is {theirs.get(name, 'absent')} in the library, "
                            f"{STATUS.get(name, 'absent')} in moelat._lib.STATUS")
    for name, cls in _STATUS_CLASSES.items():
        got = getattr(getattr(errors, cls, None), "status", None)
        if got != theirs.get(name):
            problems.append(f"{cls}.status is {got}, the library's {name} is {theirs.get(name, 'absent')}")
    if problems:
        raise ImportError(f"moelat: {LIBRARY_PATH} ({version().decode()}) does not match this package: "
                          + "; ".join(problems))


_check_abi()


def floats(array):
    """A float * into a C-contiguous float32 numpy array (no copy)."""
    return array.ctypes.data_as(_F)
