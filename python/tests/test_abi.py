"""The ctypes mirrors of moelat_config and moelat_report match the C layout:
fields read back where the C library wrote them, up to the last one."""
import ctypes

import moelat
from moelat import _lib


def test_config_mirror():
    cfg = _lib.Config()
    ctypes.memset(ctypes.byref(cfg), 0x5A, ctypes.sizeof(cfg))
    err = ctypes.create_string_buffer(256)
    assert _lib.config_preset(b"experiment", ctypes.byref(cfg), err, 256) == 0, err.value
    assert cfg.preset == b"experiment" and tuple(cfg.dims) == (40, 40, 40) and cfg.state_size == 64
    assert abs(cfg.radius_ratio - 0.2) < 1e-12 and abs(_lib.config_radius(ctypes.byref(cfg)) - 8.0) < 1e-12
    assert [cfg.expert[k].value for k in range(3)] == [b"local", b"functional", b"distant"]
    assert cfg.n_plugin_paths == 0 and cfg.cnf_steps == 3 and cfg.device == b""


def test_report_mirror(make_lattice):
    lat = make_lattice()
    lat.forward(steps=2)
    perf = lat.get_batch_performance()
    assert perf["steps"] == 2 and perf["percell_chunks"] >= 2
    assert [e["name"] for e in perf["experts"]] == list(moelat.BANDS)
    # The last fields of the struct: routing.
    assert perf["routed_cells"] == 2 * lat.num_cells
    assert abs(sum(r["top_share"] for r in perf["routing"]) - 1) < 1e-12
