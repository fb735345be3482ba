"""The C API of libmoelat, one module per public header, declared for
ctypes: every function's argument and result types, every struct a
caller allocates or reads, the callback types and the enums' values.

    moelat.capi.core    moelat/moelat.h  (lattice, config, report, files, slabs)
    moelat.capi.grad    moelat/grad.h    (gradient recordings)
    moelat.capi.optim   moelat/optim.h   (optimizers)
    moelat.capi.train   moelat/train.h   (data sets, the trainer)

Names drop the moelat_ prefix (moelat_grad_record is grad.record,
moelat_trainer_fit is train.trainer_fit). These are the raw functions:
statuses are returned, not raised, and handles are not owned; the classes
of the package (Lattice3D, Trainer, ...) own them. At import the mirrors
and statuses are checked against the library (capi/_abi.py): a mismatch
raises ImportError naming the struct and both sizes.
"""
from . import core, grad, optim, train  # noqa: F401
from ._abi import CHECKED, LIBRARY_STATUS_NAMES, UNCHECKED, check  # noqa: F401
from ._common import LIBRARY_PATH  # noqa: F401

__all__ = ["core", "grad", "optim", "train", "check", "CHECKED", "UNCHECKED", "LIBRARY_STATUS_NAMES",
           "LIBRARY_PATH"]

check()
