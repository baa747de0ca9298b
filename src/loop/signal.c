/* Signals as loop events, read from one signalfd per loop. No process-wide
 * handler and no global table: two loops never notice each other. */
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "loop/loop_int.h"

struct csock_signal {
    csock__handle h;          /* first: the walk passes its address */
    csock_signal_cb cb;
    void *data;
    int signum;               /* 0 while stopped */
    unsigned ref : 1;
    csock_signal *next;       /* loop->signals list */
    void (*close_cb)(csock_signal *s);
};

_Static_assert(offsetof(csock_signal, h) == 0, "the walk passes the handle's address");

static void watched_set(csock_loop *loop, sigset_t *set)
{
    sigemptyset(set);
    for (csock_signal *s = loop->signals; s; s = s->next)
        if (s->signum) sigaddset(set, s->signum);
}

static void sig_read_cb(csock_loop *loop, csock__watcher *w, unsigned events)
{
    struct signalfd_siginfo si[8];
    ssize_t n;
    while ((n = read(w->fd, si, sizeof si)) > 0) {
        for (size_t i = 0; i < (size_t)n / sizeof si[0]; i++) {
            int signum = (int)si[i].ssi_signo;
            /* A callback may close handles: walk with care, skip closing ones. */
            for (csock_signal *s = loop->signals, *next; s; s = next) {
                next = s->next;
                if (s->signum == signum && !s->h.closing) s->cb(s, signum);
            }
        }
    }
}

/* Make the signalfd (and the caller's mask) match the watched set. */
static int sync_fd(csock_loop *loop, int added_signum, int removed_signum)
{
    sigset_t set, one;
    watched_set(loop, &set);
    if (added_signum) {
        sigset_t old;
        sigemptyset(&one);
        sigaddset(&one, added_signum);
        pthread_sigmask(SIG_BLOCK, &one, &old);
        /* Remember only what we blocked: a signal the application had
         * blocked itself stays blocked when we stop watching it. */
        if (!sigismember(&old, added_signum)) sigaddset(&loop->sig_blocked_by_us, added_signum);
    }
    int fd = signalfd(loop->sig_fd, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0) return -errno;
    if (loop->sig_fd < 0) {
        loop->sig_fd = fd;
        csock__watcher_init(&loop->sig_w, fd, sig_read_cb);
        loop->sig_w.ref = 0; /* only referenced csock_signal handles count */
        int rc = csock__watcher_set(loop, &loop->sig_w, CSOCK_READABLE);
        if (rc < 0) return rc;
    }
    if (removed_signum && !sigismember(&set, removed_signum) &&
        sigismember(&loop->sig_blocked_by_us, removed_signum)) {
        /* Nobody on this loop wants it any more: give it its default action back. */
        sigdelset(&loop->sig_blocked_by_us, removed_signum);
        sigemptyset(&one);
        sigaddset(&one, removed_signum);
        pthread_sigmask(SIG_UNBLOCK, &one, NULL);
    }
    return 0;
}

int csock_signal_new(csock_loop *loop, csock_signal **out)
{
    csock_signal *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    csock__handle_init_kind(loop, &s->h, CSOCK_HANDLE_SIGNAL);
    s->ref = 1;
    s->next = loop->signals;
    loop->signals = s;
    *out = s;
    return 0;
}

int csock__signal_new_internal(csock_loop *loop, csock_signal **out)
{
    int rc = csock_signal_new(loop, out);
    if (rc == 0) (*out)->h.internal = 1;
    return rc;
}

int csock_signal_stop(csock_signal *s)
{
    if (!s->signum) return 0;
    int old = s->signum;
    s->signum = 0;
    if (s->ref) s->h.loop->active--;
    return sync_fd(s->h.loop, 0, old);
}

int csock_signal_start(csock_signal *s, csock_signal_cb cb, int signum)
{
    if (s->h.closing || !cb || signum <= 0 || signum >= NSIG || signum == SIGKILL ||
        signum == SIGSTOP)
        return -EINVAL;
    csock_signal_stop(s);
    s->cb = cb;
    s->signum = signum;
    if (s->ref) s->h.loop->active++;
    int rc = sync_fd(s->h.loop, signum, 0);
    if (rc < 0) csock_signal_stop(s);
    return rc;
}

void csock_signal_unref(csock_signal *s)
{
    if (!s->ref) return;
    s->ref = 0;
    if (s->signum) s->h.loop->active--;
}

void *csock_signal_data(const csock_signal *s) { return s->data; }
void csock_signal_set_data(csock_signal *s, void *data) { s->data = data; }

static void signal_finish(csock__handle *h)
{
    csock_signal *s = csock__container_of(h, csock_signal, h);
    csock_loop *loop = h->loop;
    for (csock_signal **pp = &loop->signals; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    if (s->close_cb) s->close_cb(s);
    free(s);
}

void csock_signal_close(csock_signal *s, void (*close_cb)(csock_signal *s))
{
    if (s->h.closing) return;
    csock_signal_stop(s);
    s->close_cb = close_cb;
    csock__handle_close(&s->h, signal_finish);
}

void csock__signals_fini(csock_loop *loop)
{
    if (loop->sig_fd < 0) return;
    csock__watcher_set(loop, &loop->sig_w, 0);
    close(loop->sig_fd);
    loop->sig_fd = -1;
}
