"""The ctypes mirrors of moelat_config and moelat_report match the C layout:
fields read back where the C library wrote them, up to the last one."""
import ctypes

import moelat
from moelat import _lib


def test_config_mirror():
    cfg = _lib.Config()
    ctypes.memset(ctypes.byref(cfg), 0x5A, ctypes.sizeof(cfg))
    cfg.struct_size = ctypes.sizeof(cfg)
    err = ctypes.create_string_buffer(256)
    assert _lib.config_preset(b"experiment", ctypes.byref(cfg), err, 256) == 0, err.value
    assert cfg.preset == b"experiment" and tuple(cfg.dims) == (40, 40, 40) and cfg.state_size == 64
    assert abs(cfg.radius_ratio - 0.2) < 1e-12 and abs(_lib.config_radius(ctypes.byref(cfg)) - 8.0) < 1e-12
    assert [cfg.expert[k].value for k in range(3)] == [b"local", b"functional", b"distant"]
    assert cfg.n_plugin_paths == 0 and cfg.cnf_steps == 3 and cfg.device == b""


def test_report_mirror(make_lattice):
    lat = make_lattice(mode="percell")
    lat.forward(steps=2)
    perf = lat.get_batch_performance()
    assert perf["steps"] == 2 and perf["percell_chunks"] >= 2
    assert [e["name"] for e in perf["experts"]] == list(moelat.BANDS)
    # The struct's routing fields, then its last: the path and its reason.
    assert perf["routed_cells"] == 2 * lat.num_cells
    assert abs(sum(r["top_share"] for r in perf["routing"]) - 1) < 1e-12
    assert perf["path"] == "percell" and perf["path_reason"] == "mode percell asked for"


def test_default_path(make_lattice):
    # The library's default, auto: batched once the device passes the check.
    lat = make_lattice()
    lat.forward(steps=2)
    perf = lat.get_batch_performance()
    assert lat.mode == "auto" and perf["path"] == "batch" and perf["batch_chunks"] >= 2
    assert perf["path_reason"].endswith("passed the upgrade check")


def test_versioned_mirrors():
    # struct_size comes first and defaults to the mirror's size, which the
    # library's moelat_struct_size agrees with (checked at import too).
    for cname, mirror in (("moelat_config", _lib.Config), ("moelat_report", _lib.Report)):
        assert mirror.struct_size.offset == 0
        assert mirror().struct_size == ctypes.sizeof(mirror) == _lib.struct_size(cname.encode())
    assert _lib.struct_size(b"moelat_nothing") == 0
    assert b"ABI 1" in _lib.version()


def test_struct_size_refused():
    cfg = _lib.Config(struct_size=4)
    err = ctypes.create_string_buffer(256)
    assert _lib.config_preset(b"debug", ctypes.byref(cfg), err, 256) == _lib.STATUS["MOELAT_ERR_INVALID"]
    assert b"moelat_config: struct_size 4" in err.value


def test_import_check_names_mismatches(monkeypatch):
    _lib._check_abi()  # the package as it is matches
    monkeypatch.setitem(_lib.STATUS, "MOELAT_ERR_IO", 9)
    try:
        _lib._check_abi()
    except ImportError as e:
        assert "MOELAT_ERR_IO is 2 in the library, 9 in moelat._lib.STATUS" in str(e)
    else:
        raise AssertionError("a wrong status number was not refused")
    monkeypatch.undo()

    class Short(ctypes.Structure):
        _fields_ = _lib.Report._fields_[:-1]

    monkeypatch.setattr(_lib, "Report", Short)
    try:
        _lib._check_abi()
    except ImportError as e:
        assert "moelat_report is" in str(e) and "moelat._lib.Short" in str(e)
    else:
        raise AssertionError("a short Report mirror was not refused")
