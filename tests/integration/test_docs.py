#!/usr/bin/env python3
"""The manual (docs/*.3) against the headers and itself:
  - every public function declared in include/csock/*.h appears in the
    SYNOPSIS of a man page and is described in its text;
  - every page has NAME, SYNOPSIS, DESCRIPTION, EXAMPLES and SEE ALSO, and
    renders without a single groff warning;
  - every complete EXAMPLES program (one with main) compiles warning-free
    (-Wall -Wextra -Werror) against the built library;
  - the README's library snippet compiles the same way, as shown."""
import glob
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import csocktest as ct  # noqa: E402
import cckit  # noqa: E402

DOCS = os.path.join(ct.REPO, "docs")
HEADERS = sorted(glob.glob(os.path.join(ct.REPO, "include", "csock", "*.h")))
PAGES = sorted(glob.glob(os.path.join(DOCS, "*.3")))
SECTIONS = ("NAME", "SYNOPSIS", "DESCRIPTION", "EXAMPLES", "SEE ALSO")


def public_functions():
    """csock_ names followed by '(' in declarations: functions and their
    prototypes (not typedef'd callback types, written `(*csock_x_cb)(`)."""
    names = set()
    for h in HEADERS:
        text = open(h).read()
        text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
        text = re.sub(r"^\s*#.*$", " ", text, flags=re.M)  # macros are not functions
        for m in re.finditer(r"\b(csock_[a-z0-9_]+)\s*\(", text):
            if not m.group(1).startswith("csock__"):
                names.add(m.group(1))
    return names


def sections(page):
    """{section name: roff text} of one page."""
    out, cur = {}, None
    for line in open(page).read().splitlines():
        m = re.match(r'^\.SH\s+"?([^"]*)"?\s*$', line)
        if m:
            cur = m.group(1).strip()
            out[cur] = ""
        elif cur:
            out[cur] += line + "\n"
    return out


def words(text):
    return set(re.findall(r"csock_[a-z0-9_]+", text))


def test_headers_found():
    ct.check(len(HEADERS) >= 5, "headers: %r" % HEADERS)
    ct.check(len(public_functions()) > 100, "too few public functions found: the parser broke")
    ct.check(os.path.join(DOCS, "libcsock.3") in PAGES, "docs/libcsock.3 missing")


def test_every_function_in_a_synopsis_and_described():
    synopsis, described = set(), set()
    for p in PAGES:
        s = sections(p)
        synopsis |= words(s.get("SYNOPSIS", ""))
        described |= words(s.get("DESCRIPTION", ""))
    missing = sorted(public_functions() - synopsis)
    ct.check(not missing, "public functions in no man page's SYNOPSIS: %s" % missing)
    missing = sorted(public_functions() - described)
    ct.check(not missing, "public functions no man page's DESCRIPTION explains: %s" % missing)


def header_text():
    return "".join(open(h).read() for h in HEADERS)


def page_text(name):
    return open(os.path.join(DOCS, name)).read()


def test_every_error_code_documented():
    """Every library code of CSOCK_ERRNO_MAP has its own entry in csock_error(3)."""
    codes = re.findall(r"^\s*X\((E[A-Z0-9]+),", header_text(), flags=re.M)
    ct.check(len(codes) >= 8, "error codes found: %r" % codes)
    errors = sections(os.path.join(DOCS, "csock_error.3")).get("ERROR CODES", "")
    missing = [c for c in codes if ".B CSOCK_%s\n" % c not in errors]
    ct.check(not missing, "csock_error(3) has no entry for %s" % missing)


def test_every_environment_variable_documented():
    """Every CSOCK_* variable the library reads (getenv in src/, not the CLI)
    is in the ENVIRONMENT section of libcsock(3)."""
    names = set()
    for src in glob.glob(os.path.join(ct.REPO, "src", "*", "*.c")):
        if os.sep + "cli" + os.sep in src:
            continue
        names |= set(re.findall(r'getenv\("(CSOCK_[A-Z0-9_]+)"\)', open(src).read()))
    ct.check(names, "no getenv found in src/: the scan broke")
    env = sections(os.path.join(DOCS, "libcsock.3")).get("ENVIRONMENT", "")
    missing = sorted(n for n in names if n not in env)
    ct.check(not missing, "libcsock(3) ENVIRONMENT lacks %s" % missing)


def test_every_option_struct_under_the_abi_rule():
    """Every public options struct is named where libcsock(3) states the
    zero-initialize / reserved-space rule."""
    structs = set(re.findall(r"typedef struct (csock_[a-z0-9_]*opts)\b", header_text()))
    ct.check(len(structs) >= 5, "option structs found: %r" % structs)
    rule = page_text("libcsock.3").split(".SS Option structs", 1)
    ct.check(len(rule) == 2, "libcsock(3) has no 'Option structs' subsection")
    rule = rule[1].split(".SH", 1)[0]
    missing = sorted(s for s in structs if s not in rule)
    ct.check(not missing, "libcsock(3)'s ABI rule does not name %s" % missing)


def test_pages_have_sections():
    for p in PAGES:
        s = sections(p)
        missing = [x for x in SECTIONS if x not in s]
        ct.check(not missing, "%s lacks %s" % (os.path.basename(p), missing))
        ct.check(".EX" in s["EXAMPLES"], "%s: EXAMPLES has no code" % os.path.basename(p))


def test_pages_render_without_warnings():
    ct.need("groff")
    for p in PAGES + [os.path.join(DOCS, "csock.1")]:
        res = subprocess.run(["groff", "-man", "-ww", "-z", p], capture_output=True,
                             text=True, timeout=ct.T(60))
        ct.check(res.returncode == 0 and not res.stderr.strip(),
                 "%s: groff warnings:\n%s" % (os.path.basename(p), res.stderr))
        if shutil.which("mandoc"):
            res = subprocess.run(["mandoc", "-Tlint", "-Wwarning", p], capture_output=True,
                                 text=True, timeout=ct.T(60))
            ct.check(res.returncode == 0, "%s: mandoc:\n%s%s" % (p, res.stdout, res.stderr))


def unroff(block):
    """The C text of an .EX/.EE block."""
    text = block.replace("\\e", "\\").replace("\\-", "-").replace("\\(dq", '"')
    text = text.replace("\\(aq", "'").replace("\\&", "")
    return text


def examples(page):
    return [unroff(b) for b in
            re.findall(r"^\.EX\n(.*?)^\.EE$", open(page).read(), flags=re.S | re.M)]


def test_man_examples_compile():
    n = 0
    for p in PAGES:
        for i, code in enumerate(examples(p)):
            if "int main(" not in code:
                continue  # a fragment, explained around it
            name = "%s_%d" % (os.path.basename(p).replace(".", "_"), i)
            ok, diag, _ = cckit.compile_text(code, name)
            ct.check(ok, "%s example %d does not compile:\n%s\n%s" % (p, i, diag, code))
            n += 1
    ct.check(n >= 5, "only %d complete example programs in the manual" % n)


def readme_snippet():
    text = open(os.path.join(ct.REPO, "README.md")).read()
    lib = text.split("## The library", 1)
    ct.check(len(lib) == 2, "README.md has no '## The library' section")
    m = re.search(r"```c\n(.*?)```", lib[1], flags=re.S)
    ct.check(m, "no ```c block in the README's library section")
    return m.group(1)


def test_readme_snippet_compiles():
    code = readme_snippet()
    ok, diag, exe = cckit.compile_text(code, "readme")
    ct.check(ok, "the README snippet does not compile warning-free:\n%s" % diag)
    if "int main(" in code:
        # It is a whole server: it must come up and answer.
        p = ct.Proc([exe])
        try:
            line = p.read_line(20)
            ct.check(line.startswith("listening "), "README server said %r" % line)
            ep = ct.Endpoint(line.split(" ", 1)[1])
            with ep.socket() as s:
                s.sendall(b"hello readme\n")
                got = cckit.recv_until(s, b"\n", "README server")
            ct.check_eq(got, b"HELLO README\n", "README server's answer")
        finally:
            p.stop()


def test_install_puts_the_manual_and_examples():
    """`make install` (cmake --install) puts every page in man3 and every
    example in share/doc/csock/examples, and `man -l` reads the installed
    overview."""
    ct.need("cmake")
    prefix = ct.tmpdir()
    res = subprocess.run(["cmake", "--install", cckit.BUILD, "--prefix", prefix],
                         capture_output=True, text=True, timeout=ct.T(120))
    ct.check(res.returncode == 0, "cmake --install: %s%s" % (res.stdout[-1000:], res.stderr[-1000:]))
    man3 = os.path.join(prefix, "share", "man", "man3")
    for p in PAGES:
        ct.check(os.path.exists(os.path.join(man3, os.path.basename(p))),
                 "%s not installed in %s" % (os.path.basename(p), man3))
    exdir = os.path.join(prefix, "share", "doc", "csock", "examples")
    for src in glob.glob(os.path.join(ct.REPO, "examples", "*.c")):
        ct.check(os.path.exists(os.path.join(exdir, os.path.basename(src))),
                 "%s not installed in %s" % (os.path.basename(src), exdir))
    if shutil.which("man"):
        res = subprocess.run(["man", "-l", os.path.join(man3, "libcsock.3")], capture_output=True,
                             text=True, timeout=ct.T(60), env=dict(os.environ, MANPAGER="cat",
                                                                    PAGER="cat", MANWIDTH="80"))
        ct.check(res.returncode == 0 and "csock_loop" in res.stdout,
                 "man -l libcsock.3: %s %r" % (res.returncode, res.stderr[-500:]))


if __name__ == "__main__":
    ct.main()
