"""The prototype's batch helpers: upgrade_lattice_to_batch and the spatial
optimizer factory's product."""
from . import _check
from .errors import MoelatTypeError


class BatchSpatialOptimizer:
    """What a spatial_optimizer_factory returns: the execution settings a
    Lattice3D takes from it (batch on or off, batch threshold, run options
    such as chunk, queues, device)."""

    def __init__(self, dimensions, moe_processor=None, enable_batch=True, batch_threshold=4, **options):
        self.dimensions = tuple(dimensions)
        self.moe_processor = moe_processor
        self.enable_batch = bool(enable_batch)
        self.batch_threshold = _check.integer("batch_threshold", batch_threshold, 0, _check.INT32_MAX)
        self.options = {"batch_threshold": self.batch_threshold, **options}

    def __repr__(self):
        return f"BatchSpatialOptimizer(dimensions={self.dimensions}, enable_batch={self.enable_batch}, " \
               f"batch_threshold={self.batch_threshold})"


def create_batch_optimized_spatial_optimizer(dimensions, moe_processor=None, enable_batch=True, batch_threshold=4,
                                             **options):
    """Returns the optimizer a Lattice3D's spatial_optimizer_factory must
    return: batch processing on (enable_batch) with that threshold (the
    fewest cells for a chunk to go to the device)."""
    return BatchSpatialOptimizer(dimensions, moe_processor, enable_batch, batch_threshold, **options)


def upgrade_lattice_to_batch(lattice):
    """Builds the device kernels, checks a sample of cells against the
    per-cell path and switches the lattice to batch mode; returns it.
    MismatchError when the sample disagrees, DeviceError without a device."""
    from . import _lib
    from .lattice import Lattice3D

    if not isinstance(lattice, Lattice3D):
        raise MoelatTypeError(f"upgrade_lattice_to_batch takes a Lattice3D, not {type(lattice).__name__}")
    with lattice._lock:
        lattice._call(_lib.upgrade_to_batch)
        lattice._call(_lib.set_mode, 1)
    return lattice
