/* Static files under one directory, for csock_http_static_handler(). See
 * csock/http.h for what is served and what is refused. This file holds the
 * handler's state and its decisions (method, directory or file, index,
 * redirect); how a target becomes a confined path is static_path.c's job,
 * the answer's validators and ranges those of static_cond.c and
 * static_ranges.c. */
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

#include "proto/http1_fields.h"
#include "proto/static_int.h"

/* ---- answers --------------------------------------------------------------------- */

void csock__static_send_status(csock_http_req *r, int status)
{
    char body[64];
    int n = snprintf(body, sizeof body, "%d %s\n", status, csock_http_reason(status));
    csock_http_add_header(r, "Content-Type", "text/plain; charset=utf-8");
    csock_http_send(r, status, body, (size_t)n);
}

/* Where an answer's body comes from: memory (a small cached file), a
 * descriptor of the request's own (closed once done with), or the cache's
 * shared descriptor of a larger file or its snapshot (a reference taken
 * only when a body goes out: a 304 costs nothing). In a snapshot the body
 * starts at `base`, after a head that `pre` offers a full answer. */
typedef struct source {
    const char *data;
    int fd;
    sharedfd *sfd;
    off_t base;
    csock__http_prefix *pre;
} source;

static void source_drop(const source *src)
{
    if (src->fd >= 0 && !src->sfd) close(src->fd);
}

/* Answer with a file. Conditionals first, then ranges. The file's fields
 * go in one piece (see finfo): the validators on every answer, then
 * Accept-Ranges, then its Content-Type unless the parts carry their own. */
static void serve_file(csock_http_req *r, const source *src, const finfo *fi)
{
    char cr[96];
    uint64_t size = fi->size;
    conds cd;
    csock__static_conds(r, &cd);
    int pre = csock__static_preconditions(&cd, fi);
    if (pre) {
        source_drop(src);
        csock__http_add_fields(r, fi->fields, fi->vlen);
        if (pre == 304) csock_http_send(r, 304, NULL, 0);
        else csock__static_send_status(r, pre);
        return;
    }
    csock_http_str want = csock__static_wanted_range(r, &cd, fi);
    range rs[MAX_RANGES];
    int n = want.ptr ? csock__static_parse_ranges(want, size, rs) : 0;
    csock__http_add_fields(r, fi->fields, n == 0 || n == 1 ? fi->flen : fi->alen);
    if (n < 0) {
        source_drop(src);
        snprintf(cr, sizeof cr, "bytes */%llu", (unsigned long long)size);
        csock_http_add_header(r, "Content-Range", cr);
        csock_http_send(r, 416, NULL, 0);
        return;
    }
    if (n > 1) { /* (the request's own fd is closed with the last piece) */
        int fd = src->data || src->sfd ? -1 : src->fd;
        return csock__static_send_multipart(r, fd, src->sfd, src->base, src->data, fi, rs, n);
    }
    uint64_t first = 0, last = size ? size - 1 : 0;
    int status = 200;
    if (n == 1) {
        first = rs[0].first;
        last = rs[0].last;
        snprintf(cr, sizeof cr, "bytes %llu-%llu/%llu", (unsigned long long)first,
                 (unsigned long long)last, (unsigned long long)size);
        csock_http_add_header(r, "Content-Range", cr);
        status = 206;
    }
    size_t len = size ? (size_t)(last - first + 1) : 0;
    if (src->data) {
        csock_http_send(r, status, src->data + first, len);
    } else if (src->sfd) {
        src->sfd->refs++; /* given back when the stream is done with it */
        csock__http_send_file_ref(r, status, src->fd, src->base + (off_t)first, len,
                                  csock__static_fd_release, src->sfd, status == 200 ? src->pre : NULL);
    } else {
        csock_http_send_file(r, status, src->fd, (off_t)first, len, 1);
    }
}

/* A cached file. A larger one's full answer is offered the head its
 * snapshot holds (if any); one that went with another head leaves that
 * head for a new snapshot (made after the answer is queued: the answer
 * sends from what the entry held). */
static void serve_cached(csock_http_static *st, csock_http_req *r, const centry *e, uint64_t now)
{
    if (!e->sfd) {
        source src = {e->data, -1, NULL, 0, NULL};
        return serve_file(r, &src, &e->fi);
    }
    char out[SNAP_HEAD_MAX];
    csock__http_prefix pre = {e->sfd->budget ? e->sfd->head : NULL, e->sfd->hlen, out,
                              csock__static_snap_due(st, e, now) ? sizeof out : 0, 0, 0};
    source src = {NULL, e->sfd->fd, e->sfd, (off_t)e->sfd->hlen, &pre};
    serve_file(r, &src, &e->fi);
    if (pre.out_len) csock__static_snapshot(st, e, out, pre.out_len, now);
}

/* Serve a regular file just opened (fd, which this closes), and keep it in
 * the cache. */
static void serve_opened(csock_http_static *st, csock_http_req *r, int fd, const struct stat *sb,
                         const char *rel, uint64_t now)
{
    const centry *e = csock__static_cache_put(st, rel, fd, sb, now);
    if (e && !e->sfd) {
        close(fd);
        return serve_cached(st, r, e, now);
    }
    finfo fi;
    if (!e) csock__static_file_info(&fi, sb, rel);
    source src = {NULL, fd, NULL, 0, NULL};
    serve_file(r, &src, e ? &e->fi : &fi);
}

/* ---- the handler ---------------------------------------------------------------------- */

/* The path part of the target: origin-form as is, absolute-form without its
 * scheme and authority. NULL for the asterisk and authority forms. */
static csock_http_str target_path(const csock_http_req *r)
{
    csock_http_str p = csock_http_path(r);
    if (p.len && p.ptr[0] == '/') return p;
    size_t skip = 0;
    if (p.len > 7 && !strncasecmp(p.ptr, "http://", 7)) skip = 7;
    if (p.len > 8 && !strncasecmp(p.ptr, "https://", 8)) skip = 8;
    if (!skip) return (csock_http_str){NULL, 0};
    const char *slash = memchr(p.ptr + skip, '/', p.len - skip);
    if (!slash) return (csock_http_str){"/", 1};
    return (csock_http_str){slash, p.len - (size_t)(slash - p.ptr)};
}

/* "/dir" names a directory: 301 to "/dir/", with the query kept ("/dir?x"
 * goes to "/dir/?x", as nginx and lighttpd do). */
static void redirect_slash(csock_http_req *r, csock_http_str path)
{
    char loc[PATH_MAX_DECODED + 2];
    csock_http_str q = csock_http_query(r);
    size_t ql = q.len ? q.len + 1 : 0;
    if (path.len + ql + 2 > sizeof loc) return csock__static_send_status(r, 414);
    memcpy(loc, path.ptr, path.len);
    loc[path.len] = '/';
    if (ql) {
        loc[path.len + 1] = '?';
        memcpy(loc + path.len + 2, q.ptr, q.len);
    }
    loc[path.len + 1 + ql] = 0;
    csock_http_add_header(r, "Location", loc);
    csock__static_send_status(r, 301);
}

void csock_http_static_handler(csock_http_req *r, void *data)
{
    csock_http_static *st = data;
    csock_http_str m = csock_http_method(r);
    if (!((m.len == 3 && !memcmp(m.ptr, "GET", 3)) || csock_http_is_head(r))) {
        csock_http_add_header(r, "Allow", "GET, HEAD");
        return csock__static_send_status(r, 405);
    }
    csock_http_str path = target_path(r);
    if (!path.ptr) return csock__static_send_status(r, 400);
    char rel[PATH_MAX_DECODED]; /* normalise writes within it, NUL included */
    int slash;
    int n = csock__static_normalise(path.ptr, path.len, rel, sizeof rel, &slash);
    if (n < 0) return csock__static_send_status(r, -n);
    uint64_t now = csock_loop_now(csock_stream_loop(csock_http_stream(r)));
    const centry *e = csock__static_cache_get(st, rel, now);
    if (e) return serve_cached(st, r, e, now);
    int fd = csock__static_open_beneath(st, rel, O_RDONLY | O_NONBLOCK);
    if (fd < 0) return csock__static_send_status(r, csock__static_errno_status(fd));
    struct stat sb;
    if (fstat(fd, &sb) < 0) {
        close(fd);
        return csock__static_send_status(r, 500);
    }
    if (S_ISDIR(sb.st_mode)) {
        if (!slash) {
            close(fd);
            return redirect_slash(r, path);
        }
        char idx[sizeof rel + NAME_MAX + 1]; /* rel, '/', the index file's name */
        snprintf(idx, sizeof idx, "%s%s%s", rel, n ? "/" : "", st->index);
        int ifd = csock__static_open_beneath(st, idx, O_RDONLY | O_NONBLOCK);
        if (ifd >= 0 && fstat(ifd, &sb) == 0 && S_ISREG(sb.st_mode)) {
            close(fd);
            return serve_opened(st, r, ifd, &sb, idx, now);
        }
        if (ifd >= 0) close(ifd);
        if (ifd < 0 && ifd != -ENOENT) {
            close(fd);
            return csock__static_send_status(r, csock__static_errno_status(ifd));
        }
        if (!st->list) {
            close(fd);
            return csock__static_send_status(r, 403);
        }
        return csock__static_send_listing(r, fd, rel);
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return csock__static_send_status(r, 403);
    }
    serve_opened(st, r, fd, &sb, rel, now);
}

int csock_http_static_new(const char *root, const csock_http_static_opts *opts,
                          csock_http_static **out)
{
    csock_http_static *st = calloc(1, sizeof *st);
    if (!st) return -ENOMEM;
    st->snapdir = -1;
    st->dirfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (st->dirfd < 0) {
        int err = -errno;
        free(st);
        return err;
    }
    st->root_real = realpath(root, NULL);
    st->index = strdup(opts && opts->index ? opts->index : "index.html");
    if (!st->root_real || !st->index) {
        csock_http_static_free(st);
        return -ENOMEM;
    }
    st->root_len = strlen(st->root_real);
    st->list = opts ? opts->list : 0;
    /* Probe openat2 once: ENOSYS on kernels before 5.6 (or under seccomp). */
    struct open_how how = {.flags = O_RDONLY | O_CLOEXEC, .resolve = RESOLVE_BENEATH};
    long fd = syscall(SYS_openat2, st->dirfd, ".", &how, sizeof how);
    if (fd >= 0) close((int)fd);
    st->no_openat2 = fd < 0 || getenv("CSOCK_HTTP_NO_OPENAT2") != NULL;
    /* A snapshot directory asked for is opened, and tried, now: one that
     * cannot hold a snapshot is the caller's error, not a silent memfd. */
    const char *sd = opts ? opts->snapshot_dir : NULL;
    if (sd && *sd) {
        int t = -1;
        st->snapdir = open(sd, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (st->snapdir >= 0) t = csock__static_tmpfile(st->snapdir);
        if (t < 0) {
            int err = errno == EISDIR ? -EOPNOTSUPP : -errno; /* (EISDIR: a kernel without O_TMPFILE) */
            csock_http_static_free(st);
            return err;
        }
        close(t);
    }
    *out = st;
    return 0;
}

/* Another loop's handler for the same root: the root's fd is shared (an fd
 * of a directory may be used by several threads at once; openat2 resolves
 * beneath it without changing it), so a server with many loops needs no fd
 * per loop, and nothing is opened once the loops run. Only the cache, which
 * is not locked, is the clone's own. */
int csock_http_static_clone(const csock_http_static *st, csock_http_static **out)
{
    csock_http_static *c = calloc(1, sizeof *c);
    if (!c) return -ENOMEM;
    c->dirfd = st->dirfd;
    c->root_real = st->root_real;
    c->root_len = st->root_len;
    c->list = st->list;
    c->index = st->index;
    c->no_openat2 = st->no_openat2;
    c->snapdir = st->snapdir;
    c->shared = 1;
    *out = c;
    return 0;
}

void csock_http_static_free(csock_http_static *st)
{
    if (!st) return;
    if (!st->shared) {
        if (st->dirfd >= 0) close(st->dirfd);
        if (st->snapdir >= 0) close(st->snapdir);
        free(st->root_real);
        free(st->index);
    }
    csock__static_cache_free(st);
    free(st);
}
