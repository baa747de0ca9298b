/* The netcat relay shared by `csock connect` and `csock listen`.
 *
 * Data has three kinds of sources and sinks: standard input/output, the
 * peers (streams, or addresses on one datagram socket) and, with -e/-c, one
 * child process per peer. Who feeds whom:
 *
 *   normal   stdin -> every peer;  every peer -> stdout
 *   broker   stdin -> every peer;  a peer -> every other peer (not stdout, as ncat)
 *   chat     broker, each chunk tagged "<userN> " and control bytes escaped
 *   exec     peer -> its child's stdin;  its child's stdout -> that peer
 *
 * Flow control: a sink whose write queue passes HIGH_WATER is "congested";
 * while any peer is congested stdin is not read (and in broker mode no peer
 * is read), and while stdout is congested no peer is read. Sources resume
 * when the sinks drain. Exec pairs are throttled pairwise. Memory stays
 * bounded and no byte is dropped on streams.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/netcat.h"

#define HIGH_WATER (256u * 1024) /* a sink over this stops its sources */
#define MAX_DGRAM 65507          /* the largest UDP payload */

extern char **environ;

struct nc_peer {
    nc_ctx *c;
    nc_peer *prev, *next;
    unsigned id;       /* chat: <userN> */
    char name[300];    /* tcp://127.0.0.1:5555, for -v and -x */
    char host[300];    /* chat announce: the host alone, as ncat writes it */
    csock_stream *s;   /* a stream peer, or NULL */
    csock_addr addr;   /* a datagram peer's address */
    int has_addr;      /* 0: the connected datagram peer */
    csock_timer *idle; /* datagram peers with -i */
    uint64_t last_io;
    csock_stream *child_in;  /* exec: the pipe to the child's stdin */
    csock_stream *child_out; /* exec: the pipe from the child's stdout */
    int congested;           /* counted in c->peers_congested */
    int eof;                 /* the peer has finished sending */
    int gone;                /* taken out of the session (peer_close) */
    int announced;           /* chat: the others were told it joined */
    int lost;                /* a write to it failed: bytes lost (a negative errno) */
};

struct nc_child {
    pid_t pid;
    char name[300]; /* the peer it served, for the -v exit line */
};

static void peer_close(nc_peer *p, int graceful);
static void peer_failed(nc_peer *p, int status);
static void on_peer_stream_closed(csock_stream *s);
static void sync_sources(nc_ctx *c);
static void check_done(nc_ctx *c);

/* ======================================================================
 * Option parsing
 * ====================================================================== */

enum {
    OPT_BROKER = 256,
    OPT_CHAT,
    OPT_SEND_ONLY,
    OPT_RECV_ONLY,
    OPT_ALLOW,
    OPT_DENY,
    OPT_ALLOWFILE,
    OPT_DENYFILE,
    OPT_SSL,
};

static const struct option long_opts[] = {
    {"help", no_argument, NULL, 'h'},
    {"udp", no_argument, NULL, 'u'},
    {"unixsock", no_argument, NULL, 'U'},
    {"keep-open", no_argument, NULL, 'k'},
    {"broker", no_argument, NULL, OPT_BROKER},
    {"chat", no_argument, NULL, OPT_CHAT},
    {"exec", required_argument, NULL, 'e'},
    {"sh-exec", required_argument, NULL, 'c'},
    {"crlf", no_argument, NULL, 'C'},
    {"hex-dump", required_argument, NULL, 'x'},
    {"send-only", no_argument, NULL, OPT_SEND_ONLY},
    {"recv-only", no_argument, NULL, OPT_RECV_ONLY},
    {"wait", required_argument, NULL, 'w'},
    {"idle-timeout", required_argument, NULL, 'i'},
    {"max-conns", required_argument, NULL, 'm'},
    {"allow", required_argument, NULL, OPT_ALLOW},
    {"deny", required_argument, NULL, OPT_DENY},
    {"allowfile", required_argument, NULL, OPT_ALLOWFILE},
    {"denyfile", required_argument, NULL, OPT_DENYFILE},
    {"quit-after", required_argument, NULL, 'q'},
    {"zero-io", no_argument, NULL, 'z'},
    {"verbose", no_argument, NULL, 'v'},
    {"ssl", no_argument, NULL, OPT_SSL},
    CLI_TLS_LONGOPTS,
    {0, 0, 0, 0},
};

/* ---- --allow / --deny: addresses and CIDR ranges ---------------------- */

static void cidr_push(nc_cidr_list *l, const nc_cidr *e)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 8;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
        if (!l->v) cli_die(CLI_ERR, "out of memory");
    }
    l->v[l->n++] = *e;
}

/* Parse "10.0.0.0/8", "::1", "[fe80::]/10" or a host name (every address it
 * resolves to). Dies naming the option on anything else. */
static void cidr_parse(const char *opt, const char *text, nc_cidr_list *l)
{
    char buf[300];
    if (strlen(text) >= sizeof buf) cli_die(CLI_USAGE, "%s: entry too long", opt);
    strcpy(buf, text);
    char *slash = strchr(buf, '/');
    if (slash) *slash++ = '\0';
    char *ip = buf;
    size_t n = strlen(ip);
    if (n >= 2 && ip[0] == '[' && ip[n - 1] == ']') {
        ip[n - 1] = '\0';
        ip++;
    }
    nc_cidr e = {0};
    if (inet_pton(AF_INET, ip, e.ip) == 1) {
        e.family = AF_INET;
        e.bits = 32;
    } else if (inet_pton(AF_INET6, ip, e.ip) == 1) {
        e.family = AF_INET6;
        e.bits = 128;
    } else if (!slash && *ip) {
        /* A name: every address it has, exactly. */
        char t[320];
        csock_addr a[16];
        snprintf(t, sizeof t, "tcp://%s:0", ip);
        int k = csock_addr_resolve(t, 0, a, 16);
        if (k <= 0)
            cli_die(CLI_USAGE, "%s: '%s' is not an address, a CIDR range or a known host", opt,
                    text);
        for (int i = 0; i < k; i++) {
            nc_cidr h = {0};
            if (a[i].sa.ss_family == AF_INET) {
                h.family = AF_INET, h.bits = 32;
                memcpy(h.ip, &((struct sockaddr_in *)&a[i].sa)->sin_addr, 4);
            } else {
                h.family = AF_INET6, h.bits = 128;
                memcpy(h.ip, &((struct sockaddr_in6 *)&a[i].sa)->sin6_addr, 16);
            }
            cidr_push(l, &h);
        }
        return;
    } else {
        cli_die(CLI_USAGE, "%s: '%s' is not an address or a CIDR range", opt, text);
    }
    if (slash) {
        char *end;
        long bits = strtol(slash, &end, 10);
        if (!*slash || *end || !isdigit((unsigned char)*slash) || bits > e.bits)
            cli_die(CLI_USAGE, "%s: bad CIDR '%s': the prefix length must be 0-%d", opt, text,
                    e.bits);
        e.bits = (int)bits;
    }
    cidr_push(l, &e);
}

/* A comma- or space-separated list of entries. */
static void cidr_parse_list(const char *opt, const char *text, nc_cidr_list *l)
{
    char *copy = strdup(text), *save = NULL;
    if (!copy) cli_die(CLI_ERR, "out of memory");
    l->set = 1;
    for (char *tok = strtok_r(copy, ", \t\r\n", &save); tok;
         tok = strtok_r(NULL, ", \t\r\n", &save))
        cidr_parse(opt, tok, l);
    free(copy);
}

/* --allowfile / --denyfile: entries one or more a line; '#' starts a comment. */
static void cidr_parse_file(const char *opt, const char *path, nc_cidr_list *l)
{
    FILE *f = fopen(path, "r");
    if (!f) cli_die(CLI_USAGE, "%s: cannot open '%s': %s", opt, path, strerror(errno));
    char line[1024];
    l->set = 1;
    while (fgets(line, sizeof line, f)) {
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        cidr_parse_list(opt, line, l);
    }
    fclose(f);
}

/* The bytes to match of an IP address; IPv4-mapped IPv6 counts as IPv4. */
static int addr_bytes(const csock_addr *a, unsigned char out[16])
{
    if (a->sa.ss_family == AF_INET) {
        memcpy(out, &((const struct sockaddr_in *)&a->sa)->sin_addr, 4);
        return AF_INET;
    }
    if (a->sa.ss_family != AF_INET6) return 0;
    const struct in6_addr *in6 = &((const struct sockaddr_in6 *)&a->sa)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(in6)) {
        memcpy(out, in6->s6_addr + 12, 4);
        return AF_INET;
    }
    memcpy(out, in6->s6_addr, 16);
    return AF_INET6;
}

static int cidr_match(const nc_cidr_list *l, int family, const unsigned char *ip)
{
    for (size_t i = 0; i < l->n; i++) {
        const nc_cidr *e = &l->v[i];
        if (e->family != family) continue;
        int full = e->bits / 8, rest = e->bits % 8;
        if (memcmp(e->ip, ip, (size_t)full)) continue;
        if (rest && ((e->ip[full] ^ ip[full]) & (0xff << (8 - rest)))) continue;
        return 1;
    }
    return 0;
}

int nc_acl_permits(const nc_opts *o, const csock_addr *a)
{
    unsigned char ip[16];
    int family = addr_bytes(a, ip);
    if (!family) return 1; /* Unix peers have no address to judge */
    if (o->deny.set && cidr_match(&o->deny, family, ip)) return 0;
    if (o->allow.set && !cidr_match(&o->allow, family, ip)) return 0;
    return 1;
}

/* ---- -e / -c ------------------------------------------------------------ */

static int is_executable(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* Find PROG as execvp would, so a typo fails at start-up, not per connection. */
static int program_exists(const char *prog)
{
    if (strchr(prog, '/')) return is_executable(prog);
    const char *path = getenv("PATH");
    if (!path) path = "/usr/local/bin:/usr/bin:/bin";
    char buf[4096];
    for (const char *p = path; *p;) {
        const char *colon = strchrnul(p, ':');
        int n = (int)(colon - p);
        snprintf(buf, sizeof buf, "%.*s/%s", n ? n : 1, n ? p : ".", prog);
        if (is_executable(buf)) return 1;
        p = *colon ? colon + 1 : colon;
    }
    return 0;
}

/* -e PROG ARGS: split on blanks, no shell (as ncat does). */
static char **split_words(const char *text)
{
    size_t cap = strlen(text) / 2 + 2, n = 0;
    char **argv = calloc(cap, sizeof *argv);
    char *copy = strdup(text), *save = NULL;
    if (!argv || !copy) cli_die(CLI_ERR, "out of memory");
    for (char *w = strtok_r(copy, " \t", &save); w; w = strtok_r(NULL, " \t", &save))
        argv[n++] = w;
    argv[n] = NULL;
    return argv;
}

static void set_exec(nc_opts *o, const char *text, int shell)
{
    if (o->exec_argv) cli_die(CLI_USAGE, "-e/--exec and -c/--sh-exec: give only one");
    o->exec_text = text;
    o->exec_shell = shell;
    if (shell) {
        char **argv = calloc(4, sizeof *argv);
        if (!argv) cli_die(CLI_ERR, "out of memory");
        argv[0] = "/bin/sh", argv[1] = "-c", argv[2] = (char *)text;
        o->exec_argv = argv;
        return;
    }
    o->exec_argv = split_words(text);
    if (!o->exec_argv[0]) cli_die(CLI_USAGE, "--exec: empty program");
    if (!program_exists(o->exec_argv[0]))
        cli_die(CLI_USAGE, "--exec: '%s': no such program (or not executable)", o->exec_argv[0]);
}

static FILE *open_dump(const char *path)
{
    if (!strcmp(path, "-")) return stderr;
    FILE *f = fopen(path, "w");
    if (!f) cli_die(CLI_ERR, "--hex-dump: cannot open '%s': %s", path, strerror(errno));
    return f;
}

/* Flags that only one of the two commands understands. */
static void check_mode(const nc_opts *o, int listen)
{
    const char *cmd = listen ? "listen" : "connect";
    struct {
        int given;
        const char *flag;
        int for_listen;
    } only[] = {
        {o->keep_open && !o->broker, "-k/--keep-open", 1},
        {o->broker && !o->chat, "--broker", 1},
        {o->chat, "--chat", 1},
        {o->max_conns != 0, "-m/--max-conns", 1},
        {o->allow.set, "--allow/--allowfile", 1},
        {o->deny.set, "--deny/--denyfile", 1},
        {o->zero_io, "-z", 0},
        {o->wait_ms != 0, "-w/--wait", 0},
    };
    for (size_t i = 0; i < sizeof only / sizeof only[0]; i++)
        if (only[i].given && only[i].for_listen != listen)
            cli_die(CLI_USAGE, "%s: %s is a %s option (see csock %s --help)", cmd, only[i].flag,
                    only[i].for_listen ? "listen" : "connect", cmd);
}

static void check_conflicts(nc_opts *o, int listen)
{
    if (o->send_only && o->recv_only)
        cli_die(CLI_USAGE, "--send-only and --recv-only cannot be used together");
    if (o->exec_argv && (o->broker || o->send_only || o->recv_only))
        cli_die(CLI_USAGE,
                "-e/-c cannot be combined with --broker, --chat, --send-only or --recv-only");
    if (o->zero_io && (o->exec_argv || o->udp || o->unixsock))
        cli_die(CLI_USAGE, "-z scans TCP ports: it takes no -e, -c, -u or -U");
    check_mode(o, listen);
    if (o->chat) o->broker = 1;      /* chat is a broker that tags */
    if (o->broker) o->keep_open = 1; /* a broker serves many clients */
}

static void parse_one(nc_opts *o, int opt, const char *arg)
{
    switch (opt) {
    case 'u':
        o->udp = 1;
        break;
    case 'U':
        o->unixsock = 1;
        break;
    case '4':
        o->family = CSOCK_ADDR_IPV4;
        break;
    case '6':
        o->family = CSOCK_ADDR_IPV6;
        break;
    case 'k':
        o->keep_open = 1;
        break;
    case OPT_BROKER:
        o->broker = 1;
        break;
    case OPT_CHAT:
        o->chat = 1;
        break;
    case 'e':
        set_exec(o, arg, 0);
        break;
    case 'c':
        set_exec(o, arg, 1);
        break;
    case 'C':
        o->crlf = 1;
        break;
    case 'x':
        o->hexdump = open_dump(arg);
        break;
    case OPT_SEND_ONLY:
        o->send_only = 1;
        break;
    case OPT_RECV_ONLY:
        o->recv_only = 1;
        break;
    case 'w':
        o->wait_ms = cli_seconds("--wait", arg);
        break;
    case 'i':
        o->idle_ms = cli_seconds("--idle-timeout", arg);
        break;
    case 'q':
        o->quiet_ms = cli_seconds("--quit-after", arg);
        break;
    case 'm':
        o->max_conns = (unsigned)cli_ulong("--max-conns", arg, 1000000);
        break;
    case OPT_ALLOW:
        cidr_parse_list("--allow", arg, &o->allow);
        break;
    case OPT_DENY:
        cidr_parse_list("--deny", arg, &o->deny);
        break;
    case OPT_ALLOWFILE:
        cidr_parse_file("--allowfile", arg, &o->allow);
        break;
    case OPT_DENYFILE:
        cidr_parse_file("--denyfile", arg, &o->deny);
        break;
    case 'z':
        o->zero_io = 1;
        break;
    case 'v':
        o->verbose = 1;
        break;
    }
}

void nc_parse_args(int argc, char **argv, int listen, const char *usage, nc_opts *o)
{
    const char *cmd = listen ? "listen" : "connect";
    memset(o, 0, sizeof *o);
    o->listen = listen;
    o->quiet_ms = 1000;
    opterr = 0;
    optind = 1;
    int c;
    /* Options may follow the address, as people type them for nc. */
    while ((c = getopt_long(argc, argv, ":huU46kvCzx:e:c:w:i:m:q:", long_opts, NULL)) != -1) {
        if (c == 'h') {
            fputs(usage, stdout);
            fputs(cli_tls_usage, stdout);
            exit(CLI_OK);
        }
        if (c == '?' || c == ':') cli_bad_option(cmd, c, optopt, argv[optind - 1]);
        if (c == OPT_SSL) {
            o->ssl = 1;
            continue;
        }
        if (cli_tls_option(&o->tls, c, optarg)) continue;
        parse_one(o, c, optarg);
    }
    int left = argc - optind;
    if (left < 1) cli_die(CLI_USAGE, "%s: missing address ADDR (or HOST PORT; see csock %s --help)", cmd, cmd);
    if (left > 2) cli_die(CLI_USAGE, "%s: unexpected argument '%s'", cmd, argv[optind + 2]);
    o->ntarget = left;
    o->target[0] = argv[optind];
    o->target[1] = left > 1 ? argv[optind + 1] : NULL;
    if (o->unixsock && left != 1) cli_die(CLI_USAGE, "%s: -U takes one PATH", cmd);
    check_conflicts(o, listen);
}

static int all_digits(const char *s)
{
    if (!*s) return 0;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s)) return 0;
    return 1;
}

void nc_target_text(const nc_opts *o, int passive, char *out, size_t size)
{
    const char *a = o->target[0];
    const char *scheme = o->udp ? "udp" : o->ssl ? "tls" : "tcp";
    if (o->unixsock) {
        snprintf(out, size, "%s:%s", o->udp ? "unixgram" : "unix", a);
    } else if (o->ntarget == 2) {
        int v6 = strchr(a, ':') != NULL && a[0] != '[';
        snprintf(out, size, "%s://%s%s%s:%s", scheme, v6 ? "[" : "", a, v6 ? "]" : "",
                 o->target[1]);
    } else if (strstr(a, "://") || !strncmp(a, "unix:", 5) || !strncmp(a, "unixgram:", 9)) {
        snprintf(out, size, "%s", a);
    } else if (passive && all_digits(a)) {
        snprintf(out, size, "%s://:%s", scheme, a); /* every interface */
    } else {
        snprintf(out, size, "%s://%s", scheme, a);
    }
}

void nc_check_tls(const nc_opts *o, const csock_addr *a, const char *target)
{
    const char *cmd = o->serve ? "serve chat" : o->listen ? "listen" : "connect";
    if (a->scheme == CSOCK_TLS) {
        if (o->udp)
            cli_die(CLI_USAGE, "%s: -u/--udp with %s: TLS runs over TCP only (no DTLS)", cmd,
                    target);
        return;
    }
    if (!o->ssl && !o->tls.given) return;
    cli_die(CLI_USAGE, "%s: --%s needs a tls:// address (TLS runs over TCP only: no DTLS, no "
                       "TLS over Unix sockets); %s would carry plaintext",
            cmd, o->ssl ? "ssl" : o->tls.first, target);
}

/* ======================================================================
 * Byte transforms: hex dump, CRLF, chat tags
 * ====================================================================== */

/* -x: a header line per chunk, then `hexdump -C` style lines. */
static void hexdump(const nc_ctx *c, int sent, const nc_peer *p, const char *buf, size_t len)
{
    FILE *f = c->o->hexdump;
    if (!f || !len) return;
    fprintf(f, "%c %zu bytes %s %s\n", sent ? '>' : '<', len, sent ? "to" : "from", p->name);
    for (size_t off = 0; off < len; off += 16) {
        size_t n = len - off < 16 ? len - off : 16;
        fprintf(f, "%08zx ", off);
        for (size_t i = 0; i < 16; i++) {
            if (i == 8) fputc(' ', f);
            if (i < n)
                fprintf(f, " %02x", (unsigned char)buf[off + i]);
            else
                fputs("   ", f);
        }
        fputs("  |", f);
        for (size_t i = 0; i < n; i++) {
            unsigned char ch = (unsigned char)buf[off + i];
            fputc(ch >= 32 && ch < 127 ? ch : '.', f);
        }
        fputs("|\n", f);
    }
    fflush(f);
}

/* -C: a LF not already after a CR goes out as CRLF. *cr carries the last
 * byte across chunks. `out` holds at least 2 * len bytes. */
static size_t to_crlf(const char *in, size_t len, char *out, int *cr)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (in[i] == '\n' && !*cr) out[n++] = '\r';
        out[n++] = in[i];
        *cr = in[i] == '\r';
    }
    return n;
}

/* --chat: the text with control bytes written as \ooo, exactly as ncat's
 * chat filter does. `out` holds 4 * len bytes. */
static size_t chat_escape(const char *in, size_t len, char *out)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)in[i];
        if (isprint(ch) || ch == '\n' || ch == '\t' || ch == '\r')
            out[n++] = (char)ch;
        else
            n += (size_t)sprintf(out + n, "\\%03o", ch);
    }
    return n;
}

/* --chat: "<userN> " then the escaped text. `out` holds 32 + 4 * len bytes. */
static size_t chat_tag(unsigned id, const char *in, size_t len, char *out)
{
    size_t n = (size_t)sprintf(out, "<user%u> ", id);
    return n + chat_escape(in, len, out + n);
}

/* Datagram peers get one datagram per line: the size of the next message in
 * buf, or 0 while its line is incomplete (`final`: no more input will come). */
static size_t next_dgram(const char *buf, size_t len, int final)
{
    const char *nl = memchr(buf, '\n', len < MAX_DGRAM ? len : MAX_DGRAM);
    if (nl) return (size_t)(nl - buf) + 1;
    if (len >= MAX_DGRAM) return MAX_DGRAM;
    return final ? len : 0;
}

/* ======================================================================
 * Sending to peers, and flow control
 * ====================================================================== */

static int exec_mode(const nc_ctx *c)
{
    return c->o->exec_argv != NULL;
}

/* The peer's stream closed after a lost write: now, at a safe point, it
 * leaves the session (unless it was already on its way out). */
static void on_lost_stream_closed(csock_stream *s)
{
    nc_peer *p = csock_stream_data(s);
    if (p->gone) return on_peer_stream_closed(s);
    p->s = NULL; /* freed after this callback */
    peer_failed(p, p->lost);
}

/* A write the stream could not queue (out of memory): those bytes are gone,
 * so the peer must go too, as after a reset. Closing the stream is safe
 * anywhere, even in a walk over the peers; taking the peer out of the
 * session waits for the close callback. */
static void peer_lost_bytes(nc_peer *p, int rc)
{
    if (p->lost || !p->s) return;
    p->lost = rc;
    csock_stream_close(p->s, on_lost_stream_closed);
}

/* Queue bytes on a stream the peer depends on (its socket or its child's
 * stdin). -EPIPE and a failed stream's error reach the read callback; only
 * bytes dropped for want of memory need handling here. */
static int peer_write(nc_peer *p, csock_stream *s, const char *buf, size_t len)
{
    int rc = csock_stream_write(s, buf, len);
    if (rc == -ENOMEM) peer_lost_bytes(p, rc);
    return rc;
}

static void peer_send(nc_peer *p, const char *buf, size_t len)
{
    nc_ctx *c = p->c;
    hexdump(c, 1, p, buf, len);
    if (!p->s) {
        for (size_t off = 0; off < len || (len == 0 && off == 0); off += MAX_DGRAM) {
            size_t n = len - off < MAX_DGRAM ? len - off : MAX_DGRAM;
            int rc = csock_dgram_send(c->dg, buf + off, n, p->has_addr ? &p->addr : NULL);
            if (rc < 0 && c->o->verbose) cli_warn("send to %s: %s", p->name, csock_strerror(rc));
            if (!len) break;
        }
        p->last_io = csock_loop_now(c->loop);
        return;
    }
    if (peer_write(p, p->s, buf, len) < 0) return;
    if (!exec_mode(c) && !p->congested && csock_stream_write_queue_size(p->s) > HIGH_WATER) {
        p->congested = 1;
        if (c->peers_congested++ == 0) sync_sources(c);
    }
}

static void send_others(nc_ctx *c, const nc_peer *from, const char *buf, size_t len)
{
    for (nc_peer *p = c->head, *next; p; p = next) {
        next = p->next; /* a send never closes a peer synchronously, but be safe */
        if (p != from) peer_send(p, buf, len);
    }
}

/* No memory to transform a whole chunk at once. Stream peers then get it
 * in pieces (the same bytes); datagram peers lose it, as UDP may. Returns
 * 1 when the caller is to send the pieces. */
static int in_pieces(const nc_ctx *c)
{
    if (!c->dg) return 1;
    if (c->o->verbose) cli_warn("a datagram dropped: %s", csock_strerror(-ENOMEM));
    return 0;
}

/* Data that came from stdin (from == NULL) or from a peer, for every peer
 * but the one it came from; chat tags it first. */
static void broadcast(nc_ctx *c, const nc_peer *from, const char *buf, size_t len)
{
    char stackbuf[4096];
    unsigned id = from ? from->id : 0;
    if (!c->o->chat) return send_others(c, from, buf, len);
    size_t need = 32 + 4 * len;
    char *tagged = need <= sizeof stackbuf ? stackbuf : malloc(need);
    if (tagged) {
        size_t n = chat_tag(id, buf, len, tagged);
        send_others(c, from, tagged, n);
        if (tagged != stackbuf) free(tagged);
    } else if (in_pieces(c)) {
        size_t m = (size_t)sprintf(stackbuf, "<user%u> ", id);
        send_others(c, from, stackbuf, m);
        for (size_t off = 0, n; off < len; off += n) {
            n = len - off < sizeof stackbuf / 4 ? len - off : sizeof stackbuf / 4;
            m = chat_escape(buf + off, n, stackbuf);
            send_others(c, from, stackbuf, m);
        }
    }
}

static void out_write(nc_ctx *c, const char *buf, size_t len)
{
    if (!c->out || c->o->send_only || !len) return;
    int rc = csock_stream_write(c->out, buf, len);
    if (rc < 0) {
        /* Bytes stdout cannot take would be lost without a word. */
        cli_warn("stdout: %s", csock_strerror(rc));
        return nc_finish(c, CLI_ERR);
    }
    if (!c->out_congested && csock_stream_write_queue_size(c->out) > HIGH_WATER) {
        c->out_congested = 1;
        sync_sources(c);
    }
}

static size_t on_stdin(csock_stream *in, int status, const char *buf, size_t len);
static size_t on_peer_read(csock_stream *s, int status, const char *buf, size_t len);
static void on_dgram(csock_dgram *d, int status, const char *buf, size_t len,
                     const csock_addr *from);

static int peers_may_read(const nc_ctx *c)
{
    return !c->out_congested && !(c->o->broker && c->peers_congested);
}

/* Start or stop each source after a sink changed state. O(peers), but only
 * on transitions, never per byte. Exec mode throttles pairwise instead. */
static void sync_sources(nc_ctx *c)
{
    if (exec_mode(c) || c->stopped) return;
    int want_in = c->in && c->in_reading && !c->in_eof && !c->peers_congested;
    if (c->in) {
        if (want_in)
            csock_stream_read_start(c->in, on_stdin);
        else
            csock_stream_read_stop(c->in);
    }
    int may = peers_may_read(c);
    if (c->dg) {
        if (may)
            csock_dgram_recv_start(c->dg, on_dgram);
        else
            csock_dgram_recv_stop(c->dg);
    }
    for (nc_peer *p = c->head; p; p = p->next) {
        if (!p->s || p->eof) continue;
        if (may)
            csock_stream_read_start(p->s, on_peer_read);
        else
            csock_stream_read_stop(p->s);
    }
}

/* ======================================================================
 * stdin and stdout
 * ====================================================================== */

/* -C without the memory to convert a whole read at once. */
static void crlf_in_pieces(nc_ctx *c, const char *buf, size_t len)
{
    char piece[8192];
    if (!in_pieces(c)) return;
    for (size_t off = 0, n; off < len; off += n) {
        n = len - off < sizeof piece / 2 ? len - off : sizeof piece / 2;
        size_t m = to_crlf(buf + off, n, piece, &c->crlf_cr);
        broadcast(c, NULL, piece, m);
    }
}

static void from_stdin(nc_ctx *c, const char *buf, size_t len)
{
    char stackbuf[8192], *conv = NULL;
    if (!len) return;
    if (c->o->crlf) {
        conv = 2 * len <= sizeof stackbuf ? stackbuf : malloc(2 * len);
        if (!conv) return crlf_in_pieces(c, buf, len);
        len = to_crlf(buf, len, conv, &c->crlf_cr);
        buf = conv;
    }
    broadcast(c, NULL, buf, len);
    if (conv && conv != stackbuf) free(conv);
}

static void on_quiet(csock_timer *t)
{
    nc_finish(csock_timer_data(t), CLI_OK);
}

/* Datagrams have no end: after stdin's, wait -q for the last answers. A
 * timer that cannot be armed would leave us waiting for ever: fail now. */
static void quiet_start(nc_ctx *c)
{
    int rc = csock_timer_start(c->quiet, on_quiet, c->o->quiet_ms, 0);
    if (rc < 0) {
        cli_warn("--quit-after timer: %s", csock_strerror(rc));
        nc_finish(c, CLI_ERR);
    }
}

static void stdin_ended(nc_ctx *c)
{
    c->in_eof = 1;
    csock_stream_read_stop(c->in);
    if (c->o->send_only) {
        /* ncat: --send-only quits at the end of input, once it is sent. */
        c->quitting = 1;
        while (c->head) /* peer_close takes it off the list */
            peer_close(c->head, 1);
        return check_done(c);
    }
    if (c->o->keep_open) return; /* keep serving the clients */
    if (c->dg) return quiet_start(c);
    for (nc_peer *p = c->head; p; p = p->next)
        if (p->s) csock_stream_shutdown(p->s, NULL); /* half-close: the peer reads EOF */
}

static size_t on_stdin(csock_stream *in, int status, const char *buf, size_t len)
{
    nc_ctx *c = csock_stream_data(in);
    size_t used = 0;
    if (c->dg) {
        while (used < len) {
            size_t n = next_dgram(buf + used, len - used, status != 0);
            if (!n) break;
            from_stdin(c, buf + used, n);
            used += n;
        }
    } else {
        from_stdin(c, buf, len);
        used = len;
    }
    if (status != 0) {
        if (status != CSOCK_EOF) {
            /* Input was lost: the peer must not take what it got for all of it. */
            cli_warn("stdin: %s", csock_strerror(status));
            nc_finish(c, CLI_ERR);
            return len;
        }
        stdin_ended(c);
        return len;
    }
    return used;
}

void nc_stdin_start(nc_ctx *c)
{
    if (!c->in || c->in_reading) return;
    c->in_reading = 1;
    sync_sources(c);
}

static void on_out_drain(csock_stream *out, int status)
{
    nc_ctx *c = csock_stream_data(out);
    if (status < 0) {
        cli_warn("stdout: %s", csock_strerror(status));
        return nc_finish(c, CLI_ERR);
    }
    if (c->out_congested) {
        c->out_congested = 0;
        sync_sources(c);
    }
    check_done(c);
}

/* ======================================================================
 * Child processes (-e / -c)
 * ====================================================================== */

static void child_forget_pipes(nc_peer *p)
{
    if (p->child_in) csock_stream_close(p->child_in, NULL);
    if (p->child_out) csock_stream_close(p->child_out, NULL);
    p->child_in = p->child_out = NULL;
}

static void on_pipe_shut(csock_stream *s, int status)
{
    /* Everything reached the pipe: close it so the child reads EOF. */
    nc_ctx *c = csock_stream_data(s);
    for (size_t i = 0; i < c->npipes; i++) {
        if (c->pipes[i] != s) continue;
        c->pipes[i] = c->pipes[--c->npipes];
        break;
    }
    csock_stream_close(s, NULL);
}

/* The peer is done sending: the child reads what is queued, then EOF. The
 * pipe may outlive the peer, so the session keeps it (for teardown). */
static void child_in_finish(nc_peer *p)
{
    nc_ctx *c = p->c;
    csock_stream *s = p->child_in;
    if (!s) return;
    p->child_in = NULL;
    c->pipes[c->npipes++] = s; /* child_start made room: one slot per peer */
    csock_stream_set_data(s, c);
    csock_stream_on_drain(s, NULL);
    if (csock_stream_shutdown(s, on_pipe_shut) < 0) on_pipe_shut(s, 0);
}

static void on_child_in_drain(csock_stream *s, int status)
{
    nc_peer *p = csock_stream_data(s);
    if (status < 0) { /* the child stopped reading (EPIPE): drop its input */
        if (p->child_in == s) p->child_in = NULL;
        csock_stream_close(s, NULL);
        return;
    }
    if (p->s && !p->eof) csock_stream_read_start(p->s, on_peer_read);
}

static size_t on_child_out(csock_stream *s, int status, const char *buf, size_t len)
{
    nc_peer *p = csock_stream_data(s);
    size_t used = 0;
    while (used < len) {
        size_t n = p->s ? len - used : next_dgram(buf + used, len - used, status != 0);
        if (!n) break;
        peer_send(p, buf + used, n);
        used += n;
    }
    if (status == CSOCK_EOF) {
        /* The child is done talking: finish the connection. */
        peer_close(p, 1);
        return len;
    }
    if (status < 0) { /* its output is lost (out of memory): not a clean end */
        peer_failed(p, status);
        return len;
    }
    if (p->s && csock_stream_write_queue_size(p->s) > HIGH_WATER) csock_stream_read_stop(s);
    return used;
}

static int spawn_attrs(posix_spawnattr_t *attr)
{
    /* We block signals for signalfd and ignore SIGPIPE; the child must
     * start with a clean mask and default dispositions. */
    sigset_t none, dfl;
    sigemptyset(&none);
    sigemptyset(&dfl);
    int sigs[] = {SIGPIPE, SIGCHLD, SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaddset(&dfl, sigs[i]);
    int rc = posix_spawnattr_init(attr);
    if (rc) return rc;
    rc = posix_spawnattr_setsigmask(attr, &none);
    if (!rc) rc = posix_spawnattr_setsigdefault(attr, &dfl);
    if (!rc) rc = posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    if (rc) posix_spawnattr_destroy(attr);
    return rc;
}

/* posix_spawnp with `child_in` as the program's stdin and `child_out` as
 * its stdout. Every step can fail (the file actions allocate): a child
 * started without its dup2s would talk to our own stdin and stdout.
 * Returns 0 or an errno value. */
static int spawn_wired(char **argv, int child_in, int child_out, pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    int rc = posix_spawn_file_actions_init(&fa);
    if (rc) return rc;
    rc = posix_spawn_file_actions_adddup2(&fa, child_in, 0);
    if (!rc) rc = posix_spawn_file_actions_adddup2(&fa, child_out, 1);
    if (!rc) rc = spawn_attrs(&attr);
    if (!rc) {
        rc = posix_spawnp(pid, argv[0], &fa, &attr, argv, environ);
        posix_spawnattr_destroy(&attr);
    }
    posix_spawn_file_actions_destroy(&fa);
    return rc;
}

/* Run the program with its stdin and stdout on two fresh pipes; returns the
 * pid and our ends of the pipes, or a negative errno (and no fd left open). */
static pid_t spawn_piped(char **argv, int *to_child, int *from_child)
{
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) < 0) return -errno;
    if (pipe2(out, O_CLOEXEC) < 0) {
        int err = -errno;
        close(in[0]), close(in[1]);
        return err;
    }
    pid_t pid = -1;
    int rc = spawn_wired(argv, in[0], out[1], &pid);
    close(in[0]);
    close(out[1]);
    if (rc) {
        close(in[1]), close(out[0]);
        return -rc;
    }
    *to_child = in[1];
    *from_child = out[0];
    return pid;
}

/* The array `v` (capacity *cap) with room for `need` > 0 elements of `elem`
 * bytes: `v` itself, or a larger copy; NULL when out of memory (`v` stays). */
static void *grow(void *v, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return v;
    size_t n = *cap ? *cap : 16;
    while (n < need) n *= 2;
    v = realloc(v, n * elem);
    if (v) *cap = n;
    return v;
}

static void child_remember(nc_ctx *c, pid_t pid, const char *name)
{
    nc_child *ch = &c->children[c->nchildren++]; /* child_start made room */
    ch->pid = pid;
    snprintf(ch->name, sizeof ch->name, "%s", name);
}

/* Our ends of the child's pipes as streams. On failure both fds are closed
 * (the child then reads EOF and ends) and nothing is left half-made. */
static int child_wire(nc_peer *p, int to_child, int from_child)
{
    nc_ctx *c = p->c;
    csock_stream *in = NULL, *out = NULL;
    int rc = csock_stream_open(c->loop, to_child, &in);
    if (rc < 0) {
        close(to_child);
        close(from_child);
        return rc;
    }
    rc = csock_stream_open(c->loop, from_child, &out);
    if (rc < 0) {
        close(from_child);
        csock_stream_close(in, NULL);
        return rc;
    }
    p->child_in = in;
    p->child_out = out;
    csock_stream_set_data(in, p);
    csock_stream_set_data(out, p);
    csock_stream_on_drain(in, on_child_in_drain);
    return csock_stream_read_start(out, on_child_out);
}

static int child_start(nc_peer *p)
{
    nc_ctx *c = p->c;
    /* Make room first: once the child runs, it must be remembered (or it is
     * never waited for) and its stdin pipe kept until drained (on_pipe_shut). */
    nc_child *kids = grow(c->children, &c->cap_children, c->nchildren + 1, sizeof *kids);
    if (kids) c->children = kids;
    csock_stream **pipes = grow(c->pipes, &c->cap_pipes, c->npipes + c->npeers, sizeof *pipes);
    if (pipes) c->pipes = pipes;
    int to_child = -1, from_child = -1, rc;
    pid_t pid = !kids || !pipes ? -ENOMEM : spawn_piped(c->o->exec_argv, &to_child, &from_child);
    if (pid < 0) {
        cli_warn("exec '%s': %s", c->o->exec_text, csock_strerror(pid));
        return pid;
    }
    child_remember(c, pid, p->name);
    if (c->o->verbose) cli_warn("started '%s' (pid %d) for %s", c->o->exec_text, (int)pid, p->name);
    rc = child_wire(p, to_child, from_child);
    if (rc < 0) cli_warn("exec '%s': its pipes: %s", c->o->exec_text, csock_strerror(rc));
    return rc;
}

static void log_exit(const nc_ctx *c, const nc_child *ch, int st)
{
    if (!c->o->verbose) return;
    if (WIFEXITED(st))
        cli_warn("'%s' (pid %d) for %s exited with status %d", c->o->exec_text, (int)ch->pid,
                 ch->name, WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        cli_warn("'%s' (pid %d) for %s killed by signal %d", c->o->exec_text, (int)ch->pid,
                 ch->name, WTERMSIG(st));
}

/* SIGCHLD: reap every child that has ended (signals coalesce). */
static void on_sigchld(csock_signal *sig, int signum)
{
    nc_ctx *c = csock_signal_data(sig);
    int st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        for (size_t i = 0; i < c->nchildren; i++) {
            if (c->children[i].pid != pid) continue;
            log_exit(c, &c->children[i], st);
            c->children[i] = c->children[--c->nchildren];
            break;
        }
    }
    check_done(c);
}

/* ======================================================================
 * Peers
 * ====================================================================== */

static void peer_describe(nc_peer *p, const csock_addr *a)
{
    if (!a) {
        snprintf(p->name, sizeof p->name, "peer");
        snprintf(p->host, sizeof p->host, "peer");
        return;
    }
    csock_addr_format(a, p->name, sizeof p->name);
    const void *ip = NULL;
    if (a->sa.ss_family == AF_INET) ip = &((const struct sockaddr_in *)&a->sa)->sin_addr;
    if (a->sa.ss_family == AF_INET6) ip = &((const struct sockaddr_in6 *)&a->sa)->sin6_addr;
    if (!ip || !inet_ntop(a->sa.ss_family, ip, p->host, sizeof p->host))
        snprintf(p->host, sizeof p->host, "%s", p->name);
}

/* --chat: ncat's announcements, byte for byte. 0, or -ENOMEM when the
 * message could not be built (the newcomer is then turned away, unseen). */
static int chat_announce_join(nc_ctx *c, nc_peer *p)
{
    char line[1024];
    size_t cap = 512 + (size_t)c->npeers * 340, n;
    char *msg = malloc(cap);
    if (!msg) {
        if (c->o->verbose) cli_warn("refused %s: %s", p->name, csock_strerror(-ENOMEM));
        return -ENOMEM;
    }
    n = (size_t)snprintf(msg, cap,
                         "<announce> %s is connected as <user%u>.\n"
                         "<announce> already connected: ",
                         p->host, p->id);
    int count = 0;
    for (nc_peer *q = c->head; q; q = q->next) {
        if (q == p) continue;
        int k =
            snprintf(line, sizeof line, "%s%s as <user%u>", count++ ? ", " : "", q->host, q->id);
        memcpy(msg + n, line, (size_t)k);
        n += (size_t)k;
    }
    n += (size_t)sprintf(msg + n, "%s.\n", count ? "" : "nobody");
    for (nc_peer *q = c->head; q; q = q->next)
        peer_send(q, msg, n);
    free(msg);
    p->announced = 1;
    return 0;
}

static void chat_announce_leave(nc_ctx *c, const nc_peer *gone)
{
    char msg[64];
    int n = snprintf(msg, sizeof msg, "<announce> <user%u> is disconnected.\n", gone->id);
    for (nc_peer *q = c->head; q; q = q->next)
        peer_send(q, msg, (size_t)n);
}

static nc_peer *peer_new(nc_ctx *c, const csock_addr *a)
{
    nc_peer *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->c = c;
    p->id = c->next_id++;
    peer_describe(p, a);
    p->prev = c->tail;
    if (c->tail)
        c->tail->next = p;
    else
        c->head = p;
    c->tail = p;
    c->npeers++;
    c->served = 1;
    p->last_io = csock_loop_now(c->loop);
    return p;
}

static void peer_unlink(nc_peer *p)
{
    nc_ctx *c = p->c;
    if (p->prev)
        p->prev->next = p->next;
    else
        c->head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        c->tail = p->prev;
    p->prev = p->next = NULL;
    c->npeers--;
}

/* Peers whose stream is still closing wait on c->ending (singly linked
 * through next/prev as a doubly linked list) so teardown can find them. */
static void ending_add(nc_peer *p)
{
    nc_ctx *c = p->c;
    p->prev = NULL;
    p->next = c->ending;
    if (c->ending) c->ending->prev = p;
    c->ending = p;
}

static void on_peer_stream_closed(csock_stream *s)
{
    nc_peer *p = csock_stream_data(s);
    if (p->prev)
        p->prev->next = p->next;
    else
        p->c->ending = p->next;
    if (p->next) p->next->prev = p->prev;
    free(p);
}

/* Take the peer out of the session. `graceful`: what is queued for it is
 * still sent (streams end with csock_stream_end), else it is dropped. */
static void peer_close(nc_peer *p, int graceful)
{
    nc_ctx *c = p->c;
    if (p->gone) return;
    p->gone = 1;
    peer_unlink(p);
    if (p->congested) {
        p->congested = 0;
        if (--c->peers_congested == 0) sync_sources(c);
    }
    if (c->o->verbose) cli_warn("closed %s", p->name);
    if (graceful) child_in_finish(p);
    child_forget_pipes(p);
    if (p->idle) csock_timer_close(p->idle, NULL);
    p->idle = NULL;
    if (p->announced) chat_announce_leave(c, p);
    if (p->s) {
        ending_add(p);
        if (graceful)
            csock_stream_end(p->s, on_peer_stream_closed);
        else
            csock_stream_close(p->s, on_peer_stream_closed);
    } else {
        free(p);
    }
    check_done(c);
}

/* A peer that failed: in single-peer modes the session fails with it. */
static void peer_failed(nc_peer *p, int status)
{
    nc_ctx *c = p->c;
    char why[300];
    const char *reason = p->s ? cli_tls_reason(p->s, status, why, sizeof why)
                                   : csock_strerror(status);
    if (!c->o->keep_open && !c->quitting) {
        cli_warn("%s: %s", p->name, reason);
        c->status = CLI_ERR;
    } else if (c->o->verbose) {
        cli_warn("%s: %s", p->name, reason);
    }
    peer_close(p, 0);
}

static void peer_input(nc_peer *p, const char *buf, size_t len)
{
    nc_ctx *c = p->c;
    hexdump(c, 0, p, buf, len);
    p->last_io = csock_loop_now(c->loop);
    if (exec_mode(c)) {
        if (!p->child_in) return; /* the child stopped reading: drop */
        peer_write(p, p->child_in, buf, len); /* a datagram peer just loses that one */
        if (p->s && csock_stream_write_queue_size(p->child_in) > HIGH_WATER)
            csock_stream_read_stop(p->s);
    } else if (c->o->broker) {
        broadcast(c, p, buf, len);
    } else {
        out_write(c, buf, len);
    }
}

/* The peer finished sending (a stream's EOF). */
static void peer_eof(nc_peer *p)
{
    nc_ctx *c = p->c;
    p->eof = 1;
    if (exec_mode(c) && p->child_out) {
        /* The child still answers: give it EOF and wait for its end. */
        child_in_finish(p);
        return;
    }
    peer_close(p, 1);
}

static size_t on_peer_read(csock_stream *s, int status, const char *buf, size_t len)
{
    nc_peer *p = csock_stream_data(s);
    if (len) peer_input(p, buf, len);
    if (status == CSOCK_EOF)
        peer_eof(p);
    else if (status < 0) /* a reset, or -ETIMEDOUT from -i */
        peer_failed(p, status);
    return len;
}

static void on_peer_drain(csock_stream *s, int status)
{
    nc_peer *p = csock_stream_data(s);
    if (status < 0) return; /* the read callback reports it */
    if (p->child_out) csock_stream_read_start(p->child_out, on_child_out);
    if (p->congested) {
        p->congested = 0;
        if (--p->c->peers_congested == 0) sync_sources(p->c);
    }
}

/* Refuse a newcomer by --allow/--deny or -m; logs the reason with -v. */
static int admit(nc_ctx *c, const csock_addr *a, const char *name)
{
    if (a && !nc_acl_permits(c->o, a)) {
        if (c->o->verbose) cli_warn("denied %s (--allow/--deny)", name);
        return 0;
    }
    if (c->o->max_conns && c->npeers >= c->o->max_conns) {
        if (c->o->verbose) cli_warn("refused %s: %u connections already (-m)", name, c->npeers);
        return 0;
    }
    return 1;
}

/* Wire a new peer to its child or start it reading; chat says hello. */
static int peer_start(nc_peer *p)
{
    nc_ctx *c = p->c;
    if (c->o->verbose)
        cli_warn("%s %s", c->o->listen ? "connection from" : "connected to", p->name);
    int rc = exec_mode(c) ? child_start(p) : 0;
    if (rc == 0 && c->o->chat) rc = chat_announce_join(c, p);
    if (rc < 0) {
        if (!c->o->keep_open) c->status = CLI_ERR; /* single peer: the session failed */
        peer_close(p, 0);
        return -1;
    }
    if (!c->o->keep_open) nc_stdin_start(c); /* single peer: stdin flows from now on */
    return 0;
}

void nc_peer_add_stream(nc_ctx *c, csock_stream *s, int accepted)
{
    csock_addr a;
    int has = csock_stream_peer(s, &a) == 0;
    char name[300] = "peer";
    if (has) csock_addr_format(&a, name, sizeof name);
    if (accepted && !admit(c, has ? &a : NULL, name)) {
        csock_stream_close(s, NULL);
        return;
    }
    nc_peer *p = peer_new(c, has ? &a : NULL);
    if (!p) {
        csock_stream_close(s, NULL);
        if (!accepted) { /* connect: that was the one peer */
            cli_warn("%s: %s", name, csock_strerror(-ENOMEM));
            return nc_finish(c, CLI_ERR);
        }
        if (c->o->verbose) cli_warn("refused %s: %s", name, csock_strerror(-ENOMEM));
        return; /* the listener goes on, as after a failed accept */
    }
    p->s = s;
    csock_stream_set_data(s, p);
    csock_stream_on_drain(s, on_peer_drain);
    /* The relay's own flow control (sync_sources) throttles a peer's
     * sources. The stream's would also stop reading the peer while what we
     * send it waits: with a peer that does the same (an echo server) and a
     * slow stdout, each waits for the other to read, forever. */
    csock_stream_set_watermarks(s, 0, 0);
    /* In a chat room the others' lines and the announcements would keep a
     * silent member's idle clock running forever: there only what the
     * member sends counts as activity. */
    if (c->o->idle_ms && c->o->chat)
        csock_stream_set_recv_timeout(s, c->o->idle_ms);
    else if (c->o->idle_ms)
        csock_stream_set_idle_timeout(s, c->o->idle_ms);
    if (peer_start(p) < 0) return;
    if (exec_mode(c) || peers_may_read(c)) csock_stream_read_start(s, on_peer_read);
}

/* ---- datagram peers --------------------------------------------------------- */

static void on_dgram_idle(csock_timer *t)
{
    nc_peer *p = csock_timer_data(t);
    uint64_t now = csock_loop_now(p->c->loop), ms = p->c->o->idle_ms;
    int rc = -ETIMEDOUT;
    if (now - p->last_io < ms) {
        rc = csock_timer_start(t, on_dgram_idle, ms - (now - p->last_io), 0);
        if (rc == 0) return;
    }
    peer_failed(p, rc); /* idle, or its -i could no longer be kept */
}

/* A peer for a datagram address (NULL: the connected peer). *out is the
 * peer, or NULL when it could not be made (a negative errno: nothing was
 * set up) or was refused at its start (0: peer_start reported it). */
static int dgram_peer_new(nc_ctx *c, const csock_addr *from, nc_peer **out)
{
    csock_timer *idle = NULL;
    int rc = c->o->idle_ms ? csock_timer_new(c->loop, &idle) : 0;
    nc_peer *p = rc < 0 ? NULL : peer_new(c, from);
    *out = NULL;
    if (!p) {
        if (idle) csock_timer_close(idle, NULL);
        return rc < 0 ? rc : -ENOMEM;
    }
    if (from) {
        p->addr = *from;
        p->has_addr = 1;
    }
    if (idle) {
        p->idle = idle;
        csock_timer_set_data(idle, p);
        rc = csock_timer_start(idle, on_dgram_idle, c->o->idle_ms, 0);
        if (rc < 0) {
            peer_failed(p, rc);
            return 0;
        }
    }
    if (peer_start(p) == 0) *out = p;
    return 0;
}

static int same_addr(const csock_addr *a, const csock_addr *b)
{
    return a->len == b->len && !memcmp(&a->sa, &b->sa, a->len);
}

static nc_peer *dgram_peer_for(nc_ctx *c, const csock_addr *from)
{
    for (nc_peer *p = c->head; p; p = p->next)
        if (!from || !p->has_addr || same_addr(&p->addr, from)) return p;
    if (!c->o->listen) return NULL;
    if (c->served && !c->o->keep_open) return NULL; /* single peer: the first one only */
    char name[300] = "peer";
    if (from) csock_addr_format(from, name, sizeof name);
    if (!from || !admit(c, from, name)) return NULL;
    nc_peer *p;
    int rc = dgram_peer_new(c, from, &p);
    if (rc < 0 && c->o->verbose) cli_warn("refused %s: %s", name, csock_strerror(rc));
    return p;
}

static void on_dgram(csock_dgram *d, int status, const char *buf, size_t len,
                     const csock_addr *from)
{
    nc_ctx *c = csock_dgram_data(d);
    if (status < 0) {
        if (!c->o->listen) { /* connect: the peer's port is closed (ICMP) */
            cli_warn("%s: %s", c->head ? c->head->name : "peer", csock_strerror(status));
            return nc_finish(c, CLI_ERR);
        }
        if (c->o->verbose) cli_warn("receive: %s", csock_strerror(status));
        return;
    }
    nc_peer *p = dgram_peer_for(c, c->o->listen ? from : NULL);
    if (!p) return;
    peer_input(p, buf, len);
    if (c->in_eof && !c->o->keep_open && c->quiet) quiet_start(c);
}

int nc_dgram_attach(nc_ctx *c, csock_dgram *d, const csock_addr *peer)
{
    c->dg = d;
    csock_dgram_set_data(d, c);
    int rc = csock_dgram_recv_start(d, on_dgram);
    nc_peer *p = NULL;
    if (rc == 0 && peer) rc = dgram_peer_new(c, peer, &p);
    if (p) p->has_addr = 0; /* connected socket: send with no address */
    return rc;
}

/* ======================================================================
 * The session
 * ====================================================================== */

void nc_finish(nc_ctx *c, int status)
{
    if (c->stopped) return;
    if (status != CLI_OK || c->status == CLI_OK) c->status = status;
    c->stopped = 1;
    csock_loop_stop(c->loop);
}

/* Single-peer modes end when the peer is gone (and its child reaped);
 * --send-only ends once stdin is sent. Both wait for stdout to drain. */
static void check_done(nc_ctx *c)
{
    if (c->stopped) return;
    int over = (c->quitting && !c->npeers) ||
               (!c->o->keep_open && c->served && !c->npeers && !c->nchildren);
    if (!over) return;
    if (c->out && csock_stream_write_queue_size(c->out)) return; /* on_out_drain calls again */
    nc_finish(c, c->status);
}

static void on_stop_signal(csock_signal *s, int signum)
{
    nc_ctx *c = csock_signal_data(s);
    if (c->o->verbose) cli_warn("stopped by signal %d", signum);
    nc_finish(c, CLI_OK);
}

static void watch_signal(nc_ctx *c, int i, int signum, csock_signal_cb cb, int ref)
{
    int rc = csock_signal_new(c->loop, &c->sig[i]);
    if (rc == 0) rc = csock_signal_start(c->sig[i], cb, signum);
    if (rc < 0) cli_die(CLI_ERR, "signal %d: %s", signum, csock_strerror(rc));
    csock_signal_set_data(c->sig[i], c);
    if (!ref) csock_signal_unref(c->sig[i]);
}

/* Children are reaped on SIGCHLD. A parent that ignored SIGCHLD (supervisors,
 * Perl's $SIG{CHLD}='IGNORE') passes SIG_IGN on through exec, and then the
 * kernel reaps our children itself and sends no SIGCHLD at all: we would wait
 * for them forever. The default disposition brings the signal back. (A
 * SIGCHLD blocked in the inherited mask is fine: the signalfd reads it
 * blocked; SA_NOCLDWAIT does not survive exec.) */
static void sigchld_default(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGCHLD, &sa, NULL) < 0)
        cli_die(CLI_ERR, "SIGCHLD: %s", strerror(errno));
}

static void restore_blocking(void)
{
    /* stdin/stdout may be a terminal shared with the shell: give it back as we found it. */
    for (int fd = 0; fd <= 1; fd++) {
        int fl = fcntl(fd, F_GETFL);
        if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    }
}

static csock_stream *open_std(nc_ctx *c, int fd, const char *name)
{
    csock_stream *s;
    int rc = csock_stream_open(c->loop, fd, &s);
    if (rc < 0) cli_die(CLI_ERR, "%s: %s", name, csock_strerror(rc));
    csock_stream_set_data(s, c);
    return s;
}

void nc_ctx_init(nc_ctx *c, const nc_opts *o)
{
    memset(c, 0, sizeof *c);
    c->o = o;
    c->next_id = 1; /* <user0> is stdin, as in ncat */
    cli_raise_nofile();
    int rc = csock_loop_new(NULL, &c->loop);
    if (rc < 0) cli_die(CLI_ERR, "event loop: %s", csock_strerror(rc));
    watch_signal(c, 1, SIGINT, on_stop_signal, 0);
    watch_signal(c, 2, SIGTERM, on_stop_signal, 0);
    if (o->exec_argv) {
        sigchld_default();
        watch_signal(c, 0, SIGCHLD, on_sigchld, 1);
        return; /* children talk to the peers: stdin and stdout stay untouched */
    }
    atexit(restore_blocking);
    c->out = open_std(c, 1, "stdout");
    csock_stream_on_drain(c->out, on_out_drain);
    if (!o->recv_only) c->in = open_std(c, 0, "stdin");
    rc = csock_timer_new(c->loop, &c->quiet);
    if (rc < 0) cli_die(CLI_ERR, "timer: %s", csock_strerror(rc));
    csock_timer_set_data(c->quiet, c);
}

/* What is still queued for stdout (a stop by signal) gets a moment to go. */
static void drain_stdout(nc_ctx *c)
{
    if (!c->out) return;
    uint64_t until = csock_loop_now(c->loop) + 2000;
    c->stopped = 1; /* callbacks from here on change nothing */
    while (csock_stream_write_queue_size(c->out) && csock_loop_now(c->loop) < until)
        if (csock_loop_run(c->loop, CSOCK_RUN_ONCE) < 0) break;
}

/* Close every handle, let the closes finish, free the loop. */
static void teardown(nc_ctx *c)
{
    if (c->in) csock_stream_close(c->in, NULL);
    while (c->head) {
        nc_peer *p = c->head;
        peer_unlink(p);
        p->gone = 1; /* for a lost write's close callback (on_lost_stream_closed) */
        child_forget_pipes(p);
        if (p->idle) csock_timer_close(p->idle, NULL);
        if (p->s) {
            ending_add(p);
            csock_stream_close(p->s, on_peer_stream_closed);
        } else {
            free(p);
        }
    }
    for (nc_peer *p = c->ending; p; p = p->next)
        csock_stream_close(p->s, on_peer_stream_closed);
    while (c->npipes)
        on_pipe_shut(c->pipes[c->npipes - 1], 0);
    drain_stdout(c);
    if (c->out) csock_stream_close(c->out, NULL);
    if (c->listener) csock_listener_close(c->listener, NULL);
    if (c->dg) csock_dgram_close(c->dg, NULL);
    if (c->quiet) csock_timer_close(c->quiet, NULL);
    for (int i = 0; i < 3; i++)
        if (c->sig[i]) csock_signal_close(c->sig[i], NULL);
    for (int i = 0; i < 100 && csock_loop_handles(c->loop); i++)
        csock_loop_run(c->loop, CSOCK_RUN_NOWAIT);
    if (csock_loop_free(c->loop) == 0) c->loop = NULL;
    free(c->children);
    free(c->pipes);
}

int nc_ctx_run(nc_ctx *c)
{
    int rc = csock_loop_run(c->loop, CSOCK_RUN_DEFAULT);
    if (rc < 0) cli_die(CLI_ERR, "event loop: %s", csock_strerror(rc));
    teardown(c);
    fflush(stdout);
    if (c->o->hexdump) fflush(c->o->hexdump);
    return c->status;
}

void nc_opts_free(nc_opts *o)
{
    free(o->allow.v);
    free(o->deny.v);
    if (o->exec_argv && !o->exec_shell) free(o->exec_argv[0]); /* the split copy */
    free(o->exec_argv);
    if (o->hexdump && o->hexdump != stderr) fclose(o->hexdump);
    o->hexdump = NULL;
}
