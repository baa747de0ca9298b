/* What the serving commands (serve, serve http, listen) share: the
 * `listening ADDR` line and the accept callback, with the TLS handshake of
 * tls:// endpoints and the -v lines about accepting. */
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "cli/cli.h"

void cli_print_listening(FILE *f, const csock_addr *a)
{
    char text[CLI_ADDR_TEXT];
    csock_addr_format(a, text, sizeof text);
    /* Tests and scripts wait for this exact line to learn the port. */
    fprintf(f, "listening %s\n", text);
    fflush(f);
}

void cli_addr_unmap(csock_addr *a)
{
    if (a->sa.ss_family != AF_INET6) return;
    struct sockaddr_in6 s6 = *(const struct sockaddr_in6 *)&a->sa;
    if (!IN6_IS_ADDR_V4MAPPED(&s6.sin6_addr)) return;
    struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = s6.sin6_port};
    memcpy(&s4.sin_addr, s6.sin6_addr.s6_addr + 12, 4);
    memset(&a->sa, 0, sizeof a->sa);
    memcpy(&a->sa, &s4, sizeof s4);
    a->len = sizeof s4;
}

int cli_addr_name(const csock_addr *a, char *buf, size_t size)
{
    csock_addr plain = *a;
    cli_addr_unmap(&plain);
    return csock_addr_format(&plain, buf, size);
}

const char *cli_peer_text(const csock_stream *s, char *buf, size_t size)
{
    csock_addr a;
    if (csock_stream_peer(s, &a) < 0 || cli_addr_name(&a, buf, size) <= 0)
        snprintf(buf, size, "?");
    return buf;
}

const char *cli_counts_text(const csock_stream *s, char *buf, size_t size)
{
    uint64_t in = 0, out = 0;
    csock_stream_counts(s, &in, &out);
    snprintf(buf, size, "%llu bytes in, %llu out", (unsigned long long)in,
             (unsigned long long)out);
    return buf;
}

void cli_log_handshake(const csock_stream *s, int status, const char *peer)
{
    char why[CLI_REASON_TEXT];
    cli_warn("TLS handshake with %s failed: %s", peer,
             cli_tls_reason(s, status, why, sizeof why));
}

void cli_log_accept_error(int status)
{
    if (status == -EPROTO || status == -EMSGSIZE)
        cli_warn("dropped a connection: bad PROXY protocol header");
    else if (status == -ETIMEDOUT)
        cli_warn("dropped a connection: no PROXY protocol header in time");
    else
        cli_warn("accept: %s", csock_strerror(status));
}

void cli_on_accept(csock_listener *l, csock_stream *s, int status)
{
    const cli_acceptor *a = csock_listener_data(l);
    if (status < 0) {
        /* Out of descriptors and the like: the listener goes on. */
        if (a->verbose) cli_log_accept_error(status);
        return;
    }
    if (a->accepted && a->accepted(a, s) < 0) return; /* turned away (and closed) */
    if (!a->tls) return a->ready(s, 0);
    /* A failed or stalled handshake costs only this connection: csock
     * closes it after a->ready has seen the failure. */
    int rc = csock_tls_accept(s, a->tls, a->ready);
    if (rc < 0) { /* out of memory: this connection only */
        if (a->verbose) cli_warn("TLS: %s", csock_strerror(rc));
        csock_stream_close(s, NULL);
    }
}

int cli_ws_scheme(const char *text)
{
    if (!strncasecmp(text, "ws://", 5)) return 1;
    if (!strncasecmp(text, "wss://", 6)) return 2;
    return 0;
}

int cli_ws_dial_text(const char *url, char *buf, size_t size)
{
    int tls = cli_ws_scheme(url) == 2;
    if (!cli_ws_scheme(url)) return -EINVAL;
    const char *host = url + (tls ? 6 : 5);
    size_t hl = strcspn(host, "/?#");
    /* A port is there when a ':' follows the host (after ']' for [IPv6]);
     * without one, the URL's default (80, 443 for wss). */
    const char *rb = hl && host[0] == '[' ? memchr(host, ']', hl) : NULL;
    int has_port = rb ? rb + 1 < host + hl && rb[1] == ':' : memchr(host, ':', hl) != NULL;
    if (hl + 12 >= size) return -EINVAL;
    snprintf(buf, size, "%s://%.*s%s", tls ? "tls" : "tcp", (int)hl, host, has_port ? "" : tls ? ":443" : ":80");
    return 0;
}

void cli_http_answer(csock_http_req *r, int status, const char *name, const char *value)
{
    char body[64];
    int n = snprintf(body, sizeof body, "%d %s\n", status, csock_http_reason(status));
    csock_http_add_header(r, "Content-Type", "text/plain; charset=utf-8");
    if (name) csock_http_add_header(r, name, value);
    csock_http_send(r, status, body, (size_t)n);
}

size_t cli_utf8_char(const unsigned char *s, size_t n)
{
    unsigned char b = s[0];
    size_t k;
    uint32_t cp, min;
    if (b < 0x80) return 1;
    if ((b & 0xe0) == 0xc0) k = 1, cp = b & 0x1fu, min = 0x80;
    else if ((b & 0xf0) == 0xe0) k = 2, cp = b & 0x0fu, min = 0x800;
    else if ((b & 0xf8) == 0xf0) k = 3, cp = b & 0x07u, min = 0x10000;
    else return 0;
    if (n <= k) return 0;
    for (size_t j = 1; j <= k; j++) {
        if ((s[j] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (s[j] & 0x3fu);
    }
    /* Shortest forms only, no surrogates, up to U+10FFFF (RFC 3629). */
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return k + 1;
}

const char *cli_ws_failure(const csock_ws_event *ev, char *buf, size_t size)
{
    if (!ev->http_status) return csock_strerror(ev->status);
    /* The status line's code and reason, e.g. "403 Forbidden". */
    const char *line = ev->buf, *end = memchr(ev->buf, '\r', ev->len);
    size_t n = end ? (size_t)(end - line) : ev->len;
    const char *sp = memchr(line, ' ', n);
    if (sp) {
        n -= (size_t)(sp + 1 - line);
        line = sp + 1;
    }
    snprintf(buf, size, "refused: %.*s", (int)n, line);
    for (char *c = buf; *c; c++)
        if ((unsigned char)*c < ' ' || *c == 0x7f) *c = '?'; /* the server's bytes, on a terminal */
    return buf;
}

void cli_ws_listen_addr(const char *text, int flags, csock_addr *addr, char path[CLI_WS_PATH])
{
    int tls = cli_ws_scheme(text) == 2;
    const char *host = text + (tls ? 6 : 5);
    size_t hl = strcspn(host, "/?#");
    const char *p = host + hl;
    if (*p && *p != '/')
        cli_die(CLI_USAGE, "bad address '%s': a ws:// address is ws://HOST:PORT/PATH", text);
    for (const unsigned char *t = (const unsigned char *)p; *t; t++)
        if (*t <= ' ' || *t == 0x7f || *t == '?' || *t == '#')
            cli_die(CLI_USAGE, "bad address '%s': the path may have no query, fragment, "
                    "spaces or control characters", text);
    if (strlen(p) >= CLI_WS_PATH)
        cli_die(CLI_USAGE, "bad address '%s': path longer than %d bytes", text, CLI_WS_PATH - 1);
    snprintf(path, CLI_WS_PATH, "%s", *p ? p : "/");
    char sock[CSOCK_ADDR_STRLEN + 16];
    if (cli_ws_dial_text(text, sock, sizeof sock) < 0) cli_die(CLI_USAGE, "bad address '%s': host too long", text);
    int rc = csock_addr_parse(sock, flags, addr);
    if (rc == CSOCK_EBADADDR || rc == CSOCK_ENOPORT || rc == CSOCK_EBADPORT || rc == CSOCK_EBRACKETS)
        cli_die(CLI_USAGE, "bad address '%s': %s; expected ws://HOST[:PORT][/PATH] or wss://...",
                text, csock_strerror(rc));
    if (rc < 0) cli_die(CLI_ERR, "address '%s': %s", text, csock_strerror(rc));
}

void cli_print_ws_listening(FILE *f, const csock_addr *bound, int tls, const char *path)
{
    char text[CLI_ADDR_TEXT];
    csock_addr_format(bound, text, sizeof text);
    const char *rest = strstr(text, "://");
    fprintf(f, "listening %s://%s%s\n", tls ? "wss" : "ws", rest ? rest + 3 : text, path);
    fflush(f);
}

/* ---- behind balancers and systemd ------------------------------------------- */

const char cli_deploy_usage[] =
    "\n"
    "Behind a balancer, under systemd:\n"
    "  --proxy-protocol    every connection starts with a PROXY protocol header\n"
    "                      (v1 or v2, as HAProxy's send-proxy / send-proxy-v2\n"
    "                      send it): the client it names is the peer that logs,\n"
    "                      limits and services see. A connection without a valid\n"
    "                      header is closed\n"
    "  --proxy-timeout SECS  the header must arrive within SECS (default 3)\n"
    "  ADDR may also be fd:N (a listening socket inherited as descriptor N) or\n"
    "  systemd:NAME (the sockets systemd passed with FileDescriptorName=NAME:\n"
    "  LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES), tls+ before either for TLS.\n"
    "  With $NOTIFY_SOCKET set, systemd hears READY=1 once listening; from\n"
    "  serve and proxy also WATCHDOG=1 every half $WATCHDOG_USEC and\n"
    "  STOPPING=1 when draining.\n";

/* Beyond an hour a header is not slow, it is not coming. */
#define MAX_PROXY_TIMEOUT_MS 3600000u

int cli_deploy_option(csock_listen_opts *lo, int c, const char *arg)
{
    switch (c) {
    case CLI_PROXY_PROTOCOL: lo->proxy_protocol = 1; return 1;
    case CLI_PROXY_TIMEOUT: {
        uint64_t ms = cli_seconds("--proxy-timeout", arg);
        if (ms == 0 || ms > MAX_PROXY_TIMEOUT_MS)
            cli_die(CLI_USAGE, "--proxy-timeout: '%s' is not between 1 ms and 1 hour", arg);
        lo->proxy_timeout_ms = (unsigned)ms;
        return 1;
    }
    default: return 0;
    }
}

unsigned cli_server_listen(csock_server *srv, const char *text, const csock_listen_opts *lo,
                           cli_acceptor *plain, cli_acceptor *tls)
{
    int fds[CLI_MAX_ENDPOINTS], is_tls = 0, rc = 0;
    int n = cli_inherited_fds(text, fds, CLI_MAX_ENDPOINTS, &is_tls);
    unsigned first = 0;
    while (csock_server_addr(srv, first, &(csock_addr){0}) == 0) first++;
    if (n == 0) {
        csock_addr a;
        cli_addr(text, CSOCK_ADDR_PASSIVE, &a);
        rc = csock_server_listen_opts(srv, &a, lo, cli_on_accept, a.scheme == CSOCK_TLS ? tls : plain);
        if (rc < 0) cli_die(CLI_ERR, "listen %s: %s", text, csock_strerror(rc));
        n = 1;
    } else {
        for (int i = 0; i < n; i++) {
            rc = csock_server_listen_fd(srv, fds[i], lo, cli_on_accept, is_tls ? tls : plain);
            if (rc < 0) cli_die(CLI_ERR, "listen %s (fd %d): %s", text, fds[i], csock_strerror(rc));
        }
    }
    for (int i = 0; i < n; i++) {
        csock_addr bound;
        csock_server_addr(srv, first + (unsigned)i, &bound);
        if (is_tls && bound.scheme == CSOCK_TCP) bound.scheme = CSOCK_TLS;
        cli_print_listening(stdout, &bound);
    }
    return (unsigned)n;
}

/* -v: which backend the loop got (CSOCK_BACKEND=auto, the default, picks
 * io_uring where the kernel allows it and falls back to epoll silently). */
void cli_say_backend(const csock_loop *loop)
{
    cli_warn("event loop: %s", csock_loop_backend(loop));
}
