"""python3 -m moelat.bench: the prototype guide's A/B table (per-cell vs
batch ms per step and speedup at 8^3, 15^3, 30^3, debug preset) from the C
benchmark, `moelat-engine bench --json`.

The engine binary is MOELAT_ENGINE, else the one beside the library
(build tree: build/tools/moelat-engine; installed prefix: bin/), else the
one on PATH. Extra arguments go to `moelat-engine bench` (e.g. --device 0).
"""
import json
import os
import shutil
import subprocess
import sys

from . import _lib

CASES = "debug:8x8x8,debug:15x15x15,debug:30x30x30"


def find_engine():
    env = os.environ.get("MOELAT_ENGINE")
    if env:
        return env
    libdir = os.path.dirname(_lib.LIBRARY_PATH)
    for cand in (os.path.join(libdir, "..", "tools", "moelat-engine"), os.path.join(libdir, "..", "bin", "moelat-engine")):
        if os.access(cand, os.X_OK):
            return os.path.normpath(cand)
    found = shutil.which("moelat-engine")
    if found:
        return found
    raise FileNotFoundError("moelat-engine not found: set MOELAT_ENGINE or build the engine (tools/scripts/setup.sh)")


def run_bench(extra=(), cases=CASES):
    cmd = [find_engine(), "bench", "--cases", cases, "--json", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def format_table(result):
    lines = [f"A/B test on {result.get('device', '?')}: per-cell (host) vs batch (device), ms per step",
             f"{'lattice':>10} {'per-cell ms':>12} {'batch ms':>10} {'speedup':>8}"]
    for row in result["rows"]:
        est = "~" if row.get("percell_estimated") else " "
        speed = f"{row['speedup']:.1f}x" if row.get("speedup") else "-"
        lines.append(f"{row['dims']:>10} {est}{row['percell_ms']:11.2f} {row['batch_ms']:10.2f} {speed:>8}")
    lines.append("~: per-cell time extrapolated from a sample of rows")
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    try:
        print(format_table(run_bench(argv)))
    except (OSError, RuntimeError, ValueError, KeyError) as e:
        print(f"moelat.bench: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
