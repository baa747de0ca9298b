/* Zero-downtime restart (SIGUSR2), as nginx's binary upgrade does it: the
 * running server starts a new copy of itself (the binary now at the same
 * path, the same arguments) and hands it its listening sockets, through
 * systemd's own protocol (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES: endpoint
 * i's sockets are named csock-epI). Once the new process says it is
 * listening (one byte on a pipe, CSOCK_RESTART_FD), the old one stops
 * accepting and drains.
 *
 * Why not "start a second server with SO_REUSEPORT, then stop the old":
 * closing a SO_REUSEPORT listener resets the connections still waiting in
 * its own accept queue (the kernel spreads new connections over every
 * listener of the group, so some always wait there), unless
 * net.ipv4.tcp_migrate_req is set (Linux 5.14+, off by default). Passing
 * the sockets themselves keeps one set of queues that never closes: the
 * old process's close only drops its reference, the new one accepts from
 * the same queues, and nothing is refused or reset. If the new process
 * fails before it listens, the pipe reaches EOF and the old one goes on
 * serving. */
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/sd_restart.h"

extern char **environ;

#define SD_LISTEN_FDS_START 3
#define MAX_PASSED CLI_RESTART_MAX_FDS
#define MAX_ARGS 256
#define MAX_CMDLINE 65536

void cli_restart_exe(char *exe, size_t size)
{
    ssize_t n = readlink("/proc/self/exe", exe, size - 1);
    exe[n > 0 ? n : 0] = '\0';
    char *del = strstr(exe, " (deleted)");
    if (del) *del = '\0';
}

void cli_restart_init(cli_restart *r, csock_server *srv)
{
    r->srv = srv;
    cli_restart_exe(r->exe, sizeof r->exe);
}

/* argv as the process was started: getopt has reordered ours since. */
static char **read_cmdline(char *buf, size_t size)
{
    const size_t max = MAX_ARGS;
    int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    ssize_t n = read(fd, buf, size - 1);
    close(fd);
    if (n <= 0) return NULL;
    buf[n] = '\0';
    char **argv = calloc(max + 1, sizeof *argv);
    if (!argv) return NULL;
    size_t k = 0;
    for (char *p = buf; p < buf + n && k < max; p += strlen(p) + 1) argv[k++] = p;
    return argv;
}

/* The environment for the new process: ours without systemd's LISTEN_*
 * (they were ours, and are gone already), with the hand-over added. The
 * LISTEN_PID entry is filled in by the child, which alone knows its pid. */
static char **child_env(char *listen_fds, char *names, char *pid_entry, char *ready)
{
    size_t n = 0;
    while (environ[n]) n++;
    char **env = calloc(n + 5, sizeof *env);
    if (!env) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "LISTEN_", 7) && strncmp(environ[i], "CSOCK_RESTART_FD=", 17))
            env[k++] = environ[i];
    env[k++] = listen_fds;
    env[k++] = names;
    env[k++] = pid_entry;
    env[k++] = ready;
    return env;
}

/* In the child, between fork and exec: only async-signal-safe calls. */
static void put_pid(char *dst, long pid)
{
    char tmp[24];
    int n = 0;
    do tmp[n++] = (char)('0' + pid % 10);
    while ((pid /= 10) > 0);
    while (n) *dst++ = tmp[--n];
    *dst = '\0';
}

static _Noreturn void exec_child(const char *exe, char **argv, char **env, char *pid_digits,
                                 const int *fds, int nfds, int ready_fd)
{
    /* First out of the way (above every target), then into place: a
     * source may sit where another one's target is. dup2 clears
     * close-on-exec on the copies; everything else closes at exec. */
    int high = SD_LISTEN_FDS_START + nfds + 1;
    int moved[MAX_PASSED + 1];
    for (int i = 0; i < nfds; i++) moved[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, high);
    moved[nfds] = fcntl(ready_fd, F_DUPFD_CLOEXEC, high);
    for (int i = 0; i <= nfds; i++)
        if (moved[i] < 0 || dup2(moved[i], SD_LISTEN_FDS_START + i) < 0) _exit(127);
    put_pid(pid_digits, (long)getpid());
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL); /* the loops blocked SIGTERM and friends */
    execve(exe, argv, env);
    _exit(127);
}

int cli_restart_heard(csock_stream *s, int status, size_t len, csock_stream **pipe, long *child)
{
    int ok = len > 0; /* the byte, perhaps with the EOF after it */
    if (!ok && status == 0) return -1;
    csock_stream_close(s, NULL);
    *pipe = NULL;
    if (ok) return 1;
    int st = 0;
    waitpid((pid_t)*child, &st, 0); /* it is gone, or about to be: no zombie */
    cli_warn("restart: the new process failed (status %d); still serving", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    *child = -1;
    return 0;
}

/* The new process said it listens (a byte), or failed (EOF first). */
static size_t on_ready(csock_stream *s, int status, const char *buf, size_t len)
{
    cli_restart *r = csock_stream_data(s);
    if (cli_restart_heard(s, status, len, &r->pipe, &r->child) == 1) {
        r->handed = 1;
        cli_warn("restart: new process %ld is serving; draining", r->child);
        csock_server_stop(r->srv);
    }
    return len;
}

int cli_restart_name(char *names, size_t size, size_t *off, unsigned a)
{
    int w = snprintf(names + *off, size - *off, "%scsock-ep%u", *off ? ":" : "", a);
    if (w < 0 || (size_t)w >= size - *off) return -ENOSPC;
    *off += (size_t)w;
    return 0;
}

/* Collect the sockets: endpoint of argument a gets the name csock-epA. */
static int collect(cli_restart *r, int *fds, char *names, size_t nsize)
{
    int n = 0;
    size_t off = 0;
    names[0] = '\0';
    for (unsigned a = 0; a < r->nargs; a++) {
        if (!r->args[a].pass) continue;
        for (unsigned e = r->args[a].first; e < r->args[a].first + r->args[a].count; e++) {
            int got = csock_server_endpoint_fds(r->srv, e, fds + n, (unsigned)(MAX_PASSED - n));
            if (got < 0 || got > MAX_PASSED - n) return -ENOSPC;
            for (int i = 0; i < got; i++)
                if (cli_restart_name(names, nsize, &off, a) < 0) return -ENOSPC;
            n += got;
        }
    }
    return n;
}

int cli_restart_spawn(csock_loop *loop, const char *exe, const int *fds, int n, const char *names,
                      csock_read_cb ready_cb, void *data, csock_stream **pipe, long *child)
{
    char listen_fds[32], pid_entry[48] = "LISTEN_PID=", ready[48], names_entry[MAX_PASSED * 16 + 32];
    snprintf(listen_fds, sizeof listen_fds, "LISTEN_FDS=%d", n);
    snprintf(ready, sizeof ready, "CSOCK_RESTART_FD=%d", SD_LISTEN_FDS_START + n);
    int w = snprintf(names_entry, sizeof names_entry, "LISTEN_FDNAMES=%s", names);
    if (n <= 0 || n > MAX_PASSED || w < 0 || (size_t)w >= sizeof names_entry) return -ENOSPC;
    char *cmd = malloc(MAX_CMDLINE);
    char **argv = cmd ? read_cmdline(cmd, MAX_CMDLINE) : NULL;
    char **env = argv ? child_env(listen_fds, names_entry, pid_entry, ready) : NULL;
    int p[2] = {-1, -1}, rc = -ENOMEM;
    if (env && pipe2(p, O_CLOEXEC) < 0) rc = -errno;
    else if (env) {
        pid_t pid = fork();
        if (pid == 0) exec_child(exe, argv, env, pid_entry + 11, fds, n, p[1]);
        rc = pid < 0 ? -errno : 0;
        if (pid > 0) *child = pid;
    }
    if (p[1] >= 0) close(p[1]);
    if (rc == 0) {
        rc = csock_stream_open(loop, p[0], pipe);
        if (rc == 0) {
            p[0] = -1;
            csock_stream_set_data(*pipe, data);
            rc = csock_stream_read_start(*pipe, ready_cb);
        }
    }
    if (p[0] >= 0) close(p[0]);
    free(env);
    free(argv);
    free(cmd);
    return rc;
}

static int start_child(cli_restart *r)
{
    int fds[MAX_PASSED];
    char names[MAX_PASSED * 16 + 16];
    int n = collect(r, fds, names, sizeof names);
    if (n <= 0) return n < 0 ? n : -ENOENT;
    return cli_restart_spawn(csock_server_loop(r->srv, 0), r->exe, fds, n, names, on_ready, r, &r->pipe,
                             &r->child);
}

static void on_sigusr2(csock_signal *sig, int signum)
{
    cli_restart *r = csock_signal_data(sig);
    if (r->pipe || r->stopping) {
        cli_warn("restart: one is already under way; SIGUSR2 ignored");
        return;
    }
    cli_warn("restart: starting %s", r->exe);
    int rc = start_child(r);
    if (rc < 0) cli_warn("restart: %s; still serving", csock_strerror(rc));
}

int cli_restart_watch(cli_restart *r)
{
    int rc = csock_signal_new(csock_server_loop(r->srv, 0), &r->sig);
    if (rc < 0) return rc;
    csock_signal_set_data(r->sig, r);
    csock_signal_unref(r->sig); /* never holds the loop: the drain ends it */
    /* From the main thread, before the loops' threads exist: they inherit
     * the block, so the signal reaches loop 0's signalfd alone. */
    return csock_signal_start(r->sig, on_sigusr2, SIGUSR2);
}

void cli_restart_loop_drain(cli_restart *r, unsigned index)
{
    if (index == 0) r->stopping = 1;
}

void cli_restart_loop_stop(cli_restart *r, unsigned index)
{
    if (index != 0) return;
    if (r->sig) csock_signal_close(r->sig, NULL);
    r->sig = NULL;
    cli_restart_forget_child(&r->pipe, &r->handed);
}

void cli_restart_forget_child(csock_stream **pipe, int *handed)
{
    if (!*pipe) return;
    /* A new process that has not said whether it listens holds our
     * sockets: it may serve them from now on, so they are left to it
     * (if it fails, the file is stale and the next bind removes it). */
    *handed = 1;
    csock_stream_close(*pipe, NULL);
    *pipe = NULL;
}

void cli_restart_child_ready(void)
{
    const char *v = getenv("CSOCK_RESTART_FD");
    if (!v) return;
    int fd = atoi(v);
    unsetenv("CSOCK_RESTART_FD");
    if (fd < SD_LISTEN_FDS_START) return;
    if (write(fd, "1", 1) < 0) { /* the old process is gone: nothing to tell */
    }
    close(fd);
}

void cli_restart_addresses(cli_restart *r, char **addrs, int n)
{
    memset(r, 0, sizeof *r);
    r->child = -1;
    for (int i = 0; i < n && i < CLI_MAX_ENDPOINTS; i++) {
        char name[32];
        snprintf(name, sizeof name, "csock-ep%d", i);
        if (!cli_inherited_named(name)) continue;
        int tls = !strncasecmp(addrs[i], "tls://", 6) || !strncmp(addrs[i], "tls+", 4);
        snprintf(r->handed_text[i], sizeof r->handed_text[i], "%ssystemd:%s", tls ? "tls+" : "", name);
        addrs[i] = r->handed_text[i];
        r->args[i].inherited = 1;
    }
}

void cli_restart_unlink(const csock_addr *addr)
{
    const struct sockaddr_un *sun = (const struct sockaddr_un *)&addr->sa;
    if (addr->sa.ss_family != AF_UNIX || !sun->sun_path[0]) return;
    struct stat st;
    if (lstat(sun->sun_path, &st) < 0 || !S_ISSOCK(st.st_mode)) return;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return;
    /* Refused: nobody listens there any more. Connected: the listener's
     * credentials are those of the process that called listen(2), so our
     * own pid means the file is still ours (not yet closed: a server frees
     * its sockets after this), another's that someone else serves it. A
     * full queue (EAGAIN) is someone serving it too. */
    int rc = connect(fd, (const struct sockaddr *)sun, sizeof *sun);
    int err = errno, ours = 0;
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (rc == 0 && getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) ours = cred.pid == getpid();
    close(fd);
    if ((rc < 0 && err == ECONNREFUSED) || ours) unlink(sun->sun_path);
}

/* Not only the inherited endpoints: asking for an endpoint's fds (a
 * restart) makes the server leave its file, and a restart that failed
 * leaves us its owner all the same. An inherited endpoint's socket was
 * made by a process before us (its listener's pid is not ours) and we
 * are its last holder: removed as it is. */
void cli_restart_cleanup(cli_restart *r)
{
    if (r->handed) return; /* the new process serves the files */
    for (unsigned a = 0; a < r->nargs; a++) {
        for (unsigned e = r->args[a].first; e < r->args[a].first + r->args[a].count; e++) {
            csock_addr addr;
            if (csock_server_addr(r->srv, e, &addr) < 0) continue;
            const struct sockaddr_un *sun = (const struct sockaddr_un *)&addr.sa;
            if (!r->args[a].inherited) cli_restart_unlink(&addr);
            else if (addr.sa.ss_family == AF_UNIX && sun->sun_path[0]) unlink(sun->sun_path);
        }
    }
}
