"""Objects that depend on a lattice (gradient recordings, LatticeModules)
keep it alive, or, once close() has freed it, fail with a MoelatError
naming what was closed; they never touch freed memory.

Each scenario runs in its own interpreter: a use after free would kill it
(SIGSEGV, or an abort in the OpenCL driver), and the test reports that
instead of losing the whole pytest run."""
import os
import subprocess
import sys
import textwrap

import pytest

import moelat

HERE = os.path.dirname(os.path.abspath(__file__))
PKG = os.path.abspath(os.path.join(HERE, ".."))

PRELUDE = """
import gc, sys
import numpy as np
import moelat
from moelat._grad import Recording

def lattice(mode="percell"):
    return moelat.Lattice3D((6, 5, 4), radius_ratio=0.5, mode=mode, threads=1, seed=11)

def refused(fn, match):
    try:
        fn()
    except moelat.ClosedLatticeError as e:
        assert match in str(e), str(e)
        return
    raise AssertionError("no ClosedLatticeError")
"""

SCENARIOS = {
    # A recording's use after close() raises; its destroy is a no-op.
    "recording_used_after_close": """
        lat = lattice()
        rec = Recording(lat, 2, 0)
        lat.close()
        refused(rec.final_states, "gradient recording was freed when its lattice (Lattice3D debug 6x5x4) was closed")
        refused(lambda: rec.backward(np.ones((lat.num_cells, lat.state_size), np.float32)), "closed")
        refused(lambda: rec.path, "closed")
        rec.close(); rec.close()
        del rec
    """,
    # Dropping the recording after close() (its finaliser) is a no-op.
    "recording_dropped_after_close": """
        lat = lattice()
        rec = Recording(lat, 2, 0)
        lat.close()
        del rec
        gc.collect()
    """,
    # A recording keeps its lattice alive: dropping the last other
    # reference frees nothing it uses.
    "recording_keeps_lattice_alive": """
        lat = lattice()
        n, s = lat.num_cells, lat.state_size
        rec = Recording(lat, 2, 0)
        del lat
        gc.collect()
        assert rec.final_states().shape == (n, s)
        rec.backward(np.ones((n, s), np.float32))
        assert np.isfinite(rec.states_grad()).all()
    """,
    # Lattice and recording garbage in one reference cycle: the collector
    # runs their finalisers in any order (and clears weak references
    # first); the recording is destroyed before the lattice either way.
    "cycle_collected": """
        for mode in ("percell", "auto"):
            for i in range(4):
                lat = lattice(mode)
                rec = Recording(lat, 2, 0)
                lat.cycle = rec
                rec.cycle = lat
                del lat, rec
                gc.collect()
    """,
    # Several recordings, closed while all are live, on the device path too.
    "close_with_several_live": """
        for mode in ("percell", "auto"):
            lat = lattice(mode)
            recs = [Recording(lat, 2, 0) for _ in range(3)]
            recs[1].close()
            lat.close()
            for r in recs:
                refused(r.final_states, "closed")
            del recs
            gc.collect()
    """,
    # issue 33's report: backward of a LatticeModule's output after close().
    "module_backward_after_close": """
        import torch
        from moelat.nn import LatticeModule
        m = LatticeModule(moelat.Lattice3D((6, 5, 4), radius_ratio=0.5), steps=2)
        o = m(None, torch.randn(5, 6, 16))
        m.lattice.close()
        refused(lambda: o.sum().backward(), "gradient recording was freed when its lattice")
        refused(lambda: m(None, torch.randn(5, 6, 16)), "closed lattice")
        del o, m
        gc.collect()
    """,
    # The same, dropping the output instead (the recording's destroy).
    "module_output_dropped_after_close": """
        import torch
        from moelat.nn import LatticeModule
        m = LatticeModule(moelat.Lattice3D((6, 5, 4), radius_ratio=0.5), steps=2)
        o = m(None, torch.randn(5, 6, 16))
        m.lattice.close()
        del o
        gc.collect()
    """,
    # A module's output outlives every other reference to the lattice.
    "module_output_outlives_module": """
        import torch
        from moelat.nn import LatticeModule
        m = LatticeModule(moelat.Lattice3D((6, 5, 4), radius_ratio=0.5), steps=2)
        w = next(m.parameters())
        o = m(None, torch.randn(5, 6, 16))
        del m
        gc.collect()
        o.sum().backward()
        assert w.grad is not None and bool(torch.isfinite(w.grad).all())
    """,
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_lifetime(name, tmp_path):
    code = SCENARIOS[name]
    if "import torch" in code:
        pytest.importorskip("torch")
    script = PRELUDE + textwrap.dedent(code) + "\nprint('scenario done')\n"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([PKG, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and "scenario done" in proc.stdout, \
        f"{name}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"


def test_closed_lattice_names_itself():
    lat = moelat.Lattice3D((3, 3, 2), mode="percell")
    lat.close()
    with pytest.raises(moelat.ClosedLatticeError, match=r"closed lattice \(Lattice3D debug 3x3x2"):
        lat.forward()


def test_close_destroys_recordings_before_the_lattice(monkeypatch):
    """The sequence close() runs in the engine: every live recording's
    moelat_grad_destroy (newest first), then moelat_lattice_destroy; a
    recording closed before, or dropped after, calls nothing."""
    import gc

    from moelat import _grad, _lib

    calls = []
    real_grad, real_lat = _grad._destroy, _lib.lattice_destroy
    monkeypatch.setattr(_grad, "_destroy", lambda g: (calls.append(("grad", g)), real_grad(g)))
    monkeypatch.setattr(_lib, "lattice_destroy", lambda lat: (calls.append(("lattice", lat.value)), real_lat(lat)))
    lat = moelat.Lattice3D((6, 5, 4), radius_ratio=0.5, mode="percell", threads=1)
    first, second, third = (_grad.Recording(lat, 1) for _ in range(3))
    handles = [lat._dependents[r._token][0] for r in (first, second, third)]
    second.close()
    assert calls == [("grad", handles[1])]
    lat.close()
    assert calls == [("grad", handles[1]), ("grad", handles[2]), ("grad", handles[0]), ("lattice", calls[-1][1])]
    del first, second, third
    gc.collect()
    lat.close()
    assert len(calls) == 4
