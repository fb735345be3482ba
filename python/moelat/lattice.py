"""Lattice3D: the prototype's lattice API over libmoelat."""
import ctypes
import json
import itertools
import os
import tempfile
import threading

import numpy as np

from . import _lib, _logbridge
from . import _check
from .errors import (ClosedLatticeError, InvalidArgumentError, MoelatError, MoelatTypeError, NonFiniteError,
                     from_status)
from .weights import WeightsMixin

_MODES = {"percell": 0, "batch": 1, "auto": 2}
_CNF = {"euler": 0, "lipschitz": 1}
_BAND_NAMES = ("local", "functional", "distant")
_ERR_LEN = 2048


def _status(status, message_fn):
    if status != 0:
        raise from_status(status, message_fn())


def _float32(name, data, shapes):
    """data as a C-contiguous float32 array of one of the accepted shapes
    (flattened to the first); refuses non-float dtypes and NaN or Inf."""
    arr = _as_numpy(data)
    if arr.dtype.kind != "f":
        raise MoelatTypeError(f"{name} must hold floating-point values, got dtype {arr.dtype}")
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
        raise MoelatTypeError(f"cannot read {type(data).__name__} as an array: {e}") from None


class Lattice3D(WeightsMixin):
    """A 3D lattice of mixture-of-experts cells (docs/MODEL.md) on libmoelat.

    Lattice3D(dimensions=(X, Y, Z), preset="debug", config=None,
              spatial_optimizer_factory=None, **options)

    config: a JSON config file's path or a dict of its keys, merged over the
    preset. options, as `moelat-engine run`'s: seed, radius_ratio, cnf_mode
    ("euler"/"lipschitz"), state_size, device, threads, queues, chunk
    ((X, Y, Z) or "XxYxZ"), batch_threshold, mode ("percell"/"batch"/
    "auto", the default: batched where a device passes the check),
    profile, experts ({"local": plugin name, ...}), plugin_paths
    (list), hidden ({"h1": 12, ...}: the hidden sizes), tuning
    ({"gate_cells": 2, ...} or "gate_cells=2,...": the README's tuning keys,
    the config's tuning string; an unknown key raises, naming the known ones).
    One lattice may be shared between threads: each method is one atomic
    call under the lattice's lock (forward's set-input, steps and read
    included), so calls from several threads run one after the other.
    Integers are range-checked and strings and paths refused with a NUL
    before they reach the engine (python/README.md, "Rules").
    spatial_optimizer_factory(dimensions, moe_processor) returns what
    create_batch_optimized_spatial_optimizer() returns; its settings apply.
    """

    def __init__(self, dimensions=None, preset="debug", config=None, spatial_optimizer_factory=None, **options):
        # close() (also from __del__) needs these whatever fails below.
        self._lat = None
        self._lock = threading.RLock()
        self._dependents = {}
        self._tokens = itertools.count()
        self._callouts = 0  # calls in progress that run Python callbacks (a Trainer's fit)
        self._name = "Lattice3D"
        _logbridge.sync_levels()
        cfg = _lib.Config()
        err = ctypes.create_string_buffer(_ERR_LEN)
        preset_b = _check.text("preset", preset, _lib.Config.preset.size)
        _status(_lib.config_preset(preset_b, ctypes.byref(cfg), err, _ERR_LEN), lambda: err.value.decode())
        if config is not None:
            self._merge_config(cfg, config, err)
        if dimensions is not None:
            cfg.dims[:] = _check.dims3("dimensions", dimensions, 1, _check.DIM_MAX)
        optimizer = None
        if spatial_optimizer_factory is not None:
            if not callable(spatial_optimizer_factory):
                raise MoelatTypeError("spatial_optimizer_factory must be callable")
            optimizer = spatial_optimizer_factory(tuple(cfg.dims), None)
            if optimizer is None or not hasattr(optimizer, "options"):
                raise MoelatTypeError(
                    "spatial_optimizer_factory must return what create_batch_optimized_spatial_optimizer() returns"
                )
            options = {**optimizer.options, **options}
        mode = self._apply_options(cfg, options)
        if optimizer is not None and optimizer.enable_batch and mode is None:
            mode = "batch"
        if mode == "percell":
            cfg.mode = _MODES["percell"]  # the library's default is auto: no device opened for nothing
        lat = ctypes.c_void_p()
        _status(_lib.lattice_create(ctypes.byref(cfg), ctypes.byref(lat), err, _ERR_LEN), lambda: err.value.decode())
        self._lat = lat
        self.spatial_optimizer = optimizer
        c = _lib.lattice_config(lat).contents
        self.dimensions = tuple(c.dims)
        self.preset = c.preset.decode()
        self.num_cells = int(_lib.cell_count(lat))
        self.state_size = int(_lib.state_size(lat))
        self._name = f"Lattice3D {self.preset} {'x'.join(map(str, self.dimensions))}"
        self._layout = None
        if mode is not None and mode != "percell":
            self._call(_lib.set_mode, _MODES[mode])

    # ---- construction helpers ------------------------------------------
    @staticmethod
    def _merge_config(cfg, config, err):
        if isinstance(config, dict):
            # Checked here (non-finite numbers, NUL, types) so that a refusal
            # names the key; the engine's own messages name the file, which
            # for a dict is a temporary one: they say "config" instead.
            text = json.dumps(_check.json_value("config", config), allow_nan=False)
            fd, path = tempfile.mkstemp(suffix=".json", prefix="moelat-config-")
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(text)
                _status(_lib.config_load_json(os.fsencode(path), ctypes.byref(cfg), err, _ERR_LEN),
                        lambda: err.value.decode("utf-8", "replace").replace(path, "config"))
            finally:
                os.unlink(path)
        elif isinstance(config, (str, bytes, os.PathLike)):
            _status(_lib.config_load_json(_check.path("config", config), ctypes.byref(cfg), err, _ERR_LEN),
                    lambda: err.value.decode("utf-8", "replace"))
        else:
            raise MoelatTypeError(f"config must be a JSON file's path or a dict, not {type(config).__name__}")

    @staticmethod
    def _apply_options(cfg, options):
        mode = None
        for key, value in options.items():
            if key == "seed":
                cfg.seed = _check.integer(key, value, 0, _check.SEED_MAX)
            elif key == "radius_ratio":
                cfg.radius_ratio = _check.real(key, value, *_check.RADIUS_RATIO)
            elif key == "cnf_mode":
                cfg.cnf_mode = _CNF[_check.choice(key, value, _CNF)]
            elif key == "state_size":
                cfg.state_size = _check.integer(key, value, 1, _check.SIZE_MAX)
            elif key == "threads":
                cfg.threads = _check.integer(key, value, 0, _check.THREADS_MAX)
            elif key == "queues":
                cfg.queues = _check.integer(key, value, 0, _check.QUEUES_MAX)
            elif key == "batch_threshold":
                cfg.batch_threshold = _check.integer(key, value, 0, _check.INT32_MAX)
            elif key == "chunk":
                cfg.chunk[:] = _check.dims3("chunk", value, 0, _check.DIM_MAX)
            elif key == "profile":
                cfg.profile = 1 if value else 0
            elif key == "device":
                if isinstance(value, str):
                    cfg.device = _check.text(key, value, _lib.Config.device.size)
                else:
                    cfg.device = str(_check.integer(key, value, 0, _check.INT32_MAX)).encode()
            elif key == "mode":
                mode = _check.choice(key, value, _MODES)
            elif key == "experts":
                for band, name in _check.mapping(key, value):
                    _check.choice("experts band", band, _BAND_NAMES)
                    cfg.expert[_BAND_NAMES.index(band)].value = _check.text(f"experts[{band!r}]", name, 64)
            elif key == "plugin_paths":
                try:
                    paths = [value] if isinstance(value, (str, bytes, os.PathLike)) else list(value)
                except TypeError:
                    raise MoelatTypeError(
                        f"plugin_paths must be a path or a list of paths, not {type(value).__name__}") from None
                if len(paths) > _lib.MAX_PLUGIN_PATHS:
                    raise InvalidArgumentError(f"at most {_lib.MAX_PLUGIN_PATHS} plugin paths, got {len(paths)}")
                for i, p in enumerate(paths):
                    cfg.plugin_paths[i].value = _check.path(f"plugin_paths[{i}]", p, 512)
                cfg.n_plugin_paths = len(paths)
            elif key == "hidden":
                for name, size in _check.mapping(key, value):
                    name_b = _check.text("hidden size name", name, 32)
                    size = _check.integer(f"hidden[{name!r}]", size, 1, _check.SIZE_MAX)
                    _status(_lib.config_set_hidden(ctypes.byref(cfg), name_b, size),
                            lambda: f"cannot set hidden size {name!r} (a name of [a-z0-9_]+, at most 16 sizes)")
            elif key == "tuning":
                if isinstance(value, dict):
                    items = value.items()
                elif isinstance(value, str):
                    items = (kv.split("=", 1) for kv in value.split(",") if kv.strip())
                else:
                    raise MoelatTypeError(f"tuning must be a dict or a string, not {type(value).__name__}")
                text = ",".join(f"{str(k).strip().lower()}={str(v).strip()}" for k, v in items)
                cfg.tuning = _check.text("tuning", text, 512)
            else:
                raise MoelatTypeError(f"Lattice3D() got an unexpected option '{key}'")
        return mode

    # ---- life cycle ------------------------------------------------------
    def close(self):
        """Frees the engine's lattice; later calls raise ClosedLatticeError.
        What depends on it (gradient recordings) is freed first, and raises
        ClosedLatticeError when used afterwards."""
        lock = getattr(self, "_lock", None)
        if lock is None:
            return
        with lock:
            if getattr(self, "_callouts", 0):
                # Only this thread can get here (it holds the lock): from a
                # callback of a call that is still using the lattice.
                raise MoelatError(f"close() of {self._name} from a callback of a call that is using it "
                                  "(a Trainer's progress or loss): close it once that call has returned")
            lat, self._lat = self._lat, None
            dependents = list(self._dependents.values())
            self._dependents.clear()
            for handle, destroy, _what in reversed(dependents):
                destroy(handle)
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
            raise ClosedLatticeError(f"operation on a closed lattice ({self._name}: close() was called)")
        return self._lat

    def _call(self, fn, *args):
        with self._lock:
            lat = self._handle()
            _logbridge.sync_levels()
            status = fn(lat, *args)
            if status != 0:
                raise from_status(status, (_lib.last_error(lat) or b"").decode("utf-8", "replace"))

    # ---- objects that depend on the lattice ------------------------------
    # A C object made from the lattice (a moelat_grad) must be destroyed
    # before the lattice. The lattice keeps each one's raw handle here, not
    # a weak reference to its Python owner: a cyclic collection clears weak
    # references before it runs finalisers, so a lattice collected in the
    # same cycle as a recording would not see it. close() destroys what is
    # still registered, then the lattice; the owner's own release finds its
    # entry gone and does nothing.
    def _adopt(self, handle, destroy, what):
        """Registers handle (destroyed with destroy(handle)); returns its
        token. Call with the lock held, right after making handle."""
        with self._lock:
            if not self._lat:
                destroy(handle)
                self._handle()
            token = next(self._tokens)
            self._dependents[token] = (handle, destroy, what)
            return token

    def _dependent(self, token, what):
        """The handle registered under token; ClosedLatticeError naming
        what once close() has freed it. Call with the lock held."""
        entry = self._dependents.get(token)
        if entry is None:
            raise ClosedLatticeError(f"the {what} was freed when its lattice ({self._name}) was closed")
        return entry[0]

    def _release(self, token):
        """Destroys the handle under token, unless close() already did."""
        with self._lock:
            entry = self._dependents.pop(token, None)
            if entry is not None:
                entry[1](entry[0])

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
        self._call(_lib.set_mode, _MODES[_check.choice("mode", value, _MODES)])

    @property
    def device(self):
        with self._lock:
            return _lib.device_name(self._handle()).decode()

    @property
    def steps_done(self):
        with self._lock:
            return int(_lib.step_count(self._handle()))

    # ---- stepping and states ----------------------------------------------
    def _input_array(self, external_input):
        X, Y, _ = self.dimensions
        return _float32("external_input", external_input,
                        [(X * Y, _lib.EXT_SIZE), (Y, X, _lib.EXT_SIZE), (X * Y * _lib.EXT_SIZE,)])

    def set_external_input(self, external_input):
        """External input of the z = 0 face: (Y, X, 16), (X*Y, 16) or flat,
        x fastest; None clears it."""
        self._handle()
        if external_input is None:
            self._call(_lib.set_external_input, None, 0)
            return
        arr = self._input_array(external_input)
        self._call(_lib.set_external_input, _lib.floats(arr), arr.size)

    def forward(self, external_input=None, steps=1):
        """Runs `steps` synchronous steps with external_input on the input
        face (None: no input) and returns the states, (N, S) float32. One
        atomic call: no other thread's call into this lattice runs between
        setting the input, the steps and reading the states."""
        steps = _check.integer("steps", steps, 0, _check.INT32_MAX)
        self._handle()
        arr = None if external_input is None else self._input_array(external_input)
        out = np.empty((self.num_cells, self.state_size), dtype=np.float32)
        with self._lock:
            if arr is None:
                self._call(_lib.set_external_input, None, 0)
            else:
                self._call(_lib.set_external_input, _lib.floats(arr), arr.size)
            if steps:
                self._call(_lib.step, steps)
            self._call(_lib.get_states, _lib.floats(out), out.size)
        return out

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
        self._call(_lib.load_states, _check.path("path", path))

    def save_states(self, path):
        self._call(_lib.save_states, _check.path("path", path))

    # ---- checkpoints -------------------------------------------------------
    def save_checkpoint(self, directory):
        """States, input, step counter, config and weights into directory."""
        self._call(_lib.save_checkpoint, _check.path("directory", directory))

    def resume(self, directory):
        """Continues from a checkpoint of a lattice with the same model."""
        self._call(_lib.resume_checkpoint, _check.path("directory", directory))

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
        with self._lock:
            if self.closed:
                return "<moelat.Lattice3D closed>"
            X, Y, Z = self.dimensions
            return (f"<moelat.Lattice3D {self.preset} {X}x{Y}x{Z} S={self.state_size} mode={self.mode} "
                    f"device={self.device!r}>")
