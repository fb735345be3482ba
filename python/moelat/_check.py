"""Checks of every argument before it reaches the C library.

ctypes converts silently: an int too large for int32_t or uint64_t is cut
to its low bits (2**32 + 3 arrives as 3), and a bytes value stops at its
first NUL ('w.safetensors\\0junk' arrives as 'w.safetensors'). So every
integer is checked here against its range (the engine's documented one,
else its C type's), every string and path for NUL, and every refusal is a
MoelatError that is also the built-in exception a Python caller expects
(MoelatTypeError is a TypeError, InvalidArgumentError a ValueError),
naming the argument.
"""
import math
import numbers
import os

from .errors import InvalidArgumentError, MoelatTypeError

INT32_MAX = 2**31 - 1
# The engine's ranges (README, "Files and limits"; engine/src/core/config.c).
DIM_MAX = 1 << 20  # each side of dims and chunk
SIZE_MAX = 65536  # state_size and hidden sizes
SEED_MAX = 2**63 - 1
THREADS_MAX = 1024
QUEUES_MAX = 16
RADIUS_RATIO = (1e-6, 100.0)


def integer(name, value, low, high):
    """value as an int in [low, high]; bool and non-integers are refused
    (numpy integers are accepted)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise MoelatTypeError(f"{name} must be an integer from {low} to {high}, not {type(value).__name__}")
    v = int(value)
    if not low <= v <= high:
        raise InvalidArgumentError(f"{name} must be an integer from {low} to {high}, got {v}")
    return v


def real(name, value, low=None, high=None):
    """value as a finite float in [low, high]; bool is refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise MoelatTypeError(f"{name} must be a number, not {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise InvalidArgumentError(f"{name} must be a finite number, got {v}")
    if (low is not None and v < low) or (high is not None and v > high):
        raise InvalidArgumentError(f"{name} must be from {low:g} to {high:g}, got {v:g}")
    return v


def text(name, value, size=None):
    """A str as the UTF-8 bytes C receives: no NUL, and shorter than size
    bytes where it goes into a char[size]."""
    if not isinstance(value, str):
        raise MoelatTypeError(f"{name} must be a string, not {type(value).__name__}")
    if "\0" in value:
        raise InvalidArgumentError(f"{name} {value!r} contains a NUL character")
    b = value.encode()
    if size is not None and len(b) >= size:
        raise InvalidArgumentError(f"{name} must be shorter than {size} bytes, got {len(b)}")
    return b


def path(name, value, size=None):
    """A str, bytes or os.PathLike as the file-system bytes C receives: no
    NUL, and shorter than size bytes where it goes into a char[size]."""
    if not isinstance(value, (str, bytes, os.PathLike)):
        raise MoelatTypeError(f"{name} must be a path (str, bytes or os.PathLike), not {type(value).__name__}")
    try:
        b = os.fsencode(value)
    except TypeError as e:  # a PathLike whose __fspath__ returns something else
        raise MoelatTypeError(f"{name}: {e}") from None
    if b"\0" in b:
        raise InvalidArgumentError(f"{name} {os.fsdecode(b)!r} contains a NUL character")
    if size is not None and len(b) >= size:
        raise InvalidArgumentError(f"{name} must be shorter than {size} bytes, got {len(b)}")
    return b


def choice(name, value, options):
    """value, one of options (a dict or sequence of names)."""
    if not isinstance(value, str) or value not in options:
        raise InvalidArgumentError(f"{name} must be one of {sorted(options)}, got {value!r}")
    return value


def mapping(name, value):
    """value's items, for a dict-like value."""
    if not hasattr(value, "items"):
        raise MoelatTypeError(f"{name} must be a dict, not {type(value).__name__}")
    return list(value.items())


def dims3(name, value, low, high):
    """(X, Y, Z) from a sequence of three integers or "XxYxZ", each in
    [low, high]."""
    if isinstance(value, str):
        if "\0" in value:
            raise InvalidArgumentError(f"{name} {value!r} contains a NUL character")
        try:
            value = tuple(int(p) for p in value.lower().split("x"))
        except ValueError:
            raise InvalidArgumentError(f"{name} '{value}' is not XxYxZ") from None
    try:
        dims = tuple(value)
    except TypeError:
        raise MoelatTypeError(f"{name} must be (X, Y, Z), not {type(value).__name__}") from None
    if len(dims) != 3:
        raise InvalidArgumentError(f"{name} must have 3 entries (X, Y, Z), got {len(dims)}")
    return tuple(integer(f"{name}[{i}]", d, low, high) for i, d in enumerate(dims))


def json_value(name, value):
    """A copy of a config dict's value with only what JSON can say: finite
    numbers (numpy scalars become Python ones), strings without NUL, bools,
    None, lists and dicts with string keys. The refusal names the key
    ("config['band_ratios'][1]"), where the engine's parser could only name
    the temporary file the dict is written to."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        if "\0" in value:
            raise InvalidArgumentError(f"{name} {value!r} contains a NUL character")
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        v = float(value)
        if not math.isfinite(v):
            raise InvalidArgumentError(f"{name} is {v}: config values must be finite numbers")
        return v
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise MoelatTypeError(f"{name} has a key {k!r} of type {type(k).__name__}, keys must be strings")
            if "\0" in k:
                raise InvalidArgumentError(f"{name} has a key {k!r} that contains a NUL character")
            out[k] = json_value(f"{name}[{k!r}]", v)
        return out
    if isinstance(value, (list, tuple)):
        return [json_value(f"{name}[{i}]", v) for i, v in enumerate(value)]
    raise MoelatTypeError(f"{name} is a {type(value).__name__}, which a JSON config cannot hold")
