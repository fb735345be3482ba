import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import moelat  # noqa: E402

# A non-cubic debug lattice where every band is populated (docs/MODEL.md: r = 2.7,
# 6 / 26 / 48 interior neighbours).
DIMS = (9, 8, 7)


@pytest.fixture
def rng():
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"numpy seed {seed}")
    return np.random.default_rng(seed)


@pytest.fixture
def make_lattice(rng):
    made = []

    def make(dims=DIMS, **options):
        options.setdefault("seed", int(rng.integers(1, 2**31)))
        options.setdefault("threads", 2)
        lat = moelat.Lattice3D(dims, **options)
        made.append(lat)
        return lat

    yield make
    for lat in made:
        lat.close()


def random_states(rng, lat, scale=0.1):
    return (rng.standard_normal((lat.num_cells, lat.state_size)) * scale).astype(np.float32)


def random_input(rng, lat):
    X, Y, _ = lat.dimensions
    return rng.standard_normal((X * Y, moelat._lib.EXT_SIZE)).astype(np.float32)
