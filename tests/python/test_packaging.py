"""pip install ./bindings/python works offline, and a self-contained wheel
carrying libdsr1 installs and runs with no build tree and no DSR1_LIBRARY."""

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "bindings" / "python"
DATA = Path(os.environ.get("DSR1_TEST_DATA", ROOT / "tests" / "data"))
MODEL = DATA / "models" / "qwen2-q8_0.gguf"

try:
    import pip  # noqa: F401
except ImportError:
    pip = None
pytestmark = pytest.mark.skipif(pip is None, reason="pip is not installed for this Python (Debian: python3-pip)")


def _pip(*args):
    # --no-index: nothing may come from the network
    r = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-cache-dir", *args],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def _run_installed(target, code, env_extra=None):
    """Run code with only the installed copy importable (cwd outside the source tree)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DSR1_LIBRARY", "PYTHONPATH")}
    env["PYTHONPATH"] = str(target)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=target, timeout=120)


def test_version_matches_meson():
    meson = re.search(r"version\s*:\s*'([^']+)'", (ROOT / "meson.build").read_text()).group(1)
    pyproject = re.search(r'^version\s*=\s*"([^"]+)"', (PKG / "pyproject.toml").read_text(), re.M).group(1)
    assert meson == pyproject


@pytest.mark.parametrize("isolation", [True, False])
def test_pip_install_offline(tmp_path, isolation):
    target = tmp_path / "site"
    _pip("install", "--no-index", "--no-deps", "--target", str(target),
         *([] if isolation else ["--no-build-isolation"]), str(PKG))
    assert (target / "dsr1" / "__init__.py").is_file() and not (target / "dsr1" / "_lib").exists()
    assert list(target.glob("dsr1-*.dist-info/METADATA"))
    lib = os.environ.get("DSR1_LIBRARY")
    if not lib:
        pytest.skip("DSR1_LIBRARY is not set: no library to run the installed package with")
    code = f"import dsr1\nassert dsr1.__file__.startswith({str(target)!r})\nprint(dsr1.version())"
    r = _run_installed(target, code, {"DSR1_LIBRARY": os.path.abspath(lib)})
    assert r.returncode == 0 and r.stdout.strip(), r.stderr


def test_self_contained_wheel(tmp_path):
    lib = os.environ.get("DSR1_LIBRARY")
    if not lib:
        pytest.skip("DSR1_LIBRARY is not set: no library to put into the wheel")
    dist = tmp_path / "dist"
    _pip("wheel", "--no-index", "--no-deps", "-w", str(dist), "--config-settings",
         f"libdsr1={os.path.abspath(lib)}", str(PKG))
    wheels = list(dist.glob("dsr1-*.whl"))
    assert len(wheels) == 1 and not wheels[0].name.endswith("-any.whl"), wheels
    with zipfile.ZipFile(wheels[0]) as z:
        assert any(n.startswith("dsr1/_lib/libdsr1") for n in z.namelist()), z.namelist()
    target = tmp_path / "site"
    _pip("install", "--no-index", "--no-deps", "--target", str(target), str(wheels[0]))
    code = ("import dsr1\n"
            "path = dsr1.find_library()\n"
            "assert '/dsr1/_lib/' in path, path\n"
            f"m = dsr1.Model.load({str(MODEL)!r})\n"
            "print(dsr1.version(), len(m.tokenize('hello')) > 0)")
    r = _run_installed(target, code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[1] == "True"
