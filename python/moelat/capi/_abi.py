"""Import-time checks of the bindings against the loaded library.

Struct sizes. A mirror whose size differs from the library's struct would
make the library read or write past the caller's memory, so import stops
(ImportError naming the struct and both sizes). The library's size comes,
first found:
  1. moelat_struct_size(name), for the structs the library lists there;
  2. for a versioned struct with a default function (moelat_train_params,
     moelat_grad_options): the struct_size that function writes into a
     zeroed buffer larger than the mirror;
  3. moelat_optimizer_config, which has no struct_size: the extent of the
     bytes moelat_optimizer_defaults writes (it clears the whole struct)
     into a buffer larger than the mirror, filled with two different
     patterns in turn.
A default function's output is also read through the mirror, and what it
wrote must be a valid config (steps, batch size, epochs, the optimizer's
rates and betas in their ranges, the optimizer block the same bytes as
moelat_optimizer_defaults' own): a field at the wrong offset fails that.
moelat_train_summary, moelat_train_point and moelat_train_event have no
default function: until moelat_struct_size knows them (it returns 0 for
them today) they are listed in UNCHECKED. The library refuses a summary
whose struct_size is not its own on every call, and
python/tests/test_capi.py compares every mirror with the C compiler's
sizeof and offsetof.

Statuses. moelat_status_name(k) for k = 0, 1, ... until NULL must name
every status constant of capi/core.py with its number (LIBRARY_STATUS_NAMES
holds the library's list). moelat/_lib.py, imported first, compares the
whole list with its STATUS table (core.STATUS_NAMES) and moelat/errors.py's
classes.
"""
import ctypes

from . import core, grad, optim, train
from ._common import LIBRARY_PATH

_SLACK = 1 << 16  # bytes past the mirror, so a larger library struct writes into the buffer

# What was checked and how: {C name: (mirror size, library size, how)}.
CHECKED = {}
# Structs without a library size to compare with (see the docstring).
UNCHECKED = []
# The library's statuses: {number: name}.
LIBRARY_STATUS_NAMES = {}


def _buffer(init, mirror, fill):
    """A buffer of the mirror's size and _SLACK more, filled with fill, and
    a pointer to it of the type init takes."""
    n = ctypes.sizeof(mirror) + _SLACK
    buf = (ctypes.c_ubyte * n)()
    ctypes.memset(buf, fill, n)
    return buf, ctypes.cast(buf, init.argtypes[0])


def _written_size(init, mirror):
    """struct_size as the library's init function writes it."""
    buf, ptr = _buffer(init, mirror, 0)
    init(ptr)
    return ctypes.c_uint32.from_buffer(buf).value, buf


def _written_extent(init, mirror, *args):
    """The end of the bytes init(ptr, *args) writes (for a struct it
    clears whole)."""
    ends = []
    for fill in (0xA5, 0x5A):
        buf, ptr = _buffer(init, mirror, fill)
        init(ptr, *args)
        ends.append(len(bytes(buf).rstrip(bytes([fill]))))
    return max(ends), buf


def _refuse(name, module, mine, theirs, how):
    raise ImportError(
        f"moelat: {name} is {mine} bytes in this package's mirror (moelat/capi/{module}.py) but {theirs} bytes "
        f"in {LIBRARY_PATH} ({how}): the package and the library come from different versions of moelat; "
        f"use the python/ directory of the library's own source tree")


def _check_fields(name, problems):
    if problems:
        raise ImportError(f"moelat: {name} as {LIBRARY_PATH}'s default function writes it does not read back "
                          f"through this package's mirror: " + "; ".join(problems) +
                          " (the package and the library come from different versions of moelat)")


def _optimizer_problems(cfg, kind):
    bad = []
    if cfg.kind != kind:
        bad.append(f"kind {cfg.kind}, not {kind}")
    if not cfg.lr > 0:
        bad.append(f"lr {cfg.lr!r}")
    if not (0 <= cfg.beta1 < 1 and 0 <= cfg.beta2 < 1):
        bad.append(f"betas ({cfg.beta1!r}, {cfg.beta2!r})")
    if not cfg.eps > 0:
        bad.append(f"eps {cfg.eps!r}")
    if not 0 <= cfg.momentum < 1:
        bad.append(f"momentum {cfg.momentum!r}")
    return bad


def _size_of(name):
    return int(core.struct_size(name.encode()))


def check_structs():
    """Compares every mirror of grad.h, optim.h and train.h with the
    library (ImportError on a difference); fills CHECKED and UNCHECKED."""
    CHECKED.clear()
    del UNCHECKED[:]
    # the library's own list first
    for name, module, mirror in (("moelat_grad_options", "grad", grad.GradOptions),
                                 ("moelat_optimizer_config", "optim", optim.OptimizerConfig),
                                 ("moelat_train_params", "train", train.TrainParams),
                                 ("moelat_train_summary", "train", train.TrainSummary),
                                 ("moelat_train_point", "train", train.TrainPoint),
                                 ("moelat_train_event", "train", train.TrainEvent)):
        theirs = _size_of(name)
        if theirs:
            mine = ctypes.sizeof(mirror)
            if mine != theirs:
                _refuse(name, module, mine, theirs, "moelat_struct_size")
            CHECKED[name] = (mine, theirs, "moelat_struct_size")

    # moelat_grad_options: the struct_size its default writes
    mine = ctypes.sizeof(grad.GradOptions)
    theirs, buf = _written_size(grad.options_default, grad.GradOptions)
    if theirs != mine:
        _refuse("moelat_grad_options", "grad", mine, theirs, "struct_size written by moelat_grad_options_default")
    CHECKED.setdefault("moelat_grad_options", (mine, theirs, "moelat_grad_options_default"))

    # moelat_optimizer_config: the extent its default writes, for both kinds
    mine = ctypes.sizeof(optim.OptimizerConfig)
    for kind in (optim.ADAMW, optim.SGD):
        theirs, buf = _written_extent(optim.defaults, optim.OptimizerConfig, kind)
        if theirs != mine:
            _refuse("moelat_optimizer_config", "optim", mine, theirs, "bytes written by moelat_optimizer_defaults")
        _check_fields("moelat_optimizer_config",
                      _optimizer_problems(optim.OptimizerConfig.from_buffer(buf), kind))
    CHECKED.setdefault("moelat_optimizer_config", (mine, theirs, "moelat_optimizer_defaults"))

    # moelat_train_params: struct_size, and the defaults through the mirror
    mine = ctypes.sizeof(train.TrainParams)
    theirs, buf = _written_size(train.train_params_default, train.TrainParams)
    if theirs != mine:
        _refuse("moelat_train_params", "train", mine, theirs, "struct_size written by moelat_train_params_default")
    p = train.TrainParams.from_buffer(buf)
    bad = []
    if not 1 <= p.steps <= 100000:
        bad.append(f"steps {p.steps}")
    if not 1 <= p.batch_size <= 1000000:
        bad.append(f"batch_size {p.batch_size}")
    if not 1 <= p.epochs <= 1000000:
        bad.append(f"epochs {p.epochs}")
    if not 0 <= p.val_fraction <= 0.9:
        bad.append(f"val_fraction {p.val_fraction!r}")
    if p.loss not in (train.LOSS_OUTPUT_FACE_MSE, train.LOSS_ALL_CELLS_MSE):
        bad.append(f"loss {p.loss}")
    if bytes(p.optimizer) != bytes(optim.config(optim.ADAMW)):
        bad.append("the optimizer block differs from moelat_optimizer_defaults(AdamW)")
    _check_fields("moelat_train_params", bad)
    CHECKED.setdefault("moelat_train_params", (mine, theirs, "moelat_train_params_default"))

    for name in ("moelat_train_summary", "moelat_train_point", "moelat_train_event"):
        if name not in CHECKED:
            UNCHECKED.append(name)


def check_statuses():
    """moelat_status_name against STATUS_NAMES (ImportError on a
    difference); fills LIBRARY_STATUS_NAMES."""
    LIBRARY_STATUS_NAMES.clear()
    k = 0
    while k < 1024:
        name = core.status_name(k)
        if name is None:
            break
        LIBRARY_STATUS_NAMES[k] = name.decode()
        k += 1
    wrong = [f"{k} is {LIBRARY_STATUS_NAMES.get(k, 'missing')} there, {v} here"
             for k, v in core.STATUS_NAMES.items() if LIBRARY_STATUS_NAMES.get(k) != v]
    for const in ("OK", "ERR_INVALID", "ERR_IO", "ERR_FORMAT", "ERR_NOMEM", "ERR_DEVICE", "ERR_PLUGIN",
                  "ERR_NONFINITE", "ERR_MISMATCH"):
        k = getattr(core, const)
        if LIBRARY_STATUS_NAMES.get(k) != "MOELAT_" + const:
            wrong.append(f"{k} is {LIBRARY_STATUS_NAMES.get(k, 'missing')} there, moelat.capi.core.{const} here")
    if wrong:
        raise ImportError(f"moelat: {LIBRARY_PATH} numbers its statuses differently from this package: "
                          + "; ".join(wrong))


def check():
    check_statuses()
    check_structs()
