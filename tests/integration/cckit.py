"""cckit: compile a C program against the library in the build tree, the way
a user would (`cc -std=c11 -Wall -Wextra -Werror`, the public headers, the
shared library), for the tests of the manual, the guide and the examples.

The compiler and sanitizer flags come from the build's CMakeCache.txt, so a
program linked with an ASan-built libcsock.so gets the ASan runtime too."""
import os
import re
import subprocess

import csocktest as ct

BUILD = os.environ.get("CSOCK_BUILD") or os.path.dirname(ct.BIN)
INCLUDE = os.path.join(ct.REPO, "include")
STRICT = ["-std=c11", "-Wall", "-Wextra", "-Werror"]


def _cache(key):
    try:
        with open(os.path.join(BUILD, "CMakeCache.txt")) as f:
            for line in f:
                m = re.match(r"%s:[A-Z]+=(.*)$" % re.escape(key), line.strip())
                if m:
                    return m.group(1)
    except OSError:
        pass
    return ""


def compiler():
    return _cache("CMAKE_C_COMPILER") or "cc"


def compile_c(src, exe, extra=()):
    """Compile the C file `src` into `exe` with STRICT flags. Returns
    (ok, diagnostics): any warning is an error."""
    flags = list(STRICT)
    san = _cache("CSOCK_SANITIZE")
    if san:
        flags += ["-fsanitize=" + san, "-fno-omit-frame-pointer"]
    argv = ([compiler()] + flags + list(extra) + ["-I", INCLUDE, "-o", exe, src,
            "-L", BUILD, "-lcsock", "-Wl,-rpath," + BUILD])
    res = subprocess.run(argv, capture_output=True, text=True, timeout=ct.T(120))
    return res.returncode == 0, (" ".join(argv) + "\n" + res.stderr)


def compile_text(text, name, extra=()):
    """Write `text` to NAME.c in a fresh temp dir and compile it; returns
    (ok, diagnostics, exe path)."""
    d = ct.tmpdir()
    src = os.path.join(d, name + ".c")
    with open(src, "w") as f:
        f.write(text)
    exe = os.path.join(d, name)
    ok, diag = compile_c(src, exe, extra)
    return ok, diag, exe


def recv_until(sock, suffix, what):
    """Read from sock until the data ends with `suffix`; fails (naming
    `what`) if the peer closes first. Returns the data."""
    got = b""
    while not got.endswith(suffix):
        chunk = sock.recv(4096)
        ct.check(chunk, "%s: closed early: %r" % (what, got))
        got += chunk
    return got
