"""Self-checks of the reference: layout, stencil counts, and a second,
deliberately naive per-cell implementation of docs/MODEL.md (explicit loops over
offsets and neighbours, scalar math.erf) that must agree with the vectorised
Model. Run directly or through make_golden.py, which aborts on any failure.
"""
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import moelat_ref as ref  # noqa: E402

INTERIOR = {4.5: (26, 152, 186), 8.0: (146, 898, 1058), 20.0: (2102, 14974, 15454)}


def check_param_counts():
    for preset, want in ref.MODEL_PARAM_COUNTS.items():
        got = ref.param_counts(ref.Config(preset))
        if got != want:
            raise AssertionError("param counts of %s: got %s, docs/MODEL.md says %s" % (preset, got, want))


def check_interior_counts():
    for preset in ("debug", "experiment", "optimized"):
        p = ref.PRESETS[preset]
        r = ref.radius(p["dims"], p["radius_ratio"])
        want = {"debug": INTERIOR[4.5], "experiment": INTERIOR[8.0], "optimized": INTERIOR[20.0]}[preset]
        if ref.interior_counts(r) != want:
            raise AssertionError("%s: r=%r counts %s, docs/MODEL.md says %s"
                                 % (preset, r, ref.interior_counts(r), want))
    for r, want in INTERIOR.items():
        if ref.interior_counts(r) != want:
            raise AssertionError("r=%r: counts %s, docs/MODEL.md says %s" % (r, ref.interior_counts(r), want))
    got = ref.interior_counts(ref.radius((9, 8, 7), 0.3))
    if got != (6, 26, 48):
        raise AssertionError("debug 9x8x7: counts %s, docs/MODEL.md says (6, 26, 48)" % (got,))


def check_safetensors_roundtrip(tmpdir):
    rng = np.random.default_rng(7)
    cfg = ref.Config("debug", dims=(9, 8, 7))
    w = ref.random_weights(cfg, rng)
    path = os.path.join(tmpdir, "roundtrip.safetensors")
    ref.save_safetensors(path, w)
    back = ref.load_safetensors(path)
    if set(back) != set(w):
        raise AssertionError("safetensors round trip lost names")
    for k in w:
        if back[k].shape != w[k].shape or not np.array_equal(back[k], w[k]):
            raise AssertionError("safetensors round trip changed %s" % k)
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
    if n % 8:
        raise AssertionError("safetensors header length %d not a multiple of 8" % n)
    os.remove(path)


# ------------------------------------------------------------ naive model

def _gelu(v):
    return np.array([0.5 * a * (1.0 + math.erf(a / math.sqrt(2.0))) for a in v])


def _sig(v):
    return 1.0 / (1.0 + np.exp(-v))


def _ln(w, p, v):
    mu = sum(v) / len(v)
    var = sum((a - mu) ** 2 for a in v) / len(v)
    return np.array([(a - mu) / math.sqrt(var + 1e-5) for a in v]) * w[p + ".weight"] + w[p + ".bias"]


def _lin(w, p, v):
    W = w[p + ".weight"]
    out = np.array([sum(W[o, i] * v[i] for i in range(W.shape[1])) for o in range(W.shape[0])])
    b = w.get(p + ".bias")
    return out if b is None else out + b


def _softmax(v):
    m = max(v)
    e = [math.exp(a - m) for a in v]
    s = sum(e)
    return [a / s for a in e]


def _cnf(w, p, x, m, S, mode):
    def f(t, v):
        h = _ln(w, p + "neural_ode.input_norm", np.concatenate([v, m]))
        h = _gelu(_lin(w, p + "neural_ode.ode_network.0", h))
        h = _gelu(_lin(w, p + "neural_ode.ode_network.3", h))
        h = _lin(w, p + "neural_ode.ode_network.5", h)
        Wt = w[p + "neural_ode.time_embedding.weight"]
        for q in range(Wt.shape[0]):
            h[q] += Wt[q, 0] * t
        return _ln(w, p + "neural_ode.output_norm", h) - abs(float(w[p + "neural_ode.damping_strength"])) * v

    v = x.copy()
    for k in range(3):
        t = k / 3.0
        fv = f(t, v)
        if mode == "euler":
            dt = 1.0 / 3.0
        else:
            eps = np.array([1e-4 * (-1) ** s for s in range(S)])
            Lk = math.sqrt(sum((f(t, v + eps) - fv) ** 2)) / (math.sqrt(sum(eps ** 2)) + 1e-8)
            lam = min(max(float(w[p + "solver.lipschitz_factor"]), 0.1), 1.0)
            dt = min(max(lam / (Lk + 1e-6), 0.001), 0.5)
        v = v + dt * fv
    return v


def naive_cell(cfg, w, states, ext_face, cx, cy, cz):
    """x' of one cell, plus its three E_k and gate weights, by direct loops."""
    w = {k: np.asarray(v, dtype=np.float64) for k, v in w.items()}
    X, Y, Z = cfg.dims
    S = cfg.S
    r = min(max(max(X, Y, Z) * cfg.radius_ratio, 1.0), 100.0)
    bands = [[], [], []]
    R = int(r) + 1
    for dz in range(-R, R + 1):
        for dy in range(-R, R + 1):
            for dx in range(-R, R + 1):
                if dx == 0 and dy == 0 and dz == 0:
                    continue
                d = math.sqrt(dx * dx + dy * dy + dz * dz)
                if d < 0.4 * r:
                    b = 0
                elif d <= 0.8 * r:
                    b = 1
                elif d <= 0.99 * r:
                    b = 2
                else:
                    continue
                nx, ny, nz = cx + dx, cy + dy, cz + dz
                if 0 <= nx < X and 0 <= ny < Y and 0 <= nz < Z:
                    bands[b].append(np.asarray(states[nx + X * (ny + Y * nz)], dtype=np.float64))
    x = np.asarray(states[cx + X * (cy + Y * cz)], dtype=np.float64)
    ext = np.zeros(16)
    if cz == 0 and ext_face is not None:
        ext = np.asarray(ext_face[cy, cx], dtype=np.float64)
    E = [np.zeros(S), np.zeros(S), np.zeros(S)]

    nb = bands[0]
    if nb:
        p = "local_expert."
        a = _softmax([float(np.dot(n, x)) for n in nb])
        agg = sum(aj * n for aj, n in zip(a, nb))
        f = _lin(w, p + "neighbor_aggregator.2", _gelu(_lin(w, p + "neighbor_aggregator.0", agg)))
        q = _lin(w, p + "state_processor.2", _gelu(_lin(w, p + "state_processor.0", np.concatenate([x, f]))))
        E[0] = float(w[p + "alpha"]) * x + float(w[p + "beta"]) * _ln(w, p + "normalization", q)

    nb = bands[1]
    if nb:
        p = "functional_expert."
        act = sum(np.abs(n) for n in nb) / len(nb)
        g = _sig(_lin(w, p + "adaptive_gating.gating_network.2",
                      _gelu(_lin(w, p + "adaptive_gating.gating_network.0", np.concatenate([x, act])))))[0]
        ms, es = [], []
        for n in nb:
            m = _lin(w, p + "gnn_component.message_network.message_creator.2",
                     _gelu(_lin(w, p + "gnn_component.message_network.message_creator.0",
                                np.concatenate([n, x]))))
            e = _lin(w, p + "gnn_component.aggregator.attention_network.2",
                     np.tanh(_lin(w, p + "gnn_component.aggregator.attention_network.0",
                                  np.concatenate([m, x]))))[0]
            ms.append(m)
            es.append(e)
        a = _softmax(es)
        M = sum(aj * m for aj, m in zip(a, ms))
        u = np.concatenate([M, ext])
        su = p + "gnn_component.state_updater."
        z = _sig(_lin(w, su + "update_gate", np.concatenate([x, u])))
        rr = _sig(_lin(w, su + "reset_gate", np.concatenate([x, u])))
        cand = np.tanh(_lin(w, su + "candidate_network", np.concatenate([rr * x, u])))
        gnn = (1 - z) * x + z * cand
        cnf = _cnf(w, p + "cnf_component.", x, sum(nb) / len(nb), S, cfg.cnf_mode)
        E[1] = _gelu(_ln(w, p + "result_processor.1",
                         _lin(w, p + "result_processor.0", np.concatenate([(1 - g) * gnn, g * cnf]))))

    nb = bands[2]
    if nb:
        E[2] = _cnf(w, "distant_expert.", x, sum(nb) / len(nb), S, cfg.cnf_mode)

    allnb = bands[0] + bands[1] + bands[2]
    nu = sum(allnb) / len(allnb) if allnb else np.zeros(S)
    p = "gating_network."
    h = np.concatenate([_ln(w, p + "context_norm", x), nu])
    gw = _softmax(list(_lin(w, p + "gating_network.2", _gelu(_lin(w, p + "gating_network.0", h)))))
    new = x + sum(gw[k] * E[k] for k in range(3))
    return new, E, np.array(gw), [len(b) for b in bands]


def check_against_naive(cfg, weights, states, ext_face, cells, tol=1e-10):
    """Compares Model.step with naive_cell on the given (x, y, z) cells."""
    model = ref.Model(cfg, weights)
    new, experts, gate = model.step(states, ext_face)
    counts = model.counts()
    X, Y, _ = cfg.dims
    worst = 0.0
    for (cx, cy, cz) in cells:
        i = cx + X * (cy + Y * cz)
        n_new, n_E, n_g, n_c = naive_cell(cfg, weights, states, ext_face, cx, cy, cz)
        if list(counts[i]) != n_c:
            raise AssertionError("cell %s: counts %s vs naive %s" % ((cx, cy, cz), counts[i], n_c))
        diffs = [np.max(np.abs(new[i] - n_new)), np.max(np.abs(gate[i] - n_g))]
        diffs += [np.max(np.abs(experts[k, i] - n_E[k])) for k in range(3)]
        d = max(diffs)
        worst = max(worst, d)
        if not d <= tol:
            raise AssertionError("cell %s: vectorised vs naive differ by %g" % ((cx, cy, cz), d))
    return worst


def sample_cells(dims, rng, n):
    X, Y, Z = dims
    corners = [(0, 0, 0), (X - 1, Y - 1, Z - 1), (X // 2, Y // 2, Z // 2), (0, Y // 2, 0)]
    extra = [(int(rng.integers(X)), int(rng.integers(Y)), int(rng.integers(Z))) for _ in range(n)]
    return corners + extra


def run_all(tmpdir):
    check_param_counts()
    check_interior_counts()
    check_safetensors_roundtrip(tmpdir)
    rng = np.random.default_rng(11)
    worst = 0.0
    for preset, dims, rr, mode in (("debug", (9, 8, 7), 0.3, "euler"),
                                   ("debug", (9, 8, 7), 0.3, "lipschitz"),
                                   ("experiment", (6, 5, 4), 0.75, "euler")):
        cfg = ref.Config(preset, dims=dims, radius_ratio=rr, cnf_mode=mode)
        w = ref.random_weights(cfg, rng)
        N = int(np.prod(dims))
        st = (0.5 * rng.standard_normal((N, cfg.S))).astype(np.float32)
        ext = rng.standard_normal((dims[1], dims[0], 16)).astype(np.float32)
        worst = max(worst, check_against_naive(cfg, w, st, ext, sample_cells(dims, rng, 3)))
    return worst


if __name__ == "__main__":
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        print("self-check ok, vectorised vs naive max diff %.3g" % run_all(d))
