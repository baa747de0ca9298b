/* Syscall fault injection for the stream paths (the fault build,
 * -DCSOCK_FAULT_INJECT=ON, links with --wrap of the calls below).
 *
 *   CSOCK_FAULTIO="seed=S,short=P,eintr=P,eagain=P,reset=K"
 *     short=P   P% of eligible calls move fewer bytes than asked (a random
 *               1..len-1; for the iovec calls, a random prefix of the data)
 *     eintr=P   P% fail with EINTR before doing anything
 *     eagain=P  P% fail with EAGAIN before doing anything (a readiness
 *               the kernel then takes back)
 *     reset=K   the K-th eligible send-side call on a socket fails with
 *               ECONNRESET and shuts the socket down both ways, so the
 *               peer sees the connection end and later calls on it fail as
 *               they would after a real reset
 *     seed=S    the PRNG seed (each thread draws from seed + its index)
 *   unset or empty: every call passes straight through.
 *
 * Eligible: a non-blocking socket or pipe. csock makes every fd it does
 * stream I/O on non-blocking; the unit tests' own peers, the loop's
 * eventfd and signalfd are left alone, so only the library meets the
 * faults. The io_uring backend does its stream I/O by submission, not
 * through these calls: run the fault sweeps on epoll and poll.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define WRAPPED(ret, name, params, unused)                                                           \
    ret __real_##name params;                                                                      \
    ret __wrap_##name params;

WRAPPED(ssize_t, read, (int fd, void *buf, size_t n), 0)
WRAPPED(ssize_t, write, (int fd, const void *buf, size_t n), 0)
WRAPPED(ssize_t, readv, (int fd, const struct iovec *iov, int cnt), 0)
WRAPPED(ssize_t, writev, (int fd, const struct iovec *iov, int cnt), 0)
WRAPPED(ssize_t, recv, (int fd, void *buf, size_t n, int flags), 0)
WRAPPED(ssize_t, send, (int fd, const void *buf, size_t n, int flags), 0)
WRAPPED(ssize_t, sendmsg, (int fd, const struct msghdr *m, int flags), 0)
WRAPPED(ssize_t, sendfile, (int out, int in, off_t *off, size_t n), 0)

static struct {
    int on;
    unsigned long seed;
    unsigned p_short, p_eintr, p_eagain;
    unsigned long reset_at;
} cfg;
static atomic_ulong send_calls, thread_index;
static _Thread_local uint64_t rng;

static unsigned long opt(const char *spec, const char *key)
{
    const char *p = strstr(spec, key);
    size_t k = strlen(key);
    while (p && !((p == spec || p[-1] == ',') && p[k] == '='))
        p = strstr(p + 1, key);
    return p ? strtoul(p + k + 1, NULL, 10) : 0;
}

__attribute__((constructor)) static void faultio_init(void)
{
    const char *spec = getenv("CSOCK_FAULTIO");
    if (spec == NULL || *spec == '\0') return;
    cfg.on = 1;
    cfg.seed = opt(spec, "seed");
    cfg.p_short = (unsigned)opt(spec, "short");
    cfg.p_eintr = (unsigned)opt(spec, "eintr");
    cfg.p_eagain = (unsigned)opt(spec, "eagain");
    cfg.reset_at = opt(spec, "reset");
}

static unsigned roll(void) /* 0..99, xorshift64* per thread */
{
    if (rng == 0) rng = (cfg.seed + 1) * 0x9E3779B97F4A7C15ull + atomic_fetch_add(&thread_index, 1) + 1;
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (unsigned)((rng * 0x2545F4914F6CDD1Dull) >> 33) % 100;
}

static size_t shorter(size_t n) /* 1..n-1 for n > 1 */
{
    if (n < 2) return n;
    (void)roll();
    return 1 + (size_t)((rng >> 7) % (n - 1));
}

static int eligible(int fd, int *is_sock)
{
    struct stat st;
    if (!cfg.on || fstat(fd, &st) < 0) return 0;
    *is_sock = S_ISSOCK(st.st_mode);
    if (!*is_sock && !S_ISFIFO(st.st_mode)) return 0;
    int type = 0;
    socklen_t tl = sizeof type;
    /* datagrams are all or nothing: no short sends, no resets */
    if (*is_sock && (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || type != SOCK_STREAM))
        return 0;
    int fl = fcntl(fd, F_GETFL);
    return fl >= 0 && (fl & O_NONBLOCK);
}

/* A fault to give instead of the call, or 0; sets *cut for a short one. */
static int fault(int fd, int sending, int *cut)
{
    int sock = 0;
    *cut = 0;
    if (!eligible(fd, &sock)) return 0;
    if (sending && sock && cfg.reset_at &&
        atomic_fetch_add(&send_calls, 1) + 1 == cfg.reset_at) {
        shutdown(fd, SHUT_RDWR);
        return ECONNRESET;
    }
    unsigned r = roll();
    if (r < cfg.p_eintr) return EINTR;
    if (r < cfg.p_eintr + cfg.p_eagain) return EAGAIN;
    *cut = roll() < cfg.p_short;
    return 0;
}

#define FAIL_OR(fd, sending)                                                                       \
    int cut, err = fault(fd, sending, &cut);                                                       \
    if (err) {                                                                                     \
        errno = err;                                                                               \
        return -1;                                                                                 \
    }

ssize_t __wrap_read(int fd, void *buf, size_t n)
{
    FAIL_OR(fd, 0);
    return __real_read(fd, buf, cut ? shorter(n) : n);
}

ssize_t __wrap_write(int fd, const void *buf, size_t n)
{
    FAIL_OR(fd, 1);
    return __real_write(fd, buf, cut ? shorter(n) : n);
}

ssize_t __wrap_recv(int fd, void *buf, size_t n, int flags)
{
    FAIL_OR(fd, 0);
    return __real_recv(fd, buf, cut ? shorter(n) : n, flags);
}

ssize_t __wrap_send(int fd, const void *buf, size_t n, int flags)
{
    FAIL_OR(fd, 1);
    return __real_send(fd, buf, cut ? shorter(n) : n, flags);
}

ssize_t __wrap_sendfile(int out, int in, off_t *off, size_t n)
{
    FAIL_OR(out, 1);
    return __real_sendfile(out, in, off, cut ? shorter(n) : n);
}

/* A prefix of iov holding `keep` bytes, in `out` (at most 64 entries). */
static int cut_iov(const struct iovec *iov, int cnt, struct iovec *out)
{
    size_t total = 0;
    if (cnt > 64) cnt = 64;
    for (int i = 0; i < cnt; i++) total += iov[i].iov_len;
    size_t keep = shorter(total);
    int n = 0;
    for (int i = 0; i < cnt && keep > 0; i++) {
        out[n] = iov[i];
        if (out[n].iov_len > keep) out[n].iov_len = keep;
        keep -= out[n++].iov_len;
    }
    return n ? n : 1; /* total 0: keep the (empty) first entry */
}

ssize_t __wrap_readv(int fd, const struct iovec *iov, int cnt)
{
    FAIL_OR(fd, 0);
    if (!cut || cnt < 1) return __real_readv(fd, iov, cnt);
    struct iovec v[64];
    return __real_readv(fd, v, cut_iov(iov, cnt, v));
}

ssize_t __wrap_writev(int fd, const struct iovec *iov, int cnt)
{
    FAIL_OR(fd, 1);
    if (!cut || cnt < 1) return __real_writev(fd, iov, cnt);
    struct iovec v[64];
    return __real_writev(fd, v, cut_iov(iov, cnt, v));
}

ssize_t __wrap_sendmsg(int fd, const struct msghdr *m, int flags)
{
    FAIL_OR(fd, 1);
    if (!cut || m->msg_iovlen < 1) return __real_sendmsg(fd, m, flags);
    struct iovec v[64];
    struct msghdr c = *m;
    c.msg_iov = v;
    c.msg_iovlen = (size_t)cut_iov(m->msg_iov, (int)m->msg_iovlen, v);
    return __real_sendmsg(fd, &c, flags);
}
