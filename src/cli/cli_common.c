/* What the serving commands (serve, serve http, listen) share: the
 * `listening ADDR` line and the accept callback, with the TLS handshake of
 * tls:// endpoints and the -v lines about accepting. */
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

void cli_on_accept(csock_listener *l, csock_stream *s, int status)
{
    const cli_acceptor *a = csock_listener_data(l);
    if (status < 0) {
        /* Out of descriptors and the like: the listener goes on. */
        if (a->verbose) cli_warn("accept: %s", csock_strerror(status));
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
    /* A port is there when a ':' follows the host (after ']' for [IPv6]);
     * without one, the URL's default (80, 443 for wss). */
    const char *rb = hl && host[0] == '[' ? memchr(host, ']', hl) : NULL;
    int has_port = rb ? rb + 1 < host + hl && rb[1] == ':' : memchr(host, ':', hl) != NULL;
    char sock[CSOCK_ADDR_STRLEN + 16];
    if (hl + 12 >= sizeof sock) cli_die(CLI_USAGE, "bad address '%s': host too long", text);
    snprintf(sock, sizeof sock, "%s://%.*s%s", tls ? "tls" : "tcp", (int)hl, host,
             has_port ? "" : tls ? ":443" : ":80");
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
