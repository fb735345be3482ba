"""Writes tests/golden/<case>/ from the numpy reference (moelat_ref.py).

Usage: /usr/bin/python3 tests/reference/make_golden.py [--out DIR]
Runs the self-checks first and writes nothing if any of them fails.
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import moelat_ref as ref  # noqa: E402
import test_ref_selfcheck as selfcheck  # noqa: E402

STEPS = 3
STATE_STD = 0.5
WEIGHT_SCALE = 1.5

# name, preset, dims (X, Y, Z), radius_ratio, cnf_mode, seed. The two debug
# cases share a seed, so they differ in the CNF mode only.
CASES = (
    ("debug_9x8x7", "debug", (9, 8, 7), 0.3, "euler", 20250101),
    ("debug_9x8x7_lipschitz", "debug", (9, 8, 7), 0.3, "lipschitz", 20250101),
    ("experiment_6x5x4", "experiment", (6, 5, 4), 0.75, "euler", 20250103),
)


def grid(a, dims):
    """(N, ...) in linear cell order -> (Z, Y, X, ...) float32."""
    X, Y, Z = dims
    return np.ascontiguousarray(a.reshape((Z, Y, X) + a.shape[1:]), dtype=np.float32)


def make_case(outdir, name, preset, dims, radius_ratio, cnf_mode, seed):
    cfg = ref.Config(preset, dims=dims, radius_ratio=radius_ratio, cnf_mode=cnf_mode)
    X, Y, Z = dims
    N = X * Y * Z
    rng = np.random.default_rng(seed)
    weights = ref.random_weights(cfg, rng, scale=WEIGHT_SCALE)
    states = (STATE_STD * rng.standard_normal((N, cfg.S))).astype(np.float32)
    ext = rng.standard_normal((Y, X, ref.EXT_SIZE)).astype(np.float32)

    model = ref.Model(cfg, weights)
    counts = model.counts()
    d = os.path.join(outdir, name)
    os.makedirs(d, exist_ok=True)

    conf = {"preset": preset, "dims": list(dims), "radius_ratio": radius_ratio, "cnf_mode": cnf_mode}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(conf, f, indent=1)
        f.write("\n")
    ref.save_safetensors(os.path.join(d, "weights.safetensors"), weights)
    np.save(os.path.join(d, "states.npy"), grid(states, dims))
    np.save(os.path.join(d, "ext.npy"), ext)
    np.save(os.path.join(d, "counts.npy"), grid(counts.astype(np.float32), dims))

    # The engine keeps float32 states between steps, so each step starts
    # from the float32-rounded result of the previous one.
    cur = states
    max_abs = []
    max_delta = []
    for s in range(1, STEPS + 1):
        new, experts, gate = model.step(cur, ext)
        if not np.all(np.isfinite(new)):
            raise RuntimeError("%s: non-finite state at step %d" % (name, s))
        if s == 1:
            for k, band in enumerate(ref.BANDS):
                np.save(os.path.join(d, "expert_%s.npy" % band), grid(experts[k], dims))
            np.save(os.path.join(d, "gate.npy"), grid(gate, dims))
            expert_max = {b: float(np.max(np.abs(experts[k]))) for k, b in enumerate(ref.BANDS)}
            gate_range = [float(gate.min()), float(gate.max())]
        max_delta.append(float(np.max(np.abs(new - cur))))
        cur = new.astype(np.float32)
        np.save(os.path.join(d, "step%d.npy" % s), grid(cur, dims))
        max_abs.append(float(np.max(np.abs(cur))))

    # How far a float32 evaluation of the same model drifts from these
    # float64 results: a floor for the engine's comparison tolerance.
    m32 = ref.Model(cfg, weights, dtype=np.float32)
    cur32 = states
    f32_diff = []
    for s in range(1, STEPS + 1):
        new32, experts32, _ = m32.step(cur32, ext)
        if s == 1:
            f32_expert = float(np.max(np.abs(experts32.astype(np.float64)
                                             - np.stack([np.load(os.path.join(d, "expert_%s.npy" % b))
                                                         .reshape(N, cfg.S) for b in ref.BANDS]))))
        cur32 = new32.astype(np.float32)
        gold = np.load(os.path.join(d, "step%d.npy" % s)).reshape(N, cfg.S)
        f32_diff.append(float(np.max(np.abs(cur32.astype(np.float64) - gold))))

    meta = {
        "case": name,
        "r": cfg.r,
        "interior_counts": list(ref.interior_counts(cfg.r)),
        "seed": seed,
        "rng": "numpy.random.default_rng (PCG64)",
        "weight_scale": WEIGHT_SCALE,
        "state_std": STATE_STD,
        "steps": STEPS,
        "cells_per_band_empty": [int(np.sum(counts[:, k] == 0)) for k in range(3)],
        "band_count_min": [int(counts[:, k].min()) for k in range(3)],
        "band_count_max": [int(counts[:, k].max()) for k in range(3)],
        "max_abs_state_initial": float(np.max(np.abs(states))),
        "max_abs_state_after_step": max_abs,
        "max_abs_update_per_step": max_delta,
        "max_abs_expert_step1": expert_max,
        "gate_range_step1": gate_range,
        "float32_eval_max_abs_diff_experts_step1": f32_expert,
        "float32_eval_max_abs_diff_after_step": f32_diff,
        "tolerance_hint": 1e-3 if cnf_mode == "lipschitz" else 1e-5,
    }
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    return meta


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(HERE), "golden"))
    args = ap.parse_args()

    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            worst = selfcheck.run_all(tmp)
        except AssertionError as e:
            sys.exit("make_golden: self-check failed, nothing written: %s" % e)
    print("self-check ok (param counts, interior counts, safetensors, "
          "vectorised vs naive max diff %.2g) in %.1fs" % (worst, time.time() - t0))

    for case in CASES:
        t = time.time()
        meta = make_case(args.out, *case)
        print("%-24s r=%.4g empty cells/band %s, max|state| %s, float32 eval drift %s  (%.1fs)"
              % (case[0], meta["r"], meta["cells_per_band_empty"],
                 ["%.3g" % v for v in meta["max_abs_state_after_step"]],
                 ["%.2g" % v for v in meta["float32_eval_max_abs_diff_after_step"]], time.time() - t))
    print("done in %.1fs -> %s" % (time.time() - t0, args.out))


if __name__ == "__main__":
    main()
