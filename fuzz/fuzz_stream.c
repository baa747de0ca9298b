/* libFuzzer target for the stream state machine (src/net/stream.c, frame.c
 * and the loop under them): a csock stream on one end of a connected pair
 * (socketpair or TCP loopback), a raw peer on the other, and the input as a
 * script of operations with the loop run between them: write, writev,
 * write_ref, write_msg, read_start / read_framed / read_stop, shutdown, end,
 * close, watermarks, max read; the peer writes, reads, shuts down, closes or
 * resets.
 *
 * Checks beyond "no crash, no sanitizer report, no leak":
 *  - what the peer reads is always a prefix of what the stream accepted
 *    (writes that returned 0), framing included: never lost in the middle,
 *    reordered or duplicated;
 *  - what the read callback sees (raw: the unconsumed bytes offered again;
 *    framed: each message with its ending or length header) continues the
 *    peer's bytes exactly where the consumed ones stopped;
 *  - no read callback after close() or after an error, no data after EOF,
 *    EOF at most once (a write error may still follow EOF: the write side
 *    is open);
 *  - the close callback runs exactly once, every write_ref buffer is
 *    released exactly once, and the loop then has no handle left and frees.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "csock/csock.h"
#include "fuzz_common.h"

#define CAP (1 << 20) /* bytes recorded per direction; ops stop adding beyond */

typedef struct fz {
    csock_loop *loop;
    csock_stream *s; /* NULL once its close callback ran */
    int peer;        /* -1 once closed */
    int closing;     /* close() called: no read callback may follow */
    int eof;         /* CSOCK_EOF was delivered */
    int final;       /* an error was delivered */
    int closes;      /* close callbacks */
    int framed;      /* 0 raw, 1 line (keeping the ending), 2 LP32 */
    uint8_t consume; /* raw: how much a callback consumes */
    unsigned refs, released;
    uint8_t sent[CAP]; /* what the stream accepted for the peer */
    size_t sent_len, peer_got;
    uint8_t pw[CAP]; /* what the peer wrote */
    size_t pw_len, s_got;
} fz;

static fz F;
static uint8_t ref_buf[4096];

static void on_close(csock_stream *s)
{
    F.closes++;
    F.s = NULL;
}

static void check_from_peer(const char *buf, size_t len)
{
    CHECK(F.s_got + len <= F.pw_len);
    CHECK(memcmp(buf, F.pw + F.s_got, len) == 0);
}

/* EOF only says the peer finished sending: a write error may still come
 * (the write side is open), but nothing after an error, and no data after EOF. */
static void final_status(int status)
{
    if (status == CSOCK_EOF) {
        CHECK(!F.eof);
        F.eof = 1;
    } else {
        F.final = 1;
    }
}

static void trace(const char *what, int status, size_t len)
{
    if (getenv("FUZZ_STREAM_TRACE")) fprintf(stderr, "  %s status %d len %zu\n", what, status, len);
}

static size_t on_read(csock_stream *s, int status, const char *buf, size_t len)
{
    trace("read cb", status, len);
    CHECK(!F.closing && !F.final && s == F.s && (status != 0 || !F.eof));
    check_from_peer(buf, len);
    if (status != 0) {
        final_status(status);
        return 0;
    }
    size_t take = len;
    switch (F.consume % 4) {
    case 1: take = len / 2; break;  /* leaves some for the next call */
    case 2: take = len < 3 ? 0 : 3; break;
    case 3: take = len > 100 ? len : 0; break; /* waits for 100 bytes */
    }
    F.s_got += take;
    return take;
}

static void on_msg(csock_stream *s, int status, const char *msg, size_t len)
{
    trace("msg cb", status, len);
    CHECK(!F.closing && !F.final && s == F.s && (status != 0 || !F.eof));
    if (status != 0) {
        final_status(status);
        return;
    }
    if (F.framed == 2) {
        CHECK(F.s_got + 4 <= F.pw_len);
        const uint8_t *h = F.pw + F.s_got;
        CHECK(((uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3]) == len);
        F.s_got += 4;
    }
    check_from_peer(msg, len);
    F.s_got += len;
}

static void on_status(csock_stream *s, int status) { (void)s, (void)status; }

static void release(void *ud)
{
    CHECK(ud == &F);
    F.released++;
    CHECK(F.released <= F.refs);
}

static void record(uint8_t *rec, size_t *n, const void *p, size_t len)
{
    size_t room = CAP - *n;
    CHECK(len <= room); /* callers keep below CAP */
    memcpy(rec + *n, p, len);
    *n += len;
}

static void fill(uint8_t *buf, size_t len, uint8_t seed)
{
    for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)(seed + i * 7);
}

/* ---- the pair --------------------------------------------------------------------------- */

static int tcp_pair_blocking(int sv[2])
{
    static int lfd = -1;
    static struct sockaddr_in a;
    if (lfd < 0) {
        socklen_t al = sizeof a;
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 16) < 0 ||
            getsockname(lfd, (struct sockaddr *)&a, &al) < 0)
            return -1;
    }
    sv[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sv[0] < 0) return -1;
    if (connect(sv[0], (struct sockaddr *)&a, sizeof a) < 0) {
        close(sv[0]);
        return -1;
    }
    sv[1] = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (sv[1] < 0) {
        close(sv[0]);
        return -1;
    }
    return 0;
}

/* With every signal blocked: libFuzzer's timeout timer (SIGALRM, installed
 * without SA_RESTART, every timeout/2 + 1 s) interrupted the blocking
 * connect or accept now and then, and the pair failed with EINTR (the
 * CI's "deadly signal" in fuzz_stream twice; -timeout=1 shows it in
 * seconds). The alarm is delivered when the mask is restored. */
static int tcp_pair(int sv[2])
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = tcp_pair_blocking(sv);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

static void peer_write(uint8_t seed, size_t len)
{
    uint8_t buf[8192];
    if (F.peer < 0 || len > sizeof buf || F.pw_len + len > CAP) return;
    fill(buf, len, seed);
    if (seed & 1) { /* sometimes a line ending or an LP32 header, for the framing */
        buf[len / 2] = '\n';
        if (len >= 4) buf[0] = buf[1] = 0, buf[2] = 0, buf[3] = (uint8_t)(len - 4);
    }
    ssize_t n = write(F.peer, buf, len);
    if (n > 0) record(F.pw, &F.pw_len, buf, (size_t)n);
}

static void peer_read(void)
{
    uint8_t buf[65536];
    if (F.peer < 0) return;
    ssize_t n = read(F.peer, buf, sizeof buf);
    if (n <= 0) return;
    CHECK(F.peer_got + (size_t)n <= F.sent_len); /* nothing the stream did not accept */
    CHECK(memcmp(buf, F.sent + F.peer_got, (size_t)n) == 0);
    F.peer_got += (size_t)n;
}

static void peer_close(int reset)
{
    if (F.peer < 0) return;
    if (reset) {
        struct linger lg = {1, 0};
        setsockopt(F.peer, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    close(F.peer);
    F.peer = -1;
}

/* ---- operations ----------------------------------------------------------------------- */

static void stream_write(fz_in *in, uint8_t op)
{
    uint8_t buf[8192];
    size_t len = (size_t)fz_u16(in) % sizeof buf;
    if (F.sent_len + len + 4 > CAP) return;
    fill(buf, len, op);
    struct iovec iov[3] = {{buf, len / 3}, {buf + len / 3, 0}, {buf + len / 3, len - len / 3}};
    csock_framing f = {.kind = op & 1 ? CSOCK_FRAME_LP32 : CSOCK_FRAME_LINE, .max = 1u << 20};
    int rc;
    switch (op % 4) {
    case 0:
        if (csock_stream_write(F.s, buf, len) == 0) record(F.sent, &F.sent_len, buf, len);
        break;
    case 1:
        if (csock_stream_writev(F.s, iov, 3) == 0) record(F.sent, &F.sent_len, buf, len);
        break;
    case 2:
        len %= sizeof ref_buf;
        F.refs++;
        rc = csock_stream_write_ref(F.s, ref_buf, len, release, &F); /* refused: released too */
        if (rc == 0) record(F.sent, &F.sent_len, ref_buf, len);
        break;
    case 3:
        for (size_t i = 0; i < len; i++)
            if (buf[i] == '\n') buf[i] = ' '; /* a line message holds no LF */
        if (csock_stream_write_msg(F.s, &f, buf, len) == 0) {
            if (f.kind == CSOCK_FRAME_LP32) {
                uint8_t h[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
                                (uint8_t)len};
                record(F.sent, &F.sent_len, h, 4);
                record(F.sent, &F.sent_len, buf, len);
            } else {
                record(F.sent, &F.sent_len, buf, len);
                record(F.sent, &F.sent_len, "\n", 1);
            }
        }
        break;
    }
}

static void read_start(uint8_t arg)
{
    if (F.framed == 0 && F.s_got == 0 && (arg & 3)) F.framed = arg & 3; /* LP32 also for 3 */
    if (F.framed == 3) F.framed = 2;
    if (F.framed) {
        csock_framing f = {.kind = F.framed == 2 ? CSOCK_FRAME_LP32 : CSOCK_FRAME_LINE,
                           .max = 64 + arg,
                           .keep_delimiter = 1};
        csock_stream_read_framed(F.s, &f, on_msg);
    } else {
        F.consume = arg >> 2;
        csock_stream_read_start(F.s, on_read);
    }
}

static void step(fz_in *in)
{
    uint8_t op = fz_byte(in), arg = fz_byte(in);
    if (F.s == NULL && op % 16 < 10) op = 10 + op % 6; /* the stream is gone: peer ops */
    trace("op", op % 16, arg);
    switch (op % 16) {
    case 0: case 1: stream_write(in, arg); break;
    case 2: read_start(arg); break;
    case 3: csock_stream_read_stop(F.s); break;
    case 4: csock_stream_shutdown(F.s, arg & 1 ? on_status : NULL); break;
    case 5:
        if (!F.closing) csock_stream_end(F.s, NULL);
        break;
    case 6:
        F.closing = 1;
        csock_stream_close(F.s, NULL);
        break;
    case 7: csock_stream_set_watermarks(F.s, (size_t)arg * 64 + 1, (size_t)arg * 16); break;
    case 8: csock_stream_set_max_read(F.s, (size_t)arg * 128); break;
    case 9: csock_stream_on_drain(F.s, arg & 1 ? on_status : NULL); break;
    case 10: case 11: peer_write(arg, (size_t)fz_u16(in) % 8192); break;
    case 12: peer_read(); break;
    case 13:
        if (F.peer >= 0) shutdown(F.peer, SHUT_WR);
        break;
    case 14: peer_close(arg & 1); break;
    case 15:
        for (int i = 0; i <= arg % 8; i++) csock_loop_run(F.loop, CSOCK_RUN_NOWAIT);
        break;
    }
    csock_loop_run(F.loop, CSOCK_RUN_NOWAIT);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    signal(SIGPIPE, SIG_IGN); /* the peer writing to a closed stream gets EPIPE */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in in = {data, size};
    uint8_t how = fz_byte(&in);
    int sv[2];
    memset(&F, 0, offsetof(fz, sent));
    F.sent_len = F.peer_got = F.pw_len = F.s_got = 0;

    csock_loop_opts lo = {how & 1 ? "poll" : "epoll"};
    CHECK(csock_loop_new(&lo, &F.loop) == 0);
    if (how & 2) {
        if (tcp_pair(sv) < 0) {
            perror("fuzz_stream: tcp_pair");
            abort();
        }
    } else {
        CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    }
    F.peer = sv[1];
    fcntl(F.peer, F_SETFL, O_NONBLOCK);
    CHECK(csock_stream_open(F.loop, sv[0], &F.s) == 0);
    csock_stream_on_close(F.s, on_close);

    for (int n = 0; in.len > 0 && n < 256; n++) step(&in);

    /* Tear down: close the stream, let the loop finish the close. */
    if (F.s) {
        F.closing = 1;
        csock_stream_close(F.s, NULL);
    }
    /* Until nothing is left: no handle, and no close or deferred work (a
     * stream closed inside an I/O callback is freed by its deferred task,
     * after its handle has stopped counting), as csock_loop_free() asks.
     * Stopping at zero handles failed the free, now and then, under load. */
    for (int i = 0; i < 64; i++)
        if (csock_loop_run(F.loop, CSOCK_RUN_NOWAIT) <= 0 && !csock_loop_handles(F.loop)) break;
    CHECK(F.closes == 1);
    CHECK(F.released == F.refs);
    CHECK(csock_loop_handles(F.loop) == 0);
    CHECK(csock_loop_free(F.loop) == 0);
    peer_close(0);
    return 0;
}
