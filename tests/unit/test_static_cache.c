/* The static-file handler's cache of larger files' descriptors and their
 * snapshots (src/proto/static_cache.c), driven directly with chosen loop
 * times: the fstat that catches a file changed in place runs on every use
 * of a file's descriptor, the shared descriptor outlives its entry while
 * an answer holds it, and snapshots (head and body in a memfd, or an
 * unlinked file in the snapshot directory) are made at most every
 * SNAP_RETRY_MS, within the file, head and memory limits; a directory
 * that refuses one rests, a sandbox that refuses memfds (seccomp, in a
 * child) turns snapshots off only where no directory is to be tried, and
 * none is made past RLIMIT_FSIZE (in a child). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "csock/csock.h"
#include "helpers.h"
#include "proto/static_int.h"

typedef struct fixture {
    char dir[64];
    char path[96];
    csock_http_static *st;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/csock-scache-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    snprintf(f->path, sizeof f->path, "%s/big.bin", f->dir);
    int fd = open(f->path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    int ok = fd >= 0 && ftruncate(fd, 20000) == 0; /* above CACHE_MAX_FILE */
    if (fd >= 0) close(fd);
    if (ok && csock_http_static_new(f->dir, NULL, &f->st) == 0) {
        *state = f;
        return 0;
    }
    unlink(f->path); /* (a refused allocation, under the fault sweep) */
    rmdir(f->dir);
    free(f);
    return -1;
}

static int teardown(void **state)
{
    fixture *f = *state;
    csock_http_static_free(f->st);
    unlink(f->path);
    char sd[96];
    snprintf(sd, sizeof sd, "%s/snaps", f->dir);
    rmdir(sd); /* (snapshot_in_the_snapshot_dir's; its snapshots have no name) */
    rmdir(f->dir);
    free(f);
    return 0;
}

/* Cache big.bin as the handler does after opening it, at loop time `now`. */
static const centry *put(fixture *f, uint64_t now)
{
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    struct stat sb;
    assert_int_equal(fstat(fd, &sb), 0);
    const centry *e = csock__static_cache_put(f->st, "big.bin", fd, &sb, now);
    close(fd); /* the cache keeps its own */
    assert_non_null(e);
    assert_non_null(e->sfd);
    return e;
}

static int fd_open(int fd) { return fcntl(fd, F_GETFD) >= 0; }

/* A file cut shorter in place is seen by the next use, in the same
 * millisecond too: the entry goes (its descriptor closed: no answer holds
 * it), and the file opened again is cached at its new length. */
static void cut_seen_at_once(void **state)
{
    fixture *f = *state;
    const centry *e = put(f, 5000);
    int fd = e->sfd->fd;
    assert_ptr_equal(csock__static_cache_get(f->st, "big.bin", 5000), e);
    assert_ptr_equal(csock__static_cache_get(f->st, "big.bin", 5000), e);
    assert_int_equal(truncate(f->path, 9000), 0);
    assert_null(csock__static_cache_get(f->st, "big.bin", 5000));
    assert_false(fd_open(fd));
    e = put(f, 5000);
    assert_int_equal(e->fi.size, 9000);
    assert_ptr_equal(csock__static_cache_get(f->st, "big.bin", 5001), e);
}

/* An answer in flight holds a reference: the entry expiring (or being
 * replaced) leaves the descriptor open for it, and the answer's release
 * closes it. */
static void descriptor_outlives_its_entry(void **state)
{
    fixture *f = *state;
    const centry *e = put(f, 10000);
    sharedfd *sfd = e->sfd;
    int fd = sfd->fd;
    assert_int_equal(sfd->refs, 1);
    sfd->refs++; /* what serve_file does for an answer's body */
    assert_null(csock__static_cache_get(f->st, "big.bin", 10000 + CACHE_TTL_MS));
    assert_true(fd_open(fd)); /* the answer still sends from it */
    assert_int_equal(sfd->refs, 1);
    csock__static_fd_release(sfd); /* the answer's stream is done with it */
    assert_false(fd_open(fd));
}

static const char HEAD[] = "HTTP/1.1 200 OK\r\nContent-Length: 20000\r\n\r\n";
#define HLEN (sizeof HEAD - 1)

/* The file's bytes as put() cached them: setup made them zeros. */
static void write_pattern(fixture *f, size_t n)
{
    int fd = open(f->path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)(i * 7 + 1);
        assert_int_equal(write(fd, &b, 1), 1);
    }
    close(fd);
}

/* fd's bytes [0, n): the head, then the file. */
static void assert_snapshot(int fd, size_t n)
{
    char *b = malloc(HLEN + n + 1);
    assert_non_null(b);
    assert_int_equal(pread(fd, b, HLEN + n + 1, 0), (ssize_t)(HLEN + n));
    assert_memory_equal(b, HEAD, HLEN);
    for (size_t i = 0; i < n; i++) assert_int_equal((unsigned char)b[HLEN + i], (unsigned char)(i * 7 + 1));
    free(b);
}

/* A snapshot holds the head and the body after it; the entry sends from
 * it without an fstat (the snapshot cannot shrink under an answer): a file
 * cut in place is seen when the entry expires, and never promised at a
 * length it lost. The file's own descriptor is closed (no answer holds
 * it). */
static void snapshot_holds_head_and_body(void **state)
{
    fixture *f = *state;
    write_pattern(f, 20000);
    const centry *e = put(f, 5000);
    int file_fd = e->sfd->fd;
    csock__static_snapshot(f->st, e, HEAD, HLEN, 5000);
    assert_ptr_equal(csock__static_cache_get(f->st, "big.bin", 5000), e);
    assert_non_null(e->sfd->budget);
    assert_int_equal(e->sfd->hlen, HLEN);
    assert_memory_equal(e->sfd->head, HEAD, HLEN);
    assert_false(fd_open(file_fd));
    assert_snapshot(e->sfd->fd, 20000);
    assert_int_equal(f->st->snaps->used, HLEN + 20000);
    assert_int_equal(truncate(f->path, 9000), 0);
    assert_ptr_equal(csock__static_cache_get(f->st, "big.bin", 5000 + CACHE_TTL_MS - 1), e);
    assert_snapshot(e->sfd->fd, 20000);
    assert_null(csock__static_cache_get(f->st, "big.bin", 5000 + CACHE_TTL_MS));
    assert_int_equal(f->st->snaps->used, 0); /* the expired entry gave its snapshot back */
}

/* Another head makes a new snapshot only SNAP_RETRY_MS after the last
 * (clients that differ must not make every answer a copy); the old one
 * stays open for the answer that holds it, and its bytes count until
 * that answer gives it back. */
static void snapshot_remade_at_most_every_retry(void **state)
{
    fixture *f = *state;
    write_pattern(f, 20000);
    const centry *e = put(f, 5000);
    csock__static_snapshot(f->st, e, HEAD, HLEN, 5000);
    sharedfd *first = e->sfd;
    first->refs++; /* an answer in flight */
    csock__static_snapshot(f->st, e, HEAD, HLEN, 5000 + SNAP_RETRY_MS - 1);
    assert_ptr_equal(e->sfd, first);
    csock__static_snapshot(f->st, e, HEAD, HLEN, 5000 + SNAP_RETRY_MS);
    assert_ptr_not_equal(e->sfd, first);
    assert_snapshot(e->sfd->fd, 20000); /* copied from the first snapshot's body */
    assert_true(fd_open(first->fd));
    assert_int_equal(f->st->snaps->used, 2 * (HLEN + 20000));
    int fd = first->fd;
    csock__static_fd_release(first);
    assert_false(fd_open(fd));
    assert_int_equal(f->st->snaps->used, HLEN + 20000);
}

/* A file written to between its last check and the end of the copy is
 * not snapshotted (the copy may be torn: neither version, under the old
 * validators): the entry is forgotten, and the file opened again. */
static void no_snapshot_of_a_file_changed_meanwhile(void **state)
{
    fixture *f = *state;
    write_pattern(f, 20000);
    const centry *e = put(f, 5000);
    struct timespec pause = {0, 20 * 1000 * 1000}; /* (a later mtime on any file system) */
    nanosleep(&pause, NULL);
    write_pattern(f, 20000); /* same size, new mtime */
    csock__static_snapshot(f->st, e, HEAD, HLEN, 5000);
    assert_true(!f->st->snaps || f->st->snaps->used == 0); /* none made */
    assert_null(e->sfd);                                       /* the entry forgotten */
    assert_null(csock__static_cache_get(f->st, "big.bin", 5000));
}

/* No snapshot for a head longer than SNAP_HEAD_MAX or a file larger than
 * SNAP_MAX_FILE: the entry keeps the file's descriptor (checked by fstat). */
static void no_snapshot_past_the_limits(void **state)
{
    fixture *f = *state;
    const centry *e = put(f, 5000);
    sharedfd *file = e->sfd;
    char long_head[SNAP_HEAD_MAX + 1];
    memset(long_head, 'x', sizeof long_head);
    csock__static_snapshot(f->st, e, long_head, sizeof long_head, 5000);
    assert_ptr_equal(e->sfd, file);
    assert_int_equal(truncate(f->path, SNAP_MAX_FILE + 1), 0);
    assert_null(csock__static_cache_get(f->st, "big.bin", 5000)); /* seen by the fstat */
    e = put(f, 5000);
    file = e->sfd;
    csock__static_snapshot(f->st, e, HEAD, HLEN, 5000);
    assert_ptr_equal(e->sfd, file);
    assert_null(e->sfd->budget);
}

/* Snapshots held by answers in flight count against SNAP_BUDGET: past it
 * no more are made (the entry keeps the one it has), so clients that stall
 * answers cannot make the server's memory grow; given back, they free it. */
static void snapshots_stop_at_the_budget(void **state)
{
    fixture *f = *state;
    size_t size = SNAP_MAX_FILE, each = HLEN + size;
    assert_int_equal(truncate(f->path, (off_t)size), 0);
    const centry *e = put(f, 5000);
    enum { MANY = SNAP_BUDGET / (SNAP_MAX_FILE + HLEN) + 2 };
    sharedfd *held[MANY];
    int n = 0;
    for (uint64_t now = 5000; n < MANY; now += SNAP_RETRY_MS) {
        csock__static_snapshot(f->st, e, HEAD, HLEN, now);
        if (!e->sfd->budget || (n && e->sfd == held[n - 1])) break; /* refused */
        held[n++] = e->sfd;
        e->sfd->refs++; /* an answer in flight holds it */
    }
    assert_int_equal((size_t)n, SNAP_BUDGET / each);
    assert_true(f->st->snaps->used <= SNAP_BUDGET);
    for (int i = 0; i < n; i++) csock__static_fd_release(held[i]);
    assert_int_equal(f->st->snaps->used, e->sfd->budget ? each : 0);
}

/* The handler made again with snapshot_dir `sd` (its cache empty). */
static void remake(fixture *f, const char *sd)
{
    csock_http_static_free(f->st);
    f->st = NULL;
    csock_http_static_opts o = {.snapshot_dir = sd};
    assert_int_equal(csock_http_static_new(f->dir, &o, &f->st), 0);
}

/* Skip where the test's directory (under /tmp) takes no O_TMPFILE (an
 * overlayfs before Linux 6.6): nothing to test there. */
static void need_tmpfile(const char *dir)
{
    int fd = open(dir, O_TMPFILE | O_RDWR, 0600);
    if (fd < 0) skip();
    close(fd);
}

/* What fd is, as /proc/self/fd says. */
static const char *fd_link(int fd, char *buf, size_t n)
{
    char p[64];
    snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
    ssize_t r = readlink(p, buf, n - 1);
    assert_true(r > 0);
    buf[r] = 0;
    return buf;
}

/* Names in dir, but . and .., or -1 (no cmocka assert: children call it). */
static int count_names(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    for (struct dirent *x; (x = readdir(d));) n += strcmp(x->d_name, ".") && strcmp(x->d_name, "..");
    closedir(d);
    return n;
}

static int entries(const char *dir)
{
    int n = count_names(dir);
    assert_true(n >= 0);
    return n;
}

static void assert_in_dir(int fd, const char *dir)
{
    char link[256], want[128];
    fd_link(fd, link, sizeof link);
    snprintf(want, sizeof want, "%s/#", dir);
    assert_memory_equal(link, want, strlen(want));
    assert_non_null(strstr(link, " (deleted)"));
}

static void assert_memfd(int fd)
{
    char link[256];
    assert_memory_equal(fd_link(fd, link, sizeof link), "/memfd:csock-static", 19);
}

/* Without snapshot_dir (NULL or ""), a snapshot is a memfd. */
static void memfd_snapshots_by_default(void **state)
{
    fixture *f = *state;
    write_pattern(f, 20000);
    for (int i = 0; i < 2; i++) {
        if (i) remake(f, "");
        const centry *e = put(f, 5000);
        csock__static_snapshot(f->st, e, HEAD, HLEN, 5000);
        assert_non_null(e->sfd->budget);
        assert_snapshot(e->sfd->fd, 20000);
        assert_memfd(e->sfd->fd);
    }
}

/* With snapshot_dir, a snapshot is an unlinked file there: /proc shows
 * "DIR/#inode (deleted)", the directory lists nothing. */
static void snapshot_in_the_snapshot_dir(void **state)
{
    fixture *f = *state;
    char sd[96];
    snprintf(sd, sizeof sd, "%s/snaps", f->dir);
    assert_int_equal(mkdir(sd, 0700), 0);
    need_tmpfile(sd);
    remake(f, sd);
    write_pattern(f, 20000);
    const centry *e = put(f, 5000);
    csock__static_snapshot(f->st, e, HEAD, HLEN, 5000);
    assert_non_null(e->sfd->budget);
    assert_snapshot(e->sfd->fd, 20000);
    assert_in_dir(e->sfd->fd, sd);
    assert_int_equal(entries(sd), 0);
}

/* A snapshot_dir that cannot hold a snapshot is the caller's error, at
 * csock_http_static_new: missing, a file, or without O_TMPFILE (/proc). */
static void snapshot_dir_that_cannot_hold_one(void **state)
{
    fixture *f = *state;
    csock_http_static *st = NULL;
    csock_http_static_opts o = {.snapshot_dir = "/nonexistent-csock-snapshots"};
    assert_int_equal(csock_http_static_new(f->dir, &o, &st), -ENOENT);
    o.snapshot_dir = f->path;
    assert_int_equal(csock_http_static_new(f->dir, &o, &st), -ENOTDIR);
    o.snapshot_dir = "/proc";
    int rc = csock_http_static_new(f->dir, &o, &st);
    assert_true(rc == -EOPNOTSUPP || rc == -EACCES || rc == -EROFS); /* (EACCES: not root) */
    assert_null(st);
}

/* The handler made with the test's directory as its snapshot directory,
 * big.bin cached at 5000, and a first snapshot refused there: that try
 * makes a memfd, and the directory rests until 5000 + SNAP_DIR_RETRY_MS. The
 * refusal: for that try the handler's directory is /proc's, which takes no
 * O_TMPFILE, as a directory remounted read-only refuses one (a refused
 * copy into the file, ENOSPC, is dir_that_refuses_the_copy_rests'). */
static const centry *refused_by_the_dir(fixture *f)
{
    need_tmpfile(f->dir);
    remake(f, f->dir);
    write_pattern(f, 20000);
    const centry *e = put(f, 5000);
    sharedfd *file = e->sfd;
    assert_int_equal(f->st->snapdir_rest_until, 0);
    int dir = f->st->snapdir, proc = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(proc >= 0);
    f->st->snapdir = proc;
    csock__static_snapshot(f->st, e, HEAD, HLEN, 5000);
    f->st->snapdir = dir;
    close(proc);
    assert_ptr_not_equal(e->sfd, file); /* that try's snapshot: a memfd */
    assert_memfd(e->sfd->fd);
    assert_snapshot(e->sfd->fd, 20000);
    assert_int_equal(f->st->snapdir_rest_until, 5000 + SNAP_DIR_RETRY_MS);
    return e;
}

/* A snapshot directory that refuses a file rests: that try and the next,
 * SNAP_RETRY_MS later, make memfds; SNAP_DIR_RETRY_MS later the directory
 * is tried again. */
static void refusing_snapshot_dir_rests(void **state)
{
    fixture *f = *state;
    const centry *e = refused_by_the_dir(f);
    csock__static_snapshot(f->st, e, HEAD, HLEN, 5000 + SNAP_RETRY_MS);
    assert_non_null(e->sfd->budget);
    assert_snapshot(e->sfd->fd, 20000);
    assert_memfd(e->sfd->fd);
    csock__static_snapshot(f->st, e, HEAD, HLEN, 5000 + SNAP_DIR_RETRY_MS - SNAP_RETRY_MS);
    assert_memfd(e->sfd->fd); /* (a new memfd: still resting) */
    csock__static_snapshot(f->st, e, HEAD, HLEN, 5000 + SNAP_DIR_RETRY_MS);
    assert_snapshot(e->sfd->fd, 20000);
    assert_in_dir(e->sfd->fd, f->dir);
    assert_int_equal(entries(f->dir), 1); /* big.bin alone */
}

/* From here on system call `nr` fails with `err`, as a sandbox's seccomp
 * filter makes it (no arch check: a test on the build's own ABI). For a
 * child process only: a filter is never lifted. */
static int refuse_syscall(long nr, int err)
{
    struct sock_filter prog[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (unsigned)err),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog fp = {(unsigned short)(sizeof prog / sizeof prog[0]), prog};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) return -1;
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fp);
}

/* Run child(f, e, file) in a child process (seccomp filters and resource
 * limits stay there; no cmocka asserts in it: they would unwind into the
 * child's copy of the runner). Its exit status names the check that
 * failed; 77 skips; a signal fails. */
static void in_child(int (*child)(fixture *, const centry *, sharedfd *), fixture *f, const centry *e)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) _exit(child(f, e, e->sfd));
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status)) fail_msg("the child died of signal %d", WTERMSIG(status));
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 77) skip(); /* (no seccomp filters, or a lower hard limit) */
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* The child's part of dir_that_refuses_the_copy_rests. */
static int refused_copy_child(fixture *f, const centry *e, sharedfd *file)
{
    if (refuse_syscall(SYS_sendfile, ENOSPC)) return 77;
#ifdef SYS_sendfile64
    if (refuse_syscall(SYS_sendfile64, ENOSPC)) return 77; /* (32-bit ABIs) */
#endif
    int fds = count_names("/proc/self/fd"); /* (its own directory fd counted each time) */
    csock__static_snapshot(f->st, e, HEAD, HLEN, 5000);
    if (e->sfd != file) return 10;
    if (f->st->snapdir_rest_until != 5000 + SNAP_DIR_RETRY_MS) return 11;
    if (fds < 0 || count_names("/proc/self/fd") != fds) return 12; /* the refused file closed */
    return 0;
}

/* A snapshot directory whose file takes the head but not the body (a
 * full disk: the copy, a sendfile into it, fails with ENOSPC) fails that
 * try, closes that file, and rests. */
static void dir_that_refuses_the_copy_rests(void **state)
{
    fixture *f = *state;
    need_tmpfile(f->dir);
    remake(f, f->dir);
    write_pattern(f, 20000);
    in_child(refused_copy_child, f, put(f, 5000));
}

/* The child's part of memfd_refused_while_the_dir_rests (no cmocka
 * asserts there: they would unwind into the child's copy of the runner).
 * Its exit status names the check that failed. */
static int refused_memfd_child(fixture *f, const centry *e, sharedfd *file)
{
    if (refuse_syscall(SYS_memfd_create, EPERM)) return 77;
    errno = 0;
    if (syscall(SYS_memfd_create, "probe", 0) >= 0 || errno != EPERM) return 10;
    csock__static_snapshot(f->st, e, HEAD, HLEN, 5000 + SNAP_RETRY_MS); /* resting: a memfd, refused */
    if (e->sfd != file) return 11;
    if (f->st->no_snap) return 12; /* the directory is still to be tried again */
    csock__static_snapshot(f->st, e, HEAD, HLEN, 5000 + SNAP_DIR_RETRY_MS);
    if (e->sfd == file || !e->sfd->budget) return 13;
    char link[256], want[128];
    snprintf(want, sizeof want, "/proc/self/fd/%d", e->sfd->fd);
    ssize_t r = readlink(want, link, sizeof link - 1);
    if (r <= 0) return 14;
    link[r] = 0;
    snprintf(want, sizeof want, "%s/#", f->dir);
    if (strncmp(link, want, strlen(want))) return 15;
    /* Without a directory, the same refusal turns snapshots off for good. */
    csock_http_static *plain;
    if (csock_http_static_new(f->dir, NULL, &plain)) return 16;
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb)) return 17;
    const centry *pe = csock__static_cache_put(plain, "big.bin", fd, &sb, 5000);
    close(fd);
    if (!pe) return 18;
    sharedfd *pfile = pe->sfd;
    csock__static_snapshot(plain, pe, HEAD, HLEN, 5000);
    if (pe->sfd != pfile || !plain->no_snap) return 19;
    csock_http_static_free(plain);
    return 0;
}

/* A sandbox that refuses memfd_create while the snapshot directory rests:
 * no snapshot then, and the directory is tried again when its rest ends
 * (a refusal of memfds alone turns snapshots off only for a handler
 * without a directory). In a child, which the seccomp filter stays in. */
static void memfd_refused_while_the_dir_rests(void **state)
{
    fixture *f = *state;
    in_child(refused_memfd_child, f, refused_by_the_dir(f));
    assert_int_equal(entries(f->dir), 1); /* big.bin alone: the child's snapshot had no name */
}

/* The child's part of no_snapshot_past_the_file_size_limit: its status
 * names the failed check; SIGXFSZ (left at its default action) kills it. */
static int fsize_limited_child(fixture *f, const centry *e, sharedfd *file)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_FSIZE, &rl) || rl.rlim_max < HLEN + 20000) return 77;
    rl.rlim_cur = HLEN + 20000 - 1; /* a byte short of the snapshot */
    if (setrlimit(RLIMIT_FSIZE, &rl)) return 77;
    signal(SIGXFSZ, SIG_DFL);
    csock__static_snapshot(f->st, e, HEAD, HLEN, 5000);
    if (e->sfd != file || e->sfd->budget) return 10; /* no snapshot */
    if (f->st->no_snap) return 11;                   /* not turned off: the limit may rise */
    rl.rlim_cur = HLEN + 20000;
    if (setrlimit(RLIMIT_FSIZE, &rl)) return 77;
    csock__static_snapshot(f->st, e, HEAD, HLEN, 5000 + SNAP_RETRY_MS);
    if (e->sfd == file || !e->sfd->budget) return 12; /* it fits now */
    return 0;
}

/* A process whose RLIMIT_FSIZE is below a snapshot's size (`ulimit -f`)
 * gets none, and is not killed by the SIGXFSZ a too-long write raises
 * (its default action; a server that dies with its second answer of a
 * large file, as csock serve http did); the limit raised, the next try
 * makes one. In a child: the limit and the signal are the process's. */
static void no_snapshot_past_the_file_size_limit(void **state)
{
    fixture *f = *state;
    write_pattern(f, 20000);
    in_child(fsize_limited_child, f, put(f, 5000));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(cut_seen_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(descriptor_outlives_its_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(snapshot_holds_head_and_body, setup, teardown),
        cmocka_unit_test_setup_teardown(snapshot_remade_at_most_every_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(no_snapshot_past_the_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(no_snapshot_of_a_file_changed_meanwhile, setup, teardown),
        cmocka_unit_test_setup_teardown(snapshots_stop_at_the_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(memfd_snapshots_by_default, setup, teardown),
        cmocka_unit_test_setup_teardown(snapshot_in_the_snapshot_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(snapshot_dir_that_cannot_hold_one, setup, teardown),
        cmocka_unit_test_setup_teardown(refusing_snapshot_dir_rests, setup, teardown),
        cmocka_unit_test_setup_teardown(dir_that_refuses_the_copy_rests, setup, teardown),
        cmocka_unit_test_setup_teardown(memfd_refused_while_the_dir_rests, setup, teardown),
        cmocka_unit_test_setup_teardown(no_snapshot_past_the_file_size_limit, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
