/* Connecting to a name with Happy Eyeballs (RFC 8305), and TLS on the
 * winner: see csock/resolve.h for the resolution it starts with. A dial is
 * a handle of a loop, used from the loop's thread; cancelling it before its
 * callback ran frees it and the callback never runs. In a header of its own
 * because it sits above TLS, while resolution belongs to the net layer. */
#ifndef CSOCK_DIAL_H
#define CSOCK_DIAL_H

#include "csock/api.h"
#include "csock/net.h"
#include "csock/resolve.h"
#include "csock/tls.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct csock_dial csock_dial;

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
