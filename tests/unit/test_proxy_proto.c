/* The PROXY protocol: csock_proxy_parse() on v1 and v2 headers, good and
 * bad, and a listener with proxy_protocol set (the header's client becomes
 * the stream's peer; data after the header is kept; a missing, bad or late
 * header closes the connection unseen), and csock_listen_fd(). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "csock/csock.h"
#include "helpers.h"

static const unsigned char sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static void text_of(const csock_addr *a, char *buf)
{
    assert_true(csock_addr_format(a, buf, CSOCK_ADDR_STRLEN) > 0);
}

/* The addresses a header gave, as text (dst NULL: only the source is checked). */
static void assert_ends(const csock_proxy_info *info, const char *src, const char *dst)
{
    char t[CSOCK_ADDR_STRLEN];
    text_of(&info->src, t);
    assert_string_equal(t, src);
    if (!dst) return;
    text_of(&info->dst, t);
    assert_string_equal(t, dst);
}

static ssize_t parse_str(const char *s, csock_proxy_info *info)
{
    return csock_proxy_parse(s, strlen(s), info);
}

/* ---- v1 ----------------------------------------------------------------------- */

static void v1_tcp4(void **state)
{
    const char *h = "PROXY TCP4 192.0.2.7 127.0.0.1 56324 443\r\nGET /";
    csock_proxy_info info;
    assert_int_equal(parse_str(h, &info), strlen(h) - 5);
    assert_int_equal(info.version, 1);
    assert_int_equal(info.local, 0);
    assert_ends(&info, "tcp://192.0.2.7:56324", "tcp://127.0.0.1:443");
}

static void v1_tcp6(void **state)
{
    const char *h = "PROXY TCP6 2001:db8::1 ::1 65535 0\r\n";
    csock_proxy_info info;
    assert_int_equal(parse_str(h, &info), strlen(h));
    assert_ends(&info, "tcp://[2001:db8::1]:65535", "tcp://[::1]:0");
}

static void v1_unknown(void **state)
{
    csock_proxy_info info;
    assert_int_equal(parse_str("PROXY UNKNOWN\r\n", &info), 15);
    assert_int_equal(info.local, 1);
    /* UNKNOWN may carry anything up to the CRLF: ignored. */
    const char *h = "PROXY UNKNOWN ffff::1 ::1 1 2\r\n";
    assert_int_equal(parse_str(h, &info), strlen(h));
    assert_int_equal(info.local, 1);
}

static void v1_incomplete(void **state)
{
    const char *h = "PROXY TCP4 192.0.2.7 127.0.0.1 56324 443\r\n";
    csock_proxy_info info;
    /* Every prefix is "more, please", never an error nor a success. */
    for (size_t n = 0; n < strlen(h); n++) assert_int_equal(csock_proxy_parse(h, n, &info), 0);
}

static void v1_bad(void **state)
{
    static const char *bad[] = {
        "GET / HTTP/1.1\r\n",                          /* not a PROXY header at all */
        "PROXY TCP4 192.0.2.7 127.0.0.1 56324 443\n",  /* LF without CR */
        "PROXY TCP5 192.0.2.7 127.0.0.1 1 2\r\n",      /* unknown protocol */
        "PROXY TCP4 192.0.2.999 127.0.0.1 1 2\r\n",    /* bad address */
        "PROXY TCP4 ::1 127.0.0.1 1 2\r\n",            /* IPv6 under TCP4 */
        "PROXY TCP6 127.0.0.1 ::1 1 2\r\n",            /* IPv4 under TCP6 */
        "PROXY TCP4 192.0.2.7 127.0.0.1 65536 2\r\n",  /* port past 65535 */
        "PROXY TCP4 192.0.2.7 127.0.0.1 01 2\r\n",     /* leading zero */
        "PROXY TCP4 192.0.2.7 127.0.0.1 -1 2\r\n",     /* sign */
        "PROXY TCP4 192.0.2.7 127.0.0.1 1\r\n",        /* a field missing */
        "PROXY TCP4 192.0.2.7 127.0.0.1 1 2 3\r\n",    /* one too many */
        "PROXY TCP4 192.0.2.7 127.0.0.1 1 2 \r\n",     /* trailing space */
        "PROXY TCP4  192.0.2.7 127.0.0.1 1 2\r\n",     /* double space */
        "PROXY \r\n",
        "proxy TCP4 192.0.2.7 127.0.0.1 1 2\r\n",      /* case matters */
    };
    csock_proxy_info info;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ssize_t rc = parse_str(bad[i], &info);
        if (rc != -EPROTO) print_error("accepted or misjudged: %s (%zd)\n", bad[i], rc);
        assert_int_equal(rc, -EPROTO);
    }
    /* Rejected at the first wrong byte, without waiting for more. */
    assert_int_equal(parse_str("G", &info), -EPROTO);
    assert_int_equal(parse_str("PROXX", &info), -EPROTO);
    /* A NUL inside the line. */
    const char nul[] = "PROXY TCP4 1.2.3.4\0 5.6.7.8 1 2\r\n";
    assert_int_equal(csock_proxy_parse(nul, sizeof nul - 1, &info), -EPROTO);
}

static void v1_too_long(void **state)
{
    char h[200];
    memcpy(h, "PROXY UNKNOWN ", 14);
    memset(h + 14, 'x', sizeof h - 14);
    csock_proxy_info info;
    assert_int_equal(csock_proxy_parse(h, CSOCK_PROXY_V1_MAX - 1, &info), 0);
    assert_int_equal(csock_proxy_parse(h, CSOCK_PROXY_V1_MAX, &info), -EMSGSIZE);
    assert_int_equal(csock_proxy_parse(h, sizeof h, &info), -EMSGSIZE);
    /* The longest legal one fits: 107 bytes, CRLF included. */
    h[105] = '\r';
    h[106] = '\n';
    assert_int_equal(csock_proxy_parse(h, sizeof h, &info), 107);
}

/* ---- v2 ----------------------------------------------------------------------- */

static size_t v2(unsigned char *b, int cmd, int fam_proto, const void *addrs, size_t alen, size_t extra)
{
    memcpy(b, sig, 12);
    b[12] = (unsigned char)(0x20 | cmd);
    b[13] = (unsigned char)fam_proto;
    size_t body = alen + extra;
    b[14] = (unsigned char)(body >> 8);
    b[15] = (unsigned char)body;
    if (alen) memcpy(b + 16, addrs, alen);
    return 16 + alen;
}

static void v2_ipv4(void **state)
{
    unsigned char b[64], a[12] = {192, 0, 2, 7, 127, 0, 0, 1, 0xDC, 0x04, 0x01, 0xBB};
    size_t n = v2(b, 1, 0x11, a, sizeof a, 0);
    memcpy(b + n, "data", 4); /* what follows is not the header's */
    csock_proxy_info info;
    assert_int_equal(csock_proxy_parse(b, n + 4, &info), 28);
    assert_int_equal(info.version, 2);
    assert_int_equal(info.local, 0);
    assert_ends(&info, "tcp://192.0.2.7:56324", "tcp://127.0.0.1:443");
    for (size_t k = 0; k < n; k++) assert_int_equal(csock_proxy_parse(b, k, &info), 0);
}

static void v2_ipv6(void **state)
{
    unsigned char b[64], a[36] = {0};
    a[0] = 0x20, a[1] = 0x01, a[2] = 0x0d, a[3] = 0xb8, a[15] = 1; /* 2001:db8::1 */
    a[31] = 1;                                                     /* ::1 */
    a[32] = 0x30, a[33] = 0x39, a[34] = 0, a[35] = 80;             /* 12345, 80 */
    size_t n = v2(b, 1, 0x21, a, sizeof a, 0);
    csock_proxy_info info;
    assert_int_equal(csock_proxy_parse(b, n, &info), 52);
    assert_ends(&info, "tcp://[2001:db8::1]:12345", "tcp://[::1]:80");
}

static void v2_local(void **state)
{
    unsigned char b[64], a[12] = {1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2};
    csock_proxy_info info;
    /* LOCAL (a health check): addresses, if any, are skipped. */
    size_t n = v2(b, 0, 0x11, a, sizeof a, 0);
    assert_int_equal(csock_proxy_parse(b, n, &info), 28);
    assert_int_equal(info.local, 1);
    n = v2(b, 0, 0x00, NULL, 0, 0);
    assert_int_equal(csock_proxy_parse(b, n, &info), 16);
    assert_int_equal(info.local, 1);
    /* PROXY with an unspecified family: nothing to say, real address kept. */
    n = v2(b, 1, 0x00, NULL, 0, 0);
    assert_int_equal(csock_proxy_parse(b, n, &info), 16);
    assert_int_equal(info.local, 1);
}

static void v2_unix(void **state)
{
    unsigned char b[300], a[216] = {0};
    strcpy((char *)a, "/run/client.sock");
    a[108] = '\0';
    memcpy(a + 109, "srv", 3); /* an abstract name: @srv */
    size_t n = v2(b, 1, 0x31, a, sizeof a, 0);
    csock_proxy_info info;
    assert_int_equal(csock_proxy_parse(b, n, &info), 232);
    assert_ends(&info, "unix:/run/client.sock", "unix:@srv");
}

static void v2_tlvs(void **state)
{
    unsigned char b[128], a[12] = {10, 0, 0, 1, 10, 0, 0, 2, 0, 7, 0, 9};
    /* Two TLVs after the addresses: ALPN "h2" and a NOOP of 3 bytes. */
    unsigned char tlv[] = {0x01, 0x00, 0x02, 'h', '2', 0x04, 0x00, 0x03, 0, 0, 0};
    size_t n = v2(b, 1, 0x11, a, sizeof a, sizeof tlv);
    memcpy(b + n, tlv, sizeof tlv);
    csock_proxy_info info;
    assert_int_equal(csock_proxy_parse(b, n + sizeof tlv, &info), 28 + sizeof tlv);
    /* Known as soon as the addresses are in: the TLVs are skipped later. */
    assert_int_equal(csock_proxy_parse(b, n, &info), 28 + sizeof tlv);
    assert_ends(&info, "tcp://10.0.0.1:7", NULL);
    /* The largest length the field can say. */
    b[14] = b[15] = 0xFF;
    assert_int_equal(csock_proxy_parse(b, n, &info), 16 + 65535);
}

static void v2_bad(void **state)
{
    unsigned char b[64], a[12] = {0};
    csock_proxy_info info;
    size_t n = v2(b, 1, 0x11, a, sizeof a, 0);
    b[3] = 0x0B; /* signature */
    assert_int_equal(csock_proxy_parse(b, n, &info), -EPROTO);
    assert_int_equal(csock_proxy_parse(b, 4, &info), -EPROTO); /* at once */
    n = v2(b, 1, 0x11, a, sizeof a, 0);
    b[12] = 0x11; /* version 1 in a v2 header */
    assert_int_equal(csock_proxy_parse(b, n, &info), -EPROTO);
    n = v2(b, 2, 0x11, a, sizeof a, 0); /* command 2 */
    assert_int_equal(csock_proxy_parse(b, n, &info), -EPROTO);
    n = v2(b, 1, 0x41, a, sizeof a, 0); /* family 4 */
    assert_int_equal(csock_proxy_parse(b, n, &info), -EPROTO);
    n = v2(b, 1, 0x13, a, sizeof a, 0); /* protocol 3 */
    assert_int_equal(csock_proxy_parse(b, n, &info), -EPROTO);
    n = v2(b, 1, 0x21, a, sizeof a, 0); /* IPv6 needs 36 bytes, length says 12 */
    assert_int_equal(csock_proxy_parse(b, n, &info), -EPROTO);
    assert_int_equal(csock_proxy_parse(NULL, 1, &info), -EINVAL);
    assert_int_equal(csock_proxy_parse(b, 1, NULL), -EINVAL);
}

/* ---- csock_proxy_format: what it writes, the parser reads back ----------------- */

static void round_trip(int version, const char *src, const char *dst, const char *want_src)
{
    csock_addr s, d;
    CHECK_OK(csock_addr_parse(src, CSOCK_ADDR_NUMERIC, &s));
    CHECK_OK(csock_addr_parse(dst, CSOCK_ADDR_NUMERIC, &d));
    unsigned char buf[CSOCK_PROXY_HEADER_MAX];
    ssize_t n = csock_proxy_format(version, &s, &d, buf, sizeof buf);
    assert_true(n > 0);
    csock_proxy_info info;
    assert_int_equal(csock_proxy_parse(buf, (size_t)n, &info), n);
    assert_int_equal(info.version, version);
    assert_int_equal(info.local, 0);
    assert_ends(&info, want_src, NULL);
    /* One byte short: never a truncated header. */
    assert_int_equal(csock_proxy_format(version, &s, &d, buf, (size_t)n - (version == 1 ? 0 : 1)), -ENOSPC);
}

static void format_round_trips(void **state)
{
    round_trip(1, "tcp://192.0.2.7:56324", "tcp://127.0.0.1:443", "tcp://192.0.2.7:56324");
    round_trip(2, "tcp://192.0.2.7:56324", "tcp://127.0.0.1:443", "tcp://192.0.2.7:56324");
    round_trip(1, "tcp://[2001:db8::1]:1", "tcp://[::1]:2", "tcp://[2001:db8::1]:1");
    round_trip(2, "tcp://[2001:db8::1]:1", "tcp://[::1]:2", "tcp://[2001:db8::1]:1");
    /* A dual-stack socket's view of an IPv4 client is written as IPv4. */
    round_trip(1, "tcp://[::ffff:198.51.100.3]:7", "tcp://[::ffff:127.0.0.1]:8", "tcp://198.51.100.3:7");
    /* One mapped, one not: IPv6 both (the fuzzer's find). */
    round_trip(2, "tcp://[::]:1", "tcp://[::ffff:1.2.3.4]:2", "tcp://[::]:1");
    round_trip(2, "unix:/run/c.sock", "unix:@srv", "unix:/run/c.sock");
    const char v1[] = "PROXY TCP4 192.0.2.7 127.0.0.1 56324 443\r\n";
    char buf[CSOCK_PROXY_HEADER_MAX];
    csock_addr s, d;
    CHECK_OK(csock_addr_parse("tcp://192.0.2.7:56324", CSOCK_ADDR_NUMERIC, &s));
    CHECK_OK(csock_addr_parse("tcp://127.0.0.1:443", CSOCK_ADDR_NUMERIC, &d));
    assert_int_equal(csock_proxy_format(1, &s, &d, buf, sizeof buf), sizeof v1 - 1);
    assert_memory_equal(buf, v1, sizeof v1 - 1); /* byte for byte what HAProxy sends */
}

static void format_local_and_errors(void **state)
{
    char buf[CSOCK_PROXY_HEADER_MAX];
    csock_proxy_info info;
    assert_int_equal(csock_proxy_format(1, NULL, NULL, buf, sizeof buf), 15);
    assert_memory_equal(buf, "PROXY UNKNOWN\r\n", 15);
    assert_int_equal(csock_proxy_format(2, NULL, NULL, buf, sizeof buf), 16);
    assert_int_equal(csock_proxy_parse(buf, 16, &info), 16);
    assert_int_equal(info.local, 1);
    csock_addr v4, v6, un;
    CHECK_OK(csock_addr_parse("tcp://127.0.0.1:1", CSOCK_ADDR_NUMERIC, &v4));
    CHECK_OK(csock_addr_parse("tcp://[2001:db8::2]:1", CSOCK_ADDR_NUMERIC, &v6));
    CHECK_OK(csock_addr_parse("unix:/tmp/x", 0, &un));
    assert_int_equal(csock_proxy_format(1, &v4, &v6, buf, sizeof buf), -EAFNOSUPPORT);
    assert_int_equal(csock_proxy_format(1, &un, &un, buf, sizeof buf), -EAFNOSUPPORT);
    assert_int_equal(csock_proxy_format(3, &v4, &v4, buf, sizeof buf), -EINVAL);
    assert_int_equal(csock_proxy_format(2, &v4, NULL, buf, sizeof buf), -EINVAL);
    assert_int_equal(csock_proxy_format(2, &v4, &v4, NULL, 0), -EINVAL);
    assert_int_equal(csock_proxy_format(2, &v4, &v4, buf, 27), -ENOSPC);
}

/* ---- a listener with proxy_protocol -------------------------------------------- */

typedef struct acc {
    csock_loop *loop;
    csock_listener *l;
    int accepted, errs, last_err;
    csock_stream *s;
    char peer[CSOCK_ADDR_STRLEN];
    char got[64];
    size_t got_len;
} acc;

static size_t on_read(csock_stream *s, int status, const char *buf, size_t len)
{
    acc *a = csock_stream_data(s);
    if (status < 0) return 0;
    size_t n = len < sizeof a->got - a->got_len ? len : sizeof a->got - a->got_len;
    memcpy(a->got + a->got_len, buf, n);
    a->got_len += n;
    return len;
}

static void on_acc(csock_listener *l, csock_stream *s, int status)
{
    acc *a = csock_listener_data(l);
    if (status < 0) {
        a->errs++;
        a->last_err = status;
        return;
    }
    a->accepted++;
    a->s = s;
    csock_addr p;
    if (csock_stream_peer(s, &p) == 0) csock_addr_format(&p, a->peer, sizeof a->peer);
    csock_stream_set_data(s, a);
    if (csock_stream_read_start(s, on_read) < 0) a->errs++;
}

static void listen_pp(acc *a, unsigned timeout_ms)
{
    memset(a, 0, sizeof *a);
    a->loop = h_loop_new();
    csock_addr addr;
    CHECK_OK(csock_addr_parse("tcp://127.0.0.1:0", CSOCK_ADDR_NUMERIC, &addr));
    csock_listen_opts o = {.proxy_protocol = 1, .proxy_timeout_ms = timeout_ms};
    CHECK_OK(csock_listen(a->loop, &addr, &o, on_acc, a, &a->l));
}

static int client(acc *a)
{
    csock_addr addr;
    CHECK_OK(csock_listener_addr(a->l, &addr));
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&addr.sa, addr.len), 0);
    return fd;
}

/* The server closed the client's connection (EOF or reset). */
static int closed(int fd)
{
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN);
}

static void done(acc *a)
{
    if (a->s) csock_stream_close(a->s, NULL);
    csock_listener_close(a->l, NULL);
    h_loop_free(a->loop);
}

static void listener_v1_then_data(void **state)
{
    acc a;
    listen_pp(&a, 0);
    int fd = client(&a);
    const char *msg = "PROXY TCP4 192.0.2.7 127.0.0.1 56324 443\r\nhello";
    assert_int_equal(send(fd, msg, strlen(msg), 0), (ssize_t)strlen(msg));
    RUN_UNTIL(a.loop, a.got_len == 5 || a.errs || closed(fd), 10000);
    assert_int_equal(a.accepted, 1);
    assert_string_equal(a.peer, "tcp://192.0.2.7:56324");
    assert_memory_equal(a.got, "hello", 5); /* nothing after the header lost */
    close(fd);
    done(&a);
}

static void listener_v2_split_with_tlvs(void **state)
{
    acc a;
    listen_pp(&a, 0);
    int fd = client(&a);
    unsigned char b[128], ad[12] = {198, 51, 100, 9, 127, 0, 0, 1, 0x04, 0xD2, 0, 80};
    unsigned char tlv[] = {0x04, 0x00, 0x05, 1, 2, 3, 4, 5};
    size_t n = v2(b, 1, 0x11, ad, sizeof ad, sizeof tlv);
    memcpy(b + n, tlv, sizeof tlv);
    memcpy(b + n + sizeof tlv, "xy", 2);
    /* In pieces: the listener must wait, never misread nor spin. */
    assert_int_equal(send(fd, b, 10, 0), 10);
    h_spin(a.loop, 5);
    assert_int_equal(a.accepted, 0);
    assert_int_equal(send(fd, b + 10, 20, 0), 20);
    h_spin(a.loop, 5);
    assert_int_equal(a.accepted, 0);
    assert_int_equal(send(fd, b + 30, n + sizeof tlv + 2 - 30, 0), (ssize_t)(n + sizeof tlv + 2 - 30));
    RUN_UNTIL(a.loop, a.got_len == 2 || a.errs || closed(fd), 10000);
    assert_int_equal(a.accepted, 1);
    assert_string_equal(a.peer, "tcp://198.51.100.9:1234");
    assert_memory_equal(a.got, "xy", 2);
    close(fd);
    done(&a);
}

static void listener_local_keeps_real_peer(void **state)
{
    acc a;
    listen_pp(&a, 0);
    int fd = client(&a);
    unsigned char b[16];
    v2(b, 0, 0x00, NULL, 0, 0);
    assert_int_equal(send(fd, b, 16, 0), 16);
    RUN_UNTIL(a.loop, a.accepted || a.errs || closed(fd), 10000);
    assert_int_equal(a.accepted, 1);
    assert_int_equal(strncmp(a.peer, "tcp://127.0.0.1:", 16), 0);
    close(fd);
    done(&a);
}

static void listener_rejects_bad_and_missing(void **state)
{
    acc a;
    listen_pp(&a, 0);
    int bad = client(&a), eof = client(&a);
    const char *req = "GET / HTTP/1.0\r\n\r\n";
    assert_int_equal(send(bad, req, strlen(req), 0), (ssize_t)strlen(req));
    shutdown(eof, SHUT_WR); /* says nothing and finishes */
    RUN_UNTIL(a.loop, closed(bad) && closed(eof), 10000);
    /* The bad header is reported (for logs), the silent close is not. */
    assert_int_equal(a.errs, 1);
    assert_int_equal(a.last_err, -EPROTO);
    /* A good one is still served after them. */
    int good = client(&a);
    const char *h = "PROXY TCP6 2001:db8::5 ::1 4000 80\r\n";
    assert_int_equal(send(good, h, strlen(h), 0), (ssize_t)strlen(h));
    RUN_UNTIL(a.loop, a.accepted || a.errs > 1 || closed(good), 10000);
    assert_int_equal(a.accepted, 1);
    assert_string_equal(a.peer, "tcp://[2001:db8::5]:4000");
    assert_int_equal(csock_listener_conns(a.l), 1);
    close(bad);
    close(eof);
    close(good);
    done(&a);
}

static void listener_header_timeout(void **state)
{
    acc a;
    listen_pp(&a, 100);
    int fd = client(&a);
    assert_int_equal(send(fd, "PROXY TCP4 ", 11, 0), 11); /* and then nothing */
    uint64_t t0 = h_now_ms();
    RUN_UNTIL(a.loop, closed(fd), 10000);
    assert_true(h_now_ms() - t0 >= 90);
    assert_int_equal(a.accepted, 0);
    h_spin(a.loop, 2);
    assert_int_equal(a.last_err, -ETIMEDOUT);
    close(fd);
    done(&a);
}

static void listener_close_drops_waiting(void **state)
{
    acc a;
    listen_pp(&a, 0);
    int fd = client(&a);
    assert_int_equal(send(fd, "PROXY", 5, 0), 5);
    h_spin(a.loop, 5);
    done(&a); /* closes the waiting connection too, nothing leaks */
    struct pollfd p = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 5000), 1);
    assert_true(closed(fd));
    close(fd);
}

/* ---- csock_listen_fd ----------------------------------------------------------- */

static void listen_fd_checks_and_serves(void **state)
{
    csock_loop *loop = h_loop_new();
    csock_listener *l = NULL;
    int udp = socket(AF_INET, SOCK_DGRAM, 0), tcp = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(csock_listen_fd(loop, udp, NULL, on_acc, NULL, &l), -ESOCKTNOSUPPORT);
    assert_int_equal(csock_listen_fd(loop, tcp, NULL, on_acc, NULL, &l), -EINVAL); /* not listening */
    int pipefd[2];
    assert_int_equal(pipe(pipefd), 0);
    assert_int_equal(csock_listen_fd(loop, pipefd[0], NULL, on_acc, NULL, &l), -ENOTSOCK);
    assert_int_equal(csock_listen_fd(loop, -1, NULL, on_acc, NULL, &l), -EBADF);
    close(pipefd[0]);
    close(pipefd[1]);
    close(udp);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(tcp, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(listen(tcp, 8), 0);
    acc a;
    memset(&a, 0, sizeof a);
    a.loop = loop;
    csock_listen_opts o = {.proxy_protocol = 1};
    CHECK_OK(csock_listen_fd(loop, tcp, &o, on_acc, &a, &a.l));
    int fd = client(&a);
    const char *h = "PROXY TCP4 203.0.113.1 127.0.0.1 9 9\r\nz";
    assert_int_equal(send(fd, h, strlen(h), 0), (ssize_t)strlen(h));
    RUN_UNTIL(loop, a.got_len == 1 || a.errs || closed(fd), 10000);
    assert_string_equal(a.peer, "tcp://203.0.113.1:9");
    close(fd);
    done(&a); /* the listener owns tcp now and closes it */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(v1_tcp4),
        cmocka_unit_test(v1_tcp6),
        cmocka_unit_test(v1_unknown),
        cmocka_unit_test(v1_incomplete),
        cmocka_unit_test(v1_bad),
        cmocka_unit_test(v1_too_long),
        cmocka_unit_test(v2_ipv4),
        cmocka_unit_test(v2_ipv6),
        cmocka_unit_test(v2_local),
        cmocka_unit_test(v2_unix),
        cmocka_unit_test(v2_tlvs),
        cmocka_unit_test(v2_bad),
        cmocka_unit_test(format_round_trips),
        cmocka_unit_test(format_local_and_errors),
        cmocka_unit_test(listener_v1_then_data),
        cmocka_unit_test(listener_v2_split_with_tlvs),
        cmocka_unit_test(listener_local_keeps_real_peer),
        cmocka_unit_test(listener_rejects_bad_and_missing),
        cmocka_unit_test(listener_header_timeout),
        cmocka_unit_test(listener_close_drops_waiting),
        cmocka_unit_test(listen_fd_checks_and_serves),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
