"""The README's "From Python" section runs as written."""
import os
import re
import subprocess
import sys

README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "README.md")


def blocks():
    text = open(README).read()
    section = text.split("## From Python", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_from_python_section(tmp_path):
    code = blocks()
    assert len(code) >= 3
    # One interpreter, blocks in order, from a directory outside the
    # repository; PYTHONPATH stands for setup.sh's .pth, naming this tree.
    pkg = os.path.abspath(os.path.join(os.path.dirname(README), "python"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([pkg, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", "\n".join(code)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "(504, 24) (72, 24)" in proc.stdout and "True" in proc.stdout
    assert re.search(r"^local 0\.\d+ 0\.\d+$", proc.stdout, re.M)
    assert "upgrade check" in proc.stderr  # the INFO record through logging
