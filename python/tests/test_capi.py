"""moelat.capi: every exported function of the four public headers is
declared, every mirror matches the C compiler's layout, and the import-time
size check refuses a mirror of the wrong size naming the struct and both
sizes."""
import ctypes
import os
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import moelat
from moelat import capi
from moelat.capi import _abi, core, grad, optim, train

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
INCLUDE = os.path.join(ROOT, "engine", "include")
HEADERS = {"moelat.h": core, "grad.h": grad, "optim.h": optim, "train.h": train}
PYTHON = os.path.join(ROOT, "python")


def _header(name):
    path = os.path.join(INCLUDE, "moelat", name)
    if not os.path.exists(path):
        pytest.skip(f"{path} is absent (the package outside its source tree)")
    with open(path) as f:
        return f.read()


@pytest.mark.parametrize("header", sorted(HEADERS))
def test_every_function_is_declared(header):
    names = re.findall(r"MOELAT_API\b[^;{]*?\b(moelat_\w+)\s*\(", _header(header))
    assert names, header
    module = HEADERS[header]
    for name in names:
        short = name[len("moelat_"):]
        if module is grad:
            short = short[len("grad_"):]
        elif module is optim:
            short = short[len("optimizer_"):]
        f = getattr(module, short, None)
        assert f is not None, f"{name} ({header}) is not declared in {module.__name__}"
        assert f.__name__ == name and f.argtypes is not None, name


# Each mirror and the C struct it mirrors.
MIRRORS = [
    (grad.GradOptions, "moelat_grad_options"),
    (optim.OptimizerConfig, "moelat_optimizer_config"),
    (train.TrainParams, "moelat_train_params"),
    (train.TrainSummary, "moelat_train_summary"),
    (train.TrainPoint, "moelat_train_point"),
    (train.TrainEvent, "moelat_train_event"),
    (core.Config, "moelat_config"),
    (core.Report, "moelat_report"),
]


def test_mirrors_match_the_compiler(tmp_path):
    """sizeof and every field's offsetof, as cc compiles the headers, equal
    the ctypes mirrors' (the structs the library cannot report on)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    _header("train.h")
    if not cc:
        pytest.skip("no C compiler")
    lines = []
    for mirror, cname in MIRRORS:
        lines.append(f'printf("{cname} %zu\\n", sizeof({cname}));')
        for field, _ in mirror._fields_:
            lines.append(f'printf("{cname}.{field} %zu\\n", offsetof({cname}, {field}));')
    src = tmp_path / "layout.c"
    src.write_text("#include <stddef.h>\n#include <stdio.h>\n#include \"moelat/grad.h\"\n#include \"moelat/optim.h\"\n"
                   "#include \"moelat/train.h\"\nint main(void) {\n" + "\n".join(lines) + "\nreturn 0;\n}\n")
    exe = tmp_path / "layout"
    subprocess.run([cc, "-std=c11", "-I", INCLUDE, str(src), "-o", str(exe)], check=True)
    got = dict(line.split() for line in subprocess.run([str(exe)], check=True, capture_output=True,
                                                       text=True).stdout.splitlines())
    for mirror, cname in MIRRORS:
        assert int(got[cname]) == ctypes.sizeof(mirror), cname
        for field, _ in mirror._fields_:
            assert int(got[f"{cname}.{field}"]) == getattr(mirror, field).offset, f"{cname}.{field}"


def test_import_checks_ran():
    assert set(capi.CHECKED) >= {"moelat_grad_options", "moelat_optimizer_config", "moelat_train_params"}
    for name, (mine, theirs, _how) in capi.CHECKED.items():
        assert mine == theirs, name
    assert set(capi.UNCHECKED) <= {"moelat_train_summary", "moelat_train_point", "moelat_train_event"}
    assert capi.LIBRARY_STATUS_NAMES == core.STATUS_NAMES
    assert core.status_name(core.ERR_NONFINITE) == b"MOELAT_ERR_NONFINITE"
    assert core.version().decode().startswith("moelat " + core.VERSION)


def _bigger(mirror):
    return type(mirror.__name__, (mirror,), {"_fields_": [("appended", ctypes.c_int64)]})


@pytest.mark.parametrize("module,attr,cname", [
    (train, "TrainParams", "moelat_train_params"),
    (grad, "GradOptions", "moelat_grad_options"),
    (optim, "OptimizerConfig", "moelat_optimizer_config"),
])
def test_size_check_refuses_a_wrong_mirror(monkeypatch, module, attr, cname):
    real = getattr(module, attr)
    monkeypatch.setattr(module, attr, _bigger(real))
    with pytest.raises(ImportError) as e:
        _abi.check_structs()
    msg = str(e.value)
    assert cname in msg and str(ctypes.sizeof(real) + 8) in msg and str(ctypes.sizeof(real)) in msg, msg
    monkeypatch.setattr(module, attr, real)
    _abi.check_structs()  # and the package as it is passes


def test_field_check_refuses_a_misplaced_field(monkeypatch):
    """The right size, two fields swapped (lr and momentum): the library's
    default config no longer reads back as a valid one."""
    fields = list(optim.OptimizerConfig._fields_)
    names = [f for f, _ in fields]
    a, b = names.index("lr"), names.index("momentum")
    fields[a], fields[b] = fields[b], fields[a]
    swapped = type("OptimizerConfig", (ctypes.Structure,), {"_fields_": fields})
    assert ctypes.sizeof(swapped) == ctypes.sizeof(optim.OptimizerConfig)
    monkeypatch.setattr(optim, "OptimizerConfig", swapped)
    with pytest.raises(ImportError, match=r"moelat_optimizer_config .* lr 0\.0"):
        _abi.check_structs()


def test_import_refuses_a_wrong_mirror():
    """The real import: a mirror whose size differs (ctypes.sizeof made to
    say so before moelat is imported) stops `import moelat` with an
    ImportError naming the struct and both sizes."""
    code = textwrap.dedent("""
        import ctypes
        real = ctypes.sizeof
        ctypes.sizeof = lambda t: real(t) + (8 if getattr(t, "__name__", "") == "TrainParams" else 0)
        try:
            import moelat
        except ImportError as e:
            print("refused:", e)
        else:
            print("imported")
    """)
    env = dict(os.environ, PYTHONPATH=PYTHON + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    size = ctypes.sizeof(train.TrainParams)
    assert out.startswith("refused:") and "moelat_train_params" in out, out
    assert f"is {size + 8} bytes in this package's mirror" in out and f"but {size} bytes in" in out, out


def test_defaults_read_back():
    p = train.params()
    assert p.struct_size == ctypes.sizeof(train.TrainParams)
    assert (p.steps, p.batch_size, p.epochs, p.loss) == (2, 8, 10, train.LOSS_OUTPUT_FACE_MSE)
    assert p.val_fraction == 0.2 and p.optimizer.kind == optim.ADAMW and p.optimizer.lr == 1e-4
    sgd = optim.config(optim.SGD)
    assert sgd.kind == optim.SGD and sgd.momentum == 0.9
    g = grad.options()
    assert g.struct_size == ctypes.sizeof(grad.GradOptions) and g.checkpoint_every == 0
    s = train.summary_init()
    assert s.struct_size == ctypes.sizeof(train.TrainSummary)


def test_optimizer_through_capi():
    """One SGD step without momentum: p - lr * g, the state's counter 1."""
    cfg = optim.config(optim.SGD)
    cfg.lr, cfg.momentum, cfg.weight_decay = 0.5, 0.0, 0.0
    err = ctypes.create_string_buffer(256)
    opt = ctypes.c_void_p()
    assert optim.create(ctypes.byref(cfg), 4, ctypes.byref(opt), err, 256) == core.OK, err.value
    try:
        p = np.array([1, 2, 3, 4], np.float32)
        g = np.array([1, -1, 0.5, 0], np.float32)
        norm = ctypes.c_double()
        assert optim.step(opt, p.ctypes.data_as(capi._common.F), g.ctypes.data_as(capi._common.F),
                          ctypes.byref(norm)) == core.OK
        assert p.tolist() == [0.5, 2.5, 2.75, 4.0] and abs(norm.value - 1.5) < 1e-12
        assert optim.steps(opt) == 1 and optim.param_count(opt) == 4
        bad = np.array([np.nan, 0, 0, 0], np.float32)
        assert optim.step(opt, p.ctypes.data_as(capi._common.F), bad.ctypes.data_as(capi._common.F),
                          None) == core.ERR_NONFINITE
        assert optim.last_error(opt)
    finally:
        optim.destroy(opt)
    cfg.lr = -1
    assert optim.create(ctypes.byref(cfg), 4, ctypes.byref(opt), err, 256) == core.ERR_INVALID
    assert b"lr" in err.value and not opt.value


def test_dataset_through_capi():
    x = np.arange(2 * 3 * 16, dtype=np.float32).reshape(2, 3, 16)
    y = np.ones((2, 5), np.float32)
    ds = ctypes.c_void_p()
    err = ctypes.create_string_buffer(256)
    xs, ys = np.array([3, 16], np.int64), np.array([5], np.int64)
    assert train.dataset_create(2, 2, capi._common.int64s(xs), capi._common.floats(x), 1, capi._common.int64s(ys),
                                capi._common.floats(y), ctypes.byref(ds), err, 256) == core.OK, err.value
    try:
        assert train.dataset_samples(ds) == 2
        shape = np.zeros(7, np.int64)
        assert train.dataset_shape(ds, 0, capi._common.int64s(shape)) == 2 and shape[:2].tolist() == [3, 16]
        assert train.dataset_input(ds, 1)[0] == 48.0 and not train.dataset_input(ds, 2)
        assert train.dataset_fingerprint(ds) != 0
    finally:
        train.dataset_destroy(ds)


def test_status_classes():
    assert moelat.errors.from_status(core.ERR_FORMAT, "x").status == core.ERR_FORMAT
