"""One lattice shared between threads: every method is one atomic call.

forward(x) is set-input + step + read under the lattice's lock; two
threads calling it on one lattice must never see one thread's input
stepped by the other's forward."""
import sys
import threading

import numpy as np

import moelat

# Every band has members (r = 3), and the input changes the states within one step.
DIMS = (3, 2, 2)
OPTIONS = dict(radius_ratio=1.0, threads=1, mode="percell")
PAIRS = 1000


def test_concurrent_forward_is_atomic(rng):
    """Thread A puts s0 back and steps once with its input, 400 times: each
    result must be step(s0, x_A). Four other threads meanwhile set their
    own input, two with set_external_input(x_B), two with forward(x_B,
    steps=0) (set-input and read, no step), so the only way A can see
    anything else is x_B landing between A's set-input and its step."""
    lat = moelat.Lattice3D(DIMS, seed=int(rng.integers(1, 2**31)), **OPTIONS)
    X, Y, _ = DIMS
    x_a, x_b = (rng.standard_normal((X * Y, 16)).astype(np.float32) for _ in range(2))
    s0 = lat.states
    want = lat.forward(x_a)
    lat.states = s0
    assert not np.array_equal(lat.forward(x_b), want)  # x_B would show
    lat.states = s0
    bad, reads, errors = [], [], []
    start, done = threading.Barrier(5), threading.Event()

    def thread_a():
        for i in range(PAIRS):
            lat.states = s0
            if not np.array_equal(lat.forward(x_a), want):
                bad.append(i)

    def setter():
        while not done.is_set():
            lat.set_external_input(x_b)

    def reader():
        while not done.is_set():
            reads.append(lat.forward(x_b, steps=0))

    def run(fn):
        try:
            start.wait()
            fn()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            done.set()

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: a race shows within a few hundred calls
    try:
        threads = [threading.Thread(target=run, args=(f,)) for f in (thread_a, setter, setter, reader, reader)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(120)
    finally:
        sys.setswitchinterval(old)
        lat.close()
    assert errors == []
    assert bad == [], f"{len(bad)} of {PAIRS} forwards stepped another thread's input (first: call {bad[0]})"
    # The readers only ever saw whole states: s0 or A's result.
    assert reads and all(np.array_equal(r, s0) or np.array_equal(r, want) for r in reads)
