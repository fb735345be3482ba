"""Exceptions: one MoelatError subclass per moelat_status, each carrying the
engine's message, and the Python-side misuse errors (also MoelatErrors,
and at the same time the built-in exception a Python caller expects)."""


class MoelatError(Exception):
    """Base of every error the package raises. status: the engine's
    moelat_status (0 for errors found on the Python side)."""

    status = 0

    def __init__(self, message, status=None):
        super().__init__(message)
        if status is not None:
            self.status = status


class MoelatTypeError(MoelatError, TypeError):
    """An argument of the wrong type (found on the Python side)."""


class MoelatValueError(MoelatError, ValueError):
    """An argument of the right type and a wrong value."""


class InvalidArgumentError(MoelatValueError):
    """The engine's MOELAT_ERR_INVALID, and the Python side's own refusals
    of a value (out of range, NUL in a string, unknown option value)."""

    status = 1


class MoelatIOError(MoelatError, OSError):
    status = 2


class FormatError(MoelatValueError):
    status = 3


class OutOfMemoryError(MoelatError, MemoryError):
    status = 4


class DeviceError(MoelatError, RuntimeError):
    status = 5


class PluginError(MoelatError, RuntimeError):
    status = 6


class NonFiniteError(MoelatValueError, FloatingPointError):
    status = 7


class MismatchError(MoelatError, RuntimeError):
    status = 8


class ClosedLatticeError(MoelatValueError):
    """An operation on a lattice after close(), or on what depended on it
    (a gradient recording) once close() freed it; the message names what
    was closed. A ValueError, as an operation on a closed file."""


class StateDictError(MoelatError, RuntimeError):
    """load_state_dict found unknown or missing names or wrong shapes
    (a RuntimeError, as PyTorch's load_state_dict raises)."""


_BY_STATUS = {c.status: c for c in (InvalidArgumentError, MoelatIOError, FormatError, OutOfMemoryError,
                                    DeviceError, PluginError, NonFiniteError, MismatchError)}


def from_status(status, message):
    cls = _BY_STATUS.get(int(status), MoelatError)
    return cls(f"{message} (moelat status {int(status)})" if cls is MoelatError else message, int(status))
