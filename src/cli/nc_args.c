/* The command line of `csock connect` and `csock listen`: options, -e/-c,
 * the address text built from ADDR or HOST PORT, and the TLS checks. */
#include <ctype.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/netcat.h"

#define NC_QUIET_DEFAULT_MS 1000 /* -q: UDP answers come well within a second */
#define NC_MAX_CONNS 1000000     /* -m: beyond what RLIMIT_NOFILE allows anyway */

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
    OPT_SSL_VERIFY,
    OPT_BINARY,
    OPT_PING,
    OPT_HEADER,
    OPT_SUBPROTOCOL,
    OPT_ORIGIN,
    /* --proxy and its companions (nc_proxy.c) */
    OPT_PROXY,
    OPT_PROXY_TYPE,
    OPT_PROXY_AUTH,
    OPT_PROXY_DNS,
    /* ncat's everyday flags (issue 12) */
    OPT_NC_FIRST = 300,
    OPT_APPEND_OUTPUT = OPT_NC_FIRST,
    OPT_HEX_ANNOTATED,
    OPT_NO_SHUTDOWN,
    OPT_PROGRESS,
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
    {"binary", no_argument, NULL, OPT_BINARY},
    {"ping", required_argument, NULL, OPT_PING},
    {"header", required_argument, NULL, OPT_HEADER},
    {"subprotocol", required_argument, NULL, OPT_SUBPROTOCOL},
    {"origin", required_argument, NULL, OPT_ORIGIN},
    {"proxy", required_argument, NULL, OPT_PROXY},
    {"proxy-type", required_argument, NULL, OPT_PROXY_TYPE},
    {"proxy-auth", required_argument, NULL, OPT_PROXY_AUTH},
    {"proxy-dns", required_argument, NULL, OPT_PROXY_DNS},
    /* ncat's everyday flags (issue 12) */
    {"source", required_argument, NULL, 's'},
    {"source-port", required_argument, NULL, 'p'},
    {"output", required_argument, NULL, 'o'},
    {"append-output", no_argument, NULL, OPT_APPEND_OUTPUT},
    {"hex-dump-annotated", required_argument, NULL, OPT_HEX_ANNOTATED},
    {"no-shutdown", no_argument, NULL, OPT_NO_SHUTDOWN},
    {"progress", no_argument, NULL, OPT_PROGRESS},
    {"nodns", no_argument, NULL, 'n'},
    {"delay", required_argument, NULL, 'd'},
    CLI_TLS_LONGOPTS,
    CLI_DEPLOY_LONGOPTS,
    /* ncat's names for the TLS options */
    {"ssl-cert", required_argument, NULL, CLI_TLS_CERT},
    {"ssl-key", required_argument, NULL, CLI_TLS_KEY},
    {"ssl-trustfile", required_argument, NULL, CLI_TLS_CA},
    {"ssl-alpn", required_argument, NULL, CLI_TLS_ALPN},
    {"ssl-verify", no_argument, NULL, OPT_SSL_VERIFY},
    {0, 0, 0, 0},
};

/* The --help of ncat's everyday flags (issue 12), after the command's own. */
static const char ncat_flags_usage[] =
    "\n"
    "More ncat options:\n"
    "  -o, --output FILE      copy every byte received and sent to FILE, in order\n"
    "                         ('-': stderr)\n"
    "      --append-output    append to the -o and -x files (default: overwrite)\n"
    "      --hex-dump-annotated FILE  a hex dump with a header line per chunk\n"
    "                         ('> N bytes to ADDR', '< N bytes from ADDR')\n"
    "      --no-shutdown      at the end of input, do not half-close the\n"
    "                         connection: go on receiving until the peer closes\n"
    "  -n, --nodns            addresses must be numeric: never look a name up\n"
    "  -d, --delay SECS       after each read (stdin or a peer) read nothing for\n"
    "                         SECS, as ncat\n"
    "      --progress         when stderr is a terminal: one line with the bytes\n"
    "                         each way and the rate (and percent and ETA when\n"
    "                         stdin is a file), a few times a second\n"
    "      --ssl-cert, --ssl-key, --ssl-trustfile, --ssl-alpn  ncat's names for\n"
    "                         --cert, --key, --ca and --alpn (--ssl-verify is\n"
    "                         --ssl: a client verifies by default)\n"
    "  SECS may carry ncat's units: 3000ms, 2s, 1m, 1h (none: seconds).\n"
    "  -e/-c children get NCAT_REMOTE_ADDR, NCAT_REMOTE_PORT, NCAT_LOCAL_ADDR,\n"
    "  NCAT_LOCAL_PORT, NCAT_PROTO (TCP, UDP) and the same as CSOCK_*.\n";
static const char ncat_connect_usage[] =
    "  -s, --source ADDR      connect from ADDR (an address of this host; TCP, UDP)\n"
    "  -p, --source-port PORT connect from PORT\n"
    "  -z -u probes UDP ports as ncat: a zero byte each; open unless an ICMP\n"
    "  'port unreachable' comes back within -w (default 2 s).\n";
static const char ncat_listen_usage[] =
    "  -p, --source-port PORT the port to listen on, as ncat -l -p PORT [HOST]\n"
    "  A bare PORT listens on IPv6 and IPv4 both; -4 / -6: only one of them.\n"
    "  --ssl (or tls://) without --cert: a temporary self-signed certificate,\n"
    "  its SHA-256 fingerprint on stderr (as ncat).\n"
    "  --broker with --send-only or --recv-only relays nothing between peers.\n";

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
    char buf[PATH_MAX];
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

/* -o and -x files, once --append-output is known. */
static FILE *open_capture(const nc_opts *o, const char *opt, const char *path)
{
    if (!strcmp(path, "-")) return stderr;
    FILE *f = fopen(path, o->append_output ? "a" : "w");
    if (!f) cli_die(CLI_ERR, "%s: cannot open '%s': %s", opt, path, strerror(errno));
    return f;
}

static void open_captures(nc_opts *o)
{
    if (o->output_path) o->output = open_capture(o, "--output", o->output_path);
    if (o->dump_path)
        o->hexdump = open_capture(o, o->hexdump_annotated ? "--hex-dump-annotated" : "--hex-dump",
                                  o->dump_path);
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
        {o->source != NULL, "-s/--source", 0},
        {o->source_port != 0, "-p/--source-port", 0},
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
    if (o->zero_io && (o->exec_argv || o->unixsock))
        cli_die(CLI_USAGE, "-z scans TCP or UDP (-u) ports: it takes no -e, -c or -U");
    if (o->delay_ms && o->exec_argv)
        cli_die(CLI_USAGE, "-d/--delay and -e/-c: the child reads its peer directly");
    if (o->zero_io && (o->source || o->source_port))
        cli_die(CLI_USAGE, "-z scans from any source: it takes no -s or -p");
    check_mode(o, listen);
    if (o->chat) o->broker = 1;      /* chat is a broker that tags */
    if (o->broker) o->keep_open = 1; /* a broker serves many clients */
}

/* --header 'Name: value': one field, nothing smuggled in after it. */
static void add_header(nc_opts *o, const char *arg)
{
    const char *colon = strchr(arg, ':');
    if (!colon || colon == arg || strpbrk(arg, "\r\n") || strcspn(arg, " \t") < (size_t)(colon - arg))
        cli_die(CLI_USAGE, "--header '%s': expected 'Name: value'", arg);
    o->headers[o->nheaders++] = arg;
}

/* --subprotocol NAME: an HTTP token (RFC 9110), as the field needs. */
static void add_subprotocol(nc_opts *o, const char *arg)
{
    static const char tchar[] = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                                "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    if (!*arg || strspn(arg, tchar) != strlen(arg))
        cli_die(CLI_USAGE, "--subprotocol '%s': not a token (letters, digits, -._~ ...)", arg);
    o->subprotocols[o->nsubprotocols++] = arg;
}

/* --origin URL: connect sends it as a browser would (one); listen and serve
 * chat accept only the Origins given (a request with another is answered
 * 403; one without Origin, not from a browser, passes). */
static void add_origin(nc_opts *o, const char *arg)
{
    if (!*arg || strpbrk(arg, "\r\n"))
        cli_die(CLI_USAGE, "--origin '%s': expected a URL such as https://example.org", arg);
    if (!o->listen && o->norigins)
        cli_die(CLI_USAGE, "connect: --origin given twice (a request carries one Origin)");
    o->origins[o->norigins++] = arg;
    if (o->listen) return;
    size_t n = strlen("Origin: ") + strlen(arg) + 1;
    if (!(o->origin_field = malloc(n))) cli_die(CLI_ERR, "out of memory");
    snprintf(o->origin_field, n, "Origin: %s", arg);
    o->headers[o->nheaders++] = o->origin_field;
}

static void parse_ws(nc_opts *o, int opt, const char *arg)
{
    switch (opt) {
    case OPT_BINARY:
        o->binary = 1;
        break;
    case OPT_PING:
        o->ping_ms = cli_seconds("--ping", arg);
        if (!o->ping_ms) cli_die(CLI_USAGE, "--ping: the interval must be more than 0");
        break;
    case OPT_HEADER:
        add_header(o, arg);
        break;
    case OPT_SUBPROTOCOL:
        add_subprotocol(o, arg);
        break;
    case OPT_ORIGIN:
        add_origin(o, arg);
        break;
    }
}

/* --proxy, --proxy-type, --proxy-auth, --proxy-dns: 1 when `opt` was one. */
static int parse_proxy(nc_opts *o, int opt, const char *arg)
{
    switch (opt) {
    case OPT_PROXY:
        o->proxy = arg;
        return 1;
    case OPT_PROXY_TYPE:
        o->proxy_type = nc_proxy_type_parse(arg);
        return 1;
    case OPT_PROXY_AUTH:
        o->proxy_auth = arg;
        return 1;
    case OPT_PROXY_DNS:
        o->proxy_dns = nc_proxy_dns_parse(arg);
        return 1;
    }
    return 0;
}

/* ncat's everyday flags (issue 12). Returns 0 for an option not theirs. */
static int parse_ncat_flag(nc_opts *o, int opt, const char *arg)
{
    switch (opt) {
    case 's':
        o->source = arg;
        return 1;
    case 'p':
        o->source_port = (int)cli_ulong("--source-port", arg, UINT16_MAX);
        o->port_text = arg;
        return 1;
    case 'o':
        o->output_path = arg;
        return 1;
    case OPT_APPEND_OUTPUT:
        o->append_output = 1;
        return 1;
    case OPT_HEX_ANNOTATED:
        if (o->dump_path) cli_die(CLI_USAGE, "-x/--hex-dump and --hex-dump-annotated: give only one");
        o->dump_path = arg;
        o->hexdump_annotated = 1;
        return 1;
    case OPT_NO_SHUTDOWN:
        o->no_shutdown = 1;
        return 1;
    case OPT_PROGRESS:
        o->progress = 1;
        return 1;
    case 'n':
        o->family |= CSOCK_ADDR_NUMERIC;
        return 1;
    case 'd':
        o->delay_ms = cli_seconds("--delay", arg);
        return 1;
    }
    return 0;
}

static void parse_one(nc_opts *o, int opt, const char *arg)
{
    if (parse_ncat_flag(o, opt, arg)) return;
    switch (opt) {
    case 'u':
        o->udp = 1;
        break;
    case 'U':
        o->unixsock = 1;
        break;
    case '4':
    case '6': /* the family bits; -n's stays */
        o->family = (o->family & CSOCK_ADDR_NUMERIC) | (opt == '4' ? CSOCK_ADDR_IPV4 : CSOCK_ADDR_IPV6);
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
        if (o->dump_path) cli_die(CLI_USAGE, "-x/--hex-dump and --hex-dump-annotated: give only one");
        o->dump_path = arg;
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
        o->max_conns = (unsigned)cli_ulong("--max-conns", arg, NC_MAX_CONNS);
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
    default:
        if (!parse_proxy(o, opt, arg)) parse_ws(o, opt, arg);
    }
}

static int all_digits(const char *s);

/* listen -p PORT [HOST], as ncat's `ncat -l -p PORT`: the port to listen
 * on, not a source. */
static void listen_port(nc_opts *o, int left, char **args)
{
    o->source_port = 0; /* not a source port here */
    if (left > 1 || (left == 1 && (all_digits(args[0]) || strstr(args[0], "://") || o->unixsock)))
        cli_die(CLI_USAGE, "listen: -p PORT and an address '%s': give the port once", args[0]);
    o->target[0] = left ? args[0] : o->port_text;
    o->target[1] = left ? o->port_text : NULL;
    o->ntarget = left + 1;
}

int nc_inherited_form(const char *a)
{
    if (!strncmp(a, "tls+", 4)) a += 4;
    return !strncmp(a, "fd:", 3) || !strncmp(a, "systemd:", 8);
}

static int all_digits(const char *s)
{
    if (!*s) return 0;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s)) return 0;
    return 1;
}

/* serve chat HOST PORT (as `listen` takes it), rather than two ADDRs. */
static int host_port(int n, char **args)
{
    return n == 2 && all_digits(args[1]) && !all_digits(args[0]) && !strstr(args[0], "://") &&
           strncmp(args[0], "unix", 4) != 0;
}

/* listen over TLS (ncat's --ssl, or tls://) with neither --cert nor --key:
 * ncat makes a temporary certificate (not over -u or -U: those are refused
 * later). wss:// still needs --cert: a browser would not take this one. */
static int wants_ephemeral(const nc_opts *o)
{
    if (o->tls.cert || o->tls.key || o->udp || o->unixsock || cli_ws_scheme(o->target[0])) return 0;
    return o->ssl || !strncasecmp(o->target[0], "tls://", 6) || !strncmp(o->target[0], "tls+", 4);
}

/* ADDR, HOST PORT (or serve chat's ADDRs): into o->target (o->addrs). */
static void positional(nc_opts *o, const char *cmd, int left, char **args)
{
    if (left < 1) cli_die(CLI_USAGE, "%s: missing address ADDR (or HOST PORT; see csock %s --help)", cmd, cmd);
    if (o->serve && !host_port(left, args)) { /* every argument an ADDR: one room */
        if (left > CLI_MAX_ENDPOINTS) cli_die(CLI_USAGE, "%s: at most %d addresses", cmd, CLI_MAX_ENDPOINTS);
        o->addrs = args;
        o->naddrs = left;
        left = 1;
    }
    if (left > 2) cli_die(CLI_USAGE, "%s: unexpected argument '%s'", cmd, args[2]);
    o->ntarget = left;
    o->target[0] = args[0];
    o->target[1] = left > 1 ? args[1] : NULL;
    if (o->unixsock && left != 1) cli_die(CLI_USAGE, "%s: -U takes one PATH", cmd);
}

void nc_parse_args(int argc, char **argv, int listen, const char *usage, nc_opts *o)
{
    const char *cmd = listen == 2 ? "serve chat" : listen ? "listen" : "connect";
    int ssl_verify = 0;
    memset(o, 0, sizeof *o);
    o->listen = listen != 0;
    o->serve = listen == 2;
    /* Repeatable options: there are fewer of each than arguments. */
    o->headers = calloc((size_t)argc, sizeof *o->headers);
    o->subprotocols = calloc((size_t)argc, sizeof *o->subprotocols);
    o->origins = calloc((size_t)argc, sizeof *o->origins);
    if (!o->headers || !o->subprotocols || !o->origins) cli_die(CLI_ERR, "out of memory");
    o->quiet_ms = NC_QUIET_DEFAULT_MS;
    opterr = 0;
    optind = 1;
    int c;
    /* Options may follow the address, as people type them for nc. */
    while ((c = getopt_long(argc, argv, ":huU46nkvCzx:e:c:w:i:m:q:s:p:o:d:", long_opts, NULL)) != -1) {
        if (c == 'h') {
            fputs(usage, stdout);
            fputs(ncat_flags_usage, stdout);
            fputs(listen ? ncat_listen_usage : ncat_connect_usage, stdout);
            fputs(cli_tls_usage, stdout);
            if (listen) fputs(cli_deploy_usage, stdout);
            exit(CLI_OK);
        }
        if (c == '?' || c == ':') cli_bad_option(cmd, c, optopt, argv[optind - 1]);
        if (c == OPT_SSL) {
            o->ssl = 1;
            continue;
        }
        if (c == OPT_SSL_VERIFY) { /* ncat's: --ssl with verification, which csock does anyway */
            ssl_verify = 1;
            o->ssl = 1;
            continue;
        }
        if (cli_tls_option(&o->tls, c, optarg)) continue;
        if (cli_deploy_option(&o->deploy_lo, c, optarg)) {
            if (!listen)
                cli_die(CLI_USAGE, "connect: --%s is for listeners (csock listen)",
                        c == CLI_PROXY_PROTOCOL ? "proxy-protocol" : "proxy-timeout");
            continue;
        }
        parse_one(o, c, optarg);
    }
    int left = argc - optind;
    if (!listen && o->port_text && !o->source_port)
        cli_die(CLI_USAGE, "--source-port: give a port from 1 to 65535");
    if (listen == 1 && o->port_text) /* listen -p PORT [HOST] */
        listen_port(o, left, argv + optind);
    else
        positional(o, cmd, left, argv + optind);
    if (ssl_verify && o->tls.insecure)
        cli_die(CLI_USAGE, "--ssl-verify and --insecure: give only one");
    check_conflicts(o, o->listen);
    open_captures(o);
    if (listen == 1 && wants_ephemeral(o)) nc_ephemeral_cert(o);
}


/* A bare PORT listens on [::], which takes IPv4 too (IPV6_V6ONLY off; -6
 * turns it on), unless -4 was given or this host has no IPv6. */
static int dual_stack(const nc_opts *o)
{
    if (o->family & CSOCK_ADDR_IPV4) return 0;
    int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    close(fd);
    return 1;
}

void nc_target_text(const nc_opts *o, int passive, char *out, size_t size)
{
    nc_addr_text(o, o->target[0], o->ntarget == 2 ? o->target[1] : NULL, passive, out, size);
}

void nc_addr_text(const nc_opts *o, const char *a, const char *port, int passive, char *out,
                  size_t size)
{
    const char *scheme = o->udp ? "udp" : o->ssl ? "tls" : "tcp";
    if (o->unixsock) {
        snprintf(out, size, "%s:%s", o->udp ? "unixgram" : "unix", a);
    } else if (port) {
        int v6 = strchr(a, ':') != NULL && a[0] != '[';
        snprintf(out, size, "%s://%s%s%s:%s", scheme, v6 ? "[" : "", a, v6 ? "]" : "", port);
    } else if (strstr(a, "://") || !strncmp(a, "unix:", 5) || !strncmp(a, "unixgram:", 9) ||
               (passive && nc_inherited_form(a))) {
        snprintf(out, size, "%s", a);
    } else if (passive && all_digits(a)) { /* every interface: IPv6 and IPv4 both (-4: IPv4) */
        snprintf(out, size, "%s://%s:%s", scheme, dual_stack(o) ? "[::]" : "", a);
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

void nc_check_ws(const nc_opts *o, int ws, const char *target)
{
    const char *cmd = o->serve ? "serve chat" : o->listen ? "listen" : "connect";
    if (!ws) {
        if (o->binary || o->ping_ms || o->nheaders || o->nsubprotocols || o->norigins)
            cli_die(CLI_USAGE, "%s: --binary, --ping, --header, --subprotocol and --origin need a ws:// or "
                    "wss:// address; %s is not one", cmd, target);
        return;
    }
    if (o->udp || o->unixsock)
        cli_die(CLI_USAGE, "%s: -u/-U with %s: WebSocket runs over TCP", cmd, target);
    if (o->source || o->source_port)
        cli_die(CLI_USAGE, "%s: -s/-p with %s: not for WebSocket connections", cmd, target);
    if (o->exec_argv)
        cli_die(CLI_USAGE, "%s: -e/-c with %s: a WebSocket carries messages, not a byte stream",
                cmd, target);
    if (o->crlf) cli_die(CLI_USAGE, "%s: -C with %s: lines become messages, without line endings", cmd, target);
    if (o->ssl) cli_die(CLI_USAGE, "%s: --ssl with %s: write wss:// for TLS", cmd, target);
    if (ws == 1 && o->tls.given && !o->serve)
        cli_die(CLI_USAGE, "%s: --%s needs a wss:// address; %s would carry plaintext", cmd,
                o->tls.first, target);
    if (o->listen && o->nheaders) cli_die(CLI_USAGE, "%s: --header is a connect option", cmd);
    if (o->chat && o->binary) cli_die(CLI_USAGE, "%s: --chat speaks lines of text: no --binary", cmd);
}

void nc_opts_free(nc_opts *o)
{
    free(o->headers);
    free(o->subprotocols);
    free(o->origins);
    free(o->origin_field);
    o->origins = NULL;
    o->origin_field = NULL;
    o->headers = NULL;
    o->subprotocols = NULL;
    free(o->allow.v);
    free(o->deny.v);
    if (o->exec_argv && !o->exec_shell) free(o->exec_argv[0]); /* the split copy */
    free(o->exec_argv);
    if (o->hexdump && o->hexdump != stderr) fclose(o->hexdump);
    o->hexdump = NULL;
    if (o->output && o->output != stderr) fclose(o->output);
    o->output = NULL;
    if (o->ephemeral_path[0]) close(o->ephemeral_fd);
    o->ephemeral_path[0] = '\0';
}
