"""The engine's log as Python log records.

The C library calls one callback with (module, level, message); each
module maps to the logger "moelat.<module>" and the levels map one to one
(0 error, 1 warn, 2 info, 3 debug). Which engine messages are produced at
all follows the loggers: before each call into the engine, every
"moelat.<module>" logger that exists gets its effective level sent to the
engine for that module, and the "moelat" logger's for the others, so that
logging.getLogger("moelat.batch").setLevel(logging.DEBUG) turns on the
engine's batch=debug log and nothing is formatted that no logger wants.
"""
import atexit
import logging

from . import _lib

ROOT = "moelat"
_TO_PY = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO, 3: logging.DEBUG}
# Names of Python-side loggers that are not engine modules.
_PYTHON_ONLY = {"moelat.bench"}


def to_engine_level(py_level):
    """Most verbose engine level a Python level lets through (-1: none)."""
    if py_level <= logging.DEBUG:
        return 3
    if py_level <= logging.INFO:
        return 2
    if py_level <= logging.WARNING:
        return 1
    if py_level <= logging.ERROR:
        return 0
    return -1


def _deliver(_arg, module, level, message):
    # Called from C, possibly on an engine thread: it must never raise.
    try:
        name = module.decode("utf-8", "replace") if module else "-"
        text = message.decode("utf-8", "replace") if message else ""
        logging.getLogger(f"{ROOT}.{name}").log(_TO_PY.get(level, logging.ERROR), "%s", text)
    except Exception:  # noqa: BLE001 - nothing may propagate into C
        pass


_callback = _lib.LOG_CALLBACK(_deliver)  # kept alive as long as the module
_sent = {}


def sync_levels():
    """Sends the loggers' effective levels to the engine (only changes)."""
    want = {"": to_engine_level(logging.getLogger(ROOT).getEffectiveLevel())}
    for name in list(logging.Logger.manager.loggerDict):
        if name.startswith(ROOT + ".") and name not in _PYTHON_ONLY:
            module = name[len(ROOT) + 1:]
            # A name with NUL would reach the engine cut at the NUL, as
            # another module's: no engine module has such a name.
            if 0 < len(module.encode()) < 32 and "\0" not in module:
                want[module] = to_engine_level(logging.getLogger(name).getEffectiveLevel())
    for module, level in want.items():
        if _sent.get(module) != level:
            if _lib.set_log_level(module.encode(), level) == 0:
                _sent[module] = level


def install():
    _lib.set_log_callback(_callback, None)
    sync_levels()


def _uninstall():
    # Engine threads may outlive the interpreter's logging at exit.
    _lib.set_log_callback(_lib.LOG_CALLBACK(), None)


atexit.register(_uninstall)
