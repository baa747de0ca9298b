/* Error codes, their names and descriptions, and the library's version.
 *
 * Every public function returns 0 (or a count) on success and a negative
 * error code on failure: a negative errno value (-ECONNREFUSED) or one of
 * the library codes below, which sit outside the errno range (below -4000),
 * so one int carries either kind. csock_strerror() and csock_err_name()
 * name both kinds. csock/csock.h includes this header; the loop layer uses
 * it alone.
 */
#ifndef CSOCK_ERROR_H
#define CSOCK_ERROR_H

#include <errno.h>
#include <stddef.h>

#include "csock/api.h"

#define CSOCK_VERSION_MAJOR 0
#define CSOCK_VERSION_MINOR 1
#define CSOCK_VERSION_PATCH 0

/* Library-only error codes: X(name, value, message). Values are below -4000,
 * far from any errno. A code is never renumbered; new ones take the next
 * lower value. */
#define CSOCK_ERRNO_MAP(X)                                                                 \
    X(EOF, -4095, "end of stream")                                                         \
    X(EBADADDR, -4094, "malformed address")                                                \
    X(ENONAME, -4093, "host name not found")                                               \
    X(ETOOBIG, -4092, "message exceeds the maximum size")                                  \
    X(ETLS, -4091, "TLS error")                                                            \
    X(EHTTP, -4090, "malformed HTTP message")                                              \
    X(EAGAINRESOLVE, -4089, "temporary failure in name resolution")                        \
    X(ESCHEME, -4088, "address scheme not valid here")                                     \
    X(ENOPORT, -4087, "address has no port")                                               \
    X(EBADPORT, -4086, "port out of range")                                                \
    X(EBRACKETS, -4085, "IPv6 address needs [brackets] before :port")                      \
    X(EUNKSCHEME, -4084,                                                                   \
      "unknown address scheme (known: tcp:// udp:// tls:// unix: unixgram:)")

enum {
#define CSOCK__ERR_ENUM(name, value, msg) CSOCK_##name = (value),
    CSOCK_ERRNO_MAP(CSOCK__ERR_ENUM)
#undef CSOCK__ERR_ENUM
};

#ifdef __cplusplus
extern "C" {
#endif

/* A short English description of an error code (a library code or a
 * negative errno value); "success" for 0. Returns a static string, never
 * NULL: "unknown error" for anything else (a positive value included).
 * Thread-safe and independent of the locale. */
CSOCK_API const char *csock_strerror(int err);

/* The symbolic name of an error code: "ECONNREFUSED" for -ECONNREFUSED,
 * "EOF" for CSOCK_EOF, "OK" for 0, "UNKNOWN" otherwise. Static string. */
CSOCK_API const char *csock_err_name(int err);

/* The version of the library actually linked, "MAJOR.MINOR.PATCH" (compare
 * with the CSOCK_VERSION_* the program was compiled against). */
CSOCK_API const char *csock_version(void);

#ifdef __cplusplus
}
#endif
#endif
