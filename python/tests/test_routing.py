"""Routing statistics: the report's mean gate weight and top share per band
against a numpy evaluation of the gate (docs/MODEL.md "Gate and update")."""
import math

import numpy as np
import pytest

from conftest import random_states


def stencil(dims, radius_ratio=0.3, edge=0.99):
    r = min(max(max(dims) * radius_ratio, 1.0), 100.0)
    R = int(math.ceil(edge * r))
    return [(dx, dy, dz) for dz in range(-R, R + 1) for dy in range(-R, R + 1) for dx in range(-R, R + 1)
            if (dx, dy, dz) != (0, 0, 0) and math.sqrt(dx * dx + dy * dy + dz * dz) <= edge * r]


def numpy_gate(states, dims, sd):
    X, Y, Z = dims
    S = states.shape[1]
    x = states.astype(np.float64).reshape(Z, Y, X, S)
    total = np.zeros_like(x)
    count = np.zeros((Z, Y, X, 1))
    for dx, dy, dz in stencil(dims):
        # Cell (z, y, x) reads (z+dz, y+dy, x+dx) when it is inside.
        src = x[max(dz, 0):Z + min(dz, 0), max(dy, 0):Y + min(dy, 0), max(dx, 0):X + min(dx, 0)]
        total[max(-dz, 0):Z - max(dz, 0), max(-dy, 0):Y - max(dy, 0), max(-dx, 0):X - max(dx, 0)] += src
        count[max(-dz, 0):Z - max(dz, 0), max(-dy, 0):Y - max(dy, 0), max(-dx, 0):X - max(dx, 0)] += 1
    nu = (total / np.maximum(count, 1)).reshape(-1, S)
    x = x.reshape(-1, S)
    g = {k[len("gating_network."):]: v.astype(np.float64) for k, v in sd.items() if k.startswith("gating_network.")}
    mean = x.mean(1, keepdims=True)
    var = ((x - mean) ** 2).mean(1, keepdims=True)
    ln = (x - mean) / np.sqrt(var + 1e-5) * g["context_norm.weight"] + g["context_norm.bias"]
    h = np.concatenate([ln, nu], 1) @ g["gating_network.0.weight"].T + g["gating_network.0.bias"]
    erf = np.vectorize(math.erf)
    h = 0.5 * h * (1 + erf(h / math.sqrt(2)))
    z = h @ g["gating_network.2.weight"].T + g["gating_network.2.bias"]
    w = np.exp(z - z.max(1, keepdims=True))
    return w / w.sum(1, keepdims=True)


@pytest.mark.parametrize("batch", [False, True])
def test_routing_matches_numpy_gate(make_lattice, rng, batch):
    lat = make_lattice()
    lat.set_batch_enabled(batch)
    weights = []
    lat.reset_performance()
    for _ in range(2):
        states = random_states(rng, lat, scale=float(rng.uniform(0.05, 1.0)))
        lat.states = states
        weights.append(numpy_gate(states, lat.dimensions, lat.state_dict()))
        lat.forward()
    w = np.concatenate(weights)
    perf = lat.get_batch_performance()
    routing = perf["routing"]
    assert perf["routed_cells"] == 2 * lat.num_cells
    assert [r["band"] for r in routing] == ["local", "functional", "distant"]
    mean = np.array([r["mean_gate_weight"] for r in routing])
    share = np.array([r["top_share"] for r in routing])
    assert abs(mean.sum() - 1) < 1e-6 and abs(share.sum() - 1) < 1e-12
    np.testing.assert_allclose(mean, w.mean(0), atol=1e-6)
    top = np.bincount(w.argmax(1), minlength=3) / len(w)
    # A near tie may fall either way in float32: allow a couple of cells.
    assert np.abs(share - top).max() <= 2.0 / len(w), (share, top)
    lat.reset_performance()
    assert lat.get_batch_performance()["routed_cells"] == 0


def test_paths_agree_on_routing(make_lattice, rng):
    seed = int(rng.integers(1, 2**31))
    a = make_lattice(seed=seed)
    b = make_lattice(seed=seed, mode="batch")
    start = random_states(rng, a)
    a.states = start
    b.states = start
    a.forward(steps=3)
    b.forward(steps=3)
    ra, rb = a.get_batch_performance(), b.get_batch_performance()
    assert rb["batch_chunks"] > 0 and ra["batch_chunks"] == 0
    for x, y in zip(ra["routing"], rb["routing"]):
        assert abs(x["mean_gate_weight"] - y["mean_gate_weight"]) < 1e-6
        assert abs(x["top_share"] - y["top_share"]) <= 2.0 / (3 * a.num_cells)
