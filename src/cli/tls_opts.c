/* TLS options shared by connect, listen and serve: parse them, build the
 * TLS context, and say why TLS failed in one line. */
#include <getopt.h>
#include <string.h>

#include "cli/cli.h"

const char cli_tls_usage[] =
    "\n"
    "TLS (tls://HOST:PORT):\n"
    "  --cert FILE         PEM certificate chain (server: required; client: a\n"
    "                      client certificate)\n"
    "  --key FILE          PEM private key for --cert (default: in --cert)\n"
    "  --ca FILE           PEM CAs to verify the peer with (client default: the\n"
    "                      system CAs; server: with --verify-client)\n"
    "  --insecure          client: do not verify the server (says so on stderr)\n"
    "  --alpn LIST         comma-separated ALPN protocols (e.g. h2,http/1.1)\n"
    "  --verify-client     server: require a client certificate signed by --ca\n"
    "  --handshake-timeout SECS  give up a handshake after SECS (default 10)\n";

static const char *option_name(int c)
{
    static const struct option opts[] = {CLI_TLS_LONGOPTS};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        if (opts[i].val == c) return opts[i].name;
    return "tls"; /* not reached: every TLS option is in the table */
}

int cli_tls_option(cli_tls *t, int c, const char *arg)
{
    switch (c) {
    case CLI_TLS_CERT: t->cert = arg; break;
    case CLI_TLS_KEY: t->key = arg; break;
    case CLI_TLS_CA: t->ca = arg; break;
    case CLI_TLS_INSECURE: t->insecure = 1; break;
    case CLI_TLS_ALPN: t->alpn = arg; break;
    case CLI_TLS_VERIFY_CLIENT: t->verify_client = 1; break;
    case CLI_TLS_HS_TIMEOUT:
        t->handshake_timeout_ms = cli_seconds("--handshake-timeout", arg);
        if (!t->handshake_timeout_ms) t->handshake_timeout_ms = 1; /* 0 would mean default */
        break;
    default: return 0;
    }
    if (!t->given) t->first = option_name(c);
    t->given = 1;
    return 1;
}

static csock_tls_ctx *make_ctx(const cli_tls *t, int server)
{
    csock_tls_opts o = {
        .server = server,
        .cert_file = t->cert,
        .key_file = t->key,
        .ca_file = t->ca,
        .alpn = t->alpn,
        .insecure = t->insecure,
        .verify_client = t->verify_client,
        .handshake_timeout_ms = t->handshake_timeout_ms,
    };
    csock_tls_ctx *ctx;
    char err[CLI_REASON_TEXT];
    int rc = csock_tls_ctx_new(&o, &ctx, err, sizeof err);
    if (rc == -EINVAL) cli_die(CLI_USAGE, "tls: %s", err);
    if (rc < 0) cli_die(CLI_ERR, "tls: %s", err);
    return ctx;
}

csock_tls_ctx *cli_tls_server_ctx(const cli_tls *t)
{
    if (!t->cert) cli_die(CLI_USAGE, "tls:// needs --cert FILE (and --key FILE unless the key is in it) to serve");
    if (t->verify_client && !t->ca) cli_die(CLI_USAGE, "--verify-client needs --ca FILE");
    return make_ctx(t, 1);
}

csock_tls_ctx *cli_tls_client_ctx(const cli_tls *t)
{
    if (t->key && !t->cert) cli_die(CLI_USAGE, "--key needs --cert");
    if (t->insecure)
        cli_warn("warning: --insecure: the server's certificate and name are NOT verified");
    return make_ctx(t, 0);
}

const char *cli_tls_reason(const csock_stream *s, int status, char *buf, size_t size)
{
    if (s && csock_tls_last_error(s, buf, size) > 0) return buf;
    snprintf(buf, size, "%s", csock_strerror(status));
    return buf;
}
