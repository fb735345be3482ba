"""moelat.Trainer: the library's trainer (moelat/train.h) from Python,
without torch.

    import moelat

    lattice = moelat.Lattice3D((6, 5, 4), preset="debug", seed=3)
    trainer = moelat.Trainer(lattice, steps=2, batch_size=4, epochs=2, lr=1e-3)
    trainer.set_data(inputs, targets)      # (B, Y, X, 16), (B, Y, X, S)
    trainer.fit(progress=print)            # the events as they come
    trainer.history.validation             # [TrainPoint(epoch=0, ...), ...]
    lattice.save_weights("trained.safetensors")

The trainer is moelat-engine train's: the same data, options and seed give
bitwise the same weights (python/tests/test_trainer.py runs both). Each
sample runs `steps` steps from the initial states with the sample's input
face; the loss of s_T gives dL/ds_T, the engine's reverse sweep dL/dW;
gradients are summed over a mini-batch and one optimizer step follows.

Lifetimes and threads (python/README.md, "Rules"): the trainer holds its
lattice, and the lattice keeps the trainer's handle among its dependents:
the lattice's close() destroys the trainer before the lattice, and every
later trainer call raises ClosedLatticeError. Each call holds the lattice's
lock from start to end (fit() included: other threads' calls on the
lattice wait). Callbacks (progress, a Python loss) run on the calling
thread, inside that call: they may read the trainer (history, summary())
and the lattice, but not start another trainer call or close the lattice.
"""
import collections
import ctypes
import os

import numpy as np

from . import _check
from .capi import core, optim as _optim, train as _train
from .errors import ClosedLatticeError, MoelatError, MoelatTypeError, InvalidArgumentError, from_status

WHAT = "trainer"
_ERR_LEN = 4096
_UINT64_MAX = 2**64 - 1
_INT64_MAX = 2**63 - 1

TrainPoint = collections.namedtuple("TrainPoint", "epoch batch samples loss lr")
TrainPoint.__doc__ = """A point of the loss history. Training: the mini-batch's epoch (0-based),
batch (0-based), training samples seen after it, its mean loss and learning
rate. Validation: epochs done, batch -1, samples seen, the validation loss
(NaN without validation samples) and the next step's learning rate."""

History = collections.namedtuple("History", "train validation")

TrainEvent = collections.namedtuple(
    "TrainEvent", "kind epoch batch batches samples optimizer_step loss lr seconds samples_here backward")
TrainEvent.__doc__ = """What progress receives (moelat_train_event). kind: "batch" (a mini-batch
is done: epoch 0-based, batch 1-based of batches, its mean loss and rate),
"validation" (epoch = epochs done, loss = the validation loss, lr = the
next one) or "backward" (the first recording: backward says where the
gradients run). seconds and samples_here count from the start of this
fit() or epoch() call."""


def _as_numpy(data):
    from .lattice import _as_numpy as convert

    return convert(data)


def _float_array(name, data, min_ndim):
    arr = _as_numpy(data)
    if arr.dtype.kind != "f":
        raise MoelatTypeError(f"{name} must hold floating-point values, got dtype {arr.dtype}")
    if not min_ndim <= arr.ndim <= 1 + _train.MAX_DIM:
        raise InvalidArgumentError(f"{name} has {arr.ndim} dimensions: the samples first, then "
                                   f"{min_ndim - 1} to {_train.MAX_DIM} of each sample's shape")
    if arr.shape[0] < 1:
        raise InvalidArgumentError(f"{name} holds no sample")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _indices(name, value):
    arr = _as_numpy(value)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.size == 0:
        raise InvalidArgumentError(f"{name} holds no sample index")
    if arr.ndim != 1 or arr.dtype.kind not in "iu" or arr.dtype == np.bool_:
        raise MoelatTypeError(f"{name} must be a sequence of sample indices (integers), got "
                              f"{arr.ndim}-dimensional dtype {arr.dtype}")
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) > _INT64_MAX:
        raise InvalidArgumentError(f"{name}: sample index {int(arr.max())} is out of range")
    return np.ascontiguousarray(arr, dtype=np.int64)


class _Callbacks:
    """What the C callbacks reach: the Python loss and progress callables,
    the shapes they need, and the first exception one raised. Holds no
    reference to the Trainer, so that a Trainer is freed as soon as it is
    dropped (no reference cycle through its ctypes callbacks)."""

    def __init__(self, loss, states_shape):
        self.loss = loss
        self.progress = None
        self.reduce = None
        self.states_shape = states_shape
        self.target_shape = None
        self.pending = None

    def on_loss(self, _user, s_T, count, target, dL_ds_T, loss_out):
        try:
            if self.pending is not None:
                raise self.pending  # a progress callback failed: stop at the next sample
            s = np.ctypeslib.as_array(s_T, shape=(count,)).copy().reshape(self.states_shape)
            tshape = self.target_shape or ()
            tn = int(np.prod(tshape, dtype=np.int64))
            tg = np.ctypeslib.as_array(target, shape=(tn,)).copy().reshape(tshape)
            result = self.loss(s, tg)
            if isinstance(result, tuple):
                if len(result) != 2:
                    raise MoelatTypeError(f"the loss callable returned a tuple of {len(result)}, "
                                          "not (loss, dL/ds_T)")
                value, grad = result
            else:
                value, grad = result, None
            value = float(value)
            if dL_ds_T:
                if grad is None:
                    raise MoelatTypeError("the loss callable must return (loss, dL/ds_T) while training "
                                          f"(dL/ds_T of shape {self.states_shape})")
                g = _as_numpy(grad)
                if g.dtype.kind != "f" or g.size != count:
                    raise InvalidArgumentError(f"the loss callable's dL/ds_T has shape {g.shape} and dtype "
                                               f"{g.dtype}, the lattice's s_T {self.states_shape} float")
                out = np.ctypeslib.as_array(dL_ds_T, shape=(count,))
                out[:] = np.asarray(g, dtype=np.float32).reshape(-1)
            loss_out[0] = value
            return core.OK
        except BaseException as e:  # noqa: BLE001 - carried to the caller, raised there
            if self.pending is None:
                self.pending = e
            return core.ERR_INVALID

    def on_reduce(self, _user, values, count):
        try:
            if self.pending is not None:
                raise self.pending
            view = np.ctypeslib.as_array(values, shape=(count,))
            out = self.reduce(view)
            if out is not None and out is not view:
                out = np.asarray(out, dtype=np.float64).reshape(-1)
                if out.size != count:
                    raise InvalidArgumentError(f"reduce returned {out.size} values, it was given {count}")
                view[:] = out
            return core.OK
        except BaseException as e:  # noqa: BLE001 - carried to the caller, raised there
            if self.pending is None:
                self.pending = e
            return core.ERR_INVALID

    def on_progress(self, _user, ev):
        if self.progress is None or self.pending is not None:
            return
        try:
            e = ev.contents
            self.progress(TrainEvent(_train.EVENT_NAMES.get(e.kind, e.kind), e.epoch, e.batch, e.batches, e.samples,
                                     e.optimizer_step, e.loss, e.lr, e.seconds, e.samples_here,
                                     None if e.backward is None else e.backward.decode("utf-8", "replace")))
        except BaseException as e:  # noqa: BLE001 - carried to the caller, raised there
            self.pending = e


class Trainer:
    """Trains a Lattice3D's weights with the library's trainer.

    Trainer(lattice, *, steps=2, batch_size=8, epochs=10, val_fraction=0.2,
            loss="output_face_mse", optimizer="adamw", lr=1e-4,
            weight_decay=1e-5, betas=(0.9, 0.999), eps=1e-8, momentum=0.9
            (sgd), clip_norm=0, warmup=0, cosine=False, min_lr=0,
            total_steps=0, seed=the lattice's seed, checkpoint_dir=None,
            checkpoint_every=0, stop_after=0, grad_checkpoint_every=0,
            memory_budget=0, progress=None)

    The options are moelat-engine train's (and moelat_train_params'):
    steps: lattice steps per sample; batch_size: samples per optimizer step;
    epochs: passes of fit(); val_fraction: the last ceil(B * f) samples
    validate (before the first epoch and after each). loss:
    "output_face_mse" (targets (B, Y, X, S)), "all_cells_mse" (targets
    (B, Z, Y, X, S)) or a callable loss(s_T, target) -> (loss, dL/ds_T),
    given s_T as an (N, S) float32 array (cells x fastest, the output face
    z = Z-1 last) and the sample's target as its own shape, returning the
    loss and dL/ds_T of s_T's shape (during validation only the loss is
    used; a plain number may be returned there). optimizer "adamw" or "sgd"
    with lr, weight_decay, betas, eps, momentum, clip_norm (global L2 norm,
    0 = off), warmup (linear over that many optimizer steps), cosine (decay
    to min_lr over the whole fit) or total_steps (decay ending there).
    seed: the shuffle's (None: the lattice's seed, as the CLI). Checkpoints
    (checkpoint_dir): at each epoch's end and every checkpoint_every
    optimizer steps; stop_after: fit() stops after that many optimizer
    steps. grad_checkpoint_every, memory_budget: the gradient recording's
    (moelat/grad.h). progress: a callable receiving each TrainEvent (also
    per call: fit(progress=...)).

    Data parallelism (moelat_train_params' rank, ranks, reduce): ranks
    trainers, each on its own lattice with the same weights, data and
    options (one per process or thread), each run part `rank` of every
    mini-batch; reduce(values) must sum the float64 array values over all
    ranks in place (or return the sums), the same on every rank (an
    all-gather summed in rank order gives identical bits run to run), e.g.
    with mpi4py: comm.Allreduce(MPI.IN_PLACE, values). Validation runs
    whole on every rank; give checkpoint_dir to one rank only.

    An error raises the MoelatError subclass of the library's status with
    the trainer's message; an exception raised by a callback is raised
    from the call it interrupted (a Python loss's stops the call at once;
    a progress callback's once the call returns or the next Python loss
    runs, since the library cannot stop in between).
    """

    def __init__(self, lattice, *, steps=None, batch_size=None, epochs=None, val_fraction=None,
                 loss="output_face_mse", optimizer="adamw", lr=None, weight_decay=None, betas=None, eps=None,
                 momentum=None, clip_norm=None, warmup=None, cosine=False, min_lr=None, total_steps=None, seed=None,
                 checkpoint_dir=None, checkpoint_every=None, stop_after=None, grad_checkpoint_every=None,
                 memory_budget=None, progress=None, rank=None, ranks=None, reduce=None):
        from .lattice import Lattice3D

        self._token = None  # the finaliser runs even if __init__ fails
        self._ds = None
        self._busy = None
        if not isinstance(lattice, Lattice3D):
            raise MoelatTypeError(f"Trainer takes a Lattice3D, not {type(lattice).__name__}")
        if progress is not None and not callable(progress):
            raise MoelatTypeError(f"progress must be callable or None, not {type(progress).__name__}")
        self.lattice = lattice
        p = _train.params()
        for name, value, low, high in (("steps", steps, 1, 100000), ("batch_size", batch_size, 1, 1000000),
                                       ("epochs", epochs, 1, 1000000),
                                       ("grad_checkpoint_every", grad_checkpoint_every, 0, 100000),
                                       ("checkpoint_every", checkpoint_every, 0, _check.INT32_MAX),
                                       ("stop_after", stop_after, 0, _UINT64_MAX),
                                       ("memory_budget", memory_budget, 0, _UINT64_MAX)):
            if value is not None:
                setattr(p, name, _check.integer(name, value, low, high))
        for name, value in (("ranks", ranks), ("rank", rank)):
            if value is not None:
                setattr(p, name, _check.integer(name, value, 0, 1000000))
        if val_fraction is not None:
            p.val_fraction = _check.real("val_fraction", val_fraction, 0.0, 0.9)
        p.cosine = 1 if cosine else 0

        kind = _optim.KINDS[_check.choice("optimizer", optimizer, _optim.KINDS)]
        _optim.defaults(ctypes.byref(p.optimizer), kind)
        o = p.optimizer
        for name, value in (("lr", lr), ("weight_decay", weight_decay), ("eps", eps), ("momentum", momentum),
                            ("clip_norm", clip_norm), ("min_lr", min_lr)):
            if value is not None:
                setattr(o, name, _check.real(name, value))
        if betas is not None:
            try:
                b1, b2 = betas
            except (TypeError, ValueError):
                raise MoelatTypeError(f"betas must be a pair (beta1, beta2), not {betas!r}") from None
            o.beta1, o.beta2 = _check.real("betas[0]", b1), _check.real("betas[1]", b2)
        if warmup is not None:
            o.warmup_steps = _check.integer("warmup", warmup, 0, _INT64_MAX)
        if total_steps is not None:
            o.total_steps = _check.integer("total_steps", total_steps, 0, _INT64_MAX)

        self._cb = _Callbacks(None, (lattice.num_cells, lattice.state_size))
        if callable(loss):
            self._cb.loss = loss
            p.loss = _train.LOSS_CALLBACK
            self._c_loss = _train.LOSS_FN(self._cb.on_loss)
            p.loss_fn = self._c_loss
            self.loss = getattr(loss, "__name__", "callable")
        elif isinstance(loss, str):
            p.loss = _train.LOSSES[_check.choice("loss", loss, _train.LOSSES)]
            self.loss = loss
        else:
            raise MoelatTypeError(f"loss must be 'output_face_mse', 'all_cells_mse' or a callable, "
                                  f"not {type(loss).__name__}")
        if reduce is not None:
            if not callable(reduce):
                raise MoelatTypeError(f"reduce must be callable or None, not {type(reduce).__name__}")
            self._cb.reduce = reduce
            self._c_reduce = _train.REDUCE_FN(self._cb.on_reduce)
            p.reduce = self._c_reduce
        self._c_progress = _train.PROGRESS_FN(self._cb.on_progress)
        p.progress = self._c_progress
        self.progress = progress
        if checkpoint_dir is not None:
            self._checkpoint_dir = _check.path("checkpoint_dir", checkpoint_dir, 4000)
            p.checkpoint_dir = self._checkpoint_dir

        err = ctypes.create_string_buffer(_ERR_LEN)
        handle = ctypes.c_void_p()
        with lattice._lock:
            lat = lattice._handle()
            if seed is None:
                p.seed = core.lattice_config(lat).contents.seed
            else:
                p.seed = _check.integer("seed", seed, 0, _UINT64_MAX)
            status = _train.trainer_create(lat, ctypes.byref(p), ctypes.byref(handle), err, _ERR_LEN)
            if status != core.OK:
                raise from_status(status, err.value.decode("utf-8", "replace"))
            self._token = lattice._adopt(handle.value, _train.trainer_destroy, WHAT)
        self.params = p  # as created (the library keeps its own copy)

    # ---- calls ---------------------------------------------------------
    def _handle(self):
        if self._token is None:
            raise ClosedLatticeError(f"the {WHAT} was closed")
        return self.lattice._dependent(self._token, WHAT)

    def _last_error(self, t):
        return (_train.trainer_last_error(t) or b"").decode("utf-8", "replace")

    def _run(self, what, fn, *args, progress=None):
        """fn(trainer, *args) under the lattice's lock; a failure raises the
        exception a callback raised, else the status' MoelatError."""
        if progress is not None and not callable(progress):
            raise MoelatTypeError(f"progress must be callable or None, not {type(progress).__name__}")
        lattice = self.lattice
        with lattice._lock:
            if self._busy is not None:
                raise MoelatError(f"Trainer.{what}() called from a callback of Trainer.{self._busy}(): "
                                  "a trainer runs one call at a time")
            t = self._handle()
            cb = self._cb
            cb.pending = None
            cb.progress = progress if progress is not None else self.progress
            self._busy = what
            lattice._callouts = getattr(lattice, "_callouts", 0) + 1
            try:
                status = fn(t, *args)
            finally:
                lattice._callouts -= 1
                self._busy = None
                cb.progress = None
            pending, cb.pending = cb.pending, None
            if pending is not None:
                if status != core.OK and hasattr(pending, "add_note"):
                    pending.add_note(f"moelat trainer: {self._last_error(t)}")
                raise pending
            if status != core.OK:
                raise from_status(status, self._last_error(t))

    def _read(self, fn):
        """fn(trainer) under the lattice's lock (also from a callback)."""
        with self.lattice._lock:
            return fn(self._handle())

    # ---- data ----------------------------------------------------------
    def set_data(self, inputs, targets=None):
        """The data set: arrays inputs (B, Y, X, 16) and targets (B, ...)
        (float, copied), or two .npy paths, or a directory holding
        inputs.npy and targets.npy (moelat-engine train --data). Target
        shapes: (B, Y, X, S) for "output_face_mse", (B, Z, Y, X, S) for
        "all_cells_mse", any for a callable loss."""
        err = ctypes.create_string_buffer(_ERR_LEN)
        ds = ctypes.c_void_p()
        paths = (str, bytes, os.PathLike)
        if isinstance(inputs, paths) and (targets is None or isinstance(targets, paths)):
            if targets is None:
                directory = _check.path("inputs", inputs)
                in_path, tg_path = os.path.join(directory, b"inputs.npy"), os.path.join(directory, b"targets.npy")
            else:
                in_path, tg_path = _check.path("inputs", inputs), _check.path("targets", targets)
            status = _train.dataset_load(in_path, tg_path, ctypes.byref(ds), err, _ERR_LEN)
        elif targets is None:
            raise MoelatTypeError("set_data takes inputs and targets (arrays or .npy paths), or a directory")
        else:
            x = _float_array("inputs", inputs, 2)
            y = _float_array("targets", targets, 1)
            if x.shape[0] != y.shape[0]:
                raise InvalidArgumentError(f"inputs hold {x.shape[0]} samples, targets {y.shape[0]}")
            xs = np.array(x.shape[1:], dtype=np.int64)
            ys = np.array(y.shape[1:] or (1,), dtype=np.int64)
            status = _train.dataset_create(x.shape[0], x.ndim - 1, _train_int64s(xs), _floats(x), y.ndim - 1,
                                           _train_int64s(ys), _floats(y), ctypes.byref(ds), err, _ERR_LEN)
        if status != core.OK:
            raise from_status(status, err.value.decode("utf-8", "replace"))
        shape = np.zeros(_train.MAX_DIM, dtype=np.int64)
        n = _train.dataset_shape(ds, 1, _train_int64s(shape))
        try:
            self._run("set_data", _train.trainer_set_data, ds)
        except BaseException:
            _train.dataset_destroy(ds)
            raise
        # The trainer now uses ds: the previous one can go.
        old, self._ds = self._ds, ds.value
        self._cb.target_shape = tuple(int(v) for v in shape[:n])
        if old:
            _train.dataset_destroy(old)

    @property
    def samples(self):
        """The data set's sample count (0 before set_data)."""
        return int(_train.dataset_samples(self._ds)) if self._ds else 0

    def set_initial_states(self, states=None):
        """Every sample's initial states ((N, S), (Z, Y, X, S) or flat;
        copied); None: zeros (the default)."""
        if states is None:
            self._run("set_initial_states", _train.trainer_set_initial_states, None, 0)
            return
        from .lattice import _float32

        X, Y, Z = self.lattice.dimensions
        N, S = self.lattice.num_cells, self.lattice.state_size
        arr = _float32("states", states, [(N, S), (Z, Y, X, S), (N * S,)])
        self._run("set_initial_states", _train.trainer_set_initial_states, _floats(arr), arr.size)

    # ---- training --------------------------------------------------------
    def fit(self, progress=None):
        """Trains from the current position to the last epoch (or
        stop_after): a validation pass first when none was made. progress:
        a callable receiving each TrainEvent (this call only; default the
        Trainer's). Returns summary()."""
        with self.lattice._lock:  # the summary of this call, whatever other threads do next
            self._run("fit", _train.trainer_fit, progress=progress)
            return self.summary()

    def epoch(self, progress=None):
        """The rest of the current epoch (whatever epochs says), its
        validation pass and its checkpoint. Returns summary()."""
        with self.lattice._lock:  # the summary of this call, whatever other threads do next
            self._run("epoch", _train.trainer_epoch, progress=progress)
            return self.summary()

    def batch(self, indices):
        """One optimizer step over the given samples (gradients summed in
        their order); returns their mean loss. The position in the data
        and the history do not move."""
        ids = _indices("indices", indices)
        out = ctypes.c_double()
        self._run("batch", _train.trainer_batch, _train_int64s(ids), ids.size, ctypes.byref(out))
        return out.value

    def evaluate(self, indices=None):
        """The mean loss over the given samples with the lattice's plain
        forward steps; None: the validation samples (NaN when none)."""
        out = ctypes.c_double()
        if indices is None:
            self._run("evaluate", _train.trainer_evaluate, None, 0, ctypes.byref(out))
        else:
            ids = _indices("indices", indices)
            self._run("evaluate", _train.trainer_evaluate, _train_int64s(ids), ids.size, ctypes.byref(out))
        return out.value

    # ---- checkpoints -------------------------------------------------------
    def save(self, directory):
        """A training checkpoint of the current state into directory
        (created): weights, initial states, optimizer moments, position,
        history."""
        self._run("save", _train.trainer_save, _check.path("directory", directory))

    def resume(self, directory):
        """Continues from directory's checkpoint (set_data first): the
        same data, options and lattice config, or a refusal naming each
        difference; on a refusal nothing changes."""
        self._run("resume", _train.trainer_resume, _check.path("directory", directory))

    # ---- what it did ---------------------------------------------------------
    @property
    def history(self):
        """History(train=[TrainPoint, ...], validation=[TrainPoint, ...])."""

        def read(t):
            out = []
            for which in (0, 1):
                pts = ctypes.POINTER(_train.TrainPoint)()
                n = _train.trainer_history(t, which, ctypes.byref(pts))
                out.append([TrainPoint(pts[i].epoch, pts[i].batch, pts[i].samples, pts[i].loss, pts[i].lr)
                            for i in range(n)])
            return History(*out)

        return self._read(read)

    def summary(self):
        """The run so far as a dict (moelat_train_summary's fields): samples,
        train_samples, val_samples, batches (per epoch), epoch and batch (the
        position), samples_seen, optimizer_steps, seconds, samples_per_s,
        stopped_early, initial/final/best_val_loss (NaN when none) and
        backward (where the gradients run, "" before the first)."""

        def read(t):
            s = _train.summary_init()
            status = _train.trainer_summary(t, ctypes.byref(s))
            if status != core.OK:
                raise from_status(status, self._last_error(t))
            out = {name: getattr(s, name) for name, _ in _train.TrainSummary._fields_ if name != "struct_size"}
            out["stopped_early"] = bool(s.stopped_early)
            out["backward"] = s.backward.decode("utf-8", "replace")
            return out

        return self._read(read)

    @property
    def optimizer_config(self):
        """The optimizer settings in effect (cosine's total_steps once the
        data are set), as a dict."""

        def read(t):
            cfg = _optim.OptimizerConfig()
            status = _train.trainer_optimizer_config(t, ctypes.byref(cfg))
            if status != core.OK:
                raise from_status(status, self._last_error(t))
            return _optim.config_dict(cfg)

        return self._read(read)

    # ---- life cycle ------------------------------------------------------
    @property
    def closed(self):
        return self._token is None or self.lattice.closed or self._token not in self.lattice._dependents

    def close(self):
        """Destroys the trainer now, then its data set (a no-op once done;
        after the lattice's close() only the data set is left to free)."""
        lattice = getattr(self, "lattice", None)
        if lattice is None:  # __init__ failed before it had one
            return
        with lattice._lock:  # another thread's call on the trainer finishes first
            if self._busy is not None:
                raise MoelatError(f"Trainer.close() called from a callback of Trainer.{self._busy}()")
            token, self._token = self._token, None
            if token is not None:
                lattice._release(token)
            ds, self._ds = self._ds, None
            if ds:
                _train.dataset_destroy(ds)

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finaliser
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        state = "closed" if self.closed else f"{self.samples} samples"
        return f"<moelat.Trainer of {self.lattice._name}, loss {self.loss}, {state}>"


def _floats(array):
    return array.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


def _train_int64s(array):
    return array.ctypes.data_as(ctypes.POINTER(ctypes.c_int64))


__all__ = ["Trainer", "TrainPoint", "TrainEvent", "History"]
