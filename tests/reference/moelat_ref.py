"""Independent numpy reference of the moelat model v1 (docs/MODEL.md).

Written from the model's specification alone (now docs/MODEL.md), not from
the C engine, so that agreement between the two is evidence and not a copy.
Everything is computed in float64; the float32 inputs (weights, states,
external input) are widened exactly, so the only float32 rounding is the
one the caller applies to the stored results.
"""
import json
import math
import struct

import numpy as np

EXT_SIZE = 16
BANDS = ("local", "functional", "distant")
BAND_RATIOS = (0.4, 0.8, 0.99)
CNF_STEPS = 3
LN_EPS = 1e-5

PRESETS = {
    "debug": dict(dims=(15, 15, 15), S=24, radius_ratio=0.3,
                  h1=12, h2=12, ph=12, hd=12, md=8, ode_hidden=48, gate_hidden=24),
    "experiment": dict(dims=(40, 40, 40), S=64, radius_ratio=0.2,
                       h1=32, h2=16, ph=64, hd=32, md=16, ode_hidden=32, gate_hidden=64),
    "optimized": dict(dims=(100, 100, 100), S=128, radius_ratio=0.2,
                      h1=64, h2=32, ph=128, hd=64, md=32, ode_hidden=64, gate_hidden=128),
}

# Parameter counts of the original modules, from docs/MODEL.md's table.
MODEL_PARAM_COUNTS = {
    "debug": dict(local_expert=1262, functional_expert=10605, distant_expert=4287,
                  gating_network=1299),
    "experiment": dict(local_expert=12082, functional_expert=43277, distant_expert=6139,
                       gating_network=8579),
    "optimized": dict(local_expert=47714, functional_expert=164885, distant_expert=23539,
                      gating_network=33539),
}


# ---------------------------------------------------------------- lattice

def radius(dims, radius_ratio):
    return min(max(max(dims) * radius_ratio, 1.0), 100.0)


def stencil(r, band_ratios=BAND_RATIOS):
    """Offsets (K_k, 3) as (dx, dy, dz) for each band, classified by docs/MODEL.md."""
    reach = int(math.floor(band_ratios[2] * r)) + 1
    ax = np.arange(-reach, reach + 1)
    dz, dy, dx = np.meshgrid(ax, ax, ax, indexing="ij")
    off = np.stack([dx.ravel(), dy.ravel(), dz.ravel()], axis=1)
    off = off[np.any(off != 0, axis=1)]
    d = np.sqrt(np.sum(off.astype(np.float64) ** 2, axis=1))
    lo, mid, hi = (band_ratios[0] * r, band_ratios[1] * r, band_ratios[2] * r)
    local = d < lo
    functional = (d >= lo) & (d <= mid)
    distant = (d > mid) & (d <= hi)
    return [off[local], off[functional], off[distant]]


def interior_counts(r):
    return tuple(len(o) for o in stencil(r))


def cell_coords(dims):
    """(N, 3) coordinates (x, y, z) in linear order i = x + X*(y + Y*z)."""
    X, Y, Z = dims
    z, y, x = np.meshgrid(np.arange(Z), np.arange(Y), np.arange(X), indexing="ij")
    return np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1)


def linear_index(dims, x, y, z):
    X, Y, _ = dims
    return x + X * (y + Y * z)


def band_neighbours(dims, offsets):
    """Neighbour indices (N, K) and validity mask (N, K) for one band's offsets."""
    X, Y, Z = dims
    c = cell_coords(dims)
    p = c[:, None, :] + offsets[None, :, :]
    valid = ((p[..., 0] >= 0) & (p[..., 0] < X) & (p[..., 1] >= 0) & (p[..., 1] < Y)
             & (p[..., 2] >= 0) & (p[..., 2] < Z))
    idx = linear_index(dims, p[..., 0], p[..., 1], p[..., 2])
    idx = np.where(valid, idx, 0)
    return idx, valid


# ---------------------------------------------------------------- config

class Config:
    def __init__(self, preset, dims=None, radius_ratio=None, cnf_mode="euler", **over):
        p = dict(PRESETS[preset])
        p.update(over)
        self.preset = preset
        self.dims = tuple(dims) if dims is not None else tuple(p["dims"])
        self.S = p["S"]
        self.radius_ratio = p["radius_ratio"] if radius_ratio is None else radius_ratio
        self.h = {k: p[k] for k in ("h1", "h2", "ph", "hd", "md", "ode_hidden", "gate_hidden")}
        self.cnf_mode = cnf_mode
        if cnf_mode not in ("euler", "lipschitz"):
            raise ValueError("cnf_mode must be euler or lipschitz, got %r" % cnf_mode)
        if self.h["ode_hidden"] // 4 > self.S:
            raise ValueError("floor(ode_hidden/4) > S")

    @property
    def r(self):
        return radius(self.dims, self.radius_ratio)


# ---------------------------------------------------------------- weights

def _lin(prefix, n_in, n_out, bias=True):
    out = {prefix + ".weight": (n_out, n_in)}
    if bias:
        out[prefix + ".bias"] = (n_out,)
    return out


def _ln(prefix, n):
    return {prefix + ".weight": (n,), prefix + ".bias": (n,)}


def _cnf_shapes(prefix, S, H):
    s = {}
    s.update(_lin(prefix + "neural_ode.ode_network.0", 2 * S, H))
    s.update(_lin(prefix + "neural_ode.ode_network.3", H, H // 2))
    s.update(_lin(prefix + "neural_ode.ode_network.5", H // 2, S))
    s.update(_lin(prefix + "neural_ode.time_embedding", 1, H // 4, bias=False))
    s[prefix + "neural_ode.damping_strength"] = ()
    s.update(_ln(prefix + "neural_ode.input_norm", 2 * S))
    s.update(_ln(prefix + "neural_ode.output_norm", S))
    s[prefix + "solver.base_dt"] = ()
    s[prefix + "solver.lipschitz_factor"] = ()
    return s


def weight_shapes(cfg):
    """Every tensor name -> PyTorch shape, as docs/MODEL.md's 'Weights'."""
    S, h, E = cfg.S, cfg.h, EXT_SIZE
    s = {}
    p = "local_expert."
    s.update(_lin(p + "neighbor_aggregator.0", S, h["h1"]))
    s.update(_lin(p + "neighbor_aggregator.2", h["h1"], h["h2"]))
    s.update(_lin(p + "state_processor.0", S + h["h2"], h["ph"]))
    s.update(_lin(p + "state_processor.2", h["ph"], S))
    s[p + "alpha"] = ()
    s[p + "beta"] = ()
    s.update(_ln(p + "normalization", S))

    p = "functional_expert."
    s.update(_lin(p + "adaptive_gating.gating_network.0", 2 * S, S // 2))
    s.update(_lin(p + "adaptive_gating.gating_network.2", S // 2, 1))
    s.update(_lin(p + "gnn_component.message_network.message_creator.0", 2 * S, h["hd"]))
    s.update(_lin(p + "gnn_component.message_network.message_creator.2", h["hd"], h["md"]))
    s.update(_lin(p + "gnn_component.aggregator.attention_network.0", h["md"] + S, h["md"]))
    s.update(_lin(p + "gnn_component.aggregator.attention_network.2", h["md"], 1))
    for g in ("update_gate", "reset_gate", "candidate_network"):
        s.update(_lin(p + "gnn_component.state_updater." + g, S + h["md"] + E, S))
    s.update(_cnf_shapes(p + "cnf_component.", S, h["ode_hidden"]))
    s.update(_lin(p + "result_processor.0", 2 * S, S))
    s.update(_ln(p + "result_processor.1", S))

    s.update(_cnf_shapes("distant_expert.", S, h["ode_hidden"]))

    p = "gating_network."
    s.update(_lin(p + "gating_network.0", 2 * S, h["gate_hidden"]))
    s.update(_lin(p + "gating_network.2", h["gate_hidden"], len(BANDS)))
    s.update(_ln(p + "context_norm", S))
    return s


def param_counts(cfg):
    counts = {}
    for name, shape in weight_shapes(cfg).items():
        mod = name.split(".")[0]
        counts[mod] = counts.get(mod, 0) + int(np.prod(shape, dtype=np.int64))
    return counts


def random_weights(cfg, rng, scale=1.5):
    """Random float32 weights far from the init constants (see README)."""
    w = {}
    for name, shape in weight_shapes(cfg).items():
        leaf = name.rsplit(".", 1)[1]
        if shape == ():
            if leaf == "alpha":
                v = rng.uniform(0.0, 0.3)
            elif leaf == "beta":
                v = rng.uniform(0.5, 1.0)
            elif leaf == "damping_strength":
                v = rng.uniform(0.05, 0.3) * rng.choice([-1.0, 1.0])
            elif leaf == "lipschitz_factor":
                v = rng.uniform(0.3, 1.2)
            elif leaf == "base_dt":
                v = rng.uniform(0.05, 0.2)
            else:
                raise KeyError(name)
            w[name] = np.array(v, dtype=np.float32)
            continue
        is_norm = ("norm" in name or "result_processor.1" in name)
        if is_norm:
            if leaf == "weight":
                v = 1.0 + 0.2 * rng.standard_normal(shape)
            else:
                v = 0.1 * rng.standard_normal(shape)
        else:
            fan_in = shapes_fan_in(name, shape, cfg)
            bound = scale / math.sqrt(fan_in)
            v = rng.uniform(-bound, bound, size=shape)
        w[name] = v.astype(np.float32)
    return w


def shapes_fan_in(name, shape, cfg):
    if name.endswith(".weight"):
        return shape[1]
    wshape = weight_shapes(cfg)[name[: -len("bias")] + "weight"]
    return wshape[1]


# ---------------------------------------------------------------- safetensors

def save_safetensors(path, tensors):
    header = {}
    blobs = []
    off = 0
    for name in sorted(tensors):
        # not ascontiguousarray: it turns a scalar of shape [] into shape [1]
        a = np.array(tensors[name], dtype="<f4", order="C")
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((-len(h)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise ValueError("%s: dtype %s, expected F32" % (name, info["dtype"]))
        b, e = info["data_offsets"]
        out[name] = np.frombuffer(raw[base + b: base + e], dtype="<f4").reshape(info["shape"]).copy()
    return out


# ---------------------------------------------------------------- maths

_erf = np.frompyfunc(math.erf, 1, 1)


def gelu(v):
    v = np.asarray(v)
    return 0.5 * v * (1.0 + _erf(v / math.sqrt(2.0)).astype(v.dtype))


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def layer_norm(v, w, b):
    mu = v.mean(axis=-1, keepdims=True)
    var = ((v - mu) ** 2).mean(axis=-1, keepdims=True)
    return (v - mu) / np.sqrt(var + LN_EPS) * w + b


def masked_softmax(logits, mask):
    """Softmax over the last axis restricted to mask; all-masked rows give 0."""
    neg = np.where(mask, logits, -np.inf)
    mx = np.max(neg, axis=-1, keepdims=True)
    mx = np.where(np.isfinite(mx), mx, 0.0)
    e = np.where(mask, np.exp(np.where(mask, logits, 0.0) - mx), 0.0)
    den = e.sum(axis=-1, keepdims=True)
    return e / np.where(den > 0, den, 1.0)


def softmax(v):
    e = np.exp(v - v.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# ---------------------------------------------------------------- model

class Model:
    def __init__(self, cfg, weights, dtype=np.float64):
        # dtype float32 is only for estimating the rounding error an engine
        # computing in float32 should expect; the golden files use float64.
        self.cfg = cfg
        self.dt = np.dtype(dtype)
        shapes = weight_shapes(cfg)
        missing = set(shapes) - set(weights)
        if missing:
            raise KeyError("missing tensors: %s" % sorted(missing))
        self.w = {}
        for name, shape in shapes.items():
            a = np.asarray(weights[name], dtype=np.float32).astype(self.dt)
            if a.shape != shape:
                if shape == () and a.shape == (1,):
                    a = a.reshape(())
                else:
                    raise ValueError("%s: shape %s, expected %s" % (name, a.shape, shape))
            self.w[name] = a
        self.offsets = stencil(cfg.r)
        self.nbr = [band_neighbours(cfg.dims, o) for o in self.offsets]

    def L(self, prefix, v):
        W = self.w[prefix + ".weight"]
        out = v @ W.T
        b = self.w.get(prefix + ".bias")
        return out if b is None else out + b

    def LN(self, prefix, v):
        return layer_norm(v, self.w[prefix + ".weight"], self.w[prefix + ".bias"])

    def counts(self):
        return np.stack([m.sum(axis=1) for _, m in self.nbr], axis=1)

    # -- CNF block
    def cnf_f(self, p, t, v, m):
        S = self.cfg.S
        h = self.LN(p + "neural_ode.input_norm", np.concatenate([v, m], axis=-1))
        h = gelu(self.L(p + "neural_ode.ode_network.0", h))
        h = gelu(self.L(p + "neural_ode.ode_network.3", h))
        h = self.L(p + "neural_ode.ode_network.5", h)
        te = np.zeros(S, dtype=self.dt)
        Wt = self.w[p + "neural_ode.time_embedding.weight"][:, 0]
        te[: Wt.shape[0]] = Wt * t
        out = self.LN(p + "neural_ode.output_norm", h + te)
        return out - abs(self.w[p + "neural_ode.damping_strength"]) * v

    def cnf(self, p, x, m):
        S = self.cfg.S
        v = x
        K = CNF_STEPS
        eps = (1e-4 * np.where(np.arange(S) % 2 == 0, 1.0, -1.0)).astype(self.dt)
        eps_norm = float(np.sqrt(np.sum(eps * eps)))
        lam = self.dt.type(min(max(float(self.w[p + "solver.lipschitz_factor"]), 0.1), 1.0))
        for k in range(K):
            t = k / K
            f = self.cnf_f(p, t, v, m)
            if self.cfg.cnf_mode == "euler":
                dt = self.dt.type(1.0 / K)
            else:
                f2 = self.cnf_f(p, t, v + eps, m)
                Lk = np.sqrt(np.sum((f2 - f) ** 2, axis=-1, keepdims=True)) / (eps_norm + 1e-8)
                dt = np.clip(lam / (Lk + 1e-6), 0.001, 0.5).astype(self.dt)
            v = v + dt * f
        return v

    # -- experts; x (N,S), n (N,K,S), mask (N,K)
    def local(self, x, n, mask):
        p = "local_expert."
        a = masked_softmax(np.einsum("nks,ns->nk", n, x), mask)
        agg = np.einsum("nk,nks->ns", a, n)
        f = self.L(p + "neighbor_aggregator.2", gelu(self.L(p + "neighbor_aggregator.0", agg)))
        q = self.L(p + "state_processor.2",
                   gelu(self.L(p + "state_processor.0", np.concatenate([x, f], axis=-1))))
        return self.w[p + "alpha"] * x + self.w[p + "beta"] * self.LN(p + "normalization", q)

    def functional(self, x, n, mask, ext):
        p = "functional_expert."
        gp = p + "gnn_component."
        c = np.maximum(mask.sum(axis=1), 1)[:, None].astype(x.dtype)
        mk = mask[..., None]
        act = np.sum(np.abs(n) * mk, axis=1) / c
        g = sigmoid(self.L(p + "adaptive_gating.gating_network.2",
                           gelu(self.L(p + "adaptive_gating.gating_network.0",
                                       np.concatenate([x, act], axis=-1)))))
        N, K, S = n.shape
        xb = np.broadcast_to(x[:, None, :], (N, K, S))
        mc = gp + "message_network.message_creator."
        m = self.L(mc + "2", gelu(self.L(mc + "0", np.concatenate([n, xb], axis=-1))))
        an = gp + "aggregator.attention_network."
        e = self.L(an + "2", np.tanh(self.L(an + "0", np.concatenate([m, xb], axis=-1))))[..., 0]
        a = masked_softmax(e, mask)
        M = np.einsum("nk,nkd->nd", a, m)
        u = np.concatenate([M, ext], axis=-1)
        su = gp + "state_updater."
        xu = np.concatenate([x, u], axis=-1)
        z = sigmoid(self.L(su + "update_gate", xu))
        rr = sigmoid(self.L(su + "reset_gate", xu))
        cand = np.tanh(self.L(su + "candidate_network", np.concatenate([rr * x, u], axis=-1)))
        gnn = (1.0 - z) * x + z * cand
        mean = np.sum(n * mk, axis=1) / c
        cnf = self.cnf(p + "cnf_component.", x, mean)
        r = self.L(p + "result_processor.0", np.concatenate([(1.0 - g) * gnn, g * cnf], axis=-1))
        return gelu(self.LN(p + "result_processor.1", r))

    def distant(self, x, n, mask):
        c = np.maximum(mask.sum(axis=1), 1)[:, None].astype(x.dtype)
        mean = np.sum(n * mask[..., None], axis=1) / c
        return self.cnf("distant_expert.", x, mean)

    def gate(self, x, nsum, ntot):
        p = "gating_network."
        nu = nsum / np.maximum(ntot, 1)[:, None]
        h = np.concatenate([self.LN(p + "context_norm", x), nu], axis=-1)
        return softmax(self.L(p + "gating_network.2", gelu(self.L(p + "gating_network.0", h))))

    def step(self, states, ext_face=None):
        """One Jacobi step. states (N,S); ext_face (Y,X,E) or None.

        Returns (new_states, experts (3,N,S), gate (N,3))."""
        cfg = self.cfg
        X, Y, Z = cfg.dims
        x = np.asarray(states, dtype=self.dt)
        N, S = x.shape
        ext = np.zeros((N, EXT_SIZE), dtype=self.dt)
        if ext_face is not None:
            ext[: X * Y] = np.asarray(ext_face, dtype=self.dt).reshape(X * Y, EXT_SIZE)
        experts = np.zeros((3, N, S), dtype=self.dt)
        nsum = np.zeros((N, S), dtype=self.dt)
        ntot = np.zeros(N, dtype=self.dt)
        for k, (idx, mask) in enumerate(self.nbr):
            n = x[idx] * mask[..., None]
            nsum += n.sum(axis=1)
            cnt = mask.sum(axis=1)
            ntot += cnt
            has = cnt > 0
            if not np.any(has):
                continue
            xs, ns, ms = x[has], n[has], mask[has]
            if k == 0:
                e = self.local(xs, ns, ms)
            elif k == 1:
                e = self.functional(xs, ns, ms, ext[has])
            else:
                e = self.distant(xs, ns, ms)
            experts[k, has] = e
        w = self.gate(x, nsum, ntot)
        new = x + np.einsum("nk,kns->ns", w, experts)
        return new, experts, w
