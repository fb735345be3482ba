"""The engine's log arrives as Python log records of moelat.<module>."""
import json
import logging
import os
import subprocess
import sys

import moelat


def test_batch_debug_records(make_lattice, caplog):
    logging.getLogger("moelat.batch").setLevel(logging.DEBUG)
    try:
        with caplog.at_level(logging.DEBUG, logger="moelat.batch"):
            lat = make_lattice()
            moelat.upgrade_lattice_to_batch(lat)
        batch = [r for r in caplog.records if r.name == "moelat.batch"]
        assert any(r.levelno == logging.DEBUG and "prefix sums" in r.getMessage() for r in batch), batch
        assert any(r.levelno == logging.INFO and "upgrade check" in r.getMessage() for r in batch)
    finally:
        logging.getLogger("moelat.batch").setLevel(logging.NOTSET)


def test_levels_follow_the_loggers(make_lattice, caplog):
    logging.getLogger("moelat.batch").setLevel(logging.WARNING)
    try:
        with caplog.at_level(logging.DEBUG, logger="moelat.plugins"):
            lat = make_lattice()
            lat.set_batch_enabled(True)
        # moelat.batch at WARNING: the engine produced none of its INFO lines.
        assert not [r for r in caplog.records if r.name == "moelat.batch"]
    finally:
        logging.getLogger("moelat.batch").setLevel(logging.NOTSET)


WARN_SCRIPT = """
import json, logging, sys
sys.path.insert(0, sys.argv[1])
import moelat
records = []
class Keep(logging.Handler):
    def emit(self, r):
        records.append([r.name, r.levelname, r.getMessage()])
logging.getLogger("moelat").addHandler(Keep())
lat = moelat.Lattice3D((9, 8, 7), seed=3, threads=2, mode="batch")
lat.forward(steps=2)
print(json.dumps({"records": records, "fallbacks": lat.get_batch_performance()["fallbacks"]}))
"""


def test_engine_warning_is_a_record_not_stderr(tmp_path):
    # An injected enqueue failure (the engine's test hook, read once per
    # process, hence a child) makes the batch path warn and fall back.
    env = dict(os.environ, MOELAT_FAULT="enqueue:8")
    pkg = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    proc = subprocess.run([sys.executable, "-c", WARN_SCRIPT, pkg], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["fallbacks"] >= 1
    assert any(name == "moelat.batch" and level == "WARNING" and "falling back" in msg
               for name, level, msg in out["records"]), out
    assert "falling back" not in proc.stderr


def test_logger_name_with_nul_reaches_no_module():
    from moelat import _logbridge

    bad = logging.getLogger("moelat.batch\0junk")
    bad.setLevel(logging.DEBUG)
    try:
        _logbridge.sync_levels()
        assert not any("\0" in m for m in _logbridge._sent)
        assert _logbridge._sent.get("batch", -1) != 3  # not turned to debug through the cut name
    finally:
        bad.setLevel(logging.NOTSET)
        del logging.Logger.manager.loggerDict["moelat.batch\0junk"]
