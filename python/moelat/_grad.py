"""A gradient recording (moelat/grad.h's moelat_grad) owned from Python,
without torch: moelat.nn builds its autograd Function on it.

A recording depends on its lattice: the lattice registers its handle
(Lattice3D._adopt) and close() destroys it before the lattice itself.
The recording holds a strong reference to its lattice, so dropping every
other reference frees nothing it uses; after close() every call raises
ClosedLatticeError naming the recording, and close() or the finaliser is
a no-op. All calls run under the lattice's lock.
"""
import ctypes

import numpy as np

from . import _check, _lib
from .capi import grad as _capi
from .capi.grad import GradOptions  # noqa: F401 - kept importable from here
from .errors import ClosedLatticeError, from_status

_c = ctypes
_P = _c.c_void_p

_options_default = _capi.options_default
_record = _capi.record
_destroy = _capi.destroy
_final_states = _capi.final_states
_backward = _capi.backward
_weights = _capi.weights
_states = _capi.states
_input = _capi.input
_path = _capi.path
_last_error = _capi.last_error

WHAT = "gradient recording"


class Recording:
    """steps steps recorded from the lattice's current states, weights and
    input (checkpoint_every: moelat_grad_options' k, 0 = automatic)."""

    def __init__(self, lattice, steps, checkpoint_every=0):
        self._token = None  # the finaliser runs even if __init__ fails
        self.lattice = lattice
        steps = _check.integer("steps", steps, 1, _check.INT32_MAX)
        checkpoint_every = _check.integer("checkpoint_every", checkpoint_every, 0, _check.INT32_MAX)
        opt = GradOptions()
        _options_default(_c.byref(opt))
        opt.checkpoint_every = checkpoint_every
        handle = _P()
        with lattice._lock:
            lat = lattice._handle()
            status = _record(lat, steps, _c.byref(opt), _c.byref(handle))
            if status != 0:
                raise from_status(status, (_lib.last_error(lat) or b"").decode("utf-8", "replace"))
            self._token = lattice._adopt(handle.value, _destroy, WHAT)
        self.steps = steps

    def _handle(self):
        if self._token is None:
            raise ClosedLatticeError(f"the {WHAT} was closed")
        return self.lattice._dependent(self._token, WHAT)

    @property
    def path(self):
        """Where the backward runs: "device <name> (...)" or "host (<why>)"."""
        with self.lattice._lock:
            return (_path(self._handle()) or b"").decode("utf-8", "replace")

    def _call(self, fn, array):
        with self.lattice._lock:
            g = self._handle()
            status = fn(g, _lib.floats(array), array.size)
            if status != 0:
                raise from_status(status, (_last_error(g) or b"").decode("utf-8", "replace"))
        return array

    def _shape_states(self):
        return (self.lattice.num_cells, self.lattice.state_size)

    def final_states(self):
        """s_T, (N, S) float32."""
        return self._call(_final_states, np.empty(self._shape_states(), np.float32))

    def backward(self, grad_states):
        """Reverses the steps from dL/ds_T ((N, S) float32)."""
        g = np.ascontiguousarray(grad_states, dtype=np.float32).reshape(-1)
        self._call(_backward, g)

    def weights_grad(self):
        """dL/dW, flat in the engine's weights order."""
        with self.lattice._lock:
            self._handle()
            n = int(_lib.weights_count(self.lattice._handle()))
            return self._call(_weights, np.empty(n, np.float32))

    def states_grad(self):
        """dL/ds_0, (N, S)."""
        return self._call(_states, np.empty(self._shape_states(), np.float32))

    def input_grad(self):
        """dL/d(external input), (Y, X, 16)."""
        X, Y, _ = self.lattice.dimensions
        return self._call(_input, np.empty((Y, X, _lib.EXT_SIZE), np.float32))

    def close(self):
        """Destroys the recording now (a no-op once done, or once its
        lattice's close() has)."""
        token, self._token = self._token, None
        if token is not None:
            self.lattice._release(token)

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finaliser
            pass
