#!/usr/bin/env python3
"""csock listen/connect -e/-c: one process per connection wired to its peer,
every child reaped (no zombies), exit codes logged with -v, clean signal
state in the child. Prints "N passed, M failed"."""
import re
import signal
import socket
import threading
import time

from test_netcat_basic import (SLOW, children_of, connect, csock, listen, main, recv_all,
                               recv_until, run, test, zombies_of)


@test
def exec_50_concurrent_connections_reaped():
    n = 50
    p, port = listen("-k", "-v", "-c", 'echo "pid $$"; cat; exit 5', "127.0.0.1", 0)
    socks = [connect(port) for _ in range(n)]
    pids = []
    for s in socks:  # all 50 are alive at once: each said its pid first
        line = recv_until(s, b"\n", 20)
        m = re.match(rb"pid (\d+)\n", line)
        assert m, line
        pids.append(int(m.group(1)))
    assert len(set(pids)) == n, "one process per connection"
    kids = children_of(p.pid)
    assert len(kids) >= n, (len(kids), "children alive at once")
    for i, s in enumerate(socks):
        s.sendall(b"peer %d data\n" % i)
        s.shutdown(socket.SHUT_WR)
    for i, s in enumerate(socks):
        assert recv_all(s, 20) == b"peer %d data\n" % i  # its own child, nobody else's
        s.close()
    p.wait_for("50 exits", lambda: p.stderr().count("exited with status 5") >= n, 30)
    for pid in pids:
        assert re.search(r"\(pid %d\) for tcp://127\.0\.0\.1:\d+ exited with status 5" % pid, p.stderr())
    # Each exit line comes once the child is reaped: no zombie, no child left.
    assert zombies_of(p.pid) == [], "zombie children"
    assert children_of(p.pid) == []
    assert p.p.poll() is None


@test
def exec_without_shell_and_signal_state():
    p, port = listen("-k", "-e", "tr a-z A-Z", "127.0.0.1", 0)
    s = connect(port)
    s.sendall(b"shout\n")
    s.shutdown(socket.SHUT_WR)
    assert recv_all(s) == b"SHOUT\n"
    # The parent blocks signals for signalfd and ignores SIGPIPE: the child
    # must start with an empty mask and SIGPIPE at its default.
    q, port = listen("-c", "grep -E '^Sig(Blk|Ign)' /proc/self/status", "127.0.0.1", 0)
    s = connect(port)
    out = recv_all(s).decode()
    blk = int(re.search(r"SigBlk:\s*([0-9a-f]+)", out).group(1), 16)
    ign = int(re.search(r"SigIgn:\s*([0-9a-f]+)", out).group(1), 16)
    assert blk == 0, out
    assert not ign & (1 << 12), "SIGPIPE ignored in the child: " + out
    s.close()
    assert q.wait() == 0


def sigchld_ignored():
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)


def sigchld_ignored_and_blocked():
    sigchld_ignored()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})


@test
def exec_exits_when_started_with_sigchld_ignored():
    # Supervisors and Perl's $SIG{CHLD}='IGNORE' hand SIG_IGN down through
    # exec: the kernel then reaps the children itself and sends no SIGCHLD,
    # so a csock that waits for SIGCHLD would wait for ever.
    for setup in (sigchld_ignored, sigchld_ignored_and_blocked):
        p, port = listen("-v", "-c", "cat; exit 4", "127.0.0.1", 0, preexec_fn=setup)
        s = connect(port)
        s.sendall(b"echoed\n")
        s.shutdown(socket.SHUT_WR)
        assert recv_all(s) == b"echoed\n"
        s.close()
        assert p.wait() == 0, (setup.__name__, p.stderr())
        assert "exited with status 4" in p.stderr(), (setup.__name__, p.stderr())
    # -k: every child is reaped and logged, none left as a zombie.
    p, port = listen("-k", "-v", "-c", "exit 6", "127.0.0.1", 0, preexec_fn=sigchld_ignored)
    for _ in range(3):
        assert recv_all(connect(port)) == b""
    p.wait_for("3 exits", lambda: p.stderr().count("exited with status 6") >= 3)
    assert zombies_of(p.pid) == []


@test
def exec_single_connection_exits_after_child():
    p, port = listen("-v", "-c", "head -c 5; exit 3", "127.0.0.1", 0)
    s = connect(port)
    s.sendall(b"12345678")
    assert recv_all(s) == b"12345"
    assert p.wait() == 0
    assert "exited with status 3" in p.stderr()
    assert p.stdout() == b""


@test
def exec_child_killed_by_signal_is_logged():
    p, port = listen("-k", "-v", "-c", "kill -9 $$", "127.0.0.1", 0)
    s = connect(port)
    assert recv_all(s) == b""
    p.wait_stderr(r"killed by signal 9")
    assert zombies_of(p.pid) == []


@test
def connect_exec_serves_a_remote_peer():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    q = csock("connect", "-v", "-c", "sed s/^/got:/", "127.0.0.1", srv.getsockname()[1])
    c, _ = srv.accept()
    c.sendall(b"one\ntwo\n")
    c.shutdown(socket.SHUT_WR)
    assert recv_all(c) == b"got:one\ngot:two\n"
    c.close()
    assert q.wait() == 0
    assert "exited with status 0" in q.stderr()


@test
def udp_exec_one_process_per_peer():
    p, port = listen("-k", "-u", "-v", "-c", 'echo "hello from $$"; while read -r l; do echo "$l" | tr a-z A-Z; done', "127.0.0.1", 0)
    peers = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(5)]
    pids = set()
    for i, u in enumerate(peers):
        u.settimeout(10 * SLOW)
        u.sendto(b"peer%d\n" % i, ("127.0.0.1", port))
        got = [u.recv(200), u.recv(200)]
        assert got[1] == b"PEER%d\n" % i, got
        pids.add(got[0])
    assert len(pids) == 5
    assert len(children_of(p.pid)) == 5


@test
def exec_stdin_is_not_read():
    p, port = listen("-e", "cat", "127.0.0.1", 0)
    p.send(b"not for the peer\n")
    s = connect(port)
    s.sendall(b"mine\n")
    s.shutdown(socket.SHUT_WR)
    assert recv_all(s) == b"mine\n"
    assert p.wait() == 0


@test
def exec_large_transfer_backpressure():
    p, port = listen("-c", "cat", "127.0.0.1", 0)
    s = connect(port)
    blob = bytes(range(256)) * 16384  # 4 MiB
    got = []

    def reader():
        got.append(recv_all(s, 60))
    t = threading.Thread(target=reader)
    t.start()
    s.sendall(blob)
    s.shutdown(socket.SHUT_WR)
    t.join(90)
    assert got and got[0] == blob
    assert p.wait() == 0


if __name__ == "__main__":
    main()
