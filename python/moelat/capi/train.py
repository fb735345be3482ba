"""moelat/train.h: data sets, the library's trainer, its checkpoints.

Mirrors: moelat_train_params and moelat_train_summary (versioned: struct_size
first), moelat_train_point (the history's element), moelat_train_event
(what the progress callback receives) and the callback types
moelat_loss_fn and moelat_train_progress_fn. moelat/capi/_abi.py checks
the sizes against the library at import (see there for which check
each struct gets).
"""
import ctypes as c

from ._common import D, F, I64, P, STATUS, fn
from .optim import OptimizerConfig

MAX_DIM = 7  # a sample's shape: at most 7 sizes

# moelat_loss_kind
LOSS_OUTPUT_FACE_MSE = 0
LOSS_ALL_CELLS_MSE = 1
LOSS_CALLBACK = 2
LOSSES = {"output_face_mse": LOSS_OUTPUT_FACE_MSE, "all_cells_mse": LOSS_ALL_CELLS_MSE}

# moelat_train_event_kind
EVENT_BATCH = 0
EVENT_VALIDATION = 1
EVENT_BACKWARD = 2
EVENT_NAMES = {EVENT_BATCH: "batch", EVENT_VALIDATION: "validation", EVENT_BACKWARD: "backward"}

# moelat_loss_fn: (user, s_T, count, target, dL_ds_T or NULL, *loss) -> moelat_status
LOSS_FN = c.CFUNCTYPE(STATUS, c.c_void_p, F, c.c_size_t, F, F, D)


class TrainEvent(c.Structure):
    """Mirror of moelat_train_event."""

    _fields_ = [
        ("kind", c.c_int32),
        ("epoch", c.c_int32),
        ("batch", c.c_int32),
        ("batches", c.c_int32),
        ("samples", c.c_uint64),
        ("optimizer_step", c.c_uint64),
        ("loss", c.c_double),
        ("lr", c.c_double),
        ("seconds", c.c_double),
        ("samples_here", c.c_uint64),
        ("backward", c.c_char_p),
    ]


# moelat_train_progress_fn: (user, const moelat_train_event *)
PROGRESS_FN = c.CFUNCTYPE(None, c.c_void_p, c.POINTER(TrainEvent))

# moelat_train_params.reduce: (user, double *values, size_t count) -> status
REDUCE_FN = c.CFUNCTYPE(c.c_int, c.c_void_p, c.POINTER(c.c_double), c.c_size_t)


class TrainParams(c.Structure):
    """Mirror of moelat_train_params; params_default() fills it."""

    _fields_ = [
        ("struct_size", c.c_uint32),
        ("steps", c.c_int32),
        ("grad_checkpoint_every", c.c_int32),
        ("memory_budget", c.c_uint64),
        ("loss", c.c_int32),
        ("loss_fn", LOSS_FN),
        ("loss_user", c.c_void_p),
        ("optimizer", OptimizerConfig),
        ("cosine", c.c_int32),
        ("batch_size", c.c_int32),
        ("epochs", c.c_int32),
        ("val_fraction", c.c_double),
        ("seed", c.c_uint64),
        ("checkpoint_dir", c.c_char_p),
        ("checkpoint_every", c.c_int32),
        ("stop_after", c.c_uint64),
        ("progress", PROGRESS_FN),
        ("progress_user", c.c_void_p),
        ("rank", c.c_int32),
        ("ranks", c.c_int32),
        ("reduce", REDUCE_FN),
        ("reduce_user", c.c_void_p),
        ("host_optimizer", c.c_int32),
    ]


class TrainPoint(c.Structure):
    """Mirror of moelat_train_point."""

    _fields_ = [
        ("epoch", c.c_int32),
        ("batch", c.c_int32),
        ("samples", c.c_uint64),
        ("loss", c.c_double),
        ("lr", c.c_double),
    ]


class TrainSummary(c.Structure):
    """Mirror of moelat_train_summary; summary_init() sets struct_size."""

    _fields_ = [
        ("struct_size", c.c_uint32),
        ("samples", c.c_int64),
        ("train_samples", c.c_int64),
        ("val_samples", c.c_int64),
        ("batches", c.c_int32),
        ("epoch", c.c_int32),
        ("batch", c.c_int32),
        ("samples_seen", c.c_uint64),
        ("optimizer_steps", c.c_uint64),
        ("seconds", c.c_double),
        ("samples_per_s", c.c_double),
        ("stopped_early", c.c_int32),
        ("initial_val_loss", c.c_double),
        ("final_val_loss", c.c_double),
        ("best_val_loss", c.c_double),
        ("backward", c.c_char * 384),
        ("optimizer", c.c_char * 256),
    ]


_PARAMS = c.POINTER(TrainParams)

# data sets
dataset_load = fn("moelat_dataset_load", STATUS, c.c_char_p, c.c_char_p, c.POINTER(P), c.c_char_p, c.c_size_t)
dataset_create = fn("moelat_dataset_create", STATUS, c.c_int64, c.c_int, I64, F, c.c_int, I64, F, c.POINTER(P),
                    c.c_char_p, c.c_size_t)
dataset_destroy = fn("moelat_dataset_destroy", None, P)
dataset_samples = fn("moelat_dataset_samples", c.c_int64, P)
dataset_shape = fn("moelat_dataset_shape", c.c_int, P, c.c_int, I64)
dataset_input = fn("moelat_dataset_input", F, P, c.c_int64)
dataset_target = fn("moelat_dataset_target", F, P, c.c_int64)
dataset_fingerprint = fn("moelat_dataset_fingerprint", c.c_uint64, P)

# the trainer
train_params_default = fn("moelat_train_params_default", None, _PARAMS)
trainer_create = fn("moelat_trainer_create", STATUS, P, _PARAMS, c.POINTER(P), c.c_char_p, c.c_size_t)
trainer_destroy = fn("moelat_trainer_destroy", None, P)
trainer_last_error = fn("moelat_trainer_last_error", c.c_char_p, P)
trainer_set_data = fn("moelat_trainer_set_data", STATUS, P, P)
trainer_set_initial_states = fn("moelat_trainer_set_initial_states", STATUS, P, F, c.c_size_t)
trainer_fit = fn("moelat_trainer_fit", STATUS, P)
trainer_epoch = fn("moelat_trainer_epoch", STATUS, P)
trainer_batch = fn("moelat_trainer_batch", STATUS, P, I64, c.c_size_t, D)
trainer_evaluate = fn("moelat_trainer_evaluate", STATUS, P, I64, c.c_size_t, D)
trainer_save = fn("moelat_trainer_save", STATUS, P, c.c_char_p)
trainer_resume = fn("moelat_trainer_resume", STATUS, P, c.c_char_p)
trainer_history = fn("moelat_trainer_history", c.c_size_t, P, c.c_int, c.POINTER(c.POINTER(TrainPoint)))
trainer_summary = fn("moelat_trainer_summary", STATUS, P, c.POINTER(TrainSummary))
trainer_optimizer_config = fn("moelat_trainer_optimizer_config", STATUS, P, c.POINTER(OptimizerConfig))


def params():
    """A TrainParams with the library's defaults (struct_size set)."""
    p = TrainParams()
    train_params_default(c.byref(p))
    return p


def summary_init(s=None):
    """MOELAT_TRAIN_SUMMARY_INIT: a zeroed TrainSummary, struct_size set."""
    s = TrainSummary() if s is None else s
    c.memset(c.byref(s), 0, c.sizeof(s))
    s.struct_size = c.sizeof(s)
    return s
