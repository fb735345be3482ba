"""The PyTorch bridge (moelat.nn): gradients against finite differences and
against `moelat-engine grad`, and a model with linear layers around the
lattice that trains. Skipped without torch."""
import os
import subprocess

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from moelat.nn import LatticeModule  # noqa: E402
from moelat.weights import read_safetensors_header  # noqa: E402

from conftest import random_states  # noqa: E402

# Small enough for finite differences to be quick, every band populated
# (radius ratio 0.5 at 6x5x4: r = 3).
DIMS = (6, 5, 4)


def _module(make_lattice, steps=2):
    lat = make_lattice(DIMS, radius_ratio=0.5, mode="percell")
    return lat, LatticeModule(lat, steps=steps)


def test_parameters_under_original_names(make_lattice):
    lat, mod = _module(make_lattice)
    names = list(lat.state_dict().keys())
    assert sorted(mod.state_dict().keys()) == sorted(names)
    assert "local_expert.neighbor_aggregator.0.weight" in names
    assert sum(p.numel() for p in mod.parameters()) == lat.parameter_count()


def test_gradients_match_finite_differences(make_lattice, rng):
    lat, mod = _module(make_lattice)
    s0 = torch.from_numpy(random_states(rng, lat, 0.3)).requires_grad_()
    ext = torch.from_numpy(rng.standard_normal((DIMS[1], DIMS[0], 16)).astype(np.float32)).requires_grad_()
    probe = torch.from_numpy(rng.standard_normal((lat.num_cells, lat.state_size)).astype(np.float32))
    loss = (mod(s0, ext) * probe).sum()
    loss.backward()

    def value():
        with torch.no_grad():
            return float((mod(s0, ext) * probe).sum())

    h = 1e-2
    checked = 0
    params = dict(mod.named_parameters())
    for name in ("local_expert.alpha", "functional_expert.gnn_component.state_updater.update_gate.weight",
                 "distant_expert.neural_ode.ode_network.0.bias", "gating_network.gating_network.2.weight"):
        p = params[name]
        flat = p.data.view(-1)
        for i in rng.choice(flat.numel(), size=min(3, flat.numel()), replace=False):
            keep = float(flat[i])
            flat[i] = keep + h
            up = value()
            flat[i] = keep - h
            down = value()
            flat[i] = keep
            fd = (up - down) / (2 * h)
            g = float(p.grad.view(-1)[i])
            assert abs(fd - g) <= 2e-2 * max(abs(fd), abs(g), 1e-1), (name, int(i), fd, g)
            checked += 1
    for t, grad in ((s0, s0.grad), (ext, ext.grad)):
        flat = t.data.view(-1)
        for i in rng.choice(flat.numel(), size=3, replace=False):
            keep = float(flat[i])
            flat[i] = keep + h
            up = value()
            flat[i] = keep - h
            down = value()
            flat[i] = keep
            fd = (up - down) / (2 * h)
            g = float(grad.view(-1)[i])
            assert abs(fd - g) <= 2e-2 * max(abs(fd), abs(g), 1e-1), (int(i), fd, g)
            checked += 1
    assert checked >= 12


def test_gradients_match_engine_grad(make_lattice, rng, tmp_path):
    engine = os.environ.get("MOELAT_ENGINE")
    if not engine:
        pytest.skip("MOELAT_ENGINE (the moelat-engine binary) is not set")
    lat, mod = _module(make_lattice)
    X, Y, Z = DIMS
    S = lat.state_size
    s0 = random_states(rng, lat, 0.3)
    ext = rng.standard_normal((Y, X, 16)).astype(np.float32)
    target = rng.standard_normal((Z, Y, X, S)).astype(np.float32)
    for name, arr in (("s0", s0.reshape(Z, Y, X, S)), ("ext", ext), ("target", target)):
        np.save(tmp_path / f"{name}.npy", arr)
    lat.save_weights(str(tmp_path / "w.safetensors"))
    cmd = [engine, "grad", "--preset", "debug", "--dims", "x".join(map(str, DIMS)), "--radius-ratio", "0.5",
           "--weights", str(tmp_path / "w.safetensors"), "--state", str(tmp_path / "s0.npy"), "--input",
           str(tmp_path / "ext.npy"), "--steps", "2", "--target", str(tmp_path / "target.npy"), "--save-grads",
           str(tmp_path / "g.safetensors"), "--mode", "percell"]
    subprocess.run(cmd, check=True, capture_output=True)
    s_T = mod(torch.from_numpy(s0), torch.from_numpy(ext))
    loss = 0.5 * ((s_T - torch.from_numpy(target.reshape(-1, S))) ** 2).sum()
    loss.backward()
    params = dict(mod.named_parameters())
    raw = open(tmp_path / "g.safetensors", "rb").read()
    header_len = int.from_bytes(raw[:8], "little")
    data = np.frombuffer(raw[8 + header_len:], dtype=np.float32)
    for name, shape, first, count in read_safetensors_header(str(tmp_path / "g.safetensors")):
        want = data[first:first + count]
        got = params[name].grad.detach().numpy().reshape(-1)
        scale = max(np.abs(want).max(), 1e-6)
        assert np.abs(got - want).max() <= 1e-5 * scale, name


def test_device_backward_matches_host(make_lattice, rng):
    """A lattice in batch mode differentiates on its OpenCL device (float32)
    and agrees with the float64 host backward of a per-cell lattice:
    every parameter within 1e-4 of its norm (floored at 1e-3 of the whole
    gradient's norm: a tensor's gradient that nearly cancels is held to
    float32's rounding of the whole), dL/ds_0 too."""
    seed = int(rng.integers(1, 2**31))
    host = make_lattice(DIMS, radius_ratio=0.5, mode="percell", seed=seed)
    dev = make_lattice(DIMS, radius_ratio=0.5, mode="batch", seed=seed)
    s0 = random_states(rng, host, 0.3)
    probe = torch.from_numpy(rng.standard_normal((host.num_cells, host.state_size)).astype(np.float32))
    grads, mods = [], []
    for lat in (host, dev):
        mod = LatticeModule(lat, steps=2)
        s = torch.from_numpy(s0.copy()).requires_grad_()
        (mod(s) * probe).sum().backward()
        grads.append(({n: p.grad.detach().numpy().copy() for n, p in mod.named_parameters()}, s.grad.numpy().copy()))
        mods.append(mod)
    assert mods[0].backward_path.startswith("host"), mods[0].backward_path
    assert mods[1].backward_path.startswith("device"), mods[1].backward_path
    (hw, hs), (dw, ds) = grads
    floor = 1e-3 * np.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in hw.values()))
    for name, g in hw.items():
        err = np.linalg.norm(dw[name] - g) / max(np.linalg.norm(g), floor)
        assert err <= 1e-4, (name, err)
    assert np.linalg.norm(ds - hs) / np.linalg.norm(hs) <= 1e-4


def test_module_between_linear_layers_trains(make_lattice, rng):
    lat, core = _module(make_lattice, steps=3)  # |dz| <= 2 per step (r = 3): z = 0 reaches z = 3 at step 3
    X, Y, _ = DIMS
    S = lat.state_size
    torch.manual_seed(int(rng.integers(1, 2**31)))

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encode = torch.nn.Linear(8, X * Y * 16)
            self.lattice = core
            self.decode = torch.nn.Linear(S, 4)

        def forward(self, x):
            ext = self.encode(x).reshape(Y, X, 16)
            face = self.lattice.output_face(self.lattice(None, ext))
            return self.decode(face)

    model = Model()
    x = torch.randn(8)
    target = torch.randn(X * Y, 4)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    first = torch.nn.functional.mse_loss(model(x), target)
    opt.zero_grad()
    first.backward()
    assert model.encode.weight.grad is not None and model.encode.weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in core.parameters())
    opt.step()
    with torch.no_grad():
        after = torch.nn.functional.mse_loss(model(x), target)
    assert float(after) < float(first)


def test_function_refuses_a_lipschitz_lattice(make_lattice, rng):
    lat = make_lattice(DIMS, radius_ratio=0.5, mode="percell", cnf_mode="lipschitz")
    mod = LatticeModule(lat, steps=1)
    import moelat

    with pytest.raises(moelat.MoelatError, match="lipschitz"):
        mod(torch.from_numpy(random_states(rng, lat)))


def test_readme_training_section(tmp_path):
    """The README's "Training" section's Python block runs as written."""
    import re
    import sys

    readme = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "README.md")
    section = open(readme).read().split("## Training", 1)[1].split("\n## ", 1)[0]
    code = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(code) == 1
    pkg = os.path.abspath(os.path.join(os.path.dirname(readme), "python"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([pkg, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", code[0] + "\nprint('grad', float(next(lattice.parameters()).grad.abs().sum()) > 0)"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "grad True" in proc.stdout


def test_module_checks_its_arguments(make_lattice):
    import moelat

    lat = make_lattice(DIMS, radius_ratio=0.5, mode="percell")
    with pytest.raises(moelat.MoelatValueError, match=r"steps must be an integer from 1 to 2147483647"):
        LatticeModule(lat, steps=2**32 + 1)
    with pytest.raises(moelat.MoelatTypeError, match="steps"):
        LatticeModule(lat, steps=True)
    with pytest.raises(moelat.MoelatValueError, match="checkpoint_every"):
        LatticeModule(lat, checkpoint_every=2**31)
    with pytest.raises(moelat.MoelatTypeError, match="Lattice3D"):
        LatticeModule("lattice")
    with pytest.raises(moelat.MoelatTypeError, match="states must be a torch.Tensor"):
        LatticeModule(lat)(np.zeros((lat.num_cells, lat.state_size), np.float32))
