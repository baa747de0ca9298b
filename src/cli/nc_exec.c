/* -e / -c: one child process per peer, its stdin and stdout wired to the
 * peer through two pipes, reaped on SIGCHLD. */
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/netcat.h"

extern char **environ;

void child_forget_pipes(nc_peer *p)
{
    if (p->child_in) csock_stream_close(p->child_in, NULL);
    if (p->child_out) csock_stream_close(p->child_out, NULL);
    p->child_in = p->child_out = NULL;
}

void on_pipe_shut(csock_stream *s, int status)
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
void child_in_finish(nc_peer *p)
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

static void child_sink(void *p, const char *buf, size_t len)
{
    peer_send(p, buf, len);
}

/* What the child wrote, to its peer; -C: LF as CRLF, as ncat does. */
static void child_send(nc_peer *p, const char *buf, size_t len)
{
    if (!p->c->o->crlf) return peer_send(p, buf, len);
    crlf_send(p->c, buf, len, &p->child_cr, child_sink, p);
}

size_t on_child_out(csock_stream *s, int status, const char *buf, size_t len)
{
    nc_peer *p = csock_stream_data(s);
    size_t used = 0;
    while (used < len) {
        size_t n = p->s ? len - used : next_dgram(buf + used, len - used, status != 0);
        if (!n) break;
        child_send(p, buf + used, n);
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
    /* We block signals for signalfd and ignore SIGPIPE and SIGXFSZ; the
     * child must start with a clean mask and default dispositions. */
    sigset_t none, dfl;
    sigemptyset(&none);
    sigemptyset(&dfl);
    int sigs[] = {SIGPIPE, SIGXFSZ, SIGCHLD, SIGINT, SIGTERM, SIGHUP, SIGQUIT};
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
static int spawn_wired(char **argv, char **envp, int child_in, int child_out, pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    int rc = posix_spawn_file_actions_init(&fa);
    if (rc) return rc;
    rc = posix_spawn_file_actions_adddup2(&fa, child_in, 0);
    if (!rc) rc = posix_spawn_file_actions_adddup2(&fa, child_out, 1);
    if (!rc) rc = spawn_attrs(&attr);
    if (!rc) {
        rc = posix_spawnp(pid, argv[0], &fa, &attr, argv, envp);
        posix_spawnattr_destroy(&attr);
    }
    posix_spawn_file_actions_destroy(&fa);
    return rc;
}

/* Run the program with its stdin and stdout on two fresh pipes; returns the
 * pid and our ends of the pipes, or a negative errno (and no fd left open). */
static pid_t spawn_piped(char **argv, char **envp, int *to_child, int *from_child)
{
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) < 0) return -errno;
    if (pipe2(out, O_CLOEXEC) < 0) {
        int err = -errno;
        close(in[0]), close(in[1]);
        return err;
    }
    pid_t pid = -1;
    int rc = spawn_wired(argv, envp, in[0], out[1], &pid);
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

/* ---- the child's environment: ncat's NCAT_* and the same as CSOCK_* ---- */

#define ENV_VARS 5  /* REMOTE_ADDR, REMOTE_PORT, LOCAL_ADDR, LOCAL_PORT, PROTO */
#define ENV_VALUE 64 /* a numeric IPv6 address (46) with a %scope (16) */
#define ENV_TEXT (24 + ENV_VALUE) /* "CSOCK_REMOTE_ADDR=" and the value */

typedef struct child_env {
    char **envp;              /* environ without our names, then ours, NULL */
    char text[2 * ENV_VARS][ENV_TEXT];
} child_env;

static const char *const env_names[ENV_VARS] = {"REMOTE_ADDR", "REMOTE_PORT", "LOCAL_ADDR",
                                                "LOCAL_PORT", "PROTO"};

/* NAME=... of ours (NCAT_ or CSOCK_ and one of env_names): replaced. */
static int env_ours(const char *var)
{
    const char *rest = !strncmp(var, "NCAT_", 5) ? var + 5 : !strncmp(var, "CSOCK_", 6) ? var + 6 : NULL;
    if (!rest) return 0;
    for (size_t i = 0; i < ENV_VARS; i++) {
        size_t n = strlen(env_names[i]);
        if (!strncmp(rest, env_names[i], n) && rest[n] == '=') return 1;
    }
    return 0;
}

/* The numeric host and port of an IP address; 0, or -1 for another family. */
static int host_port(const csock_addr *mapped, char *host, size_t hsize, char *port, size_t psize)
{
    csock_addr plain = *mapped, *a = &plain;
    cli_addr_unmap(a);
    if (a->sa.ss_family != AF_INET && a->sa.ss_family != AF_INET6) return -1;
    return getnameinfo((const struct sockaddr *)&a->sa, a->len, host, (socklen_t)hsize, port,
                       (socklen_t)psize, NI_NUMERICHOST | NI_NUMERICSERV) ? -1 : 0;
}

/* Both ends of peer p: 0, or -1 when they are not IP addresses (Unix). */
static int peer_ends(const nc_peer *p, csock_addr *remote, csock_addr *local)
{
    const nc_ctx *c = p->c;
    if (p->s) return csock_stream_peer(p->s, remote) || csock_stream_local(p->s, local) ? -1 : 0;
    if (csock_dgram_local(c->dg, local) < 0) return -1;
    if (p->has_addr) {
        *remote = p->addr;
        return 0;
    }
    struct sockaddr_storage ss; /* the connected datagram peer */
    socklen_t len = sizeof ss;
    if (getpeername(csock_dgram_fd(c->dg), (struct sockaddr *)&ss, &len) < 0) return -1;
    memset(remote, 0, sizeof *remote);
    memcpy(&remote->sa, &ss, len);
    remote->len = len;
    return 0;
}

/* The values of env_names for peer p into val; 0, or -1 (no IP peer). */
static int env_values(const nc_peer *p, char val[ENV_VARS][ENV_VALUE])
{
    csock_addr remote, local;
    if (peer_ends(p, &remote, &local) < 0) return -1;
    if (host_port(&remote, val[0], sizeof val[0], val[1], sizeof val[1]) < 0 ||
        host_port(&local, val[2], sizeof val[2], val[3], sizeof val[3]) < 0)
        return -1;
    snprintf(val[4], sizeof val[4], "%s", p->s ? "TCP" : "UDP");
    return 0;
}

/* environ for the child of p: ours replaced (or only removed for a Unix
 * peer, whose ends have no address). Returns 0 or -ENOMEM. */
static int env_build(const nc_peer *p, child_env *e)
{
    size_t n = 0, k = 0;
    while (environ[n]) n++;
    e->envp = calloc(n + 2 * ENV_VARS + 1, sizeof *e->envp);
    if (!e->envp) return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        if (!env_ours(environ[i])) e->envp[k++] = environ[i];
    char val[ENV_VARS][ENV_VALUE];
    if (env_values(p, val) < 0) return 0;
    for (size_t i = 0; i < 2 * ENV_VARS; i++) {
        snprintf(e->text[i], sizeof e->text[i], "%s_%s=%s", i < ENV_VARS ? "NCAT" : "CSOCK",
                 env_names[i % ENV_VARS], val[i % ENV_VARS]);
        e->envp[k++] = e->text[i];
    }
    return 0;
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

int child_start(nc_peer *p)
{
    nc_ctx *c = p->c;
    /* Make room first: once the child runs, it must be remembered (or it is
     * never waited for) and its stdin pipe kept until drained (on_pipe_shut). */
    nc_child *kids = grow(c->children, &c->cap_children, c->nchildren + 1, sizeof *kids);
    if (kids) c->children = kids;
    csock_stream **pipes = grow(c->pipes, &c->cap_pipes, c->npipes + c->npeers, sizeof *pipes);
    if (pipes) c->pipes = pipes;
    int to_child = -1, from_child = -1, rc;
    child_env env;
    pid_t pid = !kids || !pipes ? -ENOMEM : env_build(p, &env);
    if (pid == 0) pid = spawn_piped(c->o->exec_argv, env.envp, &to_child, &from_child);
    if (kids && pipes) free(env.envp);
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
void on_sigchld(csock_signal *sig, int signum)
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
