"""faultkit: what the fault sweeps (sweep_alloc.py, sweep_io.py) share.

  - Outcome: one run's verdict (crash, asan, ubsan, leak, hang, exit2 or
    ok) with the finding's key `KIND:SITE`, SITE being the first stack frame
    in csock's own sources (src/, else tests/), or the scenario for hangs
    and wrong exit statuses.
  - classify(): that verdict from a finished (or timed-out) process.
  - Known: the allow-list tests/fault/known.txt, one finding a line:
        KIND:SITE     e.g. asan:csock__group_close_all
        SITE          any kind at that site
    '#' starts a comment. A finding on the list is reported as "known" and
    does not fail the sweep; the list empties as the fixes land.
  - Report: collects findings (deduplicated by key, first reproduction
    kept) and prints the summary every sweep ends with.
"""

import os
import re
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
KNOWN_FILE = os.environ.get("CSOCK_FAULT_KNOWN", os.path.join(HERE, "known.txt"))

SAN_ENV = {
    # abort_on_error=0: exit with a report, not a core; handle_abort: a
    # hung run we SIGABRT prints where it was stuck.
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:handle_abort=1:allocator_may_return_null=1"
                    ":symbolize=1:allow_user_segv_handler=0",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
    "LSAN_OPTIONS": "exitcode=23",
}

_FRAME = re.compile(r"#\d+ 0x[0-9a-f]+ in (\S+) (\S+)")
_SOURCE = re.compile(r"\.[ch]:\d+")     # a symbolized frame, not "(binary+0x...)"


def sanitizer_env(extra=None):
    env = dict(os.environ)
    env.update(SAN_ENV)
    if extra:
        env.update(extra)
    return env


def split_trace(text):
    """(the failed allocation's frames, text without them): failalloc.c
    prints the stack of the allocation it fails (CSOCK_FAILALLOC_TRACE)."""
    mark = "failalloc: failing allocation"
    if mark not in text:
        return [], text
    head, _, tail = text.partition(mark)
    block, _, rest = tail.partition("\n\n")
    frames = [f for f in top_frames(block, 12)
              if "tests/fault/" not in f and "sanitizer" not in f]
    return frames[:3], head + rest


def site_of(text):
    """The innermost frame of the first report in text that lies in csock's
    sources, src/ or tests/ (the shims themselves never): where a crash
    happened, or which code made a leaked allocation."""
    for fn, where in _FRAME.findall(text):
        if (("/src/" in where or "/tests/" in where) and "/tests/fault/" not in where
                and _SOURCE.search(where)):
            return fn
    m = re.search(r"(\S+\.c):\d+:\d+: runtime error", text)
    return m.group(1).rsplit("/", 1)[-1] if m else "unknown"


def top_frames(text, n=6):
    """The first n symbolized frames of the first report (for FINDINGS)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if _FRAME.match(line):
            out.append(re.sub(r"0x[0-9a-f]+ in ", "", line).replace(REPO + "/", ""))
            if len(out) == n:
                break
    return out


class Outcome:
    def __init__(self, kind, site="", detail="", stderr="", status=None):
        self.kind, self.site, self.detail = kind, site, detail
        self.stderr, self.status = stderr, status
        self.alloc = []     # where the failed allocation was made

    @property
    def key(self):
        return "%s:%s" % (self.kind, self.site)

    @property
    def bad(self):
        return self.kind != "ok"


def run(argv, env, timeout, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, cwd=None):
    """Run to completion, bounded. Returns (status or 'timeout', out, err).
    A run past its time gets SIGABRT (ASan prints its stack), then SIGKILL."""
    p = subprocess.Popen(argv, env=env, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE,
                         start_new_session=True, cwd=cwd)
    try:
        out, err = p.communicate(timeout=timeout)
        status = p.returncode
    except subprocess.TimeoutExpired:
        status = "timeout"
        out, err = stop_stuck(p)
    finally:
        kill_group(p)
    return status, out or b"", (err or b"").decode("utf-8", "replace")


class Child:
    """A long-lived child (a server) whose stdout and stderr are drained
    by threads, so a test can wait for a line on either, bounded."""

    def __init__(self, argv, env, stdin=subprocess.DEVNULL):
        self.p = subprocess.Popen(argv, env=env, stdin=stdin, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, start_new_session=True)
        self.out, self.err = bytearray(), bytearray()
        self.cv = threading.Condition()
        self.threads = [threading.Thread(target=self._drain, args=(f, b), daemon=True)
                        for f, b in ((self.p.stdout, self.out), (self.p.stderr, self.err))]
        for t in self.threads:
            t.start()

    def _drain(self, f, buf):
        while True:
            chunk = f.read1(65536) if hasattr(f, "read1") else f.read(65536)
            with self.cv:
                if not chunk:
                    self.cv.notify_all()
                    return
                buf += chunk
                self.cv.notify_all()

    def wait_for(self, pattern, timeout):
        """The first match of pattern (bytes regex) in stdout or stderr, or
        None once the child exited or the time is up."""
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                m = rx.search(self.out) or rx.search(self.err)
                if m:
                    return m
                left = deadline - time.monotonic()
                if left <= 0 or (self.p.poll() is not None
                                 and not any(t.is_alive() for t in self.threads)):
                    return None
                self.cv.wait(min(left, 0.2))

    def finish(self, timeout, sig=None):
        """Signal (if asked), wait bounded; returns (status or 'timeout', stderr)."""
        if sig is not None and self.p.poll() is None:
            try:
                self.p.send_signal(sig)
            except ProcessLookupError:
                pass
        try:
            self.p.wait(timeout)
            status = self.p.returncode
        except subprocess.TimeoutExpired:
            status = "timeout"
            for s in (signal.SIGABRT, signal.SIGKILL):    # ASan prints the stuck stack
                kill_group(self.p, s)
                try:
                    self.p.wait(5)
                    break
                except subprocess.TimeoutExpired:
                    pass
        kill_group(self.p)
        for t in self.threads:
            t.join(5)
        return status, bytes(self.err).decode("utf-8", "replace")


def stop_stuck(p):
    for sig, wait in ((signal.SIGABRT, 5), (signal.SIGKILL, 5)):
        kill_group(p, sig)
        try:
            return p.communicate(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    return b"", b""


def kill_group(p, sig=signal.SIGKILL):
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def classify(status, err, scenario, leaks_count=True, bad_status=()):
    """The verdict on one run: status is the exit status, a negative
    signal number or 'timeout'; err its stderr."""
    alloc, err = split_trace(err)
    o = _classify(status, err, scenario, leaks_count, bad_status)
    o.alloc = alloc
    if alloc and " tests/unit/" in alloc[0]:
        # The test program's own allocation failed (its buffers, not the
        # library's): what follows is the test's business, not a finding.
        return Outcome("ok", status=status)
    if alloc and o.kind in ("hang", "exit2"):    # no stack of its own: key by the allocation
        o.site = alloc[0].split(" ", 2)[1]
    return o


def _classify(status, err, scenario, leaks_count, bad_status):
    if status == "timeout":
        return Outcome("hang", scenario, "no exit within the time limit", err, status)
    if "ERROR: AddressSanitizer" in err:
        m = re.search(r"ERROR: AddressSanitizer: (\S+)", err)
        return Outcome("asan", site_of(err), m.group(1) if m else "", err, status)
    if "runtime error:" in err:
        return Outcome("ubsan", site_of(err), "", err, status)
    if isinstance(status, int) and status < 0:
        return Outcome("crash", site_of(err) if "#0" in err else scenario,
                       "killed by signal %d" % -status, err, status)
    if "LeakSanitizer" in err:
        if not leaks_count:
            return Outcome("ok", status=status)
        leak = err[err.index("LeakSanitizer"):]
        return Outcome("leak", site_of(leak), "memory leaked", err, status)
    if status in bad_status:
        return Outcome("exit%d" % status, scenario, "exit status %d" % status, err, status)
    return Outcome("ok", status=status)


class Known:
    def __init__(self, path=KNOWN_FILE):
        self.entries = []
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    line = line.split("#", 1)[0].strip()
                    if line:
                        self.entries.append(line)

    def match(self, outcome):
        return any(e == outcome.key or e == outcome.site for e in self.entries)


class Report:
    """Findings of one sweep, deduplicated by key."""

    def __init__(self, name):
        self.name = name
        self.known = Known()
        self.findings = {}      # key -> (outcome, repro, count)
        self.runs = 0
        self.points = 0
        self.programs = []
        self.t0 = time.monotonic()

    def add(self, outcome, repro):
        self.runs += 1
        if not outcome.bad:
            return
        o, r, n = self.findings.get(outcome.key, (outcome, repro, 0))
        self.findings[outcome.key] = (o, r, n + 1)
        if n == 0:
            tag = "known" if self.known.match(outcome) else "FAIL"
            print("  %s %s (%s)\n    repro: %s" % (tag, outcome.key, outcome.detail, repro))
            for f in top_frames(outcome.stderr):
                print("      " + f)
            if outcome.alloc:
                print("    the failed allocation: " + " <- ".join(
                    f.split(" ", 2)[1] + " " + f.split(" ", 2)[2] for f in outcome.alloc))
            sys.stdout.flush()

    def finish(self):
        new = [k for k, (o, _, _) in self.findings.items() if not self.known.match(o)]
        print("\n== %s: %d programs/scenarios, %d allocation/fault points, %d runs, %.0fs"
              % (self.name, len(self.programs), self.points, self.runs, time.monotonic() - self.t0))
        for k, (o, r, n) in sorted(self.findings.items()):
            print("  %-5s %-50s x%-4d %s" % ("known" if k not in new else "NEW", k, n, r))
        print("== %d findings (%d new, %d known)" % (len(self.findings), len(new),
                                                       len(self.findings) - len(new)))
        return 1 if new else 0
