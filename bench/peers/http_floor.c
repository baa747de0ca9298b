/* http_floor: the hand-written floor for the static-file HTTP benchmarks.
 *
 * What the cheapest possible answer to `GET /file` costs on this kernel, so a
 * server's CPU per request can be read against it (as epoll_echo and
 * uring_echo are the floors of the echo benchmarks). It is not an HTTP server:
 * it reads the files of ROOT's top level once at start (open and fstat, never
 * again: no per-request stat, no path walk), takes the request's path from the
 * first line, ignores every header, keeps every connection alive, and answers
 * 200 with a head built at start (no Date), or 404. One thread, one
 * edge-triggered epoll set (MODE_lt: level-triggered, as csock's loop is,
 * EPOLLOUT asked for only while an answer waits for room).
 *
 * How the answer leaves is the MODE, so the kernel's cost of each way can be
 * measured in the same run:
 *   plain  send(head), then sendfile(body)                      (csock's way)
 *   more   send(head, MSG_MORE), then sendfile(body)
 *   cork   TCP_CORK on, send(head), sendfile(body), TCP_CORK off (lighttpd's)
 *   copy   one writev of head and body, the body read into memory at start
 *   one    one sendfile from a memfd holding head and body together
 *   onefile  the same from an unlinked file beside the original (its file system)
 *   pipe   write(head) and splice(body) into the connection's pipe, then one
 *          splice of both into the socket
 *
 * usage: http_floor ROOT PORT [MODE[_lt]]   (PORT 0 = ephemeral; MODE plain)
 * prints "listening tcp://127.0.0.1:PORT"
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

enum { MAX_FILES = 64, MAX_EVENTS = 256, BACKLOG = 1024, IN_BUF = 4096, HEAD_MAX = 256 };
enum mode { PLAIN, MORE, CORK, COPY, ONE, PIPE, ONEFILE };

struct file {
    char name[128];
    int fd;       /* the body (or head and body, mode one) */
    off_t size;   /* bytes at fd to send */
    char *body;   /* mode copy: the body in memory */
    char head[HEAD_MAX];
    size_t hlen;
};

struct conn {
    int fd;
    char in[IN_BUF];
    size_t inlen;
    /* The answer in flight: head bytes not yet sent, then the body. */
    const struct file *f;
    size_t hoff;  /* head bytes sent */
    off_t boff;   /* body bytes sent (at fd from offset 0) */
    int corked;
    int stalled; /* input left unread: the buffer was full */
    int pipe[2];  /* mode pipe: head and body go through it, [0] = -1 before the first answer */
    size_t inpipe; /* bytes of the answer in the pipe, not yet in the socket */
    unsigned events; /* level-triggered: what the epoll set asks for now */
};

static struct file files[MAX_FILES];
static int nfiles;
static enum mode mode;
static int lt; /* level-triggered */
static const char notfound[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";

static void die(const char *what)
{
    fprintf(stderr, "http_floor: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void load(const char *root)
{
    DIR *d = opendir(root);
    if (!d) die(root);
    struct dirent *e;
    while ((e = readdir(d)) && nfiles < MAX_FILES) {
        if (e->d_name[0] == '.' || strlen(e->d_name) >= sizeof files[0].name) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", root, e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
            if (fd >= 0) close(fd);
            continue;
        }
        struct file *f = &files[nfiles++];
        snprintf(f->name, sizeof f->name, "%s", e->d_name);
        f->fd = fd;
        f->size = st.st_size;
        f->hlen = (size_t)snprintf(f->head, sizeof f->head,
                                   "HTTP/1.1 200 OK\r\nServer: http_floor\r\n"
                                   "Content-Type: application/octet-stream\r\n"
                                   "Content-Length: %lld\r\n\r\n", (long long)st.st_size);
        if (mode == COPY || mode == ONE || mode == ONEFILE) {
            f->body = malloc((size_t)st.st_size + 1);
            if (!f->body || pread(fd, f->body, (size_t)st.st_size, 0) != st.st_size) die("read");
        }
        if (mode == ONE || mode == ONEFILE) { /* head and body in one memfd (onefile: file): one sendfile per answer */
            int t;
            if (mode == ONE) {
                t = memfd_create("http_floor", MFD_CLOEXEC);
            } else { /* an unlinked file beside the original, on its file system */
                snprintf(path, sizeof path, "%s/.http_floor.XXXXXX", root);
                if ((t = mkstemp(path)) >= 0) unlink(path);
            }
            if (t < 0) die("memfd_create/mkstemp");
            if (write(t, f->head, f->hlen) != (ssize_t)f->hlen ||
                write(t, f->body, (size_t)st.st_size) != st.st_size)
                die("write");
            close(fd);
            f->fd = t;
            f->size = st.st_size + (off_t)f->hlen;
            f->hlen = 0;
        }
    }
    closedir(d);
}

static const struct file *lookup(const char *p, size_t n)
{
    if (n && *p == '/') p++, n--;
    for (int i = 0; i < nfiles; i++)
        if (strlen(files[i].name) == n && !memcmp(files[i].name, p, n)) return &files[i];
    return NULL;
}

static void cork(struct conn *c, int on)
{
    setsockopt(c->fd, IPPROTO_TCP, TCP_CORK, &on, sizeof on);
    c->corked = on;
}

/* Send what is left of the answer in flight. 1: all sent; 0: the socket is
 * full (EPOLLOUT comes back); -1: the connection failed. */
static int push(struct conn *c)
{
    const struct file *f = c->f;
    if (mode == PIPE) {
        if (c->pipe[0] < 0) {
            if (pipe2(c->pipe, O_NONBLOCK | O_CLOEXEC) < 0) return -1;
            fcntl(c->pipe[1], F_SETPIPE_SZ, 256 * 1024);
        }
        if (!c->inpipe && c->boff == 0) { /* fill: head then body (the whole file fits) */
            if (write(c->pipe[1], f->head, f->hlen) != (ssize_t)f->hlen) return -1;
            loff_t off = 0;
            if (splice(f->fd, &off, c->pipe[1], NULL, (size_t)f->size, 0) != f->size) return -1;
            c->inpipe = f->hlen + (size_t)f->size;
            c->boff = f->size;
            c->hoff = f->hlen;
        }
        while (c->inpipe) {
            ssize_t r = splice(c->pipe[0], NULL, c->fd, NULL, c->inpipe, SPLICE_F_NONBLOCK);
            if (r < 0) return errno == EAGAIN ? 0 : -1;
            c->inpipe -= (size_t)r;
        }
        c->f = NULL;
        return 1;
    }
    if (c->hoff < f->hlen) {
        ssize_t r;
        if (mode == COPY) {
            struct iovec iov[2] = {{(char *)f->head + c->hoff, f->hlen - c->hoff},
                                   {f->body, (size_t)f->size}};
            r = writev(c->fd, iov, 2);
            if (r > 0 && (size_t)r > f->hlen - c->hoff) {
                c->boff = (off_t)((size_t)r - (f->hlen - c->hoff));
                r = (ssize_t)(f->hlen - c->hoff);
            }
        } else {
            if (mode == CORK && !c->corked) cork(c, 1);
            r = send(c->fd, f->head + c->hoff, f->hlen - c->hoff,
                     MSG_NOSIGNAL | (mode == MORE && f->size ? MSG_MORE : 0));
        }
        if (r < 0) return errno == EAGAIN ? 0 : -1;
        c->hoff += (size_t)r;
        if (c->hoff < f->hlen) return 0;
    }
    while (c->boff < f->size) {
        ssize_t r;
        if (mode == COPY) {
            r = send(c->fd, f->body + c->boff, (size_t)(f->size - c->boff), MSG_NOSIGNAL);
            if (r > 0) c->boff += r;
        } else {
            r = sendfile(c->fd, f->fd, &c->boff, (size_t)(f->size - c->boff));
        }
        if (r < 0) return errno == EAGAIN ? 0 : -1;
        if (r == 0) return -1; /* the file shrank */
    }
    if (c->corked) cork(c, 0);
    c->f = NULL;
    return 1;
}

/* Answer every complete request in the input, in order, while the socket
 * takes the answers. -1: close the connection. */
static int serve(struct conn *c)
{
    while (!c->f) {
        char *end = memmem(c->in, c->inlen, "\r\n\r\n", 4);
        if (!end) return c->inlen == sizeof c->in ? -1 : 0;
        size_t used = (size_t)(end + 4 - c->in);
        char *sp1 = memchr(c->in, ' ', used), *sp2 = sp1 ? memchr(sp1 + 1, ' ', used - (size_t)(sp1 + 1 - c->in)) : NULL;
        if (!sp2) return -1;
        const struct file *f = lookup(sp1 + 1, (size_t)(sp2 - sp1 - 1));
        memmove(c->in, c->in + used, c->inlen - used);
        c->inlen -= used;
        if (!f) {
            if (send(c->fd, notfound, sizeof notfound - 1, MSG_NOSIGNAL) < 0) return -1;
            continue;
        }
        c->f = f;
        c->hoff = 0;
        c->boff = 0;
        int r = push(c);
        if (r <= 0) return r;
    }
    return 0;
}

/* Read and answer until the socket has no more to give. Edge-triggered: a
 * read shorter than the room it had means the socket is empty for now, and
 * bytes arriving later raise a new edge (so no read ends in EAGAIN, as none
 * of csock's does). With an answer waiting for room and the input buffer
 * full, stop reading (stalled) until the answer is out. -1: close. */
static int take(struct conn *c, int hup)
{
    c->stalled = 0;
    for (;;) {
        if (c->inlen == sizeof c->in) {
            if (!c->f) return -1; /* a head larger than the buffer */
            c->stalled = 1;
            return 0;
        }
        size_t room = sizeof c->in - c->inlen;
        ssize_t r = read(c->fd, c->in + c->inlen, room);
        if (r == 0) return -1;
        if (r < 0) return errno == EAGAIN ? 0 : -1;
        c->inlen += (size_t)r;
        if (serve(c) < 0) return -1;
        if ((size_t)r < room && !hup) return 0; /* (after a FIN, read on to the 0) */
    }
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: http_floor ROOT PORT [plain|more|cork|copy|one|pipe|onefile][_lt]\n");
        return 2;
    }
    const char *m = argc > 3 ? argv[3] : "plain";
    static const char *names[] = {"plain", "more", "cork", "copy", "one", "pipe", "onefile"};
    size_t ml = strlen(m);
    if (ml > 3 && !strcmp(m + ml - 3, "_lt")) lt = 1, ml -= 3;
    mode = (enum mode)-1;
    for (int i = 0; i < 7; i++)
        if (strlen(names[i]) == ml && !strncmp(m, names[i], ml)) mode = (enum mode)i;
    if ((int)mode < 0) {
        fprintf(stderr, "http_floor: unknown mode '%s'\n", m);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    load(argv[1]);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2])),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, BACKLOG) < 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &al) < 0)
        die("listen");
    printf("listening tcp://127.0.0.1:%d\n", ntohs(a.sin_port));
    fflush(stdout);

    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0) die("epoll");
    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(ep, evs, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    c = calloc(1, sizeof *c);
                    if (!c) die("calloc");
                    c->fd = fd;
                    c->pipe[0] = c->pipe[1] = -1;
                    c->events = lt ? EPOLLIN | EPOLLRDHUP : EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
                    struct epoll_event ce = {.events = c->events, .data.ptr = c};
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce) < 0) die("epoll_ctl add");
                }
                continue;
            }
            int bad = (evs[i].events & (EPOLLERR | EPOLLHUP)) != 0;
            if (!bad && c->f && (evs[i].events & EPOLLOUT)) bad = push(c) < 0 || (!c->f && serve(c) < 0);
            if (!bad && ((evs[i].events & (EPOLLIN | EPOLLRDHUP)) || (c->stalled && !c->f))) bad = take(c, (evs[i].events & EPOLLRDHUP) != 0) < 0;
            if (!bad && lt) { /* room asked for while an answer waits; no input while stalled */
                unsigned want = (c->stalled ? 0 : EPOLLIN | EPOLLRDHUP) | (c->f ? EPOLLOUT : 0);
                if (want != c->events) {
                    struct epoll_event ce = {.events = want, .data.ptr = c};
                    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ce) < 0) die("epoll_ctl mod");
                    c->events = want;
                }
            }
            if (bad) {
                if (c->pipe[0] >= 0) close(c->pipe[0]), close(c->pipe[1]);
                close(c->fd);
                free(c);
            }
        }
    }
}
