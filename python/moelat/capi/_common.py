"""What every binding module shares: the loaded library, ctypes' names
for the C types the headers use, and fn(), which declares one function.

Each binding is a fresh function object (lib[name], not lib.name, which
ctypes caches per library): the declarations here never change those of
moelat/_lib.py, which the older modules use, even where both bind the
same C function.
"""
import ctypes

from .. import _lib

lib = _lib.lib
LIBRARY_PATH = _lib.LIBRARY_PATH

P = ctypes.c_void_p  # an opaque handle: moelat_lattice *, moelat_grad *, ...
F = ctypes.POINTER(ctypes.c_float)
D = ctypes.POINTER(ctypes.c_double)
I64 = ctypes.POINTER(ctypes.c_int64)
U64 = ctypes.POINTER(ctypes.c_uint64)
STATUS = ctypes.c_int  # moelat_status


def fn(name, restype, *argtypes):
    """The library's function name, declared with restype and argtypes;
    ImportError when the library lacks it (an older libmoelat)."""
    try:
        f = lib[name]
    except AttributeError:
        raise ImportError(f"moelat: {LIBRARY_PATH} has no {name}: an older libmoelat than this package") from None
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


def floats(array):
    """A float * into a C-contiguous float32 numpy array (no copy)."""
    return array.ctypes.data_as(F)


def doubles(array):
    """A double * into a C-contiguous float64 numpy array (no copy)."""
    return array.ctypes.data_as(D)


def int64s(array):
    """An int64_t * into a C-contiguous int64 numpy array (no copy)."""
    return array.ctypes.data_as(I64)


def text(value):
    """A C string (const char *) as str: None stays None."""
    return None if value is None else value.decode("utf-8", "replace")
