/* csock connect --proxy: a tunnel through a SOCKS4, SOCKS4a, SOCKS5 (RFC
 * 1928, username/password RFC 1929) or HTTP CONNECT proxy, negotiated on
 * the loop before the relay starts. The options are checked here too.
 *
 * The life of a tunnel: connect to the proxy, send the request (SOCKS5:
 * the greeting first), read the answers step by step, then hand the stream
 * to the session (for tls:// after a TLS handshake with the target through
 * the tunnel). A timer bounds the whole negotiation by -w. The tunnel's
 * state is freed in its timer's close callback; the timer is closed when
 * the stream closes during the negotiation (its on_close) or once the
 * stream is handed over, whichever comes first. */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/netcat.h"
#include "csock/tls.h"

#define HTTP_HEAD_MAX 16384 /* a proxy's answer to CONNECT: its header, at most */
#define REQ_MAX 2048        /* the largest request we build (names are <= 255) */
#define STATUS_SHOWN 200    /* the most of an HTTP status line we print */

enum { ST_S5_METHOD = 1, ST_S5_AUTH, ST_S5_REPLY, ST_S4_REPLY, ST_HTTP_REPLY };

typedef struct tunnel {
    nc_ctx *c;
    csock_stream *s;          /* to the proxy; NULL once closed or handed over */
    csock_timer *timer;       /* -w: the whole negotiation */
    csock_stream_cb ready;    /* the session's connect callback */
    int state;                /* ST_*: the answer awaited */
    int tls;                  /* the target is tls:// */
    char host[256];           /* the target's host as written (no brackets) */
    int port;                 /* the target's port */
    int family;               /* AF_INET / AF_INET6: host is an address; 0: a name */
    unsigned char ip[16];     /* the address (network order) when family is set */
    char proxy_name[CLI_ADDR_TEXT + 32]; /* "socks5 proxy 127.0.0.1:1080" */
} tunnel;

static const char *const type_names[] = {"", "http", "socks4", "socks4a", "socks5"};

int nc_proxy_type_parse(const char *text)
{
    for (int i = NC_PROXY_HTTP; i <= NC_PROXY_SOCKS5; i++)
        if (!strcasecmp(text, type_names[i])) return i;
    if (!strcmp(text, "4")) return NC_PROXY_SOCKS4; /* ncat's short names */
    if (!strcmp(text, "5")) return NC_PROXY_SOCKS5;
    cli_die(CLI_USAGE, "--proxy-type '%s': expected socks4, socks4a, socks5 or http", text);
}

int nc_proxy_dns_parse(const char *text)
{
    static const char *const names[] = {"", "local", "remote", "both", "none"};
    for (int i = NC_PROXY_DNS_LOCAL; i <= NC_PROXY_DNS_NONE; i++)
        if (!strcasecmp(text, names[i])) return i;
    cli_die(CLI_USAGE, "--proxy-dns '%s': expected local, remote, both or none", text);
}

static int proxy_type(const nc_opts *o)
{
    return o->proxy_type ? o->proxy_type : NC_PROXY_HTTP; /* ncat's default */
}

/* ncat's default is remote; SOCKS4 carries only addresses, so it resolves locally. */
static int proxy_dns(const nc_opts *o)
{
    if (o->proxy_dns) return o->proxy_dns;
    return proxy_type(o) == NC_PROXY_SOCKS4 ? NC_PROXY_DNS_LOCAL : NC_PROXY_DNS_REMOTE;
}

/* Split the target text tcp://HOST:PORT (or tls://) into t->host / t->port. */
static void split_target(const char *target, tunnel *t)
{
    const char *hp = target + 6; /* after "tcp://" or "tls://" */
    const char *colon = strrchr(hp, ':');
    const char *h = hp, *hend = colon;
    if (*hp == '[') {
        const char *close = strchr(hp, ']');
        if (!close || close[1] != ':') colon = NULL;
        h = hp + 1, hend = close;
    }
    if (!colon || hend == h || (size_t)(hend - h) >= sizeof t->host)
        cli_die(CLI_USAGE, "--proxy: bad target '%s'; expected HOST:PORT (a name of at most 255 bytes)",
                target);
    memcpy(t->host, h, (size_t)(hend - h));
    t->host[hend - h] = '\0';
    t->port = (int)cli_ulong("--proxy target port", colon + 1, UINT16_MAX);
    if (!t->port) cli_die(CLI_USAGE, "--proxy: the target's port must not be 0");
}

/* t->host as an address (family, ip) when it is one: 1, else 0. */
static int take_literal(tunnel *t)
{
    if (inet_pton(AF_INET, t->host, t->ip) == 1) return t->family = AF_INET, 1;
    if (inet_pton(AF_INET6, t->host, t->ip) == 1) return t->family = AF_INET6, 1;
    return 0;
}

/* Resolve the target's name here; 0, or csock_addr_parse()'s error. */
static int resolve_here(tunnel *t, int flags)
{
    char text[NC_TARGET_TEXT];
    int v6 = strchr(t->host, ':') != NULL;
    snprintf(text, sizeof text, "tcp://%s%s%s:%d", v6 ? "[" : "", t->host, v6 ? "]" : "", t->port);
    csock_addr a;
    int rc = csock_addr_parse(text, flags, &a);
    if (rc < 0) return rc;
    if (a.sa.ss_family == AF_INET) {
        t->family = AF_INET;
        memcpy(t->ip, &((struct sockaddr_in *)&a.sa)->sin_addr, 4);
    } else {
        t->family = AF_INET6;
        memcpy(t->ip, &((struct sockaddr_in6 *)&a.sa)->sin6_addr, 16);
    }
    return 0;
}

/* --proxy-dns: where the target's name is resolved. Dies when it cannot be. */
static void resolve_target(const nc_opts *o, tunnel *t)
{
    if (take_literal(t)) return;
    int mode = proxy_dns(o), flags = o->family;
    if (proxy_type(o) == NC_PROXY_SOCKS4 || proxy_type(o) == NC_PROXY_SOCKS4A)
        flags = CSOCK_ADDR_IPV4; /* their addresses are IPv4 only */
    if (mode == NC_PROXY_DNS_NONE)
        cli_die(CLI_USAGE, "--proxy-dns none: '%s' is not an IP address", t->host);
    if (mode == NC_PROXY_DNS_REMOTE) return; /* the proxy resolves it */
    int rc = resolve_here(t, flags);
    if (rc == 0 || mode == NC_PROXY_DNS_BOTH) return; /* both: the proxy tries next */
    cli_die(CLI_ERR, "connect %s: %s (--proxy-dns local)", t->host, csock_strerror(rc));
}

static void check_auth(const nc_opts *o, int type)
{
    const char *a = o->proxy_auth, *colon = a ? strchr(a, ':') : NULL;
    if (!a || type == NC_PROXY_SOCKS4 || type == NC_PROXY_SOCKS4A) return; /* a user id */
    if (!colon) cli_die(CLI_USAGE, "--proxy-auth '%s': expected USER:PASS for %s", a, type_names[type]);
    if (type == NC_PROXY_SOCKS5 && ((colon - a) > 255 || strlen(colon + 1) > 255 || colon == a ||
                                     !colon[1]))
        cli_die(CLI_USAGE, "--proxy-auth: SOCKS5 takes a user name and a password of 1-255 bytes each");
    if (type == NC_PROXY_HTTP && strlen(a) > 512)
        cli_die(CLI_USAGE, "--proxy-auth: at most 512 bytes for HTTP");
}

/* listen --proxy-type http|socks5 [--proxy-auth USER:PASS]: a proxy server. */
static void check_server(const nc_opts *o)
{
    if (o->proxy || o->proxy_dns)
        cli_die(CLI_USAGE, "listen: --proxy and --proxy-dns are connect options");
    if (!o->proxy_type) {
        if (o->proxy_auth) cli_die(CLI_USAGE, "listen: --proxy-auth goes with --proxy-type");
        return;
    }
    if (o->proxy_type != NC_PROXY_HTTP && o->proxy_type != NC_PROXY_SOCKS5)
        cli_die(CLI_USAGE, "listen --proxy-type: csock serves http and socks5 only");
    if (o->udp || o->unixsock || o->exec_argv || o->broker || o->ssl || o->tls.given ||
        o->send_only || o->recv_only || o->crlf || o->hexdump || o->output_path)
        cli_die(CLI_USAGE, "listen --proxy-type: a proxy takes no -u, -U, -e, -c, --broker, "
                           "--chat, TLS, -C, -o, -x, --send-only or --recv-only");
    if (o->proxy_auth && strpbrk(o->proxy_auth, "\r\n"))
        cli_die(CLI_USAGE, "--proxy-auth: no line breaks");
    check_auth(o, o->proxy_type);
}

void nc_proxy_check(const nc_opts *o, const char *target)
{
    const char *cmd = o->listen ? "listen" : "connect";
    if (o->listen) return check_server(o);
    if (!o->proxy) {
        if (o->proxy_type || o->proxy_auth || o->proxy_dns)
            cli_die(CLI_USAGE, "%s: --proxy-type, --proxy-auth and --proxy-dns go with --proxy", cmd);
        return;
    }
    if (o->udp || o->unixsock)
        cli_die(CLI_USAGE, "connect: --proxy tunnels TCP: no -u/--udp or -U/--unixsock");
    if (o->zero_io) cli_die(CLI_USAGE, "connect: --proxy does not go with -z");
    if (strncasecmp(target, "tcp://", 6) && strncasecmp(target, "tls://", 6))
        cli_die(CLI_USAGE, "connect: --proxy tunnels TCP and TLS: %s is neither tcp:// nor tls://",
                target);
    int type = proxy_type(o), dns = proxy_dns(o);
    if (type == NC_PROXY_SOCKS4 && (dns == NC_PROXY_DNS_REMOTE || dns == NC_PROXY_DNS_BOTH))
        cli_die(CLI_USAGE, "--proxy-dns %s: SOCKS4 cannot pass a name to the proxy (socks4a can)",
                dns == NC_PROXY_DNS_REMOTE ? "remote" : "both");
    if (o->proxy_auth && strpbrk(o->proxy_auth, "\r\n"))
        cli_die(CLI_USAGE, "--proxy-auth: no line breaks");
    check_auth(o, type);
}

/* --proxy HOST[:PORT] (a bare IPv6 address takes the default port too). */
static void proxy_addr(const nc_opts *o, csock_addr *a, char *name, size_t size)
{
    const char *p = o->proxy;
    int type = proxy_type(o), port = type == NC_PROXY_HTTP ? 3128 : 1080;
    const char *last = strrchr(p, ':');
    int bare_v6 = last && strchr(p, ':') != last && p[0] != '[';
    char text[NC_TARGET_TEXT];
    if (bare_v6)
        snprintf(text, sizeof text, "tcp://[%s]:%d", p, port);
    else if (!last || (p[0] == '[' && last < strchr(p, ']')))
        snprintf(text, sizeof text, "tcp://%s:%d", p, port);
    else
        snprintf(text, sizeof text, "tcp://%s", p);
    cli_addr(text, o->family, a);
    if (csock_addr_port(a) == 0) cli_die(CLI_USAGE, "--proxy %s: port 0 is no proxy's port", p);
    snprintf(name, size, "%s proxy %.100s", type_names[type], text + 6);
}

/* ---- requests ------------------------------------------------------------- */

size_t nc_base64(const unsigned char *in, size_t n, char *out)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t k = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (i + 1 < n ? in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        out[k++] = abc[v >> 18];
        out[k++] = abc[(v >> 12) & 63];
        out[k++] = i + 1 < n ? abc[(v >> 6) & 63] : '=';
        out[k++] = i + 2 < n ? abc[v & 63] : '=';
    }
    out[k] = '\0';
    return k;
}

/* HOST:PORT for CONNECT and Host: an IPv6 address in brackets. */
static void authority(const tunnel *t, char *out, size_t size)
{
    char ip[INET6_ADDRSTRLEN];
    const char *h = t->family ? inet_ntop(t->family, t->ip, ip, sizeof ip) : t->host;
    int v6 = t->family == AF_INET6;
    snprintf(out, size, "%s%s%s:%d", v6 ? "[" : "", h, v6 ? "]" : "", t->port);
}

static size_t http_request(const tunnel *t, char *out)
{
    char auth[HTTP_HEAD_MAX / 16] = "", where[300];
    const char *a = t->c->o->proxy_auth;
    authority(t, where, sizeof where);
    if (a) {
        char b64[4 * 512 / 3 + 8];
        nc_base64((const unsigned char *)a, strlen(a), b64);
        snprintf(auth, sizeof auth, "Proxy-Authorization: Basic %s\r\n", b64);
    }
    return (size_t)snprintf(out, REQ_MAX, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", where, where,
                            auth);
}

/* SOCKS4 (and 4a: the address 0.0.0.1 and the name after the user id). */
static size_t socks4_request(const tunnel *t, unsigned char *out)
{
    const char *a = t->c->o->proxy_auth ? t->c->o->proxy_auth : "";
    size_t ulen = strcspn(a, ":"), n = 0; /* the user id; a password has no place here */
    if (ulen > 255) ulen = 255;
    out[n++] = 4, out[n++] = 1;
    out[n++] = (unsigned char)(t->port >> 8), out[n++] = (unsigned char)t->port;
    if (t->family) {
        memcpy(out + n, t->ip, 4);
    } else {
        static const unsigned char socks4a[4] = {0, 0, 0, 1};
        memcpy(out + n, socks4a, 4);
    }
    n += 4;
    memcpy(out + n, a, ulen);
    n += ulen;
    out[n++] = 0;
    if (!t->family) {
        size_t hlen = strlen(t->host);
        memcpy(out + n, t->host, hlen + 1);
        n += hlen + 1;
    }
    return n;
}

static size_t socks5_greeting(const tunnel *t, unsigned char *out)
{
    out[0] = 5;
    if (!t->c->o->proxy_auth) return out[1] = 1, out[2] = 0, 3; /* no authentication */
    return out[1] = 2, out[2] = 0, out[3] = 2, 4;              /* none, or user/password */
}

static size_t socks5_auth(const tunnel *t, unsigned char *out)
{
    const char *a = t->c->o->proxy_auth, *colon = strchr(a, ':');
    size_t ulen = (size_t)(colon - a), plen = strlen(colon + 1), n = 0;
    out[n++] = 1;
    out[n++] = (unsigned char)ulen;
    memcpy(out + n, a, ulen);
    n += ulen;
    out[n++] = (unsigned char)plen;
    memcpy(out + n, colon + 1, plen);
    return n + plen;
}

static size_t socks5_connect(const tunnel *t, unsigned char *out)
{
    size_t n = 0;
    out[n++] = 5, out[n++] = 1, out[n++] = 0;
    if (t->family == AF_INET) {
        out[n++] = 1;
        memcpy(out + n, t->ip, 4);
        n += 4;
    } else if (t->family == AF_INET6) {
        out[n++] = 4;
        memcpy(out + n, t->ip, 16);
        n += 16;
    } else {
        size_t hlen = strlen(t->host);
        out[n++] = 3;
        out[n++] = (unsigned char)hlen;
        memcpy(out + n, t->host, hlen);
        n += hlen;
    }
    out[n++] = (unsigned char)(t->port >> 8), out[n++] = (unsigned char)t->port;
    return n;
}

/* ---- the negotiation -------------------------------------------------------- */

static void on_timer_closed(csock_timer *tm)
{
    free(csock_timer_data(tm));
}

/* The stream closed before the tunnel was up (a failure, the end of the session). */
static void on_tunnel_closed(csock_stream *s)
{
    tunnel *t = csock_stream_data(s);
    if (t->c->connecting == s) t->c->connecting = NULL;
    t->s = NULL;
    csock_timer_close(t->timer, on_timer_closed);
}

static void fail(tunnel *t, const char *fmt, const char *why)
{
    char target[NC_TARGET_TEXT];
    nc_target_text(t->c->o, 0, target, sizeof target);
    char line[CLI_REASON_TEXT + STATUS_SHOWN];
    snprintf(line, sizeof line, fmt, why);
    cli_warn("connect %s via %s: %s", target, t->proxy_name, line);
    nc_finish(t->c, CLI_ERR);
    if (t->s) csock_stream_close(t->s, NULL); /* on_tunnel_closed follows */
}

static void on_tunnel_timeout(csock_timer *tm)
{
    fail(csock_timer_data(tm), "%s", "timed out negotiating the tunnel (-w)");
}

static void send_bytes(tunnel *t, const void *buf, size_t len)
{
    int rc = csock_stream_write(t->s, buf, len);
    if (rc < 0) fail(t, "%s", csock_strerror(rc));
}

/* The tunnel is up: the stream goes to the session (through TLS for tls://). */
static void tunnel_up(tunnel *t)
{
    csock_stream *s = t->s;
    nc_ctx *c = t->c;
    if (c->o->verbose) cli_warn("%s: tunnel to %s:%d open", t->proxy_name, t->host, t->port);
    csock_stream_read_stop(s);
    csock_stream_on_close(s, NULL);
    csock_stream_set_data(s, c);
    t->s = NULL;
    csock_timer_close(t->timer, on_timer_closed);
    if (!t->tls) return t->ready(s, 0);
    int rc = csock_tls_wrap(s, c->tls, t->host, t->ready);
    if (rc < 0) {
        cli_warn("connect %s: TLS: %s", t->host, csock_strerror(rc));
        nc_finish(c, CLI_ERR);
        c->connecting = NULL;
        csock_stream_close(s, NULL);
    }
}

static const char *socks5_reason(int rep)
{
    static const char *const why[] = {
        "succeeded", "general SOCKS server failure", "connection not allowed by ruleset",
        "network unreachable", "host unreachable", "connection refused", "TTL expired",
        "command not supported", "address type not supported",
    };
    return rep < (int)(sizeof why / sizeof why[0]) ? why[rep] : "an unknown reply code";
}

static size_t s5_method(tunnel *t, const unsigned char *b, size_t len)
{
    if (len < 2) return 0;
    unsigned char req[600];
    if (b[0] != 5) return fail(t, "%s", "not a SOCKS5 proxy (a wrong version in its answer)"), len;
    if (b[1] == 0xFF || (b[1] == 2 && !t->c->o->proxy_auth))
        return fail(t, "%s", t->c->o->proxy_auth
                                 ? "no acceptable authentication method"
                                 : "no acceptable authentication method (the proxy wants a user "
                                   "name and password: give --proxy-auth USER:PASS)"), len;
    if (b[1] == 2) {
        t->state = ST_S5_AUTH;
        send_bytes(t, req, socks5_auth(t, req));
    } else if (b[1] == 0) {
        t->state = ST_S5_REPLY;
        send_bytes(t, req, socks5_connect(t, req));
    } else {
        fail(t, "%s", "the proxy chose an authentication method csock does not speak");
    }
    return 2;
}

static size_t s5_auth(tunnel *t, const unsigned char *b, size_t len)
{
    if (len < 2) return 0;
    if (b[1] != 0) return fail(t, "%s", "username/password authentication refused"), len;
    unsigned char req[300];
    t->state = ST_S5_REPLY;
    send_bytes(t, req, socks5_connect(t, req));
    return 2;
}

static size_t s5_reply(tunnel *t, const unsigned char *b, size_t len)
{
    if (len < 5) return 0;
    if (b[0] != 5) return fail(t, "%s", "not a SOCKS5 proxy (a wrong version in its answer)"), len;
    if (b[1] != 0) {
        char why[80];
        snprintf(why, sizeof why, "%s (SOCKS5 reply %d)", socks5_reason(b[1]), b[1]);
        return fail(t, "%s", why), len;
    }
    size_t need = b[3] == 1 ? 10 : b[3] == 4 ? 22 : b[3] == 3 ? 7u + b[4] : 0;
    if (!need) return fail(t, "%s", "a SOCKS5 reply with an unknown address type"), len;
    if (len < need) return 0;
    tunnel_up(t);
    return need;
}

static size_t s4_reply(tunnel *t, const unsigned char *b, size_t len)
{
    if (len < 8) return 0;
    static const char *const why[] = {
        "request rejected or failed (SOCKS4 reply 91)",
        "request rejected: the proxy cannot reach our identd (SOCKS4 reply 92)",
        "request rejected: identd reports another user id (SOCKS4 reply 93)",
    };
    if (b[1] == 90) return tunnel_up(t), 8;
    if (b[1] >= 91 && b[1] <= 93) return fail(t, "%s", why[b[1] - 91]), len;
    char msg[64];
    snprintf(msg, sizeof msg, "an unknown SOCKS4 reply %d", b[1]);
    return fail(t, "%s", msg), len;
}

/* The realm of a Proxy-Authenticate field in the header `h`, into out ("" if none). */
static void find_realm(const char *h, size_t len, char *out, size_t size)
{
    static const char field[] = "\nproxy-authenticate:";
    out[0] = '\0';
    for (size_t i = 0; i + sizeof field < len; i++) {
        if (strncasecmp(h + i, field, sizeof field - 1)) continue;
        const char *end = memchr(h + i + 1, '\n', len - i - 1), *r;
        for (r = h + i + sizeof field - 1; r + 7 < end; r++)
            if (!strncasecmp(r, "realm=\"", 7)) break;
        if (!end || r + 7 >= end) return;
        const char *q = memchr(r + 7, '"', (size_t)(end - r - 7));
        if (q) snprintf(out, size, "%.*s", (int)(q - r - 7), r + 7);
        return;
    }
}

/* The status line, printable characters only, cut to STATUS_SHOWN. */
static void status_line(const char *h, size_t len, char *out, size_t size)
{
    size_t n = 0;
    for (; n < len && n + 1 < size && h[n] != '\r' && h[n] != '\n'; n++)
        out[n] = isprint((unsigned char)h[n]) ? h[n] : '?';
    out[n] = '\0';
}

static size_t http_reply(tunnel *t, const char *b, size_t len)
{
    const char *end = NULL;
    for (size_t i = 0; i + 4 <= len && !end; i++)
        if (!memcmp(b + i, "\r\n\r\n", 4)) end = b + i + 4;
    if (!end) {
        if (len > HTTP_HEAD_MAX) fail(t, "%s", "its answer's header is over 16 KiB");
        return len > HTTP_HEAD_MAX ? len : 0;
    }
    size_t hlen = (size_t)(end - b);
    char line[STATUS_SHOWN], realm[100], msg[STATUS_SHOWN + 200];
    status_line(b, hlen, line, sizeof line);
    if (strncmp(b, "HTTP/1.", 7) || hlen < 12 || b[8] != ' ' || !isdigit((unsigned char)b[9]))
        return fail(t, "not an HTTP proxy (it answered \"%s\")", line), len;
    if (b[9] == '2') return tunnel_up(t), hlen;
    find_realm(b, hlen, realm, sizeof realm);
    snprintf(msg, sizeof msg, "%s", line);
    if (!strncmp(b + 9, "407", 3)) {
        size_t n = strlen(msg);
        if (realm[0]) snprintf(msg + n, sizeof msg - n, " (realm \"%s\")", realm);
        n = strlen(msg);
        if (!t->c->o->proxy_auth) snprintf(msg + n, sizeof msg - n, ": give --proxy-auth USER:PASS");
    }
    return fail(t, "the proxy refused: %s", msg), len;
}

static size_t on_tunnel_read(csock_stream *s, int status, const char *buf, size_t len)
{
    tunnel *t = csock_stream_data(s);
    if (status < 0 && status != CSOCK_EOF) return fail(t, "%s", csock_strerror(status)), len;
    size_t used = 0;
    const unsigned char *b = (const unsigned char *)buf;
    switch (t->state) {
    case ST_S5_METHOD:
        used = s5_method(t, b, len);
        break;
    case ST_S5_AUTH:
        used = s5_auth(t, b, len);
        break;
    case ST_S5_REPLY:
        used = s5_reply(t, b, len);
        break;
    case ST_S4_REPLY:
        used = s4_reply(t, b, len);
        break;
    default:
        used = http_reply(t, buf, len);
    }
    /* An answer cut short by the proxy's close (a 0 above, still connected). */
    if (status == CSOCK_EOF && t->s == s && !used)
        fail(t, "%s", "the proxy closed the connection during the negotiation");
    return used;
}

static void on_proxy_connected(csock_stream *s, int status)
{
    tunnel *t = csock_stream_data(s);
    if (status < 0) {
        char what[CLI_REASON_TEXT];
        snprintf(what, sizeof what, "cannot reach the proxy: %s", csock_strerror(status));
        return fail(t, "%s", what); /* csock closes the stream after this */
    }
    unsigned char req[REQ_MAX];
    size_t n;
    switch (proxy_type(t->c->o)) {
    case NC_PROXY_SOCKS5:
        t->state = ST_S5_METHOD;
        n = socks5_greeting(t, req);
        break;
    case NC_PROXY_SOCKS4:
    case NC_PROXY_SOCKS4A:
        t->state = ST_S4_REPLY;
        n = socks4_request(t, req);
        break;
    default:
        t->state = ST_HTTP_REPLY;
        n = http_request(t, (char *)req);
    }
    int rc = csock_stream_read_start(s, on_tunnel_read);
    if (rc == 0) send_bytes(t, req, n);
    else fail(t, "%s", csock_strerror(rc));
}

int nc_proxy_connect(nc_ctx *c, const char *target, csock_stream_cb ready)
{
    const nc_opts *o = c->o;
    tunnel *t = calloc(1, sizeof *t);
    if (!t) return -ENOMEM;
    *t = (tunnel){.c = c, .ready = ready, .tls = !strncasecmp(target, "tls://", 6)};
    split_target(target, t);
    resolve_target(o, t);
    if (proxy_type(o) == NC_PROXY_SOCKS4 && t->family != AF_INET)
        cli_die(CLI_USAGE, "connect: SOCKS4 carries IPv4 addresses only (%s); use socks4a or socks5",
                t->host);
    if (proxy_type(o) == NC_PROXY_SOCKS4A && t->family == AF_INET6) /* its 4 bytes would be garbage */
        cli_die(CLI_USAGE, "connect: SOCKS4a carries IPv4 addresses and names only (%s); use socks5",
                t->host);
    csock_addr pa;
    proxy_addr(o, &pa, t->proxy_name, sizeof t->proxy_name);
    int rc = csock_timer_new(c->loop, &t->timer);
    if (rc < 0) return free(t), rc;
    csock_timer_set_data(t->timer, t);
    csock_connect_opts co = {.timeout_ms = o->wait_ms};
    rc = csock_connect(c->loop, &pa, &co, on_proxy_connected, t, &t->s);
    if (rc < 0) {
        csock_timer_close(t->timer, on_timer_closed);
        return rc;
    }
    csock_stream_on_close(t->s, on_tunnel_closed);
    c->connecting = t->s;
    if (o->wait_ms) csock_timer_start(t->timer, on_tunnel_timeout, o->wait_ms, 0);
    return 0;
}
