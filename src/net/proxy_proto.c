/* The PROXY protocol (HAProxy's doc/proxy-protocol.txt): a balancer in
 * front of a server opens each connection with a header naming the client,
 * so the server can log, limit and greet the client rather than the
 * balancer. csock_proxy_parse() is pure (tested and fuzzed alone); the
 * listener (listener.c) reads the header off each new socket with it. */
#include <arpa/inet.h>
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
