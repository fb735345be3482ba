"""moelat/grad.h: exact gradients of T lattice steps (a recording of the
forward, its reverse sweep, dL/dW, dL/ds_0 and dL/d(external input)).

moelat_grad_options is versioned (struct_size first): moelat/capi/_abi.py
compares the mirror's size with what moelat_grad_options_default writes.
"""
import ctypes as c

from ._common import D, F, P, STATUS, U64, fn


class GradOptions(c.Structure):
    """Mirror of moelat_grad_options; options_default() fills it."""

    _fields_ = [
        ("struct_size", c.c_uint32),
        ("checkpoint_every", c.c_int32),  # k >= 1; 0 = automatic from memory_budget
        ("memory_budget", c.c_uint64),  # bytes; 0 = half the physical memory
    ]


_OPT = c.POINTER(GradOptions)

options_default = fn("moelat_grad_options_default", None, _OPT)
memory = fn("moelat_grad_memory", c.c_uint64, P, c.c_int, c.c_int)
record = fn("moelat_grad_record", STATUS, P, c.c_int, _OPT, c.POINTER(P))
destroy = fn("moelat_grad_destroy", None, P)
last_error = fn("moelat_grad_last_error", c.c_char_p, P)
engine_counts = fn("moelat_grad_engine_counts", STATUS, P, U64, U64)
steps = fn("moelat_grad_steps", c.c_int, P)
path = fn("moelat_grad_path", c.c_char_p, P)
chunks = fn("moelat_grad_chunks", None, P, c.POINTER(c.c_long), c.POINTER(c.c_long), c.POINTER(c.c_char_p))
checkpoint_every = fn("moelat_grad_checkpoint_every", c.c_int, P)
final_states = fn("moelat_grad_final_states", STATUS, P, F, c.c_size_t)
final_states_f64 = fn("moelat_grad_final_states_f64", STATUS, P, D, c.c_size_t)
backward = fn("moelat_grad_backward", STATUS, P, F, c.c_size_t)
backward_f64 = fn("moelat_grad_backward_f64", STATUS, P, D, c.c_size_t)
weights = fn("moelat_grad_weights", STATUS, P, F, c.c_size_t)
weights_f64 = fn("moelat_grad_weights_f64", STATUS, P, D, c.c_size_t)
tensor = fn("moelat_grad_tensor", STATUS, P, c.c_char_p, F, c.c_size_t)
save_weights = fn("moelat_grad_save_weights", STATUS, P, c.c_char_p)
states = fn("moelat_grad_states", STATUS, P, F, c.c_size_t)
states_f64 = fn("moelat_grad_states_f64", STATUS, P, D, c.c_size_t)
input = fn("moelat_grad_input", STATUS, P, F, c.c_size_t)  # noqa: A001 - the C name's
input_f64 = fn("moelat_grad_input_f64", STATUS, P, D, c.c_size_t)


def options():
    """A GradOptions with the library's defaults (struct_size set)."""
    opt = GradOptions()
    options_default(c.byref(opt))
    return opt
