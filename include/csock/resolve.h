/* Names without blocking the loop: resolution on a resolver thread, and
 * connecting to a name with Happy Eyeballs (RFC 8305).
 *
 * csock_addr_resolve() blocks in getaddrinfo(), for as long as DNS takes.
 * csock_resolve_start() runs the same resolution on a short-lived thread of its
 * own and hands the results to a callback on the loop's thread.
 * csock_dial_start() goes on from there to a connected stream: for a name with
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
#include "csock/tls.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct csock_resolve csock_resolve;
typedef struct csock_dial csock_dial;

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

/* ---- connecting to a name ------------------------------------------------------ */

/* The result: status 0 with `s` the connected stream (for tls://, its
 * handshake done), which is now the caller's (its data slot is NULL, it is
 * not reading yet); or an error with `s` NULL: the last connect's error
 * (-ECONNREFUSED, ...), a resolution error, -ETIMEDOUT past timeout_ms,
 * CSOCK_ETLS for a failed handshake. The dial handle is freed when the
 * callback returns. */
typedef void (*csock_dial_cb)(csock_dial *d, int status, csock_stream *s);

/* (An option struct: zero-initialize it, see net.h.) */
typedef struct csock_dial_opts {
    uint64_t timeout_ms;       /* the whole dial (resolution, connects, handshake); 0: none
                                  (each connect then has the kernel's own timeout) */
    uint64_t attempt_delay_ms; /* before starting the next address; 0: 250 (RFC 8305) */
    csock_tls_ctx *tls;        /* client context for tls:// (required there); also used
                                  for tcp:// when `tls_always` is set */
    int flags;                 /* CSOCK_ADDR_IPV4 / CSOCK_ADDR_IPV6: one family only */
    int tls_always;            /* run TLS whatever the scheme */
    uint64_t reserved[4];
} csock_dial_opts;

/* Connect to `text`: tcp://HOST:PORT, tls://HOST:PORT, HOST:PORT or
 * unix:PATH (connected directly). Returns 0 and sets *out (may be NULL);
 * -EINVAL for a NULL argument or tls:// without opts->tls; CSOCK_ESCHEME for
 * a datagram address; an address that does not parse (CSOCK_EBADADDR,
 * CSOCK_ENOPORT, ...); -ENOMEM; pthread_create()'s error. The callback
 * runs once, from the loop, unless the dial is cancelled first. */
CSOCK_API int csock_dial_start(csock_loop *loop, const char *text, const csock_dial_opts *opts,
                         csock_dial_cb cb, void *data, csock_dial **out);

/* The same race over addresses already resolved (all of one scheme: tcp,
 * tls or unix), tried in the order RFC 8305 gives them: the families
 * interleaved, starting with the family of addrs[0]. For tls:// the name
 * verified is addrs[0].host. `addrs` is copied. Same returns. */
CSOCK_API int csock_dial_addrs(csock_loop *loop, const csock_addr *addrs, size_t n,
                               const csock_dial_opts *opts, csock_dial_cb cb, void *data,
                               csock_dial **out);

/* Cancel a dial whose callback has not run: every attempt is closed, the
 * callback never runs, the handle is gone. Loop thread only. */
CSOCK_API void csock_dial_cancel(csock_dial *d);

/* The `data` given to csock_dial_start(). */
CSOCK_API void *csock_dial_data(const csock_dial *d);

#ifdef __cplusplus
}
#endif
#endif
