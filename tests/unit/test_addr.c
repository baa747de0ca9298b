/* Addresses: every accepted form, every refused one, resolution of
 * "localhost" (the only name looked up: the tests need no DNS), formatting
 * and its round trip through parsing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "csock/csock.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#define SUN_OFF offsetof(struct sockaddr_un, sun_path)

static const struct sockaddr_in *in4(const csock_addr *a)
{
    return (const struct sockaddr_in *)&a->sa;
}
static const struct sockaddr_in6 *in6(const csock_addr *a)
{
    return (const struct sockaddr_in6 *)&a->sa;
}
static const struct sockaddr_un *un(const csock_addr *a)
{
    return (const struct sockaddr_un *)&a->sa;
}

/* Parse or fail with the reason in the message. */
static void parse_ok(const char *text, int flags, csock_addr *a)
{
    int rc = csock_addr_parse(text, flags, a);
    if (rc != 0)
        fail_msg("parse \"%s\": %s", text, csock_strerror(rc));
}

static void check_v4(const char *text, int flags, csock_scheme scheme, const char *ip, int port,
                     const char *host)
{
    csock_addr a;
    struct in_addr want;
    parse_ok(text, flags, &a);
    assert_int_equal(a.scheme, scheme);
    assert_int_equal(a.sa.ss_family, AF_INET);
    assert_int_equal(a.len, sizeof(struct sockaddr_in));
    assert_int_equal(inet_pton(AF_INET, ip, &want), 1);
    assert_int_equal(in4(&a)->sin_addr.s_addr, want.s_addr);
    assert_int_equal(csock_addr_port(&a), port);
    assert_string_equal(a.host, host);
}

static void check_v6(const char *text, int flags, csock_scheme scheme, const char *ip, int port,
                     const char *host, unsigned scope)
{
    csock_addr a;
    struct in6_addr want;
    parse_ok(text, flags, &a);
    assert_int_equal(a.scheme, scheme);
    assert_int_equal(a.sa.ss_family, AF_INET6);
    assert_int_equal(a.len, sizeof(struct sockaddr_in6));
    assert_int_equal(inet_pton(AF_INET6, ip, &want), 1);
    assert_memory_equal(&in6(&a)->sin6_addr, &want, sizeof want);
    assert_int_equal(in6(&a)->sin6_scope_id, scope);
    assert_int_equal(csock_addr_port(&a), port);
    assert_string_equal(a.host, host);
}

static void good_ipv4(void **state)
{
    (void)state;
    check_v4("tcp://127.0.0.1:80", 0, CSOCK_TCP, "127.0.0.1", 80, "127.0.0.1");
    check_v4("127.0.0.1:8080", 0, CSOCK_TCP, "127.0.0.1", 8080, "127.0.0.1");
    check_v4("udp://10.1.2.3:53", 0, CSOCK_UDP, "10.1.2.3", 53, "10.1.2.3");
    check_v4("tls://192.0.2.1:443", 0, CSOCK_TLS, "192.0.2.1", 443, "192.0.2.1");
    check_v4("tcp://127.0.0.1:0", 0, CSOCK_TCP, "127.0.0.1", 0, "127.0.0.1");
    check_v4("tcp://127.0.0.1:65535", 0, CSOCK_TCP, "127.0.0.1", 65535, "127.0.0.1");
    check_v4("127.0.0.1:00080", 0, CSOCK_TCP, "127.0.0.1", 80, "127.0.0.1");
    check_v4("TCP://127.0.0.1:1", 0, CSOCK_TCP, "127.0.0.1", 1, "127.0.0.1");
    check_v4("0.0.0.0:9", CSOCK_ADDR_PASSIVE, CSOCK_TCP, "0.0.0.0", 9, "0.0.0.0");
    check_v4("127.0.0.1:1", CSOCK_ADDR_IPV4 | CSOCK_ADDR_NUMERIC, CSOCK_TCP, "127.0.0.1", 1,
             "127.0.0.1");
}

static void good_ipv6(void **state)
{
    (void)state;
    unsigned lo = if_nametoindex("lo");
    check_v6("tcp://[::1]:7", 0, CSOCK_TCP, "::1", 7, "::1", 0);
    check_v6("[::1]:7", 0, CSOCK_TCP, "::1", 7, "::1", 0);
    check_v6("udp://[::1]:65535", 0, CSOCK_UDP, "::1", 65535, "::1", 0);
    check_v6("tls://[2001:db8::1]:443", 0, CSOCK_TLS, "2001:db8::1", 443, "2001:db8::1", 0);
    check_v6("[::]:0", CSOCK_ADDR_PASSIVE, CSOCK_TCP, "::", 0, "::", 0);
    check_v6("[::ffff:127.0.0.1]:80", 0, CSOCK_TCP, "::ffff:127.0.0.1", 80, "::ffff:127.0.0.1", 0);
    check_v6("[fe80::1%1]:80", 0, CSOCK_TCP, "fe80::1", 80, "fe80::1%1", 1);
    check_v6("[::1]:7", CSOCK_ADDR_IPV6 | CSOCK_ADDR_NUMERIC, CSOCK_TCP, "::1", 7, "::1", 0);
    if (lo != 0)
        check_v6("[fe80::1%lo]:80", 0, CSOCK_TCP, "fe80::1", 80, "fe80::1%lo", lo);
}

static void good_passive_any(void **state)
{
    (void)state;
    check_v4(":80", CSOCK_ADDR_PASSIVE, CSOCK_TCP, "0.0.0.0", 80, "");
    check_v4("tcp://:0", CSOCK_ADDR_PASSIVE, CSOCK_TCP, "0.0.0.0", 0, "");
    check_v4("udp://:53", CSOCK_ADDR_PASSIVE | CSOCK_ADDR_IPV4, CSOCK_UDP, "0.0.0.0", 53, "");
    check_v6(":80", CSOCK_ADDR_PASSIVE | CSOCK_ADDR_IPV6, CSOCK_TCP, "::", 80, "", 0);
    check_v6("udp://:7", CSOCK_ADDR_PASSIVE | CSOCK_ADDR_IPV6, CSOCK_UDP, "::", 7, "", 0);
}

static void good_unix(void **state)
{
    (void)state;
    csock_addr a;
    parse_ok("unix:/tmp/x", 0, &a);
    assert_int_equal(a.scheme, CSOCK_UNIX);
    assert_int_equal(a.sa.ss_family, AF_UNIX);
    assert_string_equal(un(&a)->sun_path, "/tmp/x");
    assert_int_equal(a.len, SUN_OFF + strlen("/tmp/x") + 1);
    assert_string_equal(a.host, "/tmp/x");
    assert_int_equal(csock_addr_port(&a), 0);

    parse_ok("unix:relative.sock", 0, &a);
    assert_string_equal(un(&a)->sun_path, "relative.sock");

    parse_ok("unixgram:/p", 0, &a);
    assert_int_equal(a.scheme, CSOCK_UNIXGRAM);
    assert_string_equal(un(&a)->sun_path, "/p");

    /* Abstract: a leading NUL, and the length counts the name only. */
    parse_ok("unix:@name", 0, &a);
    assert_int_equal(a.scheme, CSOCK_UNIX);
    assert_int_equal(un(&a)->sun_path[0], '\0');
    assert_memory_equal(un(&a)->sun_path + 1, "name", 4);
    assert_int_equal(a.len, SUN_OFF + 1 + 4);
    assert_string_equal(a.host, "@name");
    parse_ok("unixgram:@g", 0, &a);
    assert_int_equal(a.scheme, CSOCK_UNIXGRAM);
    assert_int_equal(a.len, SUN_OFF + 2);

    /* The longest path (sun_path minus its NUL) and abstract name fit. */
    char text[300];
    size_t room = sizeof un(&a)->sun_path - 1;
    snprintf(text, sizeof text, "unix:/%0*d", (int)room - 1, 0);
    parse_ok(text, 0, &a);
    assert_int_equal(strlen(un(&a)->sun_path), room);
    assert_int_equal(a.len, SUN_OFF + room + 1);
    snprintf(text, sizeof text, "unix:@%0*d", (int)room, 0);
    parse_ok(text, 0, &a);
    assert_int_equal(a.len, SUN_OFF + 1 + room);
    assert_int_equal(a.len, sizeof(struct sockaddr_un));
}

static void good_localhost(void **state)
{
    (void)state;
    csock_addr out[8];
    int n = csock_addr_resolve("localhost:80", 0, out, 8);
    if (n < 1)
        fail_msg("resolve localhost: %s", csock_strerror(n));
    for (int i = 0; i < n; i++) {
        assert_int_equal(out[i].scheme, CSOCK_TCP);
        assert_int_equal(csock_addr_port(&out[i]), 80);
        assert_string_equal(out[i].host, "localhost");
        if (out[i].sa.ss_family == AF_INET)
            assert_int_equal(in4(&out[i])->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
        else if (out[i].sa.ss_family == AF_INET6)
            assert_true(IN6_IS_ADDR_LOOPBACK(&in6(&out[i])->sin6_addr));
        else
            fail_msg("family %d", out[i].sa.ss_family);
        for (int j = 0; j < i; j++) /* no duplicates */
            assert_false(out[j].len == out[i].len &&
                         memcmp(&out[j].sa, &out[i].sa, out[i].len) == 0);
    }
    /* Only IPv4 when asked. (This host lists localhost as 127.0.0.1.) */
    n = csock_addr_resolve("udp://localhost:53", CSOCK_ADDR_IPV4, out, 8);
    assert_true(n >= 1);
    for (int i = 0; i < n; i++) {
        assert_int_equal(out[i].sa.ss_family, AF_INET);
        assert_int_equal(out[i].scheme, CSOCK_UDP);
    }
    /* max bounds the results; parse takes the first. */
    assert_int_equal(csock_addr_resolve("localhost:1", 0, out, 1), 1);
    parse_ok("tls://localhost:443", 0, &out[0]);
    assert_string_equal(out[0].host, "localhost"); /* kept for SNI */
    assert_int_equal(out[0].scheme, CSOCK_TLS);
}

static void expect_err(const char *text, int flags, int want)
{
    csock_addr a;
    int rc = csock_addr_parse(text, flags, &a);
    if (rc != want)
        fail_msg("parse \"%s\": got %s, want %s", text, csock_err_name(rc), csock_err_name(want));
}

static void bad_forms(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", "tcp://", "udp://", "tls://",
        /* ports */
        "127.0.0.1:-1", "127.0.0.1:+1", "127.0.0.1: 80", "127.0.0.1:80 ", "127.0.0.1:8o",
        "127.0.0.1:0x50", "127.0.0.1:http", "127.0.0.1:99999x",
        /* extra parts */
        "127.0.0.1:80:90", "tcp://127.0.0.1:80/path", "tcp://127.0.0.1:80?x", "tcp://a:b:80",
        "tcp://127.0.0.1:80]", " 127.0.0.1:80", "tcp://host name:80", "tcp://a%b:80",
        "127.0.0.1%lo:80", "tcp://user@host:80", "tcp://host/x:80",
        /* IPv6 */
        "[::1]80", "[]:80", "[::1:80", "::1]:80", "[::1]x:80", "[[::1]]:80", "[127.0.0.1]:80",
        "[localhost]:80", "[::1::2]:80", "[fe80::1%no-such-if0]:80",
        /* schemes that are not one */
        "tcp:/127.0.0.1:80", "udp//127.0.0.1:80",
        /* unix */
        "unix:", "unix:@", "unixgram:", "unixgram:@",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_err(bad[i], 0, CSOCK_EBADADDR);
    /* An empty host is only for binding. */
    expect_err(":80", 0, CSOCK_EBADADDR);
    expect_err("tcp://:80", CSOCK_ADDR_IPV6, CSOCK_EBADADDR);

    /* Too long for sun_path by one byte, path and abstract. */
    char text[300];
    size_t room = sizeof(((struct sockaddr_un *)0)->sun_path) - 1;
    snprintf(text, sizeof text, "unix:/%0*d", (int)room, 0);
    expect_err(text, 0, CSOCK_EBADADDR);
    snprintf(text, sizeof text, "unix:@%0*d", (int)room + 1, 0);
    expect_err(text, 0, CSOCK_EBADADDR);
    /* A host longer than any name. */
    snprintf(text, sizeof text, "%0*d:80", 280, 0);
    expect_err(text, 0, CSOCK_EBADADDR);

    csock_addr a;
    assert_int_equal(csock_addr_parse(NULL, 0, &a), -EINVAL);
    assert_int_equal(csock_addr_resolve("127.0.0.1:1", 0, &a, 0), -EINVAL);
}

/* Address errors that say what is wrong. */
static void no_port(void **state)
{
    static const char *const text[] = {
        "127.0.0.1", "tcp://127.0.0.1", "localhost", "udp://localhost", "tls://example.com",
        "127.0.0.1:", "tcp://127.0.0.1:", "localhost:", "tcp:", "[::1]", "[::1]:", "tcp://[::1]",
    };
    for (size_t i = 0; i < sizeof text / sizeof text[0]; i++) expect_err(text[i], 0, CSOCK_ENOPORT);
    assert_string_equal(csock_strerror(CSOCK_ENOPORT), "address has no port");
}

static void port_out_of_range(void **state)
{
    static const char *const text[] = {
        "127.0.0.1:65536", "127.0.0.1:99999", "127.0.0.1:4294967376",
        "127.0.0.1:99999999999999999999", "[::1]:65536", "udp://localhost:70000",
    };
    for (size_t i = 0; i < sizeof text / sizeof text[0]; i++)
        expect_err(text[i], 0, CSOCK_EBADPORT);
    csock_addr a;
    parse_ok("127.0.0.1:65535", 0, &a);
    assert_int_equal(csock_addr_port(&a), 65535);
    parse_ok("127.0.0.1:00080", 0, &a);
    assert_int_equal(csock_addr_port(&a), 80);
}

static void ipv6_needs_brackets(void **state)
{
    static const char *const text[] = {
        "::1:80", "tcp://::1:80", "fe80::1:80", "udp://2001:db8::1:53", "fe80::1%lo:80",
        "::1", "fe80::1",
    };
    for (size_t i = 0; i < sizeof text / sizeof text[0]; i++)
        expect_err(text[i], 0, CSOCK_EBRACKETS);
    assert_non_null(strstr(csock_strerror(CSOCK_EBRACKETS), "[brackets]"));
}

static void unknown_scheme(void **state)
{
    static const char *const text[] = {
        "foo://127.0.0.1:80", "http://127.0.0.1:80", "://127.0.0.1:80", "tcp6://[::1]:80",
        "https://example.com:443",
    };
    for (size_t i = 0; i < sizeof text / sizeof text[0]; i++)
        expect_err(text[i], 0, CSOCK_EUNKSCHEME);
    /* The message lists the schemes there are, tls:// among them. */
    assert_non_null(strstr(csock_strerror(CSOCK_EUNKSCHEME), "tls://"));
    assert_non_null(strstr(csock_strerror(CSOCK_EUNKSCHEME), "unix:"));
}

static void names_without_dns(void **state)
{
    (void)state;
    /* CSOCK_ADDR_NUMERIC: a name is "not found" without any lookup. */
    expect_err("localhost:80", CSOCK_ADDR_NUMERIC, CSOCK_ENONAME);
    expect_err("tcp://no-such-host.invalid:80", CSOCK_ADDR_NUMERIC, CSOCK_ENONAME);
    expect_err("tls://example.com:443", CSOCK_ADDR_NUMERIC | CSOCK_ADDR_IPV4, CSOCK_ENONAME);
    /* A literal of the other family than the one asked for. */
    expect_err("127.0.0.1:80", CSOCK_ADDR_IPV6, CSOCK_ENONAME);
    expect_err("[::1]:80", CSOCK_ADDR_IPV4, CSOCK_ENONAME);
    /* Both family flags: either. */
    csock_addr a;
    parse_ok("[::1]:80", CSOCK_ADDR_IPV4 | CSOCK_ADDR_IPV6, &a);
    parse_ok("127.0.0.1:80", CSOCK_ADDR_IPV4 | CSOCK_ADDR_IPV6, &a);
}

/* ---- format --------------------------------------------------------------------- */

static int same_addr(const csock_addr *x, const csock_addr *y)
{
    return x->scheme == y->scheme && x->len == y->len && memcmp(&x->sa, &y->sa, x->len) == 0;
}

static void format_exact(void **state)
{
    (void)state;
    /* Canonical text formats back to itself. */
    static const char *const canon[] = {
        "tcp://127.0.0.1:43125", "udp://[::1]:7", "unix:/tmp/x", "unix:@name", "unixgram:/p",
        "unixgram:@g", "tls://127.0.0.1:443", "tls://[2001:db8::1]:443", "tcp://0.0.0.0:0",
        "tcp://[::]:65535", "udp://[::ffff:127.0.0.1]:1", "tcp://[fe80::1%1]:80",
        "tcp://[::1%5]:1",
    };
    for (size_t i = 0; i < sizeof canon / sizeof canon[0]; i++) {
        csock_addr a;
        char buf[256];
        parse_ok(canon[i], 0, &a);
        int n = csock_addr_format(&a, buf, sizeof buf);
        if (n < 0)
            fail_msg("format %s: %s", canon[i], csock_strerror(n));
        /* fe80::1%1: with an interface 1 named, the name is what we print. */
        if (strstr(canon[i], "fe80") && if_indextoname(1, (char[IF_NAMESIZE]){0}))
            continue;
        assert_string_equal(buf, canon[i]);
        assert_int_equal(n, strlen(canon[i]));
    }
}

static void format_canonicalises(void **state)
{
    (void)state;
    static const char *const pairs[][2] = {
        {"127.0.0.1:80", "tcp://127.0.0.1:80"},
        {"[::0001]:7", "tcp://[::1]:7"},
        {"UDP://[2001:DB8:0:0::1]:00053", "udp://[2001:db8::1]:53"},
        {":80", "tcp://0.0.0.0:80"},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        csock_addr a;
        char buf[256];
        parse_ok(pairs[i][0], CSOCK_ADDR_PASSIVE, &a);
        assert_true(csock_addr_format(&a, buf, sizeof buf) > 0);
        assert_string_equal(buf, pairs[i][1]);
    }
    unsigned lo = if_nametoindex("lo");
    if (lo != 0) { /* link-local scopes print as interface names */
        csock_addr a;
        char buf[256];
        char text[64];
        snprintf(text, sizeof text, "[fe80::1%%%u]:80", lo);
        parse_ok(text, 0, &a);
        assert_true(csock_addr_format(&a, buf, sizeof buf) > 0);
        assert_string_equal(buf, "tcp://[fe80::1%lo]:80");
    }
}

static void format_round_trip(void **state)
{
    (void)state;
    static const char *const forms[] = {
        "tcp://127.0.0.1:43125", "127.0.0.1:0", "udp://[::1]:7", "[fe80::1%1]:65535",
        "[fe80::1%lo]:80", "tls://[::]:1", "unix:/tmp/x", "unix:@name", "unixgram:/p",
        "unixgram:@g", "unix:rel", "localhost:80", ":80",
    };
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        csock_addr a, b;
        char buf[256];
        parse_ok(forms[i], CSOCK_ADDR_PASSIVE, &a);
        assert_true(csock_addr_format(&a, buf, sizeof buf) > 0);
        parse_ok(buf, 0, &b);
        if (!same_addr(&a, &b))
            fail_msg("%s -> %s does not parse back to the same address", forms[i], buf);
    }
}

/* Every buffer too small by any amount: -ENOSPC, and not a byte written past
 * `size`. The exact size is enough. */
static void format_enospc(void **state)
{
    (void)state;
    static const char *const forms[] = {"tcp://127.0.0.1:43125", "udp://[::1]:7", "unix:/tmp/x",
                                        "unix:@name"};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        csock_addr a;
        char buf[64];
        size_t need = strlen(forms[i]) + 1;
        parse_ok(forms[i], 0, &a);
        for (size_t size = 0; size < need; size++) {
            memset(buf, 'Z', sizeof buf);
            assert_int_equal(csock_addr_format(&a, size ? buf : NULL, size), -ENOSPC);
            for (size_t k = size; k < sizeof buf; k++)
                assert_int_equal(buf[k], 'Z');
            if (size > 0)
                assert_int_equal(buf[0], '\0'); /* nothing half-written */
        }
        assert_int_equal(csock_addr_format(&a, buf, need), (int)need - 1);
        assert_string_equal(buf, forms[i]);
    }
}

/* Addresses as the kernel returns them (getsockname/getpeername). */
static void format_kernel_unix(void **state)
{
    (void)state;
    csock_addr a;
    char buf[512];
    struct sockaddr_un *u = (struct sockaddr_un *)&a.sa;

    /* An unnamed socket (an unbound client). */
    memset(&a, 0, sizeof a);
    a.scheme = CSOCK_UNIX;
    u->sun_family = AF_UNIX;
    a.len = sizeof(sa_family_t);
    assert_int_equal(csock_addr_format(&a, buf, sizeof buf), 5);
    assert_string_equal(buf, "unix:");

    /* A path filling sun_path with no NUL: read only len bytes. */
    memset(&a, 0, sizeof a);
    a.scheme = CSOCK_UNIX;
    u->sun_family = AF_UNIX;
    memset(u->sun_path, 'p', sizeof u->sun_path);
    memset((char *)&a.sa + sizeof *u, 'X', sizeof a.sa - sizeof *u);
    a.len = sizeof *u;
    assert_int_equal(csock_addr_format(&a, buf, sizeof buf), 5 + (int)sizeof u->sun_path);
    assert_int_equal(strspn(buf + 5, "p"), sizeof u->sun_path);

    /* A path whose length includes its NUL, or not: the same text. */
    memset(&a, 0, sizeof a);
    u->sun_family = AF_UNIX;
    strcpy(u->sun_path, "/s");
    a.len = SUN_OFF + 2;
    a.scheme = CSOCK_UNIX;
    csock_addr_format(&a, buf, sizeof buf);
    assert_string_equal(buf, "unix:/s");

    /* An unknown family. */
    memset(&a, 0, sizeof a);
    a.sa.ss_family = AF_PACKET;
    assert_int_equal(csock_addr_format(&a, buf, sizeof buf), -EAFNOSUPPORT);
}

/* CSOCK_ADDR_STRLEN holds the longest text csock_addr_format() makes: a
 * unixgram path filling sun_path (no NUL, as the kernel may report it), an
 * abstract name as long, and a link-local IPv6 address with the largest
 * numeric scope and port. */
static void format_longest_fits(void **state)
{
    (void)state;
    csock_addr a;
    char buf[CSOCK_ADDR_STRLEN];
    struct sockaddr_un *u = (struct sockaddr_un *)&a.sa;
    int n;

    memset(&a, 0, sizeof a);
    a.scheme = CSOCK_UNIXGRAM;
    u->sun_family = AF_UNIX;
    memset(u->sun_path, 'p', sizeof u->sun_path);
    a.len = sizeof *u;
    n = csock_addr_format(&a, buf, sizeof buf);
    assert_int_equal(n, (int)strlen("unixgram:") + (int)sizeof u->sun_path);

    u->sun_path[0] = '\0'; /* abstract: "unixgram:@" and the other 107 bytes */
    n = csock_addr_format(&a, buf, sizeof buf);
    assert_int_equal(n, (int)strlen("unixgram:@") + (int)sizeof u->sun_path - 1);

    /* A scope id no interface has is written as a number: the longest. */
    parse_ok("udp://[fe80:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535", 0, &a);
    ((struct sockaddr_in6 *)&a.sa)->sin6_scope_id = 4294967295u;
    n = csock_addr_format(&a, buf, sizeof buf);
    assert_true(n > 0);
    assert_non_null(strstr(buf, "%4294967295]:65535"));
}

static void port_and_stream(void **state)
{
    (void)state;
    csock_addr a, b;
    char buf[64];
    parse_ok("tcp://127.0.0.1:0", 0, &a);
    csock_addr_set_port(&a, 43125);
    assert_int_equal(csock_addr_port(&a), 43125);
    csock_addr_format(&a, buf, sizeof buf);
    assert_string_equal(buf, "tcp://127.0.0.1:43125");
    parse_ok("udp://[::1]:1", 0, &a);
    csock_addr_set_port(&a, 65535);
    assert_int_equal(csock_addr_port(&a), 65535);
    csock_addr_format(&a, buf, sizeof buf);
    assert_string_equal(buf, "udp://[::1]:65535");

    parse_ok("unix:/tmp/x", 0, &a);
    b = a;
    csock_addr_set_port(&a, 80); /* no port on a Unix address: unchanged */
    assert_int_equal(csock_addr_port(&a), 0);
    assert_memory_equal(&a, &b, sizeof a);

    static const struct {
        const char *text;
        int stream;
    } kinds[] = {{"tcp://127.0.0.1:1", 1}, {"127.0.0.1:1", 1}, {"tls://[::1]:1", 1},
                 {"unix:/x", 1},           {"udp://127.0.0.1:1", 0}, {"unixgram:/x", 0}};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        parse_ok(kinds[i].text, 0, &a);
        assert_int_equal(csock_addr_is_stream(&a), kinds[i].stream);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(good_ipv4),           cmocka_unit_test(good_ipv6),
        cmocka_unit_test(good_passive_any),    cmocka_unit_test(good_unix),
        cmocka_unit_test(good_localhost),      cmocka_unit_test(bad_forms),
        cmocka_unit_test(no_port),             cmocka_unit_test(port_out_of_range),
        cmocka_unit_test(ipv6_needs_brackets), cmocka_unit_test(unknown_scheme),
        cmocka_unit_test(names_without_dns),   cmocka_unit_test(format_exact),
        cmocka_unit_test(format_canonicalises), cmocka_unit_test(format_round_trip),
        cmocka_unit_test(format_enospc),       cmocka_unit_test(format_longest_fits),       cmocka_unit_test(format_kernel_unix),
        cmocka_unit_test(port_and_stream),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
