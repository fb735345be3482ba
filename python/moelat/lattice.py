"""Lattice3D: the prototype's lattice API over libmoelat."""
import ctypes
import json
import numbers
import os
import tempfile
import threading

import numpy as np

from . import _lib, _logbridge
from .errors import ClosedLatticeError, InvalidArgumentError, NonFiniteError, from_status
from .weights import WeightsMixin

_MODES = {"percell": 0, "batch": 1, "auto": 2}
_CNF = {"euler": 0, "lipschitz": 1}
_BAND_NAMES = ("local", "functional", "distant")
_ERR_LEN = 2048
# Tuning knobs the engine reads from the environment when it builds the
# batch path (README's environment table).
def _check(status, message_fn):
    if status != 0:
        raise from_status(status, message_fn())


def _int(name, value, low=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, not {type(value).__name__}")
    if low is not None and value < low:
        raise InvalidArgumentError(f"{name} must be >= {low}, got {value}")
    return int(value)


def _dims3(name, value):
    if isinstance(value, str):
        parts = value.lower().split("x")
        try:
            value = tuple(int(p) for p in parts)
        except ValueError:
            raise InvalidArgumentError(f"{name} '{value}' is not XxYxZ") from None
    try:
        dims = tuple(value)
    except TypeError:
        raise TypeError(f"{name} must be (X, Y, Z), not {type(value).__name__}") from None
    if len(dims) != 3:
        raise InvalidArgumentError(f"{name} must have 3 entries (X, Y, Z), got {len(dims)}")
    return tuple(_int(f"{name}[{i}]", d, 1) for i, d in enumerate(dims))


def _float32(name, data, shapes):
    """data as a C-contiguous float32 array of one of the accepted shapes
    (flattened to the first); refuses non-float dtypes and NaN or Inf."""
    arr = _as_numpy(data)
    if arr.dtype.kind != "f":
        raise TypeError(f"{name} must hold floating-point values, got dtype {arr.dtype}")
    if arr.shape not in shapes:
        raise InvalidArgumentError(f"{name} has shape {arr.shape}, expected " + " or ".join(str(s) for s in shapes))
    out = np.ascontiguousarray(arr, dtype=np.float32).reshape(shapes[0])
    if not np.isfinite(out).all():
        bad = int(np.flatnonzero(~np.isfinite(out.reshape(-1)))[0])
        raise NonFiniteError(f"{name} holds a non-finite value (NaN or Inf) at flat index {bad}")
    return out


def _as_numpy(data):
    """A numpy view of data; PyTorch tensors are converted without importing
    torch (their own detach().cpu().numpy())."""
    if hasattr(data, "detach") and hasattr(data, "cpu") and hasattr(data, "numpy"):
        t = data.detach().cpu()
        if getattr(t, "is_floating_point", lambda: True)() and str(getattr(t, "dtype", "")) in (
            "torch.bfloat16",
            "torch.float16",
        ):
            t = t.float()
        return t.numpy()
    try:
        return np.asarray(data)
    except Exception as e:  # noqa: BLE001 - ragged lists and the like
        raise TypeError(f"cannot read {type(data).__name__} as an array: {e}") from None


class Lattice3D(WeightsMixin):
    """A 3D lattice of mixture-of-experts cells (docs/MODEL.md) on libmoelat.

    Lattice3D(dimensions=(X, Y, Z), preset="debug", config=None,
              spatial_optimizer_factory=None, **options)

    config: a JSON config file's path or a dict of its keys, merged over the
    preset. options, as `moelat-engine run`'s: seed, radius_ratio, cnf_mode
    ("euler"/"lipschitz"), state_size, device, threads, queues, chunk
    ((X, Y, Z) or "XxYxZ"), batch_threshold, mode ("percell"/"batch"/
    "auto"), profile, experts ({"local": plugin name, ...}), plugin_paths
    (list), hidden ({"h1": 12, ...}: the hidden sizes), tuning
    ({"gate_cells": 2, ...} or "gate_cells=2,...": the README's tuning keys,
    the config's tuning string; an unknown key raises, naming the known ones).
    One lattice may be shared between threads: calls into it are serialised.
    spatial_optimizer_factory(dimensions, moe_processor) returns what
    create_batch_optimized_spatial_optimizer() returns; its settings apply.
    """

    def __init__(self, dimensions=None, preset="debug", config=None, spatial_optimizer_factory=None, **options):
        self._lat = None
        self._lock = threading.RLock()
        _logbridge.sync_levels()
        cfg = _lib.Config()
        err = ctypes.create_string_buffer(_ERR_LEN)
        if not isinstance(preset, str):
            raise TypeError(f"preset must be a string, not {type(preset).__name__}")
        _check(_lib.config_preset(preset.encode(), ctypes.byref(cfg), err, _ERR_LEN), lambda: err.value.decode())
        if config is not None:
            self._merge_config(cfg, config, err)
        if dimensions is not None:
            cfg.dims[:] = _dims3("dimensions", dimensions)
        optimizer = None
        if spatial_optimizer_factory is not None:
            if not callable(spatial_optimizer_factory):
                raise TypeError("spatial_optimizer_factory must be callable")
            optimizer = spatial_optimizer_factory(tuple(cfg.dims), None)
            if optimizer is None or not hasattr(optimizer, "options"):
                raise TypeError(
                    "spatial_optimizer_factory must return what create_batch_optimized_spatial_optimizer() returns"
                )
            options = {**optimizer.options, **options}
        mode = self._apply_options(cfg, options)
        if optimizer is not None and optimizer.enable_batch and mode is None:
            mode = "batch"
        lat = ctypes.c_void_p()
        _check(_lib.lattice_create(ctypes.byref(cfg), ctypes.byref(lat), err, _ERR_LEN), lambda: err.value.decode())
        self._lat = lat
        self.spatial_optimizer = optimizer
        c = _lib.lattice_config(lat).contents
        self.dimensions = tuple(c.dims)
        self.preset = c.preset.decode()
        self.num_cells = int(_lib.cell_count(lat))
        self.state_size = int(_lib.state_size(lat))
        self._layout = None
        if mode is not None and mode != "percell":
            self._call(_lib.set_mode, _MODES[mode])

    # ---- construction helpers ------------------------------------------
    @staticmethod
    def _merge_config(cfg, config, err):
        if isinstance(config, dict):
            fd, path = tempfile.mkstemp(suffix=".json", prefix="moelat-config-")
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(config, f)
                _check(_lib.config_load_json(path.encode(), ctypes.byref(cfg), err, _ERR_LEN),
                       lambda: err.value.decode())
            finally:
                os.unlink(path)
        elif isinstance(config, (str, os.PathLike)):
            _check(_lib.config_load_json(os.fsencode(config), ctypes.byref(cfg), err, _ERR_LEN),
                   lambda: err.value.decode())
        else:
            raise TypeError(f"config must be a JSON file's path or a dict, not {type(config).__name__}")

    @staticmethod
    def _apply_options(cfg, options):
        mode = None
        for key, value in options.items():
            if key == "seed":
                cfg.seed = _int(key, value, 0)
            elif key == "radius_ratio":
                if not isinstance(value, numbers.Real) or not value > 0:
                    raise InvalidArgumentError(f"radius_ratio must be a positive number, got {value!r}")
                cfg.radius_ratio = float(value)
            elif key == "cnf_mode":
                if value not in _CNF:
                    raise InvalidArgumentError(f"cnf_mode must be one of {sorted(_CNF)}, got {value!r}")
                cfg.cnf_mode = _CNF[value]
            elif key == "state_size":
                cfg.state_size = _int(key, value, 1)
            elif key in ("threads", "queues", "batch_threshold"):
                setattr(cfg, key, _int(key, value, 0))
            elif key == "chunk":
                cfg.chunk[:] = _dims3("chunk", value)
            elif key == "profile":
                cfg.profile = 1 if value else 0
            elif key == "device":
                if not isinstance(value, (str, int)) or len(str(value).encode()) >= 128:
                    raise InvalidArgumentError(f"device must be an index or a name under 128 bytes, got {value!r}")
                cfg.device = str(value).encode()
            elif key == "mode":
                if value not in _MODES:
                    raise InvalidArgumentError(f"mode must be one of {sorted(_MODES)}, got {value!r}")
                mode = value
            elif key == "experts":
                for band, name in dict(value).items():
                    if band not in _BAND_NAMES:
                        raise InvalidArgumentError(f"unknown band '{band}' (bands: {', '.join(_BAND_NAMES)})")
                    if not isinstance(name, str) or len(name.encode()) >= 64:
                        raise InvalidArgumentError(f"expert name for band {band} must be a string under 64 bytes")
                    cfg.expert[_BAND_NAMES.index(band)].value = name.encode()
            elif key == "plugin_paths":
                paths = [value] if isinstance(value, (str, os.PathLike)) else list(value)
                if len(paths) > _lib.MAX_PLUGIN_PATHS:
                    raise InvalidArgumentError(f"at most {_lib.MAX_PLUGIN_PATHS} plugin paths, got {len(paths)}")
                for i, p in enumerate(paths):
                    b = os.fsencode(p)
                    if len(b) >= 512:
                        raise InvalidArgumentError(f"plugin path {p!r} is 512 bytes or longer")
                    cfg.plugin_paths[i].value = b
                cfg.n_plugin_paths = len(paths)
            elif key == "hidden":
                for name, size in dict(value).items():
                    _check(_lib.config_set_hidden(ctypes.byref(cfg), str(name).encode(), _int(f"hidden[{name}]", size, 1)),
                           lambda: f"cannot set hidden size '{name}'")
            elif key == "tuning":
                items = value.items() if isinstance(value, dict) else (
                    kv.split("=", 1) for kv in str(value).split(",") if kv.strip())
                text = ",".join(f"{str(k).strip().lower()}={str(v).strip()}" for k, v in items)
                if len(text.encode()) >= 512:
                    raise InvalidArgumentError(f"tuning string of {len(text)} characters, at most 511")
                cfg.tuning = text.encode()
            else:
                raise TypeError(f"Lattice3D() got an unexpected option '{key}'")
        return mode

    # ---- life cycle ------------------------------------------------------
    def close(self):
        """Frees the engine's lattice; later calls raise ClosedLatticeError."""
        lock = getattr(self, "_lock", None)
        if lock is None:
            return
        with lock:
            lat, self._lat = self._lat, None
            if lat:
                _lib.lattice_destroy(lat)

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finaliser
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def closed(self):
        return not self._lat

    def _handle(self):
        if not self._lat:
            raise ClosedLatticeError("operation on a closed lattice")
        return self._lat

    def _call(self, fn, *args):
        with self._lock:
            lat = self._handle()
            _logbridge.sync_levels()
            status = fn(lat, *args)
            if status != 0:
                raise from_status(status, (_lib.last_error(lat) or b"").decode("utf-8", "replace"))

    # ---- modes -------------------------------------------------------------
    def set_batch_enabled(self, enabled=True):
        """Switches between the batched device path and the per-cell host
        path (the first switch to batch builds the kernels and checks a
        sample of cells)."""
        self._call(_lib.set_mode, _MODES["batch"] if enabled else _MODES["percell"])

    @property
    def batch_enabled(self):
        with self._lock:
            return _lib.get_mode(self._handle()) == _MODES["batch"]

    @property
    def mode(self):
        with self._lock:
            return {v: k for k, v in _MODES.items()}[_lib.get_mode(self._handle())]

    @mode.setter
    def mode(self, value):
        if value not in _MODES:
            raise InvalidArgumentError(f"mode must be one of {sorted(_MODES)}, got {value!r}")
        self._call(_lib.set_mode, _MODES[value])

    @property
    def device(self):
        with self._lock:
            return _lib.device_name(self._handle()).decode()

    @property
    def steps_done(self):
        with self._lock:
            return int(_lib.step_count(self._handle()))

    # ---- stepping and states ----------------------------------------------
    def set_external_input(self, external_input):
        """External input of the z = 0 face: (Y, X, 16), (X*Y, 16) or flat,
        x fastest; None clears it."""
        self._handle()
        if external_input is None:
            self._call(_lib.set_external_input, None, 0)
            return
        X, Y, _ = self.dimensions
        arr = _float32("external_input", external_input,
                       [(X * Y, _lib.EXT_SIZE), (Y, X, _lib.EXT_SIZE), (X * Y * _lib.EXT_SIZE,)])
        self._call(_lib.set_external_input, _lib.floats(arr), arr.size)

    def forward(self, external_input=None, steps=1):
        """Runs `steps` synchronous steps with external_input on the input
        face (None: no input) and returns the states, (N, S) float32."""
        steps = _int("steps", steps, 0)
        self.set_external_input(external_input)
        if steps:
            self._call(_lib.step, steps)
        return self.states

    __call__ = forward

    @property
    def states(self):
        """The states, a new (N, S) float32 array, cells x fastest."""
        out = np.empty((self.num_cells, self.state_size), dtype=np.float32)
        self._call(_lib.get_states, _lib.floats(out), out.size)
        return out

    @states.setter
    def states(self, value):
        X, Y, Z = self.dimensions
        N, S = self.num_cells, self.state_size
        arr = _float32("states", value, [(N, S), (Z, Y, X, S), (N * S,)])
        self._call(_lib.set_states, _lib.floats(arr), arr.size)

    @property
    def outputs(self):
        """The output face z = Z-1: (X*Y, S) float32, x fastest."""
        X, Y, _ = self.dimensions
        out = np.empty((X * Y, self.state_size), dtype=np.float32)
        self._call(_lib.get_outputs, _lib.floats(out), out.size)
        return out

    def load_states(self, path):
        self._call(_lib.load_states, os.fsencode(path))

    def save_states(self, path):
        self._call(_lib.save_states, os.fsencode(path))

    # ---- checkpoints -------------------------------------------------------
    def save_checkpoint(self, directory):
        """States, input, step counter, config and weights into directory."""
        self._call(_lib.save_checkpoint, os.fsencode(directory))

    def resume(self, directory):
        """Continues from a checkpoint of a lattice with the same model."""
        self._call(_lib.resume_checkpoint, os.fsencode(directory))

    # ---- report -------------------------------------------------------------
    def get_batch_performance(self):
        """The performance report as a dict with the keys and nesting of
        `moelat-engine run --json`'s "report", routing statistics included."""
        from .report import report_dict

        rep = _lib.Report()
        self._call(_lib.get_report, ctypes.byref(rep))
        return report_dict(rep)

    def reset_performance(self):
        """Clears the timings and routing statistics (keeps the step count)."""
        with self._lock:
            _lib.reset_report(self._handle())

    def __repr__(self):
        if self.closed:
            return "<moelat.Lattice3D closed>"
        X, Y, Z = self.dimensions
        return f"<moelat.Lattice3D {self.preset} {X}x{Y}x{Z} S={self.state_size} mode={self.mode} device={self.device!r}>"
