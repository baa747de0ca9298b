/* csock: the command-line tool on libcsock. One file per subcommand. */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli/bench.h"
#include "cli/cli.h"
#include "cli/proxy.h"

static const char usage[] =
    "usage: csock COMMAND [ARGS...]\n"
    "\n"
    "A client/server socket toolkit: TCP, UDP and Unix sockets, IPv4 and IPv6.\n"
    "\n"
    "Commands:\n"
    "  serve SERVICE ADDR...   serve echo, upper, discard or chat on every ADDR\n"
    "  serve http DIR ADDR...  serve the files under DIR over HTTP/1.1 (https)\n"
    "  connect ADDR            stdin to the peer, the peer to stdout (netcat-style)\n"
    "  listen ADDR             wait for peers: one, many (-k), broker, chat, exec\n"
    "  bench ADDR              load a server, check its answers, measure latency\n"
    "  proxy LISTEN... --to BACKEND...  relay clients to backends (TCP, TLS, Unix,\n"
    "                          ws, udp), load-balanced, health-checked\n"
    "\n"
    "Addresses:\n"
    "  tcp://HOST:PORT  tls://HOST:PORT  udp://HOST:PORT  HOST:PORT (tcp)\n"
    "  unix:PATH  unix:@NAME (abstract)  unixgram:PATH\n"
    "  HOST is a name, an IPv4 address or [IPv6]; port 0 picks a free port.\n"
    "\n"
    "Options:\n"
    "  -h, --help       this help (csock COMMAND --help for a command's)\n"
    "  -V, --version    print the version\n"
    "\n"
    "Environment:\n"
    "  CSOCK_BACKEND    event loop backend: auto (the default: io_uring where the\n"
    "                   kernel allows it, else epoll), epoll, poll or uring;\n"
    "                   csock --version says which one runs\n"
    "\n"
    "Try:  csock serve upper tcp://127.0.0.1:7000 udp://127.0.0.1:7000\n"
    "      echo hello | csock connect tcp://127.0.0.1:7000\n";

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
} commands[] = {
    {"serve", cli_serve},
    {"connect", cli_connect},
    {"listen", cli_listen},
    {"bench", cli_bench},
    {"proxy", cli_proxy},
};

void cli_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    /* serve's loops run on threads: one line is written whole. */
    flockfile(stderr);
    fputs("csock: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    funlockfile(stderr);
    va_end(ap);
}

_Noreturn void cli_die(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fflush(stdout);
    fputs("csock: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(status);
}

/* $CSOCK_BACKEND when it names no backend loop.c knows, which is why a
 * loop failed with `rc` (-EINVAL); else NULL. */
static const char *unknown_backend(int rc)
{
    static const char *const known[] = {"auto", "uring", "epoll", "poll"};
    const char *b = getenv("CSOCK_BACKEND");
    if (rc != -EINVAL || !b || !*b) return NULL;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (!strcmp(b, known[i])) return NULL;
    return b;
}

/* A loop that would not start, or a server (its loops start first). An
 * unknown $CSOCK_BACKEND fails every loop as a bare -EINVAL, which said
 * "csock: server: Invalid argument": the line names the variable and its
 * value (cut at a control character: one line) instead. io_uring named and
 * refused (a container's seccomp profile) says that it was named, as
 * "Operation not permitted" alone does not. Said where a loop is made, so
 * --help, usage errors and commands without a loop are untouched. */
_Noreturn void cli_die_loop(const char *what, int rc)
{
    const char *bad = unknown_backend(rc);
    if (bad) {
        int n = 0;
        while (bad[n] && n < 64 && !iscntrl((unsigned char)bad[n])) n++;
        cli_die(CLI_ERR, "CSOCK_BACKEND=%.*s%s: no such event loop backend (auto, uring, epoll or poll)", n, bad,
                bad[n] ? "..." : "");
    }
    const char *b = getenv("CSOCK_BACKEND");
    if (b && !strcmp(b, "uring")) cli_die(CLI_ERR, "%s: %s (CSOCK_BACKEND=uring)", what, csock_strerror(rc));
    cli_die(CLI_ERR, "%s: %s", what, csock_strerror(rc));
}

void cli_addr(const char *text, int flags, csock_addr *out)
{
    int rc = csock_addr_parse(text, flags, out);
    if (rc == CSOCK_EBADADDR || rc == CSOCK_ENOPORT || rc == CSOCK_EBADPORT ||
        rc == CSOCK_EBRACKETS || rc == CSOCK_EUNKSCHEME)
        cli_die(CLI_USAGE,
                "bad address '%s': %s; expected tcp://HOST:PORT, udp://HOST:PORT, "
                "tls://HOST:PORT, unix:PATH, unixgram:PATH or HOST:PORT",
                text, csock_strerror(rc));
    if (rc < 0) cli_die(CLI_ERR, "address '%s': %s", text, csock_strerror(rc));
}

unsigned long cli_ulong(const char *opt, const char *text, unsigned long max)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(text, &end, 10);
    if (errno || end == text || *end || text[0] == '-' || v > max)
        cli_die(CLI_USAGE, "%s: '%s' is not a number from 0 to %lu", opt, text, max);
    return v;
}

/* ncat's time units: none (seconds), ms, s, m, h. */
static double seconds_unit(const char *unit)
{
    static const struct {
        const char *name;
        double seconds;
    } units[] = {{"", 1}, {"s", 1}, {"ms", 0.001}, {"m", 60}, {"h", 3600}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (!strcmp(unit, units[i].name)) return units[i].seconds;
    return 0;
}

uint64_t cli_seconds(const char *opt, const char *text)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    double unit = end == text ? 0 : seconds_unit(end);
    /* strtod takes "inf", "nan" and hex: only a plain decimal is a time. */
    int plain = text + strspn(text, "0123456789.") == end;
    if (errno || !unit || !plain || !(v >= 0) || v * unit > 1e7)
        cli_die(CLI_USAGE, "%s: '%s' is not a time (SECS, or a number with ms, s, m or h)",
                opt, text);
    return (uint64_t)(v * unit * 1000.0 + 0.5); /* ms, rounded */
}

_Noreturn void cli_bad_option(const char *cmd, int c, int optopt_char, const char *arg)
{
    if (c == ':')
        cli_die(CLI_USAGE, "%s: option '%s' needs a value (see csock %s --help)", cmd, arg, cmd);
    if (optopt_char)
        cli_die(CLI_USAGE, "%s: unknown option '-%c' (see csock %s --help)", cmd, optopt_char, cmd);
    cli_die(CLI_USAGE, "%s: unknown option '%s' (see csock %s --help)", cmd, arg, cmd);
}

void cli_init_process(void)
{
    /* A peer that goes away must surface as EPIPE, never kill us. */
    signal(SIGPIPE, SIG_IGN);
    /* Nor a file grown to RLIMIT_FSIZE (`ulimit -f`): an access log, or
     * standard output redirected to a file, fails with EFBIG (a server
     * keeps serving without its log; connect reports a write error) where
     * SIGXFSZ's default action would kill the process. */
    signal(SIGXFSZ, SIG_IGN);
}

/* Why: a loop that stops watching a signal it blocked itself unblocks it
 * again (the application gets the default action back). A command closes
 * its watchers at the start of its teardown, so a SIGTERM in the
 * teardown's last loop run met the default action and killed it, where
 * --help promises status 0 after a signal-driven stop (the allocation
 * sweep caught that once, on csock listen ending by itself). Blocked by us
 * beforehand, the loop leaves them blocked (csock_signal_stop). Children
 * start with a clean mask (nc_exec.c's spawn_attrs, sd_restart.c). */
void cli_hold_stop_signals(void)
{
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
}

void cli_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* The backend a loop gets here, now ($CSOCK_BACKEND, and for "auto"
 * whether the kernel allows io_uring); if none, why (CSOCK_BACKEND=uring
 * where io_uring is forbidden; an unknown name is an error, status 1). */
static void print_version(void)
{
    csock_loop *loop;
    int rc = csock_loop_new(NULL, &loop);
    if (unknown_backend(rc)) cli_die_loop("event loop", rc);
    const char *b = getenv("CSOCK_BACKEND");
    if (rc < 0) {
        printf("csock %s (event loop: unavailable: %s: %s)\n", csock_version(), b && *b ? b : "auto",
               csock_strerror(rc));
        return;
    }
    printf("csock %s (event loop: %s)\n", csock_version(), csock_loop_backend(loop));
    csock_loop_free(loop);
}

int main(int argc, char **argv)
{
    cli_init_process();
    if (argc < 2) {
        fputs(usage, stderr);
        return CLI_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        fputs(usage, stdout);
        return CLI_OK;
    }
    if (!strcmp(cmd, "-V") || !strcmp(cmd, "--version")) {
        print_version();
        return CLI_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(cmd, commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    cli_die(CLI_USAGE, "unknown command '%s' (see csock --help)", cmd);
}
