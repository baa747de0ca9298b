/* LD_PRELOAD shim for test_netcat_nomem.py: the FAIL_AT-th allocation
 * (malloc, calloc, realloc, posix_memalign, aligned_alloc; counted from
 * this constructor, so the dynamic loader's own do not count) returns NULL
 * with ENOMEM. FAIL_AT=0 fails none. At exit the number of allocations
 * seen is appended to the file FAIL_COUNT, so a driver knows how far to
 * sweep. Children (-e programs) allocate normally: LD_PRELOAD is dropped. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static long fail_at, count;
static int active;

static void report(void)
{
    const char *path = getenv("FAIL_COUNT");
    int fd = path ? open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : -1;
    if (fd < 0) return;
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%ld\n", count);
    if (write(fd, buf, (size_t)n) < 0) { /* nothing to do */ }
    close(fd);
}

__attribute__((constructor)) static void init(void)
{
    const char *s = getenv("FAIL_AT");
    fail_at = s ? atol(s) : 0;
    atexit(report);
    unsetenv("LD_PRELOAD");
    active = 1;
}

static int fail_now(void)
{
    if (!active) return 0;
    if (++count != fail_at) return 0;
    errno = ENOMEM;
    return 1;
}

void *malloc(size_t n) { return fail_now() ? NULL : __libc_malloc(n); }
void *calloc(size_t a, size_t b) { return fail_now() ? NULL : __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { return n && fail_now() ? NULL : __libc_realloc(p, n); }
void *aligned_alloc(size_t al, size_t n) { return fail_now() ? NULL : __libc_memalign(al, n); }

int posix_memalign(void **out, size_t al, size_t n)
{
    if (fail_now()) return ENOMEM;
    void *p = __libc_memalign(al, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}
