#!/usr/bin/env python3
"""Compares two gradient sets written by `moelat-engine grad` (--save-grads,
--save-state-grad, --save-input-grad) as DIR/g_A.safetensors, DIR/s_A.npy,
DIR/e_A.npy for A = reference and candidate, without numpy:

    grad_compare.py DIR [REFERENCE CANDIDATE]     (default: percell batch)

Per tensor ||cand - ref|| / max(||ref||, 1e-3 ||all of ref||), the measure
of tests/test_grad_device.c; prints the worst and exits 1 above 1e-4."""
import array
import json
import math
import struct
import sys


def safetensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, t in head.items():
        if name == "__metadata__":
            continue
        a = array.array("f")
        a.frombytes(data[t["data_offsets"][0]:t["data_offsets"][1]])
        out[name] = a
    return out


def npy(path):
    raw = open(path, "rb").read()
    hl = struct.unpack("<H", raw[8:10])[0]
    a = array.array("f")
    a.frombytes(raw[10 + hl:])
    return a


def norm(a):
    return math.sqrt(sum(v * v for v in a))


def main():
    d = sys.argv[1]
    ref, cand = (sys.argv[2], sys.argv[3]) if len(sys.argv) > 3 else ("percell", "batch")
    a = safetensors("%s/g_%s.safetensors" % (d, ref))
    b = safetensors("%s/g_%s.safetensors" % (d, cand))
    floor = 1e-3 * math.sqrt(sum(norm(t) ** 2 for t in a.values()))
    worst, where = 0.0, ""
    for name in sorted(a):
        diff = math.sqrt(sum((u - v) ** 2 for u, v in zip(a[name], b[name])))
        r = diff / max(norm(a[name]), floor)
        if r > worst:
            worst, where = r, name
    print("weights: %d tensors, worst rel %.2e (%s)" % (len(a), worst, where))
    bad = worst > 1e-4
    for kind in ("s", "e"):
        x = npy("%s/%s_%s.npy" % (d, kind, ref))
        y = npy("%s/%s_%s.npy" % (d, kind, cand))
        r = math.sqrt(sum((u - v) ** 2 for u, v in zip(x, y))) / max(norm(x), 1e-12)
        print("%s: rel %.2e" % ("dL/ds_0" if kind == "s" else "dL/d input", r))
        bad = bad or r > 1e-4
    print("gradients agree" if not bad else "gradients DISAGREE")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
