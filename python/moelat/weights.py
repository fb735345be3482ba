"""Weights as a PyTorch-style state dict, and safetensors files.

The names and shapes come from the engine's own safetensors writer (one
save to a temporary file per lattice, read once): the public API exposes
the weights as one flat array in file order, and the file's header says
which name owns which slice. state_dict() reads that flat array once and
returns numpy views into it; load_state_dict() checks names and shapes
like PyTorch, assembles one flat array and hands it to the engine.
"""
import collections
import json
import os
import struct
import tempfile

import numpy as np

from . import _check, _lib
from .errors import FormatError, InvalidArgumentError, MoelatTypeError, NonFiniteError, StateDictError

IncompatibleKeys = collections.namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


def read_safetensors_header(path):
    """[(name, shape, first float, count)] of a float32 safetensors file, in
    data order."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise FormatError(f"{path}: not a safetensors file (shorter than 8 bytes)")
        (n,) = struct.unpack("<Q", raw)
        try:
            header = json.loads(f.read(n))
        except ValueError as e:
            raise FormatError(f"{path}: safetensors header is not JSON: {e}") from None
    out = []
    for name, t in header.items():
        if name == "__metadata__":
            continue
        if t.get("dtype") != "F32":
            raise FormatError(f"{path}: tensor {name} is {t.get('dtype')}, expected F32")
        a, b = t["data_offsets"]
        out.append((name, tuple(t["shape"]), a // 4, (b - a) // 4))
    out.sort(key=lambda e: e[2])
    return out


class WeightsMixin:
    def _weight_layout(self):
        with self._lock:
            return self._weight_layout_locked()

    def _weight_layout_locked(self):
        if self._layout is None:
            total = int(_lib.weights_count(self._handle()))
            with tempfile.TemporaryDirectory(prefix="moelat-layout-") as d:
                path = os.path.join(d, "w.safetensors")
                self.save_weights(path)
                layout = read_safetensors_header(path)
            at = 0
            for name, _shape, first, count in layout:
                if first != at:
                    raise FormatError(f"weights file layout has a gap before {name}")
                at += count
            if at != total:
                raise FormatError(f"weights file holds {at} floats, the engine {total}")
            self._layout = layout
        return self._layout

    def load_weights(self, path):
        """Loads a safetensors file (names as the original PyTorch modules)."""
        self._call(_lib.load_weights, _check.path("path", path))

    def save_weights(self, path):
        self._call(_lib.save_weights, _check.path("path", path))

    def state_dict(self):
        """The weights under the original PyTorch module names: an ordered
        dict of float32 numpy arrays (views of one fresh copy)."""
        with self._lock:
            layout = self._weight_layout()
            flat = np.empty(sum(e[3] for e in layout), dtype=np.float32)
            self._call(_lib.get_weights, _lib.floats(flat), flat.size)
        return collections.OrderedDict(
            (name, flat[first:first + count].reshape(shape)) for name, shape, first, count in layout
        )

    def load_state_dict(self, state_dict, strict=True):
        """Loads weights from numpy arrays or PyTorch tensors under the
        original names. strict: unknown or missing names raise (as PyTorch);
        otherwise missing ones keep their values. Wrong shapes always raise.
        Returns (missing_keys, unexpected_keys). One atomic call: the
        weights kept for missing names are read under the same lock hold
        that writes the result."""
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise MoelatTypeError(f"state_dict must be a mapping, not {type(state_dict).__name__}")
        with self._lock:
            return self._load_state_dict_locked(state_dict, strict)

    def _load_state_dict_locked(self, state_dict, strict):
        from .lattice import _as_numpy

        layout = self._weight_layout()
        known = {e[0] for e in layout}
        missing = [e[0] for e in layout if e[0] not in state_dict]
        unexpected = [k for k in state_dict.keys() if k not in known]
        problems = []
        if strict and unexpected:
            problems.append("Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in unexpected) + ".")
        if strict and missing:
            problems.append("Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing) + ".")
        flat = None
        if missing:
            flat = np.empty(sum(e[3] for e in layout), dtype=np.float32)
            self._call(_lib.get_weights, _lib.floats(flat), flat.size)
        else:
            flat = np.empty(sum(e[3] for e in layout), dtype=np.float32)
        for name, shape, first, count in layout:
            if name not in state_dict:
                continue
            value = _as_numpy(state_dict[name])
            if value.dtype.kind not in "fiu":
                raise MoelatTypeError(f"state_dict['{name}'] has dtype {value.dtype}, expected a floating-point tensor")
            # A learnable scalar is stored as [] and read from [] or [1].
            ok = value.shape == shape or (shape == () and value.shape == (1,))
            if not ok:
                problems.append(
                    f"size mismatch for {name}: copying a param with shape {list(value.shape)} from checkpoint, "
                    f"the shape in current model is {list(shape)}."
                )
                continue
            v = np.asarray(value, dtype=np.float32).reshape(-1)
            if not np.isfinite(v).all():
                raise NonFiniteError(f"state_dict['{name}'] holds a non-finite value (NaN or Inf)")
            flat[first:first + count] = v
        if problems:
            raise StateDictError("Error(s) in loading state_dict for Lattice3D:\n\t" + "\n\t".join(problems))
        self._call(_lib.set_weights, _lib.floats(flat), flat.size)
        return IncompatibleKeys(missing, unexpected)

    def parameter_count(self):
        return sum(e[3] for e in self._weight_layout())


__all__ = ["IncompatibleKeys", "WeightsMixin", "read_safetensors_header", "InvalidArgumentError"]
