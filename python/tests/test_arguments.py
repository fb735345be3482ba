"""Arguments are checked in Python before they reach the C library: an
integer out of its range, a bool where an integer is meant, a NUL inside a
string or path, a non-finite number in a config dict. ctypes would
otherwise cut them silently (2**32 + 3 to 3, 'a\\0b' to 'a'). Every
refusal is a MoelatError and the built-in exception Python code expects,
and names the argument."""
import math
import os
import pathlib

import numpy as np
import pytest

import moelat
from moelat.errors import MoelatTypeError, MoelatValueError

SMALL = (3, 3, 2)


def value_error(match):
    return pytest.raises(MoelatValueError, match=match)


def type_error(match=None):
    return pytest.raises(MoelatTypeError, match=match)


def test_error_classes():
    assert issubclass(MoelatTypeError, moelat.MoelatError) and issubclass(MoelatTypeError, TypeError)
    assert issubclass(MoelatValueError, moelat.MoelatError) and issubclass(MoelatValueError, ValueError)
    assert issubclass(moelat.InvalidArgumentError, MoelatValueError)
    assert moelat.MoelatTypeError is MoelatTypeError and moelat.MoelatValueError is MoelatValueError


@pytest.mark.parametrize("kwargs, match", [
    (dict(dimensions=(2**32 + 3, 3, 3)), r"dimensions\[0\] must be an integer from 1 to 1048576, got 4294967299"),
    (dict(dimensions=(3, 3, 2**31)), r"dimensions\[2\] must be an integer from 1 to 1048576"),
    (dict(dimensions="3x4294967299x3"), r"dimensions\[1\] .*1 to 1048576"),
    (dict(seed=2**64 + 7), r"seed must be an integer from 0 to 9223372036854775807, got 18446744073709551623"),
    (dict(seed=2**63), r"seed must be an integer from 0 to 9223372036854775807"),
    (dict(seed=-1), r"seed .*0 to 9223372036854775807"),
    (dict(state_size=2**32 + 24), r"state_size must be an integer from 1 to 65536"),
    (dict(threads=2**32 + 2), r"threads must be an integer from 0 to 1024"),
    (dict(queues=2**32 + 1), r"queues must be an integer from 0 to 16"),
    (dict(batch_threshold=2**31), r"batch_threshold must be an integer from 0 to 2147483647"),
    (dict(chunk=(2**32 + 4, 1, 1)), r"chunk\[0\] must be an integer from 0 to 1048576"),
    (dict(hidden={"h1": 2**32 + 8}), r"hidden\['h1'\] must be an integer from 1 to 65536"),
    (dict(device=2**32), r"device .*0 to 2147483647"),
    (dict(radius_ratio=math.nan), r"radius_ratio must be a finite number"),
    (dict(radius_ratio=1e9), r"radius_ratio must be from 1e-06 to 100"),
])
def test_integers_and_numbers_out_of_range(kwargs, match):
    dims = kwargs.pop("dimensions", SMALL)
    with value_error(match):
        moelat.Lattice3D(dims, **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(seed=True), "seed must be an integer"),
    (dict(threads=False), "threads must be an integer"),
    (dict(dimensions=(3, True, 3)), r"dimensions\[1\] must be an integer"),
    (dict(hidden={"h1": True}), r"hidden\['h1'\] must be an integer"),
    (dict(state_size=24.0), "state_size must be an integer"),
    (dict(radius_ratio=True), "radius_ratio must be a number"),
])
def test_bool_and_float_are_not_integers(kwargs, match):
    dims = kwargs.pop("dimensions", SMALL)
    with type_error(match):
        moelat.Lattice3D(dims, **kwargs)


def test_limits_themselves_are_accepted():
    with moelat.Lattice3D(SMALL, seed=2**63 - 1, threads=1, mode="percell") as a, \
            moelat.Lattice3D(SMALL, seed=np.uint64(2**63 - 1), threads=np.int32(1), mode="percell") as b:
        np.testing.assert_array_equal(a.states, b.states)
        assert a.dimensions == SMALL


def test_steps_out_of_range_run_nothing(make_lattice):
    lat = make_lattice(SMALL, mode="percell")
    before = lat.states
    with value_error(r"steps must be an integer from 0 to 2147483647, got 4294967297"):
        lat.forward(steps=2**32 + 1)
    with type_error("steps must be an integer"):
        lat.forward(steps=True)
    assert lat.steps_done == 0
    np.testing.assert_array_equal(lat.states, before)
    with value_error(r"batch_threshold must be an integer from 0 to 2147483647"):
        moelat.create_batch_optimized_spatial_optimizer(SMALL, batch_threshold=2**32)
    with type_error("batch_threshold"):
        moelat.create_batch_optimized_spatial_optimizer(SMALL, batch_threshold=True)


def test_nul_in_paths(make_lattice, tmp_path):
    lat = make_lattice(SMALL, mode="percell")
    good = tmp_path / "good.safetensors"
    lat.save_weights(good)
    with value_error("path .*contains a NUL"):
        lat.load_weights(f"{good}\0junk")
    with value_error("path .*contains a NUL"):
        lat.load_weights(os.fsencode(good) + b"\0junk")
    with value_error("path .*contains a NUL"):
        lat.save_states(f"{tmp_path / 'x.npy'}\0junk")
    with value_error("path .*contains a NUL"):
        lat.save_weights(f"{tmp_path / 'w.safetensors'}\0junk")
    with value_error("path .*contains a NUL"):
        lat.load_states(f"{tmp_path / 'x.npy'}\0junk")
    with value_error("directory .*contains a NUL"):
        lat.save_checkpoint(f"{tmp_path / 'ck'}\0junk")
    with value_error("directory .*contains a NUL"):
        lat.resume(f"{tmp_path / 'ck'}\0junk")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.safetensors"]  # nothing written


@pytest.mark.parametrize("kwargs, match", [
    (dict(preset="debug\0junk"), "preset .*contains a NUL"),
    (dict(device="0\0junk"), "device .*contains a NUL"),
    (dict(experts={"local": "mlp\0junk"}), r"experts\['local'\] .*contains a NUL"),
    (dict(plugin_paths=["/tmp\0junk"]), r"plugin_paths\[0\] .*contains a NUL"),
    (dict(tuning="gate_cells=2\0junk"), "tuning .*contains a NUL"),
    (dict(tuning={"gate_cells": "2\0"}), "tuning .*contains a NUL"),
    (dict(hidden={"h1\0junk": 8}), "hidden size name .*contains a NUL"),
    (dict(config="/tmp/c.json\0junk"), "config .*contains a NUL"),
    (dict(config={"experts": {"local": "mlp\0junk"}}), r"config\['experts'\]\['local'\] .*contains a NUL"),
    (dict(dimensions="3x3x2\0"), "dimensions .*contains a NUL"),
])
def test_nul_in_strings(kwargs, match):
    dims = kwargs.pop("dimensions", SMALL)
    with value_error(match):
        moelat.Lattice3D(dims, **kwargs)


class _PathLike:
    def __init__(self, p):
        self.p = p

    def __fspath__(self):
        return str(self.p)


@pytest.mark.parametrize("wrap", [pathlib.Path, _PathLike, lambda p: os.fsencode(p)], ids=["Path", "PathLike", "bytes"])
def test_pathlike_everywhere(make_lattice, tmp_path, wrap):
    lat = make_lattice(SMALL, mode="percell")
    lat.save_weights(wrap(tmp_path / "w.safetensors"))
    lat.load_weights(wrap(tmp_path / "w.safetensors"))
    lat.save_states(wrap(tmp_path / "s.npy"))
    lat.load_states(wrap(tmp_path / "s.npy"))
    lat.save_checkpoint(wrap(tmp_path / "ck"))
    lat.resume(wrap(tmp_path / "ck"))
    (tmp_path / "c.json").write_text('{"radius_ratio": 0.5}')
    with moelat.Lattice3D(SMALL, config=wrap(tmp_path / "c.json"), plugin_paths=[wrap(tmp_path)],
                          mode="percell") as other:
        assert other.dimensions == SMALL


def test_config_dict_names_the_key():
    with value_error(r"config\['radius_ratio'\] is nan") as e:
        moelat.Lattice3D(SMALL, config={"radius_ratio": math.nan})
    assert "moelat-config-" not in str(e.value)
    with value_error(r"config\['band_ratios'\]\[1\] is inf"):
        moelat.Lattice3D(SMALL, config={"band_ratios": [0.4, math.inf, 0.99]})
    with type_error(r"config\['seed'\] is a object"):
        moelat.Lattice3D(SMALL, config={"seed": object()})
    # The engine's own refusals name the key, not the temporary file.
    with pytest.raises(moelat.MoelatError, match="key 'dims'") as e:
        moelat.Lattice3D(SMALL, config={"dims": "banana"})
    assert "moelat-config-" not in str(e.value)
    # numpy scalars are numbers.
    with moelat.Lattice3D(SMALL, config={"radius_ratio": np.float32(0.5), "seed": np.int64(3)},
                          mode="percell") as lat:
        assert lat.dimensions == SMALL


def test_python_refusals_are_moelat_errors(make_lattice):
    lat = make_lattice(SMALL, mode="percell")
    cases = [
        lambda: moelat.Lattice3D(SMALL, preset=3),
        lambda: moelat.Lattice3D(object()),
        lambda: moelat.Lattice3D(SMALL, colour="blue"),
        lambda: moelat.Lattice3D(SMALL, config=3),
        lambda: moelat.Lattice3D(SMALL, experts=5),
        lambda: moelat.Lattice3D(SMALL, plugin_paths=5),
        lambda: moelat.Lattice3D(SMALL, spatial_optimizer_factory=5),
        lambda: moelat.Lattice3D(SMALL, spatial_optimizer_factory=lambda d, m: object()),
        lambda: lat.forward(steps=1.5),
        lambda: lat.forward(np.zeros((9, 16), np.complex64)),
        lambda: setattr(lat, "states", "not an array"),
        lambda: lat.load_state_dict([1, 2, 3]),
        lambda: lat.load_weights(3),
        lambda: moelat.upgrade_lattice_to_batch("lattice"),
    ]
    for case in cases:
        with pytest.raises(MoelatTypeError):
            case()
    for case in (lambda: setattr(lat, "mode", ["batch"]), lambda: moelat.Lattice3D(SMALL, cnf_mode={})):
        with pytest.raises(MoelatValueError):
            case()
