"""The ctypes structs of the bindings against the C compiler's layout.

Every struct with a body in include/dsr1.h must have a ctypes counterpart in
dsr1._capi (and the other way round), and for each one a small C program,
compiled here against the header, prints sizeof, alignof and the offsetof and
size of every field the ctypes class names: they must be equal. A field that the
ctypes class names but the C struct lacks fails the compilation."""

import ctypes
import os
import re
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "bindings", "python"))
from dsr1 import _capi  # noqa: E402

HEADER_DIR = os.path.join(HERE, "..", "..", "include")


def header_structs():
    text = open(os.path.join(HEADER_DIR, "dsr1.h"), encoding="utf-8").read()
    return set(re.findall(r"typedef struct (dsr1_\w+) \{", text))


def ctypes_structs():
    return {name: cls for name, cls in vars(_capi).items()
            if isinstance(cls, type) and issubclass(cls, ctypes.Structure) and getattr(cls, "_fields_", None)}


def compiler():
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc):
            return cc
    return None


def test_every_header_struct_is_bound():
    assert header_structs() == set(ctypes_structs()), (
        "structs with a body in dsr1.h and ctypes Structures with _fields_ in dsr1/_capi.py differ")


def test_struct_layouts_match_the_compiler(tmp_path):
    cc = compiler()
    if cc is None:
        pytest.skip("no C compiler (cc, gcc or clang) to measure the C layouts with")
    structs = ctypes_structs()
    lines = ["#include <stdalign.h>", "#include <stddef.h>", "#include <stdio.h>", '#include "dsr1.h"',
             "int main(void) {"]
    for name, cls in sorted(structs.items()):
        lines.append(f'printf("{name} size %zu align %zu\\n", sizeof({name}), alignof({name}));')
        for field in cls._fields_:
            lines.append(f'printf("{name}.{field[0]} offset %zu size %zu\\n", offsetof({name}, {field[0]}), '
                         f'sizeof((({name} *)0)->{field[0]}));')
    lines += ["return 0;", "}"]
    src = tmp_path / "layout.c"
    src.write_text("\n".join(lines) + "\n")
    exe = tmp_path / "layout"
    build = subprocess.run([cc, "-std=c11", "-I", HEADER_DIR, str(src), "-o", str(exe)],
                           capture_output=True, text=True)
    assert build.returncode == 0, f"the layout program does not compile:\n{build.stderr}"
    c_layout = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.splitlines()

    py_layout = []
    for name, cls in sorted(structs.items()):
        py_layout.append(f"{name} size {ctypes.sizeof(cls)} align {ctypes.alignment(cls)}")
        for field in cls._fields_:
            desc = getattr(cls, field[0])
            py_layout.append(f"{name}.{field[0]} offset {desc.offset} size {desc.size}")
    mismatches = [f"C: {c}  ctypes: {p}" for c, p in zip(c_layout, py_layout) if c != p]
    assert len(c_layout) == len(py_layout)
    assert not mismatches, "ctypes layouts differ from the C compiler's:\n" + "\n".join(mismatches)
    # the comparison covered every field of every struct
    assert len(py_layout) == sum(1 + len(cls._fields_) for cls in structs.values())
