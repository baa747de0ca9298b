#!/usr/bin/env python3
"""The shared library exports exactly the public API: every symbol that
libcsock.so defines in its dynamic table is a function a header in
include/csock/ declares, and every function a header declares is exported.

Usage: check_exports.py LIBCSOCK_SO INCLUDE_DIR"""
import glob
import os
import re
import subprocess
import sys

# Linker-made symbols that any shared library may define.
LINKER_SYMBOLS = {"_init", "_fini", "_edata", "_end", "__bss_start"}


def declared(include_dir):
    """csock_ names declared as functions in the public headers (comments
    stripped, so a name mentioned in prose does not count; a callback
    typedef's name is followed by ')', not '(')."""
    names = set()
    for path in glob.glob(os.path.join(include_dir, "csock", "*.h")):
        with open(path) as f:
            text = f.read()
        text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
        text = re.sub(r"//[^\n]*", " ", text)
        text = re.sub(r"^\s*#.*?(?<!\\)$", " ", text, flags=re.M | re.S)  # macros
        names.update(re.findall(r"\b(csock_[a-z][a-z0-9_]*)\s*\(", text))
    return names


def exported(lib):
    out = subprocess.run(["nm", "-D", "--defined-only", lib], capture_output=True, text=True,
                         check=True).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[-1] not in LINKER_SYMBOLS:
            names.add(parts[-1].split("@")[0])
    return names


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    lib, include_dir = sys.argv[1], sys.argv[2]
    decl, exp = declared(include_dir), exported(lib)
    extra = sorted(exp - decl)
    missing = sorted(decl - exp)
    for name in extra:
        print(f"exported but declared in no public header: {name}")
    for name in missing:
        print(f"declared in a public header but not exported (CSOCK_API missing?): {name}")
    print(f"{len(exp)} exported, {len(decl)} declared")
    return 1 if extra or missing else 0


if __name__ == "__main__":
    sys.exit(main())
