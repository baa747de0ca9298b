/* The file cache: files up to CACHE_MAX_FILE bytes held whole, larger ones
 * by an open descriptor (up to SNAP_MAX_FILE, once answered from it, by a
 * snapshot holding an answer's head and the body), in a direct-mapped
 * table by path hash, so a popular file costs no open, fstat, read or
 * close per request.
 * An entry lives CACHE_TTL_MS: a changed file is seen within that long.
 * One cache per csock_http_static (one per loop): not locked. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include "proto/static_int.h"

uint32_t csock__static_path_hash(const char *p)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *p; p++) h = (h ^ (unsigned char)*p) * 16777619u;
    return h;
}

static void budget_release(snapbudget *b)
{
    if (!--b->refs) free(b);
}

void csock__static_fd_release(void *ud)
{
    sharedfd *f = ud;
    if (--f->refs) return;
    close(f->fd);
    if (f->budget) {
        f->budget->used -= f->bytes;
        budget_release(f->budget);
    }
    free(f);
}

static void forget(centry *e)
{
    if (e->sfd) csock__static_fd_release(e->sfd);
    e->sfd = NULL;
    e->path[0] = 0;
    e->loaded = 0;
}

/* Close the descriptors of expired entries, at most once per CACHE_TTL_MS:
 * a file renamed over or deleted is not held open for long (256 slots
 * looked at once a second cost nothing). */
static void sweep(csock_http_static *st, uint64_t now)
{
    if (now - st->swept < CACHE_TTL_MS) return;
    st->swept = now;
    for (size_t i = 0; i < CACHE_SLOTS; i++) {
        centry *e = st->cache[i];
        if (e && e->sfd && now - e->loaded >= CACHE_TTL_MS) forget(e);
    }
}

/* Is the file behind a cached descriptor as it was when cached? One fstat
 * (a tenth of what the open it replaces costs): a file changed in place is
 * seen at once, and above all a file cut shorter is never promised at its
 * old length (the client would wait for bytes that never come). On every
 * answer: one check shared by the answers of a loop iteration (2 % of a
 * 100 KB answer's CPU) was tried and left out, since on a readiness
 * backend a request read later in the iteration may have arrived after
 * the check, and be promised a length its file has lost since. */
static int unchanged(centry *e)
{
    struct stat sb;
    if (fstat(e->sfd->fd, &sb) == 0 && (uint64_t)sb.st_size == e->fi.size &&
        sb.st_mtim.tv_sec == e->fi.mtime && sb.st_mtim.tv_nsec == e->mtime_ns)
        return 1;
    forget(e);
    return 0;
}

/* A cached file named `rel` that is younger than CACHE_TTL_MS. */
const centry *csock__static_cache_get(csock_http_static *st, const char *rel, uint64_t now)
{
    sweep(st, now);
    centry *e = st->cache[csock__static_path_hash(rel) % CACHE_SLOTS];
    if (e && e->path[0] && now - e->loaded < CACHE_TTL_MS && !strcmp(e->path, rel) &&
        (!e->sfd || e->sfd->budget || unchanged(e)))
        return e;
    return NULL;
}

/* The slot for `rel`, emptied, with room for `room` bytes of data. */
static centry *slot_for(csock_http_static *st, const char *rel, size_t room)
{
    centry **slot = &st->cache[csock__static_path_hash(rel) % CACHE_SLOTS];
    if (*slot) {
        forget(*slot);
        if ((*slot)->room >= room) return *slot;
        free(*slot);
        *slot = NULL;
    }
    centry *e = malloc(sizeof *e + room);
    if (!e) return NULL;
    e->sfd = NULL;
    e->room = room;
    e->path[0] = 0;
    return *slot = e;
}

/* Keep a regular file just opened: a small one's bytes, a larger one's
 * descriptor (a copy of fd: fd is left open for the caller). */
const centry *csock__static_cache_put(csock_http_static *st, const char *rel, int fd,
                                      const struct stat *sb, uint64_t now)
{
    size_t pl = strlen(rel);
    int small = (uint64_t)sb->st_size <= CACHE_MAX_FILE;
    if (pl >= CACHE_PATH) return NULL;
    centry *e = slot_for(st, rel, small ? CACHE_MAX_FILE : 0);
    if (!e) return NULL;
    if (small) {
        ssize_t n = sb->st_size ? pread(fd, e->data, (size_t)sb->st_size, 0) : 0;
        if (n != (ssize_t)sb->st_size) return NULL;
    } else {
        sharedfd *f = malloc(sizeof *f);
        if (!f) return NULL;
        if ((f->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) {
            free(f);
            return NULL; /* out of descriptors: served without the cache */
        }
        f->refs = 1; /* the entry's */
        f->budget = NULL;
        f->bytes = f->hlen = 0;
        e->sfd = f;
        e->snap_at = now - SNAP_RETRY_MS; /* (unsigned: the first try may come at once) */
    }
    memcpy(e->path, rel, pl + 1);
    e->loaded = now;
    e->mtime_ns = sb->st_mtim.tv_nsec;
    csock__static_file_info(&e->fi, sb, rel);
    return e;
}

/* Copy `len` bytes at `off` of `from` to the end of `to`: 0, or -1 if the
 * file has fewer (errno 0) or a call failed. (sendfile to a file: in the
 * kernel, no copy through user space.) */
static int copy_range(int to, int from, off_t off, size_t len)
{
    while (len) {
        ssize_t n = sendfile(to, from, &off, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        len -= (size_t)n;
    }
    return 0;
}

/* A new, empty, unlinked file in directory `dir` (O_EXCL: it can never be
 * given a name), or -1 and errno. */
int csock__static_tmpfile(int dir)
{
    return openat(dir, ".", O_TMPFILE | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
}

/* A new, empty file for a snapshot: unlinked in the snapshot directory,
 * else (none, or one that refused lately) a memfd. *tmpfile says which. */
static int snap_file(csock_http_static *st, uint64_t now, int *tmpfile)
{
    *tmpfile = 0;
    if (st->snapdir >= 0 && now >= st->snapdir_rest_until) {
        int fd = csock__static_tmpfile(st->snapdir);
        if (fd >= 0) {
            *tmpfile = 1;
            return fd;
        }
        if (errno == EMFILE || errno == ENFILE || errno == ENOMEM) return -1;
        st->snapdir_rest_until = now + SNAP_DIR_RETRY_MS; /* ENOSPC, EDQUOT, EIO, a remount read-only, ... */
    }
    int fd = memfd_create("csock-static", MFD_CLOEXEC);
    /* Refused for good (seccomp, an old kernel): no snapshots, unless a
     * resting directory is to be tried again. */
    if (fd < 0 && st->snapdir < 0 && (errno == ENOSYS || errno == EPERM || errno == EINVAL)) st->no_snap = 1;
    return fd;
}

/* May e's next full answer make a snapshot? Not when snapshots are off,
 * the file is too large, or the last try was under SNAP_RETRY_MS ago. The
 * handler asks before an answer (no head is kept for one that may not),
 * csock__static_snapshot again. */
int csock__static_snap_due(const csock_http_static *st, const centry *e, uint64_t now)
{
    return !st->no_snap && e->sfd && e->fi.size <= SNAP_MAX_FILE &&
           now - e->snap_at >= SNAP_RETRY_MS;
}

/* A full answer of e's file went with `head`, which its file did not begin
 * with: make the file that does ([head][body], snap_file) for the answers
 * that follow, if one is due (csock__static_snap_due), the head not too
 * long and the budget not spent. The body comes from e's
 * descriptor: the last snapshot's body, or the file, checked unchanged
 * after the copy (a write during it would leave a body that is neither
 * version under the old validators). Any failure leaves e as it was, but
 * a file that changed is forgotten (unchanged does that). */
void csock__static_snapshot(csock_http_static *st, const centry *ce, const char *head, size_t hlen,
                            uint64_t now)
{
    centry *e = (centry *)ce; /* the caller's entry, from this cache */
    sharedfd *old = e->sfd;
    size_t bytes = hlen + e->fi.size;
    if (!csock__static_snap_due(st, e, now) || hlen > SNAP_HEAD_MAX) return;
    e->snap_at = now; /* a try that fails waits as long (no new file per answer while they do) */
    if (!st->snaps) {
        if (!(st->snaps = calloc(1, sizeof *st->snaps))) return;
        st->snaps->refs = 1; /* the handler's */
    }
    if (st->snaps->used + bytes > SNAP_BUDGET) return;
    /* A snapshot longer than RLIMIT_FSIZE allows (`ulimit -f`) fails with
     * EFBIG, and the write that fails raises SIGXFSZ first, whose default
     * action kills the process: a library must not, and a server without a
     * snapshot still answers from the file. Asked at each try (one cheap
     * system call, at most once per file per SNAP_RETRY_MS): the limit can
     * change while the handler lives. */
    struct rlimit fsz;
    if (getrlimit(RLIMIT_FSIZE, &fsz) == 0 && fsz.rlim_cur != RLIM_INFINITY && bytes > fsz.rlim_cur) return;
    sharedfd *f = malloc(sizeof *f + hlen);
    if (!f) return;
    int tmpfile;
    if ((f->fd = snap_file(st, now, &tmpfile)) < 0) {
        free(f);
        return;
    }
    errno = 0;
    int rc = write(f->fd, head, hlen) == (ssize_t)hlen ? 0 : -1;
    if (rc == 0) rc = copy_range(f->fd, old->fd, (off_t)old->hlen, e->fi.size);
    if (rc < 0 && tmpfile &&
        (errno == ENOSPC || errno == EDQUOT || errno == EFBIG || errno == EIO || errno == EINVAL))
        st->snapdir_rest_until = now + SNAP_DIR_RETRY_MS; /* full, failing, or no splice into it */
    else if (rc < 0 && errno == EINVAL)
        st->no_snap = 1; /* (into a memfd) a file system sendfile cannot read */
    if (rc == 0 && !old->budget && !unchanged(e)) rc = -1; /* written to while copied: a torn body */
    if (rc < 0) {
        close(f->fd);
        free(f);
        return;
    }
    memcpy(f->head, head, hlen);
    f->hlen = hlen;
    f->bytes = bytes;
    f->refs = 1; /* the entry's */
    f->budget = st->snaps;
    st->snaps->refs++;
    st->snaps->used += bytes;
    csock__static_fd_release(old); /* answers in flight keep theirs */
    e->sfd = f;
}

void csock__static_cache_free(csock_http_static *st)
{
    for (size_t i = 0; i < CACHE_SLOTS; i++) {
        if (!st->cache[i]) continue;
        forget(st->cache[i]);
        free(st->cache[i]);
    }
    if (st->snaps) budget_release(st->snaps);
}
