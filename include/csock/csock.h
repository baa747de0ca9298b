/* csock: event-driven client/server sockets in C.
 *
 * Include this one header. Every public function is csock_-prefixed and
 * returns 0 (or a count) on success and a negative error code on failure:
 * a negative errno value (-ECONNREFUSED) or one of the library codes below,
 * which sit outside the errno range. csock_strerror() names either kind.
 *
 * Threads: a loop and every handle on it belong to the thread that runs the
 * loop. The only calls that are safe from another thread are
 * csock_loop_post() and csock_loop_stop(). There is no global mutable state.
 */
#ifndef CSOCK_CSOCK_H
#define CSOCK_CSOCK_H

#include <errno.h>
#include <stddef.h>

#define CSOCK_VERSION_MAJOR 0
#define CSOCK_VERSION_MINOR 1
#define CSOCK_VERSION_PATCH 0

/* Library-only error codes: X(name, value, message). Values are below -4000,
 * far from any errno, so one int carries either kind. */
#define CSOCK_ERRNO_MAP(X)                                                                 \
    X(EOF, -4095, "end of stream")                                                         \
    X(EBADADDR, -4094, "malformed address")                                                \
    X(ENONAME, -4093, "host name not found")                                               \
    X(ETOOBIG, -4092, "message exceeds the maximum size")                                  \
    X(ETLS, -4091, "TLS error")                                                            \
    X(EHTTP, -4090, "malformed HTTP message")                                              \
    X(EAGAINRESOLVE, -4089, "temporary failure in name resolution")                        \
    X(ESCHEME, -4088, "address scheme not valid here")

enum {
#define CSOCK__ERR_ENUM(name, value, msg) CSOCK_##name = (value),
    CSOCK_ERRNO_MAP(CSOCK__ERR_ENUM)
#undef CSOCK__ERR_ENUM
};

#ifdef __cplusplus
extern "C" {
#endif

/* A short English description of an error code (library code or -errno).
 * Returns a static string; never NULL. Thread-safe. */
const char *csock_strerror(int err);

/* The symbolic name of an error code ("ECONNREFUSED", "EOF"). Static string. */
const char *csock_err_name(int err);

/* The library's version, "MAJOR.MINOR.PATCH". */
const char *csock_version(void);

#ifdef __cplusplus
}
#endif

#include "csock/loop.h"
#include "csock/net.h"
#include "csock/tls.h"
#include "csock/http.h"

#endif
