#!/usr/bin/env python3
"""`make install` delivers a usable library: headers, libcsock.{a,so}, csock.pc,
the binary and the man page land under PREFIX, and a program built with
`pkg-config --cflags --libs csock` links and runs against the installed copy."""
import os
import subprocess
import sys
import tempfile

BUILD = os.environ.get("CSOCK_BUILD") or os.path.join(os.path.dirname(__file__), "..", "..", "build")

PROGRAM = r"""
#include <csock/csock.h>
#include <stdio.h>
#include <string.h>

static size_t on_read(csock_stream *s, int status, const char *buf, size_t len)
{
    if (status == 0 && len >= 5) {
        printf("got %.5s\n", buf);
        csock_loop_stop(csock_stream_loop(s));
        return len;
    }
    return 0;
}

static void on_accept(csock_listener *l, csock_stream *s, int status)
{
    if (status == 0) csock_stream_read_start(s, on_read);
}

static void on_connect(csock_stream *s, int status)
{
    if (status == 0) csock_stream_write(s, "hello", 5);
}

int main(void)
{
    csock_loop *loop;
    csock_addr a, bound;
    csock_listener *l;
    csock_stream *c;
    if (csock_loop_new(NULL, &loop) < 0) return 1;
    if (csock_addr_parse("tcp://127.0.0.1:0", 0, &a) < 0) return 2;
    if (csock_listen(loop, &a, NULL, on_accept, NULL, &l) < 0) return 3;
    csock_listener_addr(l, &bound);
    bound.scheme = CSOCK_TCP;
    if (csock_connect(loop, &bound, NULL, on_connect, NULL, &c) < 0) return 4;
    csock_loop_run(loop, CSOCK_RUN_DEFAULT);
    printf("version %s, %s\n", csock_version(), csock_strerror(-ECONNREFUSED));
    return 0;
}
"""


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)


def sanitized_build():
    try:
        with open(os.path.join(BUILD, "CMakeCache.txt")) as f:
            return any(l.startswith("CSOCK_SANITIZE:") and l.strip().split("=", 1)[1] for l in f)
    except OSError:
        return False


def main():
    passed = failed = 0
    if sanitized_build():
        # A sanitizer build's library needs the sanitizer runtime in every
        # program that links it: the install check belongs to the plain build.
        print("0 passed, 0 failed, 1 skipped")
        return 0

    def check(name, cond, detail=""):
        nonlocal passed, failed
        if cond:
            passed += 1
            print(f"ok   {name}")
        else:
            failed += 1
            print(f"FAIL {name} {detail}")

    with tempfile.TemporaryDirectory() as prefix:
        r = run(["cmake", "--install", BUILD, "--prefix", prefix])
        check("cmake --install", r.returncode == 0, r.stderr[-2000:])
        libdir = next((os.path.join(prefix, d) for d in ("lib", "lib64", "lib/x86_64-linux-gnu")
                       if os.path.exists(os.path.join(prefix, d, "pkgconfig", "csock.pc"))), None)
        check("csock.pc installed", libdir is not None)
        for rel in ("include/csock/csock.h", "include/csock/loop.h", "include/csock/net.h", "bin/csock"):
            check(f"{rel} installed", os.path.exists(os.path.join(prefix, rel)))
        if libdir:
            check("libcsock.a installed", os.path.exists(os.path.join(libdir, "libcsock.a")))
            check("libcsock.so installed", os.path.exists(os.path.join(libdir, "libcsock.so")))
            env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(libdir, "pkgconfig"))
            flags = run(["pkg-config", "--cflags", "--libs", "csock"], env=env)
            check("pkg-config csock", flags.returncode == 0, flags.stderr)
            src = os.path.join(prefix, "prog.c")
            exe = os.path.join(prefix, "prog")
            with open(src, "w") as f:
                f.write(PROGRAM)
            cc = run(["cc", "-std=c11", "-Wall", "-o", exe, src] + flags.stdout.split(), env=env)
            check("a program builds with pkg-config flags", cc.returncode == 0, cc.stderr[-2000:])
            if cc.returncode == 0:
                out = run([exe], env=dict(env, LD_LIBRARY_PATH=libdir))
                check("it runs against the installed library",
                      out.returncode == 0 and "got hello" in out.stdout and "version 0.1.0" in out.stdout,
                      out.stdout + out.stderr)
        binary = os.path.join(prefix, "bin", "csock")
        if os.path.exists(binary):
            v = run([binary, "--version"])
            check("installed csock --version", v.returncode == 0 and v.stdout.startswith("csock 0.1.0"), v.stdout)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
