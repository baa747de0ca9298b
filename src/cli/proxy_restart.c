/* csock proxy's restart on SIGUSR2: serve's hand-over (sd_restart.c) over
 * the proxy's own listeners. */
#include <signal.h>
#include <sys/socket.h>

#include "cli/proxy_restart.h"
#include "cli/sd_restart.h"

void proxy_restart_addresses(proxy_restart *pr, char **addrs, int n)
{
    cli_restart_addresses(&pr->r, addrs, n);
    pr->nfiles = 0;
    pr->noted = 0;
}

void proxy_restart_arg(proxy_restart *pr, unsigned arg, unsigned first, unsigned count)
{
    pr->r.args[arg].first = first;
    pr->r.args[arg].count = count;
    pr->r.args[arg].pass = count > 0;
    if (arg + 1 > pr->r.nargs) pr->r.nargs = arg + 1;
}

/* The stream listeners' fds and their names; -EOPNOTSUPP when an address
 * has none to hand over (a new process could not bind it: ours holds it). */
static int collect(proxy_restart *pr, int *fds, char *names, size_t nsize)
{
    int n = 0;
    size_t off = 0;
    names[0] = '\0';
    for (unsigned a = 0; a < pr->r.nargs; a++) {
        if (!pr->r.args[a].pass) {
            cli_warn("restart: address %u (ws://, wss:// or udp://) cannot be handed over", a + 1);
            return -EOPNOTSUPP;
        }
        for (unsigned i = pr->r.args[a].first; i < pr->r.args[a].first + pr->r.args[a].count; i++) {
            int fd = csock_listener_fd(pr->px->listeners[i]);
            if (fd < 0) return fd;
            if (n == CLI_RESTART_MAX_FDS || cli_restart_name(names, nsize, &off, a) < 0) return -ENOSPC;
            fds[n++] = fd;
        }
    }
    return n;
}

/* The new process said it listens (a byte), or failed (EOF first). */
static size_t on_ready(csock_stream *s, int status, const char *buf, size_t len)
{
    proxy_restart *pr = csock_stream_data(s);
    if (cli_restart_heard(s, status, len, &pr->r.pipe, &pr->r.child) == 1) {
        pr->r.handed = 1;
        cli_warn("restart: new process %ld is serving; draining", pr->r.child);
        pr->take_over(pr);
    }
    return len;
}

static void on_sigusr2(csock_signal *sig, int signum)
{
    proxy_restart *pr = csock_signal_data(sig);
    if (pr->r.pipe || pr->r.stopping) {
        cli_warn("restart: one is already under way; SIGUSR2 ignored");
        return;
    }
    cli_warn("restart: starting %s", pr->r.exe);
    int fds[CLI_RESTART_MAX_FDS];
    char names[CLI_RESTART_MAX_FDS * 16 + 16];
    int rc = collect(pr, fds, names, sizeof names);
    if (rc == 0) rc = -ENOENT;
    if (rc > 0)
        rc = cli_restart_spawn(pr->px->loop, pr->r.exe, fds, rc, names, on_ready, pr, &pr->r.pipe,
                               &pr->r.child);
    if (rc < 0) cli_warn("restart: %s; still serving", csock_strerror(rc));
}

int proxy_restart_watch(proxy_restart *pr, proxy *px, void (*take_over)(proxy_restart *pr))
{
    pr->px = px;
    pr->take_over = take_over;
    cli_restart_exe(pr->r.exe, sizeof pr->r.exe);
    int rc = csock_signal_new(px->loop, &pr->r.sig);
    if (rc < 0) return rc;
    csock_signal_set_data(pr->r.sig, pr);
    csock_signal_unref(pr->r.sig); /* never holds the loop: the drain ends it */
    return csock_signal_start(pr->r.sig, on_sigusr2, SIGUSR2);
}

static void note_files(proxy_restart *pr)
{
    if (pr->noted) return;
    pr->noted = 1;
    for (unsigned i = 0; i < pr->px->nlisteners; i++) {
        csock_addr *a = &pr->files[pr->nfiles];
        if (pr->px->listeners[i] && csock_listener_addr(pr->px->listeners[i], a) == 0 &&
            a->sa.ss_family == AF_UNIX)
            pr->nfiles++;
    }
}

void proxy_restart_drain(proxy_restart *pr)
{
    pr->r.stopping = 1;
    note_files(pr);
}

void proxy_restart_stop(proxy_restart *pr)
{
    note_files(pr);
    if (pr->r.sig) csock_signal_close(pr->r.sig, NULL);
    pr->r.sig = NULL;
    cli_restart_forget_child(&pr->r.pipe, &pr->r.handed);
}

void proxy_restart_cleanup(proxy_restart *pr)
{
    if (pr->r.handed) return; /* the new process serves the files */
    for (unsigned i = 0; i < pr->nfiles; i++) cli_restart_unlink(&pr->files[i]);
}
