/* CSOCK_API marks the library's public functions. The library is built with
 * -fvisibility=hidden, so only what a header declares with CSOCK_API is
 * exported from libcsock.so; internals (csock__*) stay private to it.
 * Programs that use the library see no difference. */
#ifndef CSOCK_API_H
#define CSOCK_API_H

#if defined(__GNUC__) || defined(__clang__)
#define CSOCK_API __attribute__((visibility("default")))
#else
#define CSOCK_API
#endif

#endif
