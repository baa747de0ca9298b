#!/usr/bin/env python3
"""docs/guide.md: every C block in the guide is a file of the tree, included
verbatim after a `<!-- file: PATH -->` line (so the guide cannot drift from
code the tests run); the guide follows the seed's path (TCP, UDP, many
clients, TLS, HTTP); and every program it shows is compiled here with
-Wall -Wextra -Werror and run against a real peer (the scenarios of
test_examples.py, on these freshly compiled binaries).

    python3 test_guide.py --update    rewrites the guide's blocks from the files
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import csocktest as ct  # noqa: E402
import cckit  # noqa: E402
import test_examples as tx  # noqa: E402

GUIDE = os.path.join(ct.REPO, "docs", "guide.md")
BLOCK = re.compile(r"(?:<!-- file: (\S+) -->\n)?```c\n(.*?)```", re.S)
PATH = ["TCP server", "TCP client", "UDP", "Many clients", "TLS", "HTTP"]


def blocks():
    """[(path or None, code)] for every C block of the guide."""
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(open(GUIDE).read())]


def test_every_block_is_a_file():
    found = blocks()
    ct.check(len(found) >= 8, "only %d C blocks in the guide" % len(found))
    for path, code in found:
        ct.check(path, "a C block without a `<!-- file: PATH -->` line:\n%s" % code[:300])
        with open(os.path.join(ct.REPO, path)) as f:
            ct.check(f.read() == code, "the guide's copy of %s differs from the file "
                     "(run test_guide.py --update)" % path)


def test_follows_the_seed_path():
    heads = [h.strip() for h in re.findall(r"^## (.*)$", open(GUIDE).read(), flags=re.M)]
    at = []
    for want in PATH:
        i = next((i for i, h in enumerate(heads) if want.lower() in h.lower()), None)
        ct.check(i is not None, "the guide has no section on %r: %r" % (want, heads))
        at.append(i)
    ct.check(at == sorted(at), "the guide's sections are out of the seed's order: %r" % heads)


def test_programs_compile_strictly_and_run():
    progs = sorted({p for p, _ in blocks() if p})
    bindir = ct.tmpdir()
    for path in progs:
        name = os.path.basename(path)[:-2]
        ok, diag = cckit.compile_c(os.path.join(ct.REPO, path), os.path.join(bindir, name))
        ct.check(ok, "%s does not compile with -Wall -Wextra -Werror:\n%s" % (path, diag))
    scenarios = []
    for path in progs:
        runs = tx.SCENARIOS.get(os.path.basename(path))
        ct.check(runs, "no scenario runs %s" % path)
        scenarios += [r for r in runs if r not in scenarios]
    for run in scenarios:
        run(bindir)
        print("  ran %s on the guide's programs" % run.__name__, flush=True)


def update():
    text = open(GUIDE).read()

    def fill(m):
        if not m.group(1):
            return m.group(0)
        with open(os.path.join(ct.REPO, m.group(1))) as f:
            return "<!-- file: %s -->\n```c\n%s```" % (m.group(1), f.read())
    with open(GUIDE, "w") as f:
        f.write(BLOCK.sub(fill, text))


if __name__ == "__main__":
    if sys.argv[1:] == ["--update"]:
        update()
    else:
        ct.main()
