/* csock: event-driven client/server sockets in C.
 *
 * Include this one header. Every public function is csock_-prefixed and
 * returns 0 (or a count) on success and a negative error code on failure:
 * a negative errno value (-ECONNREFUSED) or one of the library codes of
 * csock/error.h, which sit outside the errno range. csock_strerror() names
 * either kind.
 *
 * Threads: a loop and every handle on it belong to the thread that runs the
 * loop. The only calls that are safe from another thread are
 * csock_loop_post() and csock_loop_stop(). There is no global mutable state.
 */
#ifndef CSOCK_CSOCK_H
#define CSOCK_CSOCK_H

#include "csock/error.h"
#include "csock/loop.h"
#include "csock/net.h"
#include "csock/tls.h"
#include "csock/resolve.h"
#include "csock/dial.h"
#include "csock/http.h"
#include "csock/ws.h"

#endif
