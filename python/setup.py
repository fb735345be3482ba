"""Records which libmoelat the installed package loads (moelat/_build_config.py).

pyproject.toml holds the metadata; this only adds the library lookup to
the build. First found wins:
  1. MOELAT_LIBRARY (a path to libmoelat.so);
  2. the repository's build tree, ../build/engine/libmoelat.so (built now
     with CMake when this directory sits in a moelat checkout without one,
     unless MOELAT_NO_BUILD=1);
  3. nothing recorded: at import the package then searches MOELAT_PREFIX,
     /usr/local and /usr (an engine installed with `cmake --install`) and
     the system's library path.
"""
import os
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def find_library():
    env = os.environ.get("MOELAT_LIBRARY")
    if env:
        return os.path.abspath(env)
    lib = os.path.join(REPO, "build", "engine", "libmoelat.so")
    if os.path.exists(lib):
        return lib
    in_repo = os.path.exists(os.path.join(REPO, "engine", "include", "moelat", "moelat.h"))
    if in_repo and shutil.which("cmake") and os.environ.get("MOELAT_NO_BUILD") != "1":
        build = os.path.join(REPO, "build")
        gen = ["-G", "Ninja"] if shutil.which("ninja") else []
        subprocess.check_call(["cmake", "-S", REPO, "-B", build, *gen, "-DCMAKE_BUILD_TYPE=Release"])
        subprocess.check_call(["cmake", "--build", build, "--target", "moelat", "moelat_expert_local",
                               "moelat_expert_functional", "moelat_expert_distant"])
        if os.path.exists(lib):
            return lib
    return None


class BuildPy(build_py):
    def run(self):
        super().run()
        lib = find_library()
        target = os.path.join(self.build_lib, "moelat", "_build_config.py")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w") as f:
            f.write(f"# written by python/setup.py at install time\nLIBRARY = {lib!r}\n")


setup(cmdclass={"build_py": BuildPy})
