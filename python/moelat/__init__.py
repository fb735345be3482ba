"""moelat: the MoE lattice engine (libmoelat) from Python.

    from moelat import Lattice3D, upgrade_lattice_to_batch, create_batch_optimized_spatial_optimizer

The names follow the original PyTorch prototype's guide; the engine's log
arrives as records of the loggers "moelat.<module>" (see _logbridge).
"""
from . import _lib, _logbridge, capi
from .errors import (ClosedLatticeError, DeviceError, FormatError, InvalidArgumentError, MismatchError,
                     MoelatError, MoelatIOError, MoelatTypeError, MoelatValueError, NonFiniteError, OutOfMemoryError,
                     PluginError, StateDictError)
from .lattice import Lattice3D
from .spatial import BatchSpatialOptimizer, create_batch_optimized_spatial_optimizer, upgrade_lattice_to_batch
from .trainer import History, Trainer, TrainEvent, TrainPoint
from .weights import IncompatibleKeys

__version__ = "0.1.0"
LIBRARY_PATH = _lib.LIBRARY_PATH
BANDS = tuple(_lib.band_name(k).decode() for k in range(_lib.BANDS))

_logbridge.install()

__all__ = [
    "Lattice3D", "upgrade_lattice_to_batch", "create_batch_optimized_spatial_optimizer", "BatchSpatialOptimizer",
    "IncompatibleKeys", "MoelatError", "MoelatTypeError", "MoelatValueError", "InvalidArgumentError", "MoelatIOError", "FormatError", "OutOfMemoryError",
    "DeviceError", "PluginError", "NonFiniteError", "MismatchError", "ClosedLatticeError", "StateDictError",
    "LIBRARY_PATH", "BANDS", "Trainer", "TrainPoint", "TrainEvent", "History", "capi",
]
