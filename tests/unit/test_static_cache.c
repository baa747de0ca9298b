/* The static-file handler's cache of larger files' descriptors
 * (src/proto/static_cache.c), driven directly with chosen loop times: the
 * fstat that catches a file changed in place runs on every use, and the
 * shared descriptor outlives its entry while an answer holds it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(cut_seen_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(descriptor_outlives_its_entry, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
