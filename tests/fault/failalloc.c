/* Allocation-failure injection for the failalloc build (-DCSOCK_FAILALLOC=ON).
 *
 * The csock binary and the unit tests of that build are linked with
 * -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup, so every
 * allocation made by csock's own code (the library, the CLI, the test
 * programs; not libc's, OpenSSL's or cmocka's internals) comes here first.
 *
 *   CSOCK_FAILALLOC=N        the N-th allocation (1-based, counted over all
 *                            threads) returns NULL with errno ENOMEM; 0 or
 *                            unset: none fails (counting only)
 *   CSOCK_FAILALLOC_PERSIST=1  every allocation from the N-th on fails
 *   CSOCK_FAILALLOC_COUNT=PATH at exit, append "COUNT\n" (the number of
 *                            allocations made) to PATH
 *   CSOCK_FAILALLOC_TRACE=1  print the stack of the failed allocation
 *                            (ASan's symbolizer) to stderr
 *
 * The sweep (tests/fault/sweep_alloc.py) runs a program once to learn its
 * count, then once per N. Wrapping at link time instead of LD_PRELOAD keeps
 * it compatible with ASan, which owns malloc itself.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
char *__real_strdup(const char *s);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);
char *__wrap_strdup(const char *s);

/* ASan's, when present: a weak reference is NULL in a plain build. */
void __sanitizer_print_stack_trace(void) __attribute__((weak));

static atomic_ulong calls;
static unsigned long fail_at;
static int persist, trace;
static const char *count_path;

static void report_count(void)
{
    FILE *f = fopen(count_path, "a");
    if (f == NULL) return;
    fprintf(f, "%lu\n", atomic_load(&calls));
    fclose(f);
}

/* Before main (and before any csock code can allocate). */
__attribute__((constructor)) static void failalloc_init(void)
{
    const char *n = getenv("CSOCK_FAILALLOC");
    fail_at = n ? strtoul(n, NULL, 10) : 0;
    persist = getenv("CSOCK_FAILALLOC_PERSIST") != NULL;
    trace = getenv("CSOCK_FAILALLOC_TRACE") != NULL;
    count_path = getenv("CSOCK_FAILALLOC_COUNT");
    if (count_path && *count_path) atexit(report_count);
}

/* Count one allocation; true when this one must fail. */
static int should_fail(void)
{
    unsigned long n = atomic_fetch_add(&calls, 1) + 1;
    if (fail_at == 0 || (persist ? n < fail_at : n != fail_at)) return 0;
    if (trace) {
        fprintf(stderr, "failalloc: failing allocation %lu\n", n);
        if (__sanitizer_print_stack_trace) __sanitizer_print_stack_trace();
    }
    errno = ENOMEM;
    return 1;
}

void *__wrap_malloc(size_t size)
{
    return should_fail() ? NULL : __real_malloc(size);
}

void *__wrap_calloc(size_t n, size_t size)
{
    return should_fail() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t size)
{
    return should_fail() ? NULL : __real_realloc(p, size);
}

char *__wrap_strdup(const char *s)
{
    return should_fail() ? NULL : __real_strdup(s);
}
