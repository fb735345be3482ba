"""Misuse raises a clear Python exception and never crashes the interpreter."""
import numpy as np
import pytest

import moelat
from conftest import DIMS


@pytest.fixture
def lat(make_lattice):
    return make_lattice()


def test_closed_lattice(lat):
    lat.close()
    lat.close()  # twice is fine
    with pytest.raises(moelat.ClosedLatticeError, match="closed"):
        lat.forward()
    with pytest.raises(moelat.ClosedLatticeError):
        lat.states
    with pytest.raises(moelat.ClosedLatticeError):
        lat.state_dict()
    with pytest.raises(moelat.ClosedLatticeError):
        moelat.upgrade_lattice_to_batch(lat)
    assert "closed" in repr(lat)


def test_wrong_dtype(lat):
    with pytest.raises(TypeError, match="dtype int64"):
        lat.states = np.zeros((lat.num_cells, lat.state_size), dtype=np.int64)
    with pytest.raises(TypeError, match="floating-point"):
        lat.forward(np.zeros((72, 16), dtype=np.complex64))
    with pytest.raises(TypeError):
        lat.states = "not an array"


def test_wrong_shape(lat):
    with pytest.raises(ValueError, match=r"shape \(504, 23\)"):
        lat.states = np.zeros((lat.num_cells, lat.state_size - 1), dtype=np.float32)
    with pytest.raises(ValueError, match="external_input"):
        lat.forward(np.zeros((71, 16), dtype=np.float32))
    # The right size in a wrong shape is refused too (no silent reshape).
    with pytest.raises(ValueError):
        lat.states = np.zeros((lat.state_size, lat.num_cells), dtype=np.float32)


def test_nan_state_and_input(lat):
    bad = np.zeros((lat.num_cells, lat.state_size), dtype=np.float32)
    bad[17, 3] = np.nan
    with pytest.raises(moelat.NonFiniteError, match="NaN"):
        lat.states = bad
    ext = np.zeros((72, 16), dtype=np.float32)
    ext[0, 0] = np.inf
    with pytest.raises(moelat.NonFiniteError):
        lat.forward(ext)


def test_overflow_during_steps_is_an_engine_error(lat):
    # Huge but finite states overflow float32 within a step: the engine's
    # NONFINITE status, with its message naming the cell.
    lat.states = np.full((lat.num_cells, lat.state_size), 3e38, dtype=np.float32) * \
        np.where(np.arange(lat.state_size) % 2, 1, -1).astype(np.float32)
    with pytest.raises(moelat.NonFiniteError, match="cell"):
        lat.forward(steps=3)


def test_bad_files(lat, tmp_path):
    with pytest.raises(moelat.MoelatIOError):
        lat.load_weights(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(moelat.MoelatError) as e:
        lat.load_weights(junk)
    assert isinstance(e.value, (moelat.FormatError, moelat.MoelatIOError))
    with pytest.raises(moelat.MoelatError):
        lat.load_states(junk)
    with pytest.raises(moelat.MoelatError):
        lat.save_weights(tmp_path / "no" / "such" / "dir" / "w.safetensors")
    with pytest.raises(moelat.MoelatError):
        lat.resume(tmp_path / "not-a-checkpoint")


def test_state_dict_keys_and_shapes(lat):
    sd = lat.state_dict()
    extra = dict(sd, **{"local_expert.bogus.weight": np.zeros(3, np.float32)})
    with pytest.raises(moelat.StateDictError, match='Unexpected key.*"local_expert.bogus.weight"'):
        lat.load_state_dict(extra)
    missing = dict(sd)
    del missing["gating_network.context_norm.bias"]
    with pytest.raises(RuntimeError, match='Missing key.*"gating_network.context_norm.bias"'):
        lat.load_state_dict(missing)
    wrong = dict(sd)
    wrong["gating_network.gating_network.0.weight"] = np.zeros((24, 47), np.float32)
    with pytest.raises(moelat.StateDictError, match=r"size mismatch for gating_network.gating_network.0.weight"):
        lat.load_state_dict(wrong, strict=False)
    with pytest.raises(TypeError):
        lat.load_state_dict([1, 2, 3])
    nan = dict(sd)
    nan["local_expert.alpha"] = np.float32(np.nan)
    with pytest.raises(moelat.NonFiniteError):
        lat.load_state_dict(nan)
    # Nothing above changed the weights.
    for k, v in lat.state_dict().items():
        np.testing.assert_array_equal(v, sd[k])


def test_bad_construction():
    with pytest.raises(moelat.InvalidArgumentError, match="preset"):
        moelat.Lattice3D(DIMS, preset="gigantic")
    with pytest.raises(ValueError):
        moelat.Lattice3D((9, 8))
    with pytest.raises(ValueError):
        moelat.Lattice3D((9, 0, 7))
    with pytest.raises(TypeError, match="unexpected option 'colour'"):
        moelat.Lattice3D(DIMS, colour="blue")
    with pytest.raises(ValueError, match="mode"):
        moelat.Lattice3D(DIMS, mode="warp")
    with pytest.raises(moelat.PluginError):
        moelat.Lattice3D(DIMS, experts={"local": "no_such_expert"})
    with pytest.raises(moelat.MoelatError):
        moelat.Lattice3D(DIMS, config={"dims": "banana"})
    with pytest.raises(TypeError):
        moelat.Lattice3D(DIMS, spatial_optimizer_factory=lambda d, m: object())


def test_bad_steps_and_modes(lat):
    with pytest.raises(TypeError):
        lat.forward(steps=1.5)
    with pytest.raises(ValueError):
        lat.forward(steps=-1)
    with pytest.raises(ValueError):
        lat.mode = "sideways"
    with pytest.raises(TypeError):
        moelat.upgrade_lattice_to_batch("lattice")
    with pytest.raises(moelat.InvalidArgumentError):
        moelat.create_batch_optimized_spatial_optimizer(DIMS, batch_threshold=-3)
    # Still usable after all of that.
    assert lat.forward().shape == (lat.num_cells, lat.state_size)


def test_close_while_another_thread_steps(lat):
    import threading

    errors = []

    def stepper():
        for _ in range(20):
            try:
                lat.forward()
            except moelat.ClosedLatticeError:
                return
            except Exception as e:  # noqa: BLE001
                errors.append(e)
                return

    t = threading.Thread(target=stepper)
    t.start()
    lat.close()
    t.join(120)
    assert not t.is_alive() and errors == []
    with pytest.raises(moelat.ClosedLatticeError):
        lat.states = np.zeros((lat.num_cells, lat.state_size), np.float32)


def test_tuning_knobs(make_lattice):
    with pytest.raises(moelat.InvalidArgumentError, match="unknown key 'warp_drive'"):
        make_lattice(tuning={"warp_drive": 9})
    with pytest.raises(moelat.InvalidArgumentError, match="gate_cells"):
        make_lattice(tuning="gate_cells=3")
    lat = make_lattice(tuning={"gate_cells": 2}, mode="batch")
    assert lat.forward().shape == (lat.num_cells, lat.state_size)
    lat = make_lattice(tuning="gate_cells=1, agg_vector=1", mode="batch")
    assert lat.forward().shape == (lat.num_cells, lat.state_size)
