/* The PROXY protocol (HAProxy's doc/proxy-protocol.txt): a balancer in
 * front of a server opens each connection with a header naming the client,
 * so the server can log, limit and greet the client rather than the
 * balancer. csock_proxy_parse() is pure (tested and fuzzed alone); the
 * listener (listener.c) reads the header off each new socket with it.
 * csock_proxy_format() writes one, for a relay that sends it. */
#include <arpa/inet.h>
#include <stdio.h>
#include <netinet/in.h>
#include <stddef.h>
#include <string.h>
#include <sys/un.h>

#include "net/net_int.h"

static const unsigned char v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                         0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const char v1_sig[] = "PROXY ";

/* ---- v1: "PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\n" ------------------------ */

/* The next field of a v1 line: up to the next space (or, for the last,
 * the end of the line). Copies it NUL-terminated into out (which holds
 * cap bytes); -EPROTO when it is empty or too long. */
static int v1_field(const char **p, const char *end, char *out, size_t cap)
{
    const char *s = *p, *e = s;
    while (e < end && *e != ' ') e++;
    size_t n = (size_t)(e - s);
    if (n == 0 || n >= cap) return -EPROTO;
    memcpy(out, s, n);
    out[n] = '\0';
    *p = e < end ? e + 1 : e; /* past the single space */
    return 0;
}

/* A port: 0-65535 in decimal, no sign, no leading zero (the spec's form). */
static int v1_port(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > 5 || (t[0] == '0' && n > 1)) return -EPROTO;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (t[i] < '0' || t[i] > '9') return -EPROTO;
        v = v * 10 + (t[i] - '0');
    }
    return v > 65535 ? -EPROTO : (int)v;
}

static int ip_addr(int family, const char *host, int port, csock_addr *out)
{
    memset(out, 0, sizeof *out);
    out->scheme = CSOCK_TCP;
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&out->sa;
        if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) return -EPROTO;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        out->len = sizeof *sin;
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->sa;
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) return -EPROTO;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        out->len = sizeof *sin6;
    }
    return 0;
}

/* The line between "PROXY " and the CRLF. */
static int v1_body(const char *p, const char *end, csock_proxy_info *out)
{
    char proto[8], src[48], dst[48], sport[8], dport[8];
    if (v1_field(&p, end, proto, sizeof proto) < 0) return -EPROTO;
    if (!strcmp(proto, "UNKNOWN")) { /* the rest of the line is ignored */
        out->local = 1;
        return 0;
    }
    int family = !strcmp(proto, "TCP4") ? AF_INET : !strcmp(proto, "TCP6") ? AF_INET6 : 0;
    if (!family) return -EPROTO;
    if (v1_field(&p, end, src, sizeof src) < 0 || v1_field(&p, end, dst, sizeof dst) < 0 ||
        v1_field(&p, end, sport, sizeof sport) < 0 || v1_field(&p, end, dport, sizeof dport) < 0)
        return -EPROTO;
    if (p != end || end[-1] == ' ') return -EPROTO; /* extra fields or a trailing space */
    int sp = v1_port(sport), dp = v1_port(dport);
    if (sp < 0 || dp < 0) return -EPROTO;
    if (ip_addr(family, src, sp, &out->src) < 0 || ip_addr(family, dst, dp, &out->dst) < 0)
        return -EPROTO;
    return 0;
}

static ssize_t parse_v1(const char *buf, size_t len, csock_proxy_info *out)
{
    size_t lim = len < CSOCK_PROXY_V1_MAX ? len : CSOCK_PROXY_V1_MAX;
    const char *lf = memchr(buf, '\n', lim);
    if (!lf) return len >= CSOCK_PROXY_V1_MAX ? -EMSGSIZE : 0;
    size_t hlen = (size_t)(lf - buf) + 1;
    if (hlen < sizeof v1_sig + 1 || lf[-1] != '\r') return -EPROTO; /* LF alone is not the end */
    /* A NUL inside would cut the fields short: a header is printable text. */
    if (memchr(buf, '\0', hlen)) return -EPROTO;
    out->version = 1;
    int rc = v1_body(buf + sizeof v1_sig - 1, lf - 1, out);
    return rc < 0 ? rc : (ssize_t)hlen;
}

/* ---- v2: 12-byte signature, ver/cmd, family/protocol, length, addresses ---- */

static void unix_addr(const unsigned char *path, csock_addr *out)
{
    memset(out, 0, sizeof *out);
    out->scheme = CSOCK_UNIX;
    struct sockaddr_un *sun = (struct sockaddr_un *)&out->sa;
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, sizeof sun->sun_path);
    /* An abstract name (leading NUL) runs to its last non-NUL byte; a path
     * to its first NUL. */
    size_t n;
    if (path[0]) {
        n = strnlen((const char *)path, sizeof sun->sun_path);
    } else {
        n = sizeof sun->sun_path;
        while (n > 1 && !path[n - 1]) n--;
    }
    out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
}

/* An IPv4 or IPv6 address and port as the v2 block holds them (network
 * order, the address's `n` bytes). */
static void ip_raw(int family, const unsigned char *ip, const unsigned char *port, csock_addr *out)
{
    out->scheme = CSOCK_TCP;
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&out->sa;
        sin->sin_family = AF_INET;
        memcpy(&sin->sin_addr, ip, 4);
        memcpy(&sin->sin_port, port, 2);
        out->len = sizeof *sin;
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->sa;
        sin6->sin6_family = AF_INET6;
        memcpy(&sin6->sin6_addr, ip, 16);
        memcpy(&sin6->sin6_port, port, 2);
        out->len = sizeof *sin6;
    }
}

/* The address block: src, dst, sport, dport (INET, INET6), or two paths. */
static void v2_addrs(int fam, const unsigned char *a, csock_proxy_info *out)
{
    if (fam == 3) {
        unix_addr(a, &out->src);
        unix_addr(a + 108, &out->dst);
        return;
    }
    size_t n = fam == 1 ? 4 : 16;
    int family = fam == 1 ? AF_INET : AF_INET6;
    ip_raw(family, a, a + 2 * n, &out->src);
    ip_raw(family, a + n, a + 2 * n + 2, &out->dst);
}

static ssize_t parse_v2(const unsigned char *b, size_t len, csock_proxy_info *out)
{
    if (len < 16) return 0;
    int ver = b[12] >> 4, cmd = b[12] & 0xF, fam = b[13] >> 4, proto = b[13] & 0xF;
    if (ver != 2 || cmd > 1 || fam > 3 || proto > 2) return -EPROTO;
    size_t body = (size_t)b[14] << 8 | b[15];
    static const size_t need[4] = {0, 12, 36, 216};
    out->version = 2;
    /* LOCAL: the balancer's own connection; unspecified family or protocol:
     * nothing to say. Either way the body's bytes are skipped unread. */
    if (cmd == 0 || fam == 0 || proto == 0) {
        out->local = 1;
        return (ssize_t)(16 + body);
    }
    if (body < need[fam]) return -EPROTO;
    if (len < 16 + need[fam]) return 0;
    v2_addrs(fam, b + 16, out);
    return (ssize_t)(16 + body);
}

ssize_t csock_proxy_parse(const void *buf, size_t len, csock_proxy_info *out)
{
    if (!buf || !out) return -EINVAL;
    memset(out, 0, sizeof *out);
    const unsigned char *b = buf;
    /* Decide on the bytes there are: a client speaking something else is
     * turned away at its first byte, not after a timeout. */
    size_t n1 = len < sizeof v1_sig - 1 ? len : sizeof v1_sig - 1;
    size_t n2 = len < sizeof v2_sig ? len : sizeof v2_sig;
    if (memcmp(b, v1_sig, n1) == 0) return len < sizeof v1_sig - 1 ? 0 : parse_v1(buf, len, out);
    if (memcmp(b, v2_sig, n2) == 0) return len < sizeof v2_sig ? 0 : parse_v2(b, len, out);
    return -EPROTO;
}

/* ---- writing a header ---------------------------------------------------------- */

static int is_mapped(const csock_addr *a)
{
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a->sa;
    return a->sa.ss_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr);
}

/* An IPv4-mapped IPv6 address as the IPv4 one it maps (a dual-stack
 * socket's view of an IPv4 client). */
static csock_addr unmapped(const csock_addr *a)
{
    csock_addr out = *a;
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a->sa;
    struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = s6->sin6_port};
    memcpy(&s4.sin_addr, s6->sin6_addr.s6_addr + 12, 4);
    memset(&out.sa, 0, sizeof out.sa);
    memcpy(&out.sa, &s4, sizeof s4);
    out.len = sizeof s4;
    return out;
}

/* The address bytes and the port (network order) of an IP address. */
static const void *ip_bytes(const csock_addr *a, const void **port)
{
    if (a->sa.ss_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)&a->sa;
        *port = &s->sin_port;
        return &s->sin_addr;
    }
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a->sa;
    *port = &s6->sin6_port;
    return &s6->sin6_addr;
}

static ssize_t format_v1(const csock_addr *src, const csock_addr *dst, char *buf, size_t size)
{
    int n;
    if (!src) {
        n = snprintf(buf, size, "PROXY UNKNOWN\r\n");
    } else {
        int fam = src->sa.ss_family;
        char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN];
        const void *sp, *dp;
        if (!inet_ntop(fam, ip_bytes(src, &sp), s, sizeof s) || !inet_ntop(fam, ip_bytes(dst, &dp), d, sizeof d))
            return -EAFNOSUPPORT;
        uint16_t spn, dpn;
        memcpy(&spn, sp, 2);
        memcpy(&dpn, dp, 2);
        n = snprintf(buf, size, "PROXY %s %s %s %u %u\r\n", fam == AF_INET ? "TCP4" : "TCP6", s, d,
                     (unsigned)ntohs(spn), (unsigned)ntohs(dpn));
    }
    if (n < 0 || (size_t)n >= size) return -ENOSPC;
    return n;
}

static ssize_t format_v2(const csock_addr *src, const csock_addr *dst, unsigned char *b, size_t size)
{
    int fam = src ? src->sa.ss_family : AF_UNSPEC;
    size_t body = fam == AF_INET ? 12 : fam == AF_INET6 ? 36 : fam == AF_UNIX ? 216 : 0;
    if (size < 16 + body) return -ENOSPC;
    memcpy(b, v2_sig, sizeof v2_sig);
    b[12] = src ? 0x21 : 0x20; /* version 2, PROXY or LOCAL */
    b[13] = fam == AF_INET ? 0x11 : fam == AF_INET6 ? 0x21 : fam == AF_UNIX ? 0x31 : 0x00;
    b[14] = (unsigned char)(body >> 8);
    b[15] = (unsigned char)body;
    unsigned char *a = b + 16;
    if (fam == AF_UNIX) {
        memset(a, 0, 216);
        const struct sockaddr_un *s = (const struct sockaddr_un *)&src->sa, *d = (const struct sockaddr_un *)&dst->sa;
        size_t sl = src->len - offsetof(struct sockaddr_un, sun_path), dl = dst->len - offsetof(struct sockaddr_un, sun_path);
        memcpy(a, s->sun_path, sl < 108 ? sl : 108);
        memcpy(a + 108, d->sun_path, dl < 108 ? dl : 108);
    } else if (body) {
        size_t n = fam == AF_INET ? 4 : 16;
        const void *sp, *dp;
        memcpy(a, ip_bytes(src, &sp), n);
        memcpy(a + n, ip_bytes(dst, &dp), n);
        memcpy(a + 2 * n, sp, 2);
        memcpy(a + 2 * n + 2, dp, 2);
    }
    return (ssize_t)(16 + body);
}

ssize_t csock_proxy_format(int version, const csock_addr *src, const csock_addr *dst, void *buf, size_t size)
{
    if (!buf || (version != 1 && version != 2) || (!src) != (!dst)) return -EINVAL;
    csock_addr s, d;
    if (src) {
        /* A mapped pair (an IPv4 client of a dual-stack socket) goes as
         * IPv4; a pair with one mapped address stays IPv6: TCP6 carries it. */
        int both = is_mapped(src) && is_mapped(dst);
        s = both ? unmapped(src) : *src;
        d = both ? unmapped(dst) : *dst;
        int fam = s.sa.ss_family;
        if (fam != d.sa.ss_family) return -EAFNOSUPPORT;
        if (fam != AF_INET && fam != AF_INET6 && (version == 1 || fam != AF_UNIX)) return -EAFNOSUPPORT;
        if (fam == AF_UNIX && (s.len < offsetof(struct sockaddr_un, sun_path) ||
                               d.len < offsetof(struct sockaddr_un, sun_path)))
            return -EAFNOSUPPORT;
    }
    return version == 1 ? format_v1(src ? &s : NULL, src ? &d : NULL, buf, size)
                        : format_v2(src ? &s : NULL, src ? &d : NULL, buf, size);
}
