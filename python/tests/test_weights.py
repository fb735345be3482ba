"""Weights through state_dict / load_state_dict / safetensors / PyTorch."""
import collections

import numpy as np
import pytest

import moelat

# Parameter counts of the original modules at the debug preset (docs/MODEL.md).
DEBUG_COUNTS = {"local_expert.": 1262, "functional_expert.": 10605, "distant_expert.": 4287,
                "gating_network.": 1299}


def test_state_dict_names_and_counts(make_lattice):
    sd = make_lattice().state_dict()
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in sd.values())
    for prefix, count in DEBUG_COUNTS.items():
        assert sum(v.size for k, v in sd.items() if k.startswith(prefix)) == count, prefix
    assert sd["local_expert.alpha"].shape == ()
    assert sd["gating_network.gating_network.0.weight"].shape == (24, 48)
    assert "functional_expert.cnf_component.neural_ode.ode_network.3.weight" in sd


def test_round_trip(make_lattice, rng, tmp_path):
    a = make_lattice()
    b = make_lattice()
    sd = a.state_dict()
    new = collections.OrderedDict((k, (rng.standard_normal(v.shape) * 0.1).astype(np.float64)) for k, v in sd.items())
    # A scalar may come as [1], as a PyTorch state dict of older modules holds it.
    new["local_expert.beta"] = np.array([0.7])
    res = a.load_state_dict(new)
    assert res.missing_keys == [] and res.unexpected_keys == []
    got = a.state_dict()
    for k in new:
        np.testing.assert_allclose(got[k].reshape(-1), np.asarray(new[k], np.float32).reshape(-1), rtol=0, atol=0)
    path = tmp_path / "w.safetensors"
    a.save_weights(path)
    b.load_weights(path)
    for k, v in b.state_dict().items():
        np.testing.assert_array_equal(v, got[k])
    start = (rng.standard_normal((a.num_cells, a.state_size)) * 0.1).astype(np.float32)
    a.states = start
    b.states = start
    np.testing.assert_array_equal(a.forward(), b.forward())


def test_non_strict_keeps_missing(make_lattice):
    lat = make_lattice()
    before = lat.state_dict()
    res = lat.load_state_dict({"local_expert.alpha": np.float32(0.25), "nope": np.zeros(1)}, strict=False)
    assert res.unexpected_keys == ["nope"] and len(res.missing_keys) == len(before) - 1
    after = lat.state_dict()
    assert after["local_expert.alpha"] == np.float32(0.25)
    np.testing.assert_array_equal(after["gating_network.gating_network.0.weight"],
                                  before["gating_network.gating_network.0.weight"])


def test_pytorch_state_dict_loads(make_lattice):
    torch = pytest.importorskip("torch")
    lat = make_lattice()
    sd = {k: torch.randn(*v.shape) * 0.05 if v.shape else torch.tensor(0.3) for k, v in lat.state_dict().items()}
    lat.load_state_dict(sd)
    got = lat.state_dict()
    for k, t in sd.items():
        np.testing.assert_allclose(got[k], t.numpy(), rtol=0, atol=0)
    # And the states come back as tensors' input: torch.from_numpy shares them.
    states = torch.from_numpy(lat.forward())
    assert tuple(states.shape) == (lat.num_cells, lat.state_size)
