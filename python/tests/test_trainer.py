"""moelat.Trainer: the CLI's trainer from Python. The same data, options
and seed give bitwise the weights of `moelat-engine train`; callbacks,
errors, checkpoints and lifetimes (the lattice closed while a trainer is
alive)."""
import csv
import gc
import os
import subprocess
import weakref

import numpy as np
import pytest

import moelat
from moelat import _lib
from moelat.capi import train as capi_train

DIMS = (6, 5, 4)  # X, Y, Z
SEED = 3
B = 6


def lattice(**options):
    options.setdefault("seed", SEED)
    options.setdefault("threads", 2)
    return moelat.Lattice3D(DIMS, preset="debug", **options)


def engine():
    exe = os.environ.get("MOELAT_ENGINE")
    if not exe:
        pytest.skip("MOELAT_ENGINE (the moelat-engine binary) is not set")
    return exe


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A small data set (B samples for the 6x5x4 debug lattice) as a
    directory of inputs.npy and targets.npy, and as arrays."""
    d = tmp_path_factory.mktemp("data")
    X, Y, _ = DIMS
    S = lattice().state_size
    rng = np.random.default_rng(7)
    x = rng.standard_normal((B, Y, X, 16)).astype(np.float32)
    y = (0.5 * np.tanh(rng.standard_normal((B, Y, X, S)))).astype(np.float32)
    np.save(d / "inputs.npy", x)
    np.save(d / "targets.npy", y)
    return d, x, y


def weights_bytes(lat, path):
    lat.save_weights(path)
    with open(path, "rb") as f:
        return f.read()


# ---- the CLI and the Trainer --------------------------------------------
CASES = {
    "adamw": ([], {}, {}),
    "sgd-percell-cosine": (["--optimizer", "sgd", "--lr", "0.01", "--cosine", "--warmup", "2", "--mode", "percell",
                            "--clip-norm", "1.5"],
                           dict(optimizer="sgd", lr=0.01, cosine=True, warmup=2, clip_norm=1.5), dict(mode="percell")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_cli_and_trainer_reach_the_same_weights(tmp_path, case):
    exe = engine()
    cli_args, trainer_options, lattice_options = CASES[case]
    d = tmp_path / "data"
    subprocess.run([exe, "train", "--make-data", str(d), "--samples", str(B), "--dims", "x".join(map(str, DIMS)),
                    "--seed", str(SEED)], check=True, capture_output=True)
    common = ["--steps", "2", "--epochs", "2", "--batch-size", "2", "--val-fraction", "0.25"]
    subprocess.run([exe, "train", "--data", str(d), "--dims", "x".join(map(str, DIMS)), "--seed", str(SEED),
                    "--threads", "2", "--quiet", "--save-weights", str(tmp_path / "cli.safetensors"),
                    "--loss-csv", str(tmp_path / "cli.csv")] + common + cli_args, check=True, capture_output=True)

    lat = lattice(**lattice_options)
    trainer = moelat.Trainer(lat, steps=2, epochs=2, batch_size=2, val_fraction=0.25, **trainer_options)
    trainer.set_data(d)
    summary = trainer.fit()
    assert summary["optimizer_steps"] == 4 and summary["samples"] == B and summary["val_samples"] == 2

    with open(tmp_path / "cli.safetensors", "rb") as f:
        assert weights_bytes(lat, tmp_path / "py.safetensors") == f.read()
    # The loss history, as the CLI writes it (%.9g).
    with open(tmp_path / "cli.csv") as f:
        rows = list(csv.DictReader(f))
    h = trainer.history
    assert [float(r["loss"]) for r in rows if r["kind"] == "val"] == [float(f"{p.loss:.9g}") for p in h.validation]
    assert [float(r["loss"]) for r in rows if r["kind"] == "train"] == [float(f"{p.loss:.9g}") for p in h.train]
    assert [float(r["lr"]) for r in rows if r["kind"] == "train"] == [float(f"{p.lr:.9g}") for p in h.train]


def test_arrays_and_files_are_the_same_data(tmp_path, data):
    d, x, y = data
    out = []
    for source in ((d,), (d / "inputs.npy", d / "targets.npy"), (x, y), (x.astype(np.float64), y)):
        lat = lattice()
        t = moelat.Trainer(lat, epochs=1, batch_size=2)
        t.set_data(*source)
        assert t.samples == B
        t.fit()
        out.append(weights_bytes(lat, tmp_path / "w.safetensors"))
    assert all(w == out[0] for w in out)


# ---- losses and callbacks ----------------------------------------------
def face_mse(X, Y):
    """The built-in loss in numpy: mean over the output face of (s - t)^2
    and dL/ds_T = 2 (s - t) / count computed in double, as the library."""

    def loss(s_T, target):
        face = s_T[-X * Y:]
        e = (face - target.reshape(face.shape)).astype(np.float32)
        count = e.size
        grad = np.zeros_like(s_T)
        grad[-X * Y:] = (2.0 * (face.astype(np.float64) - target.reshape(face.shape)) / count).astype(np.float32)
        return float(np.sum((e * e).astype(np.float64)) / count), grad

    return loss


def test_python_loss_matches_the_builtin(tmp_path, data):
    d = data[0]
    X, Y, _ = DIMS
    runs = []
    for loss in ("output_face_mse", face_mse(X, Y)):
        lat = lattice()
        t = moelat.Trainer(lat, epochs=2, batch_size=2, loss=loss)
        t.set_data(d)
        t.fit()
        runs.append((weights_bytes(lat, tmp_path / "w.safetensors"), t.history))
    assert runs[0][0] == runs[1][0]  # the same dL/ds_T, bitwise
    for a, b in zip(runs[0][1].train + runs[0][1].validation, runs[1][1].train + runs[1][1].validation):
        assert a[:3] == b[:3] and abs(a.loss - b.loss) <= 1e-12 * abs(a.loss)


def test_python_loss_sees_states_and_targets(data):
    d, x, y = data
    lat = lattice()
    seen = []

    def loss(s_T, target):
        seen.append((s_T.shape, s_T.dtype, target.shape, target.copy()))
        return 0.5, np.zeros_like(s_T)

    t = moelat.Trainer(lat, epochs=1, batch_size=B, val_fraction=0, loss=loss)
    t.set_data(d)
    assert t.batch([4, 1]) == 0.5
    assert [s[:3] for s in seen] == [((lat.num_cells, lat.state_size), np.float32, y.shape[1:])] * 2
    assert np.array_equal(seen[0][3], y[4]) and np.array_equal(seen[1][3], y[1])
    # A plain number is enough where no gradient is wanted.
    t2 = moelat.Trainer(lat, loss=lambda s, tg: float(np.mean(s ** 2)))
    t2.set_data(d)
    assert t2.evaluate([0, 1]) >= 0
    with pytest.raises(moelat.MoelatTypeError, match="dL/ds_T"):
        t2.batch([0])


def test_all_cells_loss_and_target_shapes(data):
    d, x, _ = data
    lat = lattice()
    X, Y, Z = DIMS
    S = lat.state_size
    t = moelat.Trainer(lat, loss="all_cells_mse", epochs=1)
    with pytest.raises(moelat.InvalidArgumentError, match=r"targets\.npy: shape \(6, 5, 6, 24\), the loss over all cells needs \(B, 4, 5, 6, 24\)"):
        t.set_data(d / "inputs.npy", d / "targets.npy")
    y = np.zeros((B, Z, Y, X, S), np.float32)
    t.set_data(x, y)
    t.fit()
    assert t.summary()["final_val_loss"] < t.summary()["initial_val_loss"]


def test_progress_events(data):
    lat = lattice()
    events = []
    t = moelat.Trainer(lat, epochs=2, batch_size=2, val_fraction=0.25)
    t.set_data(data[0])
    t.fit(progress=events.append)
    kinds = [e.kind for e in events]
    assert kinds == ["validation", "backward", "batch", "batch", "validation", "batch", "batch", "validation"]
    assert events[1].backward == t.summary()["backward"] != ""
    batches = [e for e in events if e.kind == "batch"]
    assert [(e.epoch, e.batch, e.batches, e.samples, e.optimizer_step) for e in batches] == [
        (0, 1, 2, 2, 1), (0, 2, 2, 4, 2), (1, 1, 2, 6, 3), (1, 2, 2, 8, 4)]
    assert [e.loss for e in batches] == [p.loss for p in t.history.train]
    # The Trainer's own progress serves calls without one.
    more = []
    t2 = moelat.Trainer(lattice(), epochs=1, batch_size=4, progress=more.append)
    t2.set_data(data[0])
    t2.epoch()
    assert [e.kind for e in more][-1] == "validation" and t2.summary()["epoch"] == 1


def test_callback_exceptions(data):
    d = data[0]
    calls = []

    def failing(s_T, target):
        calls.append(1)
        if len(calls) == 3:
            raise ZeroDivisionError("loss failed on purpose")
        return face_mse(DIMS[0], DIMS[1])(s_T, target)

    lat = lattice()
    t = moelat.Trainer(lat, epochs=1, batch_size=2, loss=failing)
    t.set_data(d)
    with pytest.raises(ZeroDivisionError, match="loss failed on purpose") as e:
        t.fit()
    assert any("the loss callback returned status" in n for n in getattr(e.value, "__notes__", [])), e.value
    assert t.evaluate([0]) > 0  # still usable

    t = moelat.Trainer(lat, loss=lambda s, tg: (1.0, np.zeros(5, np.float32)))
    t.set_data(d)
    with pytest.raises(moelat.InvalidArgumentError, match=r"dL/ds_T has shape \(5,\)"):
        t.batch([0])
    t = moelat.Trainer(lat, loss=lambda s, tg: (1.0, s, 3))
    t.set_data(d)
    with pytest.raises(moelat.MoelatTypeError, match="tuple of 3"):
        t.batch([0])

    # A progress callback's exception: raised once the call returns (the
    # library cannot stop in between), the training itself done.
    def progress(ev):
        if ev.kind == "batch":
            raise KeyError("progress failed on purpose")

    t = moelat.Trainer(lattice(), epochs=1, batch_size=2)
    t.set_data(d)
    with pytest.raises(KeyError, match="progress failed on purpose"):
        t.fit(progress=progress)
    assert t.summary()["epoch"] == 1


# ---- errors ------------------------------------------------------------
def test_errors(tmp_path, data):
    d, x, y = data
    lat = lattice()
    with pytest.raises(moelat.InvalidArgumentError, match="steps must be an integer from 1 to 100000"):
        moelat.Trainer(lat, steps=0)
    with pytest.raises(moelat.MoelatTypeError):
        moelat.Trainer(lat, epochs=True)
    with pytest.raises(moelat.InvalidArgumentError, match="loss must be one of"):
        moelat.Trainer(lat, loss="l1")
    with pytest.raises(moelat.InvalidArgumentError, match="optimizer must be one of"):
        moelat.Trainer(lat, optimizer="adam")
    with pytest.raises(moelat.InvalidArgumentError, match="lr"):  # the library's range check
        moelat.Trainer(lat, lr=-1.0)
    with pytest.raises(moelat.InvalidArgumentError, match="NUL"):
        moelat.Trainer(lat, checkpoint_dir="a\0b")
    with pytest.raises(moelat.MoelatTypeError):
        moelat.Trainer(object())

    t = moelat.Trainer(lat, epochs=1, batch_size=2)
    with pytest.raises(moelat.InvalidArgumentError, match="no data set"):
        t.fit()
    with pytest.raises(moelat.InvalidArgumentError, match=r"the lattice needs \(B, 5, 6, 16\)"):
        t.set_data(x[:, :, :5], y)
    with pytest.raises(moelat.InvalidArgumentError, match="inputs hold 6 samples, targets 5"):
        t.set_data(x, y[:5])
    with pytest.raises(moelat.MoelatTypeError, match="floating-point"):
        t.set_data(x.astype(np.int32), y)
    bad = x.copy()
    bad[2, 1, 3, 4] = np.nan
    with pytest.raises(moelat.MoelatError, match=r"inputs: sample 2 holds nan at \(1, 3, 4\)"):
        t.set_data(bad, y)
    with pytest.raises(moelat.MoelatIOError):
        t.set_data(tmp_path / "absent.npy", tmp_path / "absent2.npy")
    t.set_data(x, y)
    with pytest.raises(moelat.InvalidArgumentError, match=r"sample 99 \(entry 1\) is outside \[0, 6\)"):
        t.batch([0, 99])
    with pytest.raises(moelat.InvalidArgumentError, match="no sample index"):
        t.batch([])
    with pytest.raises(moelat.MoelatTypeError):
        t.batch([0.5])
    with pytest.raises(moelat.InvalidArgumentError, match=r"states has shape \(3, 3\), expected \(120, 24\)"):
        t.set_initial_states(np.zeros((3, 3), np.float32))
    # A checkpoint of other options is refused naming the difference; nothing changes.
    other = moelat.Trainer(lattice(), epochs=1, batch_size=3)
    other.set_data(x, y)
    other.save(tmp_path / "ck")
    with pytest.raises(moelat.InvalidArgumentError, match="batch"):
        t.resume(tmp_path / "ck")
    assert t.summary()["optimizer_steps"] == 0


# ---- checkpoints ----------------------------------------------------------
def test_epoch_save_resume_is_fit(tmp_path, data):
    d = data[0]
    whole = lattice()
    t = moelat.Trainer(whole, epochs=3, batch_size=2, lr=1e-3)
    t.set_data(d)
    t.fit()

    first = lattice()
    t1 = moelat.Trainer(first, epochs=3, batch_size=2, lr=1e-3)
    t1.set_data(d)
    t1.epoch()
    t1.save(tmp_path / "ck")

    second = lattice()
    t2 = moelat.Trainer(second, epochs=3, batch_size=2, lr=1e-3)
    t2.set_data(d)
    t2.resume(tmp_path / "ck")
    assert t2.summary()["epoch"] == 1
    t2.fit()
    assert weights_bytes(second, tmp_path / "a.safetensors") == weights_bytes(whole, tmp_path / "b.safetensors")
    assert t2.history == t.history
    # evaluate() on the validation samples is the last validation pass.
    assert t2.evaluate() == t2.summary()["final_val_loss"] == t2.history.validation[-1].loss


def test_batch_moves_no_position(data):
    t = moelat.Trainer(lattice(), epochs=1)
    t.set_data(data[0])
    loss = t.batch(np.array([0, 1, 2], np.uint8))
    s = t.summary()
    assert np.isfinite(loss) and s["optimizer_steps"] == 1 and (s["epoch"], s["batch"]) == (0, 0)
    assert t.history == moelat.History([], [])
    assert t.optimizer_config["kind"] == "adamw" and t.optimizer_config["lr"] == 1e-4


# ---- lifetimes ------------------------------------------------------------
def test_close_lattice_while_trainer_alive(monkeypatch, data):
    calls = []
    real_trainer, real_lattice = capi_train.trainer_destroy, _lib.lattice_destroy
    monkeypatch.setattr(capi_train, "trainer_destroy", lambda h: (calls.append(("trainer", h)), real_trainer(h)))
    monkeypatch.setattr(_lib, "lattice_destroy", lambda h: (calls.append(("lattice", h.value)), real_lattice(h)))
    lat = lattice()
    t = moelat.Trainer(lat, epochs=1, batch_size=2)
    t.set_data(data[0])
    t.batch([0])
    ours = [("trainer", lat._dependents[t._token][0]), ("lattice", lat._lat.value)]
    lat.close()
    assert [c for c in calls if c in ours] == ours  # (a collection may free other tests' lattices)
    for call in (t.fit, t.epoch, lambda: t.batch([0]), t.evaluate, lambda: t.save("x"), t.summary,
                 lambda: t.history, lambda: t.set_data(*data[1:])):
        with pytest.raises(moelat.ClosedLatticeError, match=r"the trainer was freed when its lattice \(Lattice3D"):
            call()
    assert t.closed
    t.close()
    t.close()
    del t
    gc.collect()
    assert [c for c in calls if c in ours] == ours  # nothing destroyed twice


def test_trainer_keeps_its_lattice_alive(data):
    lat = lattice()
    ref = weakref.ref(lat)
    t = moelat.Trainer(lat, epochs=1, batch_size=2)
    del lat
    gc.collect()
    assert ref() is not None
    t.set_data(data[0])
    t.fit()
    del t
    gc.collect()
    assert ref() is None  # no cycle keeps either


def test_callbacks_cannot_close_or_reenter(data):
    lat = lattice()
    t = moelat.Trainer(lat, epochs=1, batch_size=2)
    t.set_data(data[0])
    seen = []

    def progress(ev):
        if ev.kind == "batch" and not seen:
            seen.append(t.summary()["optimizer_steps"])  # reading is fine
            lat.close()

    with pytest.raises(moelat.MoelatError, match="from a callback of a call that is using it"):
        t.fit(progress=progress)
    assert seen == [1] and not lat.closed and t.summary()["epoch"] == 1

    def reenter(ev):
        t.evaluate()

    with pytest.raises(moelat.MoelatError, match=r"Trainer.evaluate\(\) called from a callback of Trainer.epoch"):
        t.epoch(progress=reenter)
    lat.close()
    assert lat.closed


def test_readme_training_example(tmp_path, data):
    """python/README.md's Training example runs as written (in a directory
    holding data/)."""
    import re
    import shutil
    import sys

    readme = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "README.md")
    with open(readme) as f:
        section = f.read().split("## Training", 1)[1].split("\n## ", 1)[0]
    code = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(code) == 1
    shutil.copytree(data[0], tmp_path / "data")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(moelat.__file__)),
                                                       os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", code[0]], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "TrainEvent(kind='batch'" in proc.stdout and (tmp_path / "trained.safetensors").exists()


def test_ranks_in_threads(tmp_path, data):
    """Two ranks, one thread and one lattice each, summing in rank order
    through a Python reduce: both end with bitwise the same weights, and
    within 1e-6 of one rank's (the gradient sums' order differs)."""
    import threading

    d = data[0]
    options = dict(epochs=2, batch_size=4, lr=1e-3, val_fraction=0.34)
    one = lattice(mode="percell")
    t = moelat.Trainer(one, **options)
    t.set_data(d)
    t.fit()

    n = 2
    slots, barrier = [None] * n, threading.Barrier(n, timeout=60)

    def reducer(rank):
        def reduce(values):
            slots[rank] = values.copy()
            barrier.wait()
            total = slots[0].copy()
            for k in range(1, n):
                total += slots[k]
            barrier.wait()
            values[:] = total

        return reduce

    lats = [lattice(mode="percell") for _ in range(n)]
    trainers = [moelat.Trainer(lats[r], rank=r, ranks=n, reduce=reducer(r), **options) for r in range(n)]
    errors = []

    def run(tr):
        try:
            tr.set_data(d)
            tr.fit()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(tr,)) for tr in trainers]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not errors, errors
    w = [weights_bytes(lat, tmp_path / f"w{r}.safetensors") for r, lat in enumerate(lats)]
    assert w[0] == w[1]
    ref, got = one.state_dict(), lats[0].state_dict()
    for name, value in ref.items():
        value = np.asarray(value, np.float64)
        scale = max(float(np.max(np.abs(value))), 1e-30)
        assert float(np.max(np.abs(np.asarray(got[name], np.float64) - value))) <= 1e-6 * scale, name
    assert trainers[0].history.validation == trainers[1].history.validation
    with pytest.raises(moelat.InvalidArgumentError, match="2 ranks need a reduce function"):
        moelat.Trainer(one, ranks=2)
    with pytest.raises(moelat.InvalidArgumentError, match=r"rank 2 of 2 ranks"):
        moelat.Trainer(one, ranks=2, rank=2, reduce=lambda v: None)


def test_other_threads_wait_for_a_call(data):
    """fit() holds the lattice's lock: another thread's lattice and trainer
    calls, close() included, run once it has returned."""
    import threading

    lat = lattice()
    t = moelat.Trainer(lat, epochs=2, batch_size=2, val_fraction=0.25)
    t.set_data(data[0])
    seen, threads = [], []

    def other():
        seen.append(t.summary()["optimizer_steps"])
        seen.append(lat.states.shape)
        t.close()
        seen.append(t.closed)

    def progress(ev):
        if ev.kind == "batch" and not threads:
            threads.append(threading.Thread(target=other))
            threads[0].start()

    t.fit(progress=progress)
    threads[0].join(60)
    assert seen == [4, (lat.num_cells, lat.state_size), True]
    with pytest.raises(moelat.ClosedLatticeError, match="the trainer was closed"):
        t.fit()


def test_trainer_and_lattice_collected_in_one_cycle(data):
    lat = lattice()
    t = moelat.Trainer(lat, epochs=1, batch_size=2)
    t.set_data(data[0])
    lat.trainer, t.me = t, t  # a cycle through both
    ref = weakref.ref(lat)
    del lat, t
    gc.collect()
    assert ref() is None
