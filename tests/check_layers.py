#!/usr/bin/env python3
"""The layers hold: cli -> proto -> tls -> net -> loop, and a lower layer
never includes a higher one's headers. Each source folder and each public
header has a level; a file may include only headers of its own level or
below. csock/error.h (codes, strerror, version) is the base every layer may
use; the umbrella csock/csock.h pulls in http.h, so only proto and cli may
include it. In particular src/loop sees nothing of net/, tls/, proto/, nor
csock/net.h, tls.h, http.h or csock.h.

Usage: check_layers.py SOURCE_DIR"""
import glob
import os
import re
import sys

LEVELS = ["error", "loop", "net", "tls", "proto", "cli"]
FOLDERS = {"loop": "loop", "net": "net", "tls": "tls", "proto": "proto", "cli": "cli"}
PUBLIC = {"error.h": "error", "api.h": "error", "loop.h": "loop", "net.h": "net",
          "tls.h": "tls", "http.h": "proto", "ws.h": "proto", "csock.h": "proto",
          "resolve.h": "net", "dial.h": "tls"}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def level_of_include(name):
    """The layer of an included header; None for one next to the including
    file (its own layer) or outside the map."""
    parts = name.split("/")
    if len(parts) == 2 and parts[0] == "csock":
        return PUBLIC.get(parts[1])
    if len(parts) == 2 and parts[0] in FOLDERS:
        return FOLDERS[parts[0]]
    return None


def files(src):
    for folder, level in FOLDERS.items():
        for path in sorted(glob.glob(os.path.join(src, "src", folder, "*.[ch]"))):
            yield path, level
    for path in sorted(glob.glob(os.path.join(src, "include", "csock", "*.h"))):
        yield path, PUBLIC.get(os.path.basename(path), "cli")


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    src = sys.argv[1]
    bad = checked = 0
    for path, level in files(src):
        with open(path) as f:
            text = f.read()
        checked += 1
        for name in INCLUDE.findall(text):
            inc = level_of_include(name)
            if inc is not None and LEVELS.index(inc) > LEVELS.index(level):
                bad += 1
                print(f"{os.path.relpath(path, src)}: the {level} layer includes {name} "
                      f"(the {inc} layer above it)")
    print(f"{checked} files checked, {bad} upward includes")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
