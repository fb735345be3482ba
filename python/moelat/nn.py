"""The lattice inside a PyTorch model: an autograd Function and an nn.Module.

    import torch
    from moelat import Lattice3D
    from moelat.nn import LatticeModule

    lattice = LatticeModule(Lattice3D((6, 6, 3), preset="debug"), steps=2)
    s_T = lattice(states, external_input)   # (N, S), differentiable
    loss = ((s_T - target) ** 2).mean()
    loss.backward()                          # the engine's exact reverse mode

LatticeFunction's forward runs T steps in the engine's recording forward
(moelat/grad.h: the model in float64 from float32 states and weights) and
returns s_T; its backward calls the engine's reverse mode for dL/dW,
dL/ds_0 and dL/d(external input). LatticeModule holds the lattice's
weights as nn.Parameters under the original module names (its state_dict()
keys are the prototype's), so any torch optimizer trains them.

Each output's autograd graph holds the engine's recording of its forward,
and the recording holds the lattice: closing the lattice frees the
recording too, and a later backward() raises ClosedLatticeError naming it
(python/README.md, "Rules").

Tensors are float32 on the CPU. A CUDA tensor is copied to the CPU for the
engine (with a warning, once) and the result is moved back to its device.
"""
import warnings

import numpy as np
import torch

from . import _check
from ._grad import Recording
from .capi import core as _core
from .capi._common import floats as _floats
from .errors import MoelatTypeError

_warned_cuda = False


def _to_numpy(t, name):
    global _warned_cuda
    if t.device.type != "cpu":
        if not _warned_cuda:
            warnings.warn(f"moelat runs on its own devices: {name} on {t.device} is copied to the CPU and back",
                          stacklevel=3)
            _warned_cuda = True
        t = t.cpu()
    return np.ascontiguousarray(t.detach().to(torch.float32).numpy())


class LatticeFunction(torch.autograd.Function):
    """s_T = lattice^T(s_0, external_input; W) with W one flat tensor in the
    engine's weights order (moelat_get_weights)."""

    @staticmethod
    def forward(ctx, lattice, steps, checkpoint_every, states, external_input, weights):
        device = states.device
        w = _to_numpy(weights, "weights")
        s0 = _to_numpy(states, "states")
        x = None if external_input is None else _to_numpy(external_input, "external_input")
        # One atomic call on the lattice: no other thread's call runs
        # between setting weights, states and input and recording.
        with lattice._lock:
            lattice._call(_core.set_weights, _floats(w), w.size)
            lattice.states = s0
            lattice.set_external_input(x)
            rec = Recording(lattice, steps, checkpoint_every)
            lattice._backward_path = rec.path
            out = rec.final_states()
        ctx.rec = rec
        ctx.states_shape = states.shape
        ctx.has_input = external_input is not None
        ctx.input_shape = None if external_input is None else external_input.shape
        return torch.from_numpy(out).to(device)

    @staticmethod
    def backward(ctx, grad_out):
        rec = ctx.rec
        device = grad_out.device
        g = _to_numpy(grad_out, "grad_output").reshape(-1)
        with rec.lattice._lock:
            rec.backward(g)
            dw = rec.weights_grad()
            ds = rec.states_grad()
            dx = rec.input_grad() if ctx.has_input and ctx.needs_input_grad[4] else None
        if dx is not None:
            dx = torch.from_numpy(dx).reshape(ctx.input_shape).to(device)
        ds = torch.from_numpy(ds).reshape(ctx.states_shape).to(device) if ctx.needs_input_grad[3] else None
        dw = torch.from_numpy(dw).to(device) if ctx.needs_input_grad[5] else None
        return None, None, None, ds, dx, dw


class LatticeModule(torch.nn.Module):
    """A Lattice3D as a torch module: its weights are nn.Parameters under
    the original names (nested modules, so state_dict() keys are e.g.
    "local_expert.neighbor_aggregator.0.weight"); forward(states,
    external_input) runs `steps` steps and returns s_T, (N, S)."""

    def __init__(self, lattice, steps=1, checkpoint_every=0):
        from .lattice import Lattice3D

        super().__init__()
        if not isinstance(lattice, Lattice3D):
            raise MoelatTypeError(f"LatticeModule takes a Lattice3D, not {type(lattice).__name__}")
        self.lattice = lattice  # kept alive by the module; close() it and forward raises ClosedLatticeError
        self.steps = _check.integer("steps", steps, 1, _check.INT32_MAX)
        self.checkpoint_every = _check.integer("checkpoint_every", checkpoint_every, 0, _check.INT32_MAX)
        self._names = []
        for name, value in lattice.state_dict().items():
            *path, leaf = name.split(".")
            mod = self
            for part in path:
                if part not in mod._modules:
                    mod.add_module(part, torch.nn.Module())
                mod = mod._modules[part]
            mod.register_parameter(leaf, torch.nn.Parameter(torch.from_numpy(np.array(value, np.float32))))
            self._names.append(name)

    def flat_weights(self):
        params = dict(self.named_parameters())
        return torch.cat([params[n].reshape(-1) for n in self._names])

    def forward(self, states=None, external_input=None):
        for name, t in (("states", states), ("external_input", external_input)):
            if t is not None and not isinstance(t, torch.Tensor):
                raise MoelatTypeError(f"{name} must be a torch.Tensor or None, not {type(t).__name__}")
        if states is None:
            states = torch.zeros((self.lattice.num_cells, self.lattice.state_size), dtype=torch.float32)
        return LatticeFunction.apply(self.lattice, self.steps, self.checkpoint_every, states, external_input,
                                     self.flat_weights())

    @property
    def backward_path(self):
        """Where the last forward's gradient runs: "device <name> (...)" on
        a lattice in mode batch or auto (float32, batched on its device),
        "host (<why>)" otherwise (float64); None before a forward."""
        return getattr(self.lattice, "_backward_path", None)

    def output_face(self, s_T):
        """The output face z = Z-1 of s_T: (X*Y, S), x fastest."""
        X, Y, _ = self.lattice.dimensions
        return s_T[-X * Y:]


__all__ = ["LatticeFunction", "LatticeModule"]
