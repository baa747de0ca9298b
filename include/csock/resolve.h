/* Names without blocking the loop: resolution on a resolver thread, and
 * connecting to a name with Happy Eyeballs (RFC 8305).
 *
 * csock_addr_resolve() blocks in getaddrinfo(), for as long as DNS takes.
 * csock_resolve_start() runs the same resolution on a short-lived thread of its
 * own and hands the results to a callback on the loop's thread.
 * csock_dial_start() (csock/dial.h) goes on from there to a connected stream: for a name with
 * both IPv6 and IPv4 addresses it tries IPv6 first and starts the next
 * address every 250 ms (or as soon as an attempt fails) while the earlier
 * ones go on; the first to connect wins and the others are closed. tls://
 * addresses then get their handshake, verified against the name.
 *
 * Both are handles of a loop, used from the loop's thread. Cancelling one
 * before its callback ran frees it: the callback never runs. A thread that
 * is still inside getaddrinfo() when its request is cancelled finishes on
 * its own and drops its answer; until it has, the loop keeps running and
 * csock_loop_free() returns -EBUSY (as for a pending csock_loop_post()).
 */
#ifndef CSOCK_RESOLVE_H
#define CSOCK_RESOLVE_H

#include "csock/api.h"
#include "csock/net.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct csock_resolve csock_resolve;

/* The most results one resolution returns. */
#define CSOCK_RESOLVE_MAX 32

/* ---- resolution -------------------------------------------------------------- */

/* The answer, on the loop's thread: status is the count (>= 1) with
 * addrs[0..n) filled, or one of csock_addr_resolve()'s errors (CSOCK_ENONAME,
 * CSOCK_EAGAINRESOLVE, CSOCK_EBADADDR, -ENOMEM, ...) with n 0. `addrs` is
 * valid during the call only. The handle is freed when the callback returns
 * (do not cancel it from inside). */
typedef void (*csock_resolve_cb)(csock_resolve *r, int status, const csock_addr *addrs, size_t n);

/* (An option struct: zero-initialize it, see net.h.) */
typedef struct csock_resolve_opts {
    int flags;      /* CSOCK_ADDR_IPV4, _IPV6, _PASSIVE, _NUMERIC as for csock_addr_resolve */
    unsigned max;   /* most results (0 or above CSOCK_RESOLVE_MAX: CSOCK_RESOLVE_MAX) */
    uint64_t reserved[4];
} csock_resolve_opts;

/* Resolve `text` (any address csock_addr_resolve() takes) without blocking.
 * A numeric address or a Unix path needs no thread and an address that
 * does not parse needs no DNS: the callback still runs from the loop, never
 * inside this call. Returns 0 and sets *out (may be NULL); -EINVAL for a
 * NULL loop, text or cb; -ENOMEM; pthread_create()'s error (-EAGAIN). */
CSOCK_API int csock_resolve_start(csock_loop *loop, const char *text, const csock_resolve_opts *opts,
                            csock_resolve_cb cb, void *data, csock_resolve **out);

/* Cancel a resolution whose callback has not run: it never will, and the
 * handle is gone. Loop thread only. */
CSOCK_API void csock_resolve_cancel(csock_resolve *r);

/* The `data` given to csock_resolve_start(). */
CSOCK_API void *csock_resolve_data(const csock_resolve *r);

#ifdef __cplusplus
}
#endif
#endif
