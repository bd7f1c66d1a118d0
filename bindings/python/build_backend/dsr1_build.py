"""A minimal PEP 517 / PEP 660 build backend for the dsr1 bindings.

The package is pure Python (ctypes), so a wheel is a zip of ``dsr1/`` plus
its metadata; doing that here, with the standard library only, lets
``pip install ./bindings/python`` work offline (pip's isolated build
environment needs no setuptools download).

Config settings (``pip wheel --config-settings KEY=VALUE``):

``libdsr1=PATH``
    Put the shared library at PATH (e.g. ``$PWD/build/libdsr1.so``; a
    relative path is taken from this directory) into the wheel as
    ``dsr1/_lib/<its file name>``, which the package loads first. The wheel is
    then tagged for this platform (``py3-none-linux_x86_64``) instead of
    ``py3-none-any``. ``$DSR1_WHEEL_LIBRARY`` does the same.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import sysconfig
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent  # bindings/python
PACKAGE = "dsr1"


def _project() -> dict:
    """name, version, summary, requires-python, extras, scripts from pyproject.toml
    (read with a few regexes: tomllib is Python 3.11+)."""
    text = (HERE / "pyproject.toml").read_text(encoding="utf-8")

    def section(name):
        m = re.search(r"^\[" + re.escape(name) + r"\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
        return m.group(1) if m else ""

    def pairs(body):
        return dict(re.findall(r'^([\w.-]+)\s*=\s*(.+?)\s*$', body, re.M))

    proj = pairs(section("project"))
    unq = lambda v: v.strip().strip('"')  # noqa: E731
    return {
        "name": unq(proj["name"]),
        "version": unq(proj["version"]),
        "summary": unq(proj.get("description", '""')),
        "requires_python": unq(proj.get("requires-python", '""')),
        "extras": {k: re.findall(r'"([^"]+)"', v) for k, v in pairs(section("project.optional-dependencies")).items()},
        "scripts": {k: unq(v) for k, v in pairs(section("project.scripts")).items()},
    }


def _library(config_settings) -> Path | None:
    value = (config_settings or {}).get("libdsr1") or os.environ.get("DSR1_WHEEL_LIBRARY")
    if not value:
        return None
    path = (HERE / value).resolve() if not os.path.isabs(value) else Path(value).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"libdsr1={value}: no such file (build it first: meson setup build && ninja -C build)")
    return path


def _metadata(p: dict) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {p['name']}", f"Version: {p['version']}",
             f"Summary: {p['summary']}", "License: MIT"]
    if p["requires_python"]:
        lines.append(f"Requires-Python: {p['requires_python']}")
    for extra, reqs in p["extras"].items():
        lines.append(f"Provides-Extra: {extra}")
        lines += [f'Requires-Dist: {r}; extra == "{extra}"' for r in reqs]
    lines.append("Description-Content-Type: text/markdown")
    readme = HERE / "README.md"
    return "\n".join(lines) + "\n\n" + (readme.read_text(encoding="utf-8") if readme.is_file() else "")


def _tag(lib: Path | None) -> str:
    if lib is None:
        return "py3-none-any"
    return "py3-none-" + re.sub(r"[^A-Za-z0-9]", "_", sysconfig.get_platform())


def _dist_info(p: dict) -> str:
    return f"{p['name']}-{p['version']}.dist-info"


def _meta_files(p: dict, tag: str) -> dict:
    files = {
        "METADATA": _metadata(p),
        "WHEEL": f"Wheel-Version: 1.0\nGenerator: dsr1_build\nRoot-Is-Purelib: {'true' if tag.endswith('any') else 'false'}\nTag: {tag}\n",
    }
    if p["scripts"]:
        files["entry_points.txt"] = "[console_scripts]\n" + "".join(
            f"{k} = {v}\n" for k, v in p["scripts"].items())
    return files


def _write_wheel(directory: str, p: dict, tag: str, contents: dict) -> str:
    """contents: archive name -> bytes. Adds the dist-info and RECORD."""
    info = _dist_info(p)
    for name, text in _meta_files(p, tag).items():
        contents[f"{info}/{name}"] = text.encode("utf-8")
    record = []
    for name, data in contents.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    contents[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode("utf-8")
    wheel_name = f"{p['name']}-{p['version']}-{tag}.whl"
    with zipfile.ZipFile(Path(directory) / wheel_name, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in contents.items():
            zi = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            zi.external_attr = (0o755 if name.endswith((".so", ".dylib", ".dll")) else 0o644) << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, data)
    return wheel_name


def _package_files() -> dict:
    out = {}
    for f in sorted((HERE / PACKAGE).rglob("*.py")):
        out[f.relative_to(HERE).as_posix()] = f.read_bytes()
    return out


# ---- PEP 517 hooks ----

def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    p = _project()
    info = Path(metadata_directory) / _dist_info(p)
    info.mkdir(parents=True, exist_ok=True)
    for name, text in _meta_files(p, _tag(_library(config_settings))).items():
        (info / name).write_text(text, encoding="utf-8")
    return info.name


prepare_metadata_for_build_editable = prepare_metadata_for_build_wheel


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    p = _project()
    lib = _library(config_settings)
    contents = _package_files()
    if lib is not None:
        # stored under the name the package looks for (libdsr1.so, not libdsr1.so.0.1.0)
        name = re.sub(r"\.so(\.\d+)*$", ".so", lib.name)
        contents[f"{PACKAGE}/_lib/{name}"] = lib.read_bytes()
    return _write_wheel(wheel_directory, p, _tag(lib), contents)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    """pip install -e: a .pth file that puts this directory on sys.path."""
    p = _project()
    contents = {f"__editable__.{p['name']}.pth": (str(HERE) + "\n").encode("utf-8")}
    return _write_wheel(wheel_directory, p, "py3-none-any", contents)


def build_sdist(sdist_directory, config_settings=None):
    import tarfile
    p = _project()
    base = f"{p['name']}-{p['version']}"
    name = f"{base}.tar.gz"
    with tarfile.open(Path(sdist_directory) / name, "w:gz") as t:
        for rel in ["pyproject.toml", "README.md", "build_backend/dsr1_build.py", *_package_files()]:
            t.add(HERE / rel, arcname=f"{base}/{rel}")
        pkg_info = io.BytesIO(_metadata(p).encode("utf-8"))
        ti = tarfile.TarInfo(f"{base}/PKG-INFO")
        ti.size = len(pkg_info.getvalue())
        t.addfile(ti, pkg_info)
    return name
