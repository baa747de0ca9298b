/* The net layer: addresses, streams (TCP, Unix, and TLS on top), listeners,
 * connectors, datagram sockets (UDP, Unix datagrams) and message framing.
 *
 * Streams, listeners and datagram sockets are handles of a loop (see loop.h):
 * created by a call that allocates them, released by their close call, whose
 * callback runs on a later iteration; nothing is freed under a running
 * callback. All of them are used from the loop's thread only.
 */
#ifndef CSOCK_NET_H
#define CSOCK_NET_H

#include "csock/api.h"
#include "csock/loop.h" /* csock_handle_kind, for csock_handle_close() */

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct csock_loop csock_loop;
typedef struct csock_stream csock_stream;
typedef struct csock_listener csock_listener;
typedef struct csock_dgram csock_dgram;

/* ---- addresses ------------------------------------------------------------ */

typedef enum {
    CSOCK_TCP = 1,  /* tcp://HOST:PORT, or a bare HOST:PORT */
    CSOCK_UDP,      /* udp://HOST:PORT */
    CSOCK_UNIX,     /* unix:PATH (unix:@NAME for the Linux abstract namespace) */
    CSOCK_UNIXGRAM, /* unixgram:PATH */
    CSOCK_TLS,      /* tls://HOST:PORT: TCP with TLS on top (see tls.h) */
} csock_scheme;

/* A parsed (and resolved) endpoint. Plain data: copy it freely. */
typedef struct csock_addr {
    csock_scheme scheme;
    socklen_t len;               /* bytes of `sa` in use */
    struct sockaddr_storage sa;  /* sockaddr_in, sockaddr_in6 or sockaddr_un */
    char host[256];              /* the host as written (names kept for TLS SNI) */
} csock_addr;

/* A buffer this large holds any text csock_addr_format() writes, NUL
 * included: the longest is a unixgram: address whose path fills sun_path
 * (9 + 108 bytes + NUL); an IPv6 one with a scope and a port needs 75. */
#define CSOCK_ADDR_STRLEN 128

/* Flags for csock_addr_resolve(). */
enum {
    CSOCK_ADDR_IPV4 = 1,    /* only IPv4 results */
    CSOCK_ADDR_IPV6 = 2,    /* only IPv6 results */
    CSOCK_ADDR_PASSIVE = 4, /* for binding: an empty host means every interface */
    CSOCK_ADDR_NUMERIC = 8, /* never consult DNS: a name is CSOCK_ENONAME */
};

/* Parse and resolve `text`: tcp://HOST:PORT, udp://HOST:PORT, tls://HOST:PORT,
 * unix:PATH, unixgram:PATH or HOST:PORT (tcp); schemes are case-insensitive.
 * HOST is a name, an IPv4 address or [IPv6] (brackets required, a %scope
 * allowed inside them); PORT is 0-65535. With CSOCK_ADDR_PASSIVE an empty
 * HOST (":80") means every interface. Fills up to `max` results in `out`
 * (for a name with several addresses, duplicates dropped) and returns how
 * many (>= 1), or an error that says what is wrong:
 *   CSOCK_ENOPORT      no port ("localhost", "127.0.0.1:", "[::1]");
 *   CSOCK_EBADPORT     a port past 65535;
 *   CSOCK_EBRACKETS    an IPv6 address without brackets ("::1:80");
 *   CSOCK_EUNKSCHEME   a scheme csock does not know ("http://...");
 *   CSOCK_EBADADDR     anything else malformed (a stray character, a Unix
 *                      path longer than sun_path, an empty host);
 *   CSOCK_ENONAME      no such host (or none of the family asked for; with
 *                      CSOCK_ADDR_NUMERIC, any name);
 *   CSOCK_EAGAINRESOLVE  a temporary DNS failure; -ENOMEM;
 *   -EINVAL            text or out NULL, or max 0.
 * A name is resolved with getaddrinfo(), which blocks: resolve before the
 * loop starts, or from another thread. Numeric hosts never touch DNS. */
CSOCK_API int csock_addr_resolve(const char *text, int flags, csock_addr *out, size_t max);

/* csock_addr_resolve() keeping only the first result. Returns 0 (not the
 * count) and fills *out, or one of csock_addr_resolve()'s errors. */
CSOCK_API int csock_addr_parse(const char *text, int flags, csock_addr *out);

/* Write the address as text ("tcp://127.0.0.1:43125", "udp://[::1]:7",
 * "unix:/tmp/s", "unix:@name") into buf, NUL-terminated; a buffer of
 * CSOCK_ADDR_STRLEN bytes always suffices. Returns the length (without the
 * NUL), -ENOSPC if it did not fit (buf is then "", never a truncated
 * address), or -EAFNOSUPPORT for a family other than IPv4, IPv6 and Unix. */
CSOCK_API int csock_addr_format(const csock_addr *a, char *buf, size_t size);

/* The port of an IP address (0 for Unix addresses), and setting it (taken
 * modulo 65536; nothing happens to a Unix address). */
CSOCK_API int csock_addr_port(const csock_addr *a);
CSOCK_API void csock_addr_set_port(csock_addr *a, int port);

/* 1 for stream schemes (tcp, unix, tls), 0 for datagram ones. */
CSOCK_API int csock_addr_is_stream(const csock_addr *a);

/* ---- streams --------------------------------------------------------------- */

/* Read callback. `buf`/`len` are all the bytes received and not yet consumed;
 * return how many you consumed (0..len). The rest is kept and offered again,
 * ahead of newer bytes, so a parser never has to copy a partial message.
 * status 0: data. CSOCK_EOF: the peer finished sending (`len` may still hold
 * unconsumed bytes). Negative: an error (the return value is ignored for
 * both). When the unconsumed bytes reach the stream's maximum read buffer
 * (csock_stream_set_max_read) without being consumed, the callback gets
 * CSOCK_ETOOBIG. The buffer is only valid during the call. */
typedef size_t (*csock_read_cb)(csock_stream *s, int status, const char *buf, size_t len);

/* Status callback: connect done, write queue drained, shutdown done. */
typedef void (*csock_stream_cb)(csock_stream *s, int status);
typedef void (*csock_stream_close_cb)(csock_stream *s);

/* Wrap an fd that is already connected (a socket, a pipe, a tty, stdin...).
 * The stream owns the fd from now on and closes it on close; it is made
 * non-blocking and close-on-exec. */
CSOCK_API int csock_stream_open(csock_loop *loop, int fd, csock_stream **out);

/* Start or stop delivering reads. Reading starts stopped. */
CSOCK_API int csock_stream_read_start(csock_stream *s, csock_read_cb cb);
CSOCK_API int csock_stream_read_stop(csock_stream *s);

/* Queue bytes for the peer; they are copied, so `buf` may be reused at once.
 * Writes are never lost nor reordered: what the socket does not take now is
 * sent as it drains. A write made from inside a read callback is held until
 * the callback returns, so replies to pipelined requests leave in one
 * syscall. Writes made while csock_connect() is in progress are sent once
 * it succeeds (and dropped if it fails). Returns:
 *   0            queued or sent (0 bytes: nothing to do);
 *   -EPIPE       after csock_stream_shutdown(), csock_stream_end() or
 *                csock_stream_close() was called on the stream;
 *   the stream's error, once it has one (the same status its read callback
 *                gets or will get): -ECONNRESET or -EPIPE when the peer
 *                reset the connection or closed its read side, -ETIMEDOUT,
 *                CSOCK_ETOOBIG (input over the maximum), ...; this is the
 *                error of the send this very call tried (nothing queued,
 *                outside a read callback) too, which the read callback
 *                also gets later. A send that fails after the write
 *                returned 0 is reported only through the callbacks (read,
 *                else drain, else shutdown);
 *   -ENOMEM. */
CSOCK_API int csock_stream_write(csock_stream *s, const void *buf, size_t len);
CSOCK_API int csock_stream_writev(csock_stream *s, const struct iovec *iov, int iovcnt);

/* Queue `len` bytes by reference (no copy): `release(ud)` is called once the
 * bytes are written or dropped, and `buf` must stay valid until then. When
 * the write fails (same returns as csock_stream_write) `release` has already
 * been called. On a TLS stream the bytes are usually encrypted at once and
 * released before the call returns. */
CSOCK_API int csock_stream_write_ref(csock_stream *s, const void *buf, size_t len,
                           void (*release)(void *ud), void *ud);

/* Queue `len` bytes of file `fd` from `offset`, sent with sendfile(2) where
 * the stream is a plain socket (read and sent otherwise). On a TLS stream
 * the file is read and encrypted a piece at a time as the socket drains,
 * never all at once; writes made after it wait behind it. The file's bytes
 * count in the write queue (and for backpressure) until sent. The stream
 * closes `fd` when done if `close_fd` is non-zero, and also when the write
 * fails (same returns as csock_stream_write). */
CSOCK_API int csock_stream_write_file(csock_stream *s, int fd, off_t offset, size_t len, int close_fd);

/* Like csock_stream_write_file, but the stream calls `release(ud)` once it
 * is done with `fd` (the bytes sent, or the write failed or the stream
 * closed first), exactly once. That may happen before the call returns (a
 * part the socket takes at once, or a failed call): take any reference
 * the release gives back before the call. It runs on the thread that runs
 * (or frees) the stream's loop, and may close the stream. For a
 * descriptor shared by several answers, as a file cache's: the caller
 * counts references and closes at the last, which costs no dup(2) and
 * close(2) per answer. `release` may be NULL. */
CSOCK_API int csock_stream_write_file_ref(csock_stream *s, int fd, off_t offset, size_t len,
                                          void (*release)(void *ud), void *ud);

/* Bytes queued and not yet taken by the kernel. */
CSOCK_API size_t csock_stream_write_queue_size(const csock_stream *s);

/* The error that failed the stream (a negative errno or a CSOCK_E* code)
 * from the moment csock finds it, before the callback that reports it runs
 * (errors reach callbacks from the loop, never from inside the call that
 * found them, and a failed stream's write queue is emptied): 0 while the
 * stream works. The end of the peer's data (CSOCK_EOF) is not a failure.
 * Lets code that finishes on "queue empty" tell a queue sent from one
 * dropped. */
CSOCK_API int csock_stream_error(const csock_stream *s);

/* Bytes this stream has delivered to its reader and bytes of the
 * application's data that have left for the peer (for TLS: plaintext on both
 * sides). Either pointer may be NULL. Returns 0.
 *   bytes_read:    input made available to the read callback (or a framed
 *                  stream's message cutter) since the stream was made,
 *                  whether or not the callback has consumed it yet;
 *                  input csock_stream_end() discards counts too.
 *   bytes_written: output the kernel has accepted (send, sendmsg, sendfile,
 *                  an io_uring send that completed); bytes still in the
 *                  write queue do not count. On a TLS stream, plaintext the
 *                  TLS layer has taken to encrypt (it may hold it until the
 *                  handshake ends); TLS's own records and handshake bytes
 *                  never count.
 * Both are kept while the stream lives, so a close callback may read them. */
CSOCK_API int csock_stream_counts(const csock_stream *s, uint64_t *bytes_read, uint64_t *bytes_written);

/* Backpressure: when the stream's own write queue passes `high` bytes it
 * stops reading from its peer, and resumes when the queue falls to `low`.
 * A request/response server therefore holds at most about `high` bytes of
 * replies per slow client. Defaults: 256 KiB and 64 KiB. 0 disables: a
 * relay that throttles its sources itself (a proxy, netcat) turns it off,
 * or it and a peer doing the same can each wait for the other to read. New
 * marks apply at once (a paused stream below them, or with 0, resumes). */
CSOCK_API void csock_stream_set_watermarks(csock_stream *s, size_t high, size_t low);

/* Called each time the write queue becomes empty (e.g. to resume reading
 * another stream in a proxy). NULL to clear. */
CSOCK_API void csock_stream_on_drain(csock_stream *s, csock_stream_cb cb);

/* The most unconsumed input a stream will hold (default 64 KiB, at least
 * 4 KiB). The read buffer is taken from a per-loop pool only while input is
 * pending, so an idle stream holds none. */
CSOCK_API int csock_stream_set_max_read(csock_stream *s, size_t max);

/* Timeouts. Each closes the stream when it expires; the read callback (or
 * a framed stream's msg_cb) gets -ETIMEDOUT first (once). 0 disables. One
 * timer serves all four, and it is not touched on every read or write
 * (deadlines are checked when it fires), so they cost next to nothing on a
 * busy stream.
 *  - idle: `ms` without a byte read or written, in either direction (so
 *    what we send a peer, e.g. a chat's announcements, keeps it alive);
 *  - receive: `ms` without a byte received from the peer while we read
 *    (our own writes do not count; the clock restarts when reading starts
 *    or resumes, and stops at the peer's EOF): cuts a peer that only
 *    listens;
 *  - read: the peer left a message unfinished for `ms`: input waited
 *    unconsumed in the read buffer (a partial line or frame) and the
 *    application consumed none of it for that long. A slow or stalled
 *    sender is cut; a fast one never is, however long its upload;
 *  - write: output waited `ms` with none of it taken (the peer stopped
 *    reading): bytes in the write queue the kernel took none of, or, once
 *    the queue drained into the kernel, bytes a TCP socket still holds
 *    unsent (SIOCOUTQNSD, looked at 100 ms after the drain, or after half
 *    of `ms` if shorter, which restarts the clock, then at each deadline;
 *    every fall restarts it too: this case is cut within `ms` + 100 ms).
 *    The connection is then reset, so the kernel drops what it held for
 *    the peer at once. */
CSOCK_API int csock_stream_set_idle_timeout(csock_stream *s, uint64_t ms);
CSOCK_API int csock_stream_set_read_timeout(csock_stream *s, uint64_t ms);
CSOCK_API int csock_stream_set_write_timeout(csock_stream *s, uint64_t ms);
CSOCK_API int csock_stream_set_recv_timeout(csock_stream *s, uint64_t ms);

/* Half-close: once the write queue has drained, shut down the write side
 * (the peer reads EOF); reading goes on. `cb` (may be NULL) gets the result. */
CSOCK_API int csock_stream_shutdown(csock_stream *s, csock_stream_cb cb);

/* Close now: queued writes are dropped (write_ref releases run first); `cb`
 * runs on a later iteration and the stream's memory is released after it.
 * There is one close callback: a non-NULL `cb` replaces the one set with
 * csock_stream_on_close(), NULL keeps it. Safe to call from any of the
 * stream's callbacks; calling it twice is a no-op (the first call's
 * callback stays). On a stream that is ending (csock_stream_end) it cuts
 * the end short: what is still queued is dropped. Closing a stream whose
 * connect is in progress cancels the connect: its callback never runs. */
CSOCK_API void csock_stream_close(csock_stream *s, csock_stream_close_cb cb);

/* Set the close callback ahead of time: it then runs however the stream
 * closes, including closes made by a server's drain or timeouts, unless
 * csock_stream_close/end is later given a non-NULL cb, which replaces it
 * (with NULL they keep it). */
CSOCK_API void csock_stream_on_close(csock_stream *s, csock_stream_close_cb cb);

/* 1 while a server drains: finish the current reply and do not invite more
 * (HTTP answers with Connection: close). The stream ends once idle. */
CSOCK_API int csock_stream_draining(const csock_stream *s);

/* For a protocol with a goodbye of its own (a WebSocket's close 1001): when
 * the server the stream belongs to begins a graceful stop (csock_server_stop,
 * a signal, a drain of its listener's group), cb is called once, from the
 * loop, with status 0, and the stream is NOT ended once idle as other
 * streams are: cb's owner says goodbye and closes it. The server's drain
 * timeout still closes it if it has not by then. Set during a drain, cb is
 * called all the same. NULL removes it. Returns 0 or -ENOMEM. */
CSOCK_API int csock_stream_on_stop(csock_stream *s, csock_stream_cb cb);

/* Close gracefully: stop reading, send what is queued, shut down the write
 * side, then wait (up to 2 s) for the peer to finish so that no unread
 * input turns the close into a reset that would destroy the reply. Queued
 * output is waited for as long as the peer keeps taking it; a peer that
 * takes none of it for 2 s is cut off. Should the stream be unable to make
 * its timer (ENOMEM) it closes at once rather than wait unbounded. `cb`
 * replaces the close callback as in csock_stream_close (NULL keeps it).
 * On a stream that has failed, or whose connect is still in progress, this
 * is csock_stream_close: queued writes are dropped. Calling it again, or
 * after csock_stream_close, is a no-op. */
CSOCK_API void csock_stream_end(csock_stream *s, csock_stream_close_cb cb);

CSOCK_API void *csock_stream_data(const csock_stream *s);
CSOCK_API void csock_stream_set_data(csock_stream *s, void *data);
CSOCK_API csock_loop *csock_stream_loop(const csock_stream *s);
CSOCK_API int csock_stream_fd(const csock_stream *s);

/* Take the socket out of a plain stream, with the input it has read but
 * the application has not consumed, for code that moves the bytes itself
 * (splice(2), another process). The stream stops reading; its queued
 * output is sent first; on a completion backend (io_uring) the recv in
 * flight is cancelled and waited for, and any bytes it still brought join
 * the buffered input. Then `cb` is called once, from the loop, never from
 * inside this call: status 0, `fd` the socket (the caller's from then on:
 * non-blocking, close-on-exec) and [buf, buf+len) the unconsumed input
 * (valid during the call only), which came before anything the socket
 * still holds. A negative status (the stream failed, or was closed
 * meanwhile: -ECANCELED) comes with fd -1 and the input buffered so far.
 * From this call on the stream's read, drain and close callbacks and its
 * data are no longer the application's; `cb` is the last it hears of the
 * stream, which is closed when cb returns (s is valid during cb).
 * Returns 0, -ENOTSUP on a filtered (TLS) stream, -EINVAL on a stream that
 * is closing, ending, connecting or already being detached, the stream's
 * error if it has failed, or -ENOMEM; on an error the stream is untouched. */
typedef void (*csock_stream_detach_cb)(csock_stream *s, int status, int fd, const char *buf,
                                       size_t len, void *data);
CSOCK_API int csock_stream_detach(csock_stream *s, csock_stream_detach_cb cb, void *data);

/* The peer's / local address (scheme tcp, unix, or tls on a TLS stream).
 * On a stream a PROXY protocol listener accepted (csock_listen_opts'
 * proxy_protocol), the peer is the client its header named. Returns 0 or
 * -errno. */
CSOCK_API int csock_stream_peer(const csock_stream *s, csock_addr *out);
CSOCK_API int csock_stream_local(const csock_stream *s, csock_addr *out);

/* TCP_NODELAY on/off (on by default for TCP streams csock creates). */
CSOCK_API int csock_stream_nodelay(csock_stream *s, int on);

/* ---- connecting ------------------------------------------------------------ */

/* Option structs are ABI: zero-initialize them (= {0}, or designated
 * initializers); zero means the default for every member. A later minor
 * version takes new members out of `reserved`, so sizeof and every offset
 * stay the same within a major version (the library's SOVERSION): leave
 * `reserved` zero. */
typedef struct csock_connect_opts {
    uint64_t timeout_ms; /* 0: the kernel's own timeout */
    uint64_t reserved[4];
} csock_connect_opts;

/* Connect a stream to `addr` (tcp or unix) without blocking. A tls:// address
 * is refused with CSOCK_ESCHEME (use csock_tls_connect), as is a datagram
 * one. `cb` runs once, from the loop (never inside this call, even when the
 * connect fails at once), with 0 (connected) or an error (-ECONNREFUSED,
 * -ETIMEDOUT, -ENOENT for a missing Unix socket, ...). On error the stream
 * is closed by csock right after `cb` returns: do not close or use it after
 * that.
 * When this returns 0, *out is the stream at once, still connecting: you
 * may set its data, start reading (reads begin once connected), write and
 * shut down (held and sent once connected, dropped if the connect fails),
 * or close it, which cancels the connect (`cb` then never runs; writes are
 * dropped). On an error return nothing was made and `cb` never runs. */
CSOCK_API int csock_connect(csock_loop *loop, const csock_addr *addr, const csock_connect_opts *opts,
                  csock_stream_cb cb, void *data, csock_stream **out);

/* ---- listening -------------------------------------------------------------- */

/* A new connection (status 0) or an accept error worth knowing about
 * (status < 0, s NULL; the listener keeps listening). The new stream is not
 * reading yet; its data slot is NULL. */
typedef void (*csock_accept_cb)(csock_listener *l, csock_stream *s, int status);

/* (An option struct: zero-initialize it, see above.) */
typedef struct csock_listen_opts {
    int backlog;       /* 0: 4096 (the kernel caps it at somaxconn) */
    int reuseport;     /* SO_REUSEPORT: share the port with other listeners
                          that set it too (same user); without it a port
                          in use is -EADDRINUSE */
    int v6only;        /* IPV6_V6ONLY on an IPv6 listener */
    unsigned max_conns;/* 0: unlimited; beyond it new connections are closed at once */
    uint64_t reserved[3];
    /* Taken from the end of `reserved` (once reserved[4]): sizeof and the
     * offsets of every older member are unchanged. */
    unsigned proxy_protocol;   /* 1: each connection starts with a PROXY
                                  protocol header (v1 or v2, HAProxy's);
                                  see csock_proxy_parse() below */
    unsigned proxy_timeout_ms; /* the whole header must arrive within this;
                                  0: 3000 */
} csock_listen_opts;

/* With `proxy_protocol` set, the listener (and a server endpoint given
 * such options) reads a PROXY protocol header (v1 text or v2 binary) from
 * each new connection before the accept callback sees it, and only then
 * hands the stream over: csock_stream_peer() then returns the client the
 * header names (TCP over IPv4 or IPv6, or a Unix address), not the balancer.
 * Parsing is strict: a connection whose first bytes are not a valid header
 * (including one that sends nothing and closes) is closed and never
 * reported, as is one whose header is not complete within
 * `proxy_timeout_ms`; the accept callback then gets status -EPROTO (or
 * -EMSGSIZE) for a bad header and -ETIMEDOUT for a late one, with s NULL,
 * so they can be logged (a client that closes before sending anything, as
 * a balancer's TCP health check does, is not reported). A LOCAL command (a balancer's health check), v1's
 * UNKNOWN and v2's unspecified family keep the real peer address. TLVs are
 * read and skipped. Bytes the client sent after the header stay in the
 * socket for the stream (and for TLS on it). Pending connections count
 * towards `max_conns`. */

/* Bind and listen on `addr` (tcp or unix). A tls:// address is refused with
 * CSOCK_ESCHEME, as is a datagram one: listen on tcp:// and call
 * csock_tls_accept() on each accepted stream. A stale Unix
 * socket file nobody listens on is replaced, and the file is removed when
 * the listener closes. When descriptors run out (EMFILE/ENFILE) the
 * listener uses a reserved fd to accept and close the waiting connection,
 * so the loop neither spins nor stalls. */
CSOCK_API int csock_listen(csock_loop *loop, const csock_addr *addr, const csock_listen_opts *opts,
                 csock_accept_cb cb, void *data, csock_listener **out);

/* Listen on a socket someone else bound and put in listening state (one
 * systemd passed, LISTEN_FDS; one inherited across an exec). The fd must be
 * a SOCK_STREAM socket of family AF_INET, AF_INET6 or AF_UNIX that is
 * listening (SO_ACCEPTCONN): otherwise -ENOTSOCK, -ESOCKTNOSUPPORT,
 * -EAFNOSUPPORT or -EINVAL, and the fd is left open. On success the
 * listener owns the fd (made non-blocking and close-on-exec; closed with
 * the listener; a Unix socket's file is never removed: it is not ours).
 * opts: max_conns and the PROXY protocol members apply (backlog, reuseport
 * and v6only were the binder's to choose). */
CSOCK_API int csock_listen_fd(csock_loop *loop, int fd, const csock_listen_opts *opts, csock_accept_cb cb,
                              void *data, csock_listener **out);

/* The address actually bound (the real port when 0 was asked for). */
CSOCK_API int csock_listener_addr(const csock_listener *l, csock_addr *out);

/* Stop and resume accepting (connections wait in the kernel's backlog). */
CSOCK_API int csock_listener_pause(csock_listener *l);
CSOCK_API int csock_listener_resume(csock_listener *l);

/* The number of streams accepted by this listener that are still open. */
CSOCK_API unsigned csock_listener_conns(const csock_listener *l);

CSOCK_API void csock_listener_close(csock_listener *l, void (*cb)(csock_listener *l));
CSOCK_API void *csock_listener_data(const csock_listener *l);
CSOCK_API void csock_listener_set_data(csock_listener *l, void *data);

/* The listening socket, to hand it to another process (a zero-downtime
 * restart passes it with LISTEN_FDS, see csock(1)): returns the fd, or
 * -EBADF once the listener is closing. The fd stays the listener's: dup
 * it, or make sure it is inherited only across an exec. From then on the
 * listener leaves its Unix socket file in place when it closes (the other
 * process serves it). */
CSOCK_API int csock_listener_fd(csock_listener *l);

/* Close any handle csock_loop_walk() found, by its kind (with no close
 * callback). It is a csock_walk_cb (data unused): csock_loop_walk(loop,
 * csock_handle_close, NULL) closes everything still open on the loop. */
CSOCK_API void csock_handle_close(csock_handle_kind kind, void *handle, void *data);

/* ---- datagrams ------------------------------------------------------------- */

/* A datagram arrived (status 0) from `from`, or a receive error (status < 0,
 * e.g. -ECONNREFUSED after sending to a closed UDP port). -EMSGSIZE: a
 * datagram larger than 64 KiB (a Unix one) arrived and was dropped, never
 * delivered cut short; `from` names its sender when known. `buf` is valid
 * only during the call. */
typedef void (*csock_recv_cb)(csock_dgram *d, int status, const char *buf, size_t len,
                              const csock_addr *from);

/* A UDP or Unix datagram socket. `local` (may be NULL) is bound; `peer` (may
 * be NULL) is connected, so csock_dgram_send() can pass NULL for it. At
 * least one must be given. A Unix datagram client without `local` is bound
 * to an autogenerated abstract name so it can receive replies; a stale
 * socket file at a Unix `local` path is replaced. Receiving starts stopped.
 * Returns 0 and sets *out; -EINVAL when both are NULL; CSOCK_ESCHEME for a
 * stream address (tcp, tls, unix); socket(2)'s, bind(2)'s or connect(2)'s
 * error (-EADDRINUSE, -EACCES, ...); -ENOMEM. */
CSOCK_API int csock_dgram_new(csock_loop *loop, const csock_addr *local, const csock_addr *peer,
                    csock_dgram **out);
/* Start (or, with a new cb, redirect) and stop receiving. recv_start returns
 * 0, or -EINVAL for a closing socket or a NULL cb; recv_stop returns 0. */
CSOCK_API int csock_dgram_recv_start(csock_dgram *d, csock_recv_cb cb);
CSOCK_API int csock_dgram_recv_stop(csock_dgram *d);

/* Send one datagram to `to` (NULL: the connected peer); `buf` is copied if
 * it has to wait. What the socket cannot take now is queued, in order (up
 * to 1 MiB, then -ENOBUFS). Returns 0 (sent or queued), -EBADF for a closing
 * socket, -EMSGSIZE for a datagram larger than the socket allows,
 * -EDESTADDRREQ for NULL `to` on an unconnected socket, -ENOMEM, or
 * sendto(2)'s error (-ECONNREFUSED after an ICMP error on a connected UDP
 * socket, -ENETUNREACH, ...). A queued datagram that fails when its turn
 * comes is dropped without a report. */
CSOCK_API int csock_dgram_send(csock_dgram *d, const void *buf, size_t len, const csock_addr *to);
/* The address bound (the real port when 0 was asked for). 0 or -errno. */
CSOCK_API int csock_dgram_local(const csock_dgram *d, csock_addr *out);
/* Close: queued datagrams are dropped; cb (may be NULL) runs on a later
 * iteration, then the memory is gone. A second call is a no-op. */
CSOCK_API void csock_dgram_close(csock_dgram *d, void (*cb)(csock_dgram *d));
CSOCK_API void *csock_dgram_data(const csock_dgram *d);
CSOCK_API void csock_dgram_set_data(csock_dgram *d, void *data);
CSOCK_API int csock_dgram_fd(const csock_dgram *d);

/* ---- the multi-core server ------------------------------------------------- */

/* N loops on N threads, each with its own SO_REUSEPORT listener per stream
 * endpoint (one shared listening socket where SO_REUSEPORT is missing and
 * for Unix sockets), so the kernel spreads connections and no lock sits on
 * the hot path. Accept callbacks run on the thread of the loop that
 * accepted; everything a connection does stays on that loop. The loops
 * share a port among themselves only: a port another socket listens on is
 * -EADDRINUSE unless the `reuseport` option asks to share it. */
typedef struct csock_server csock_server;

/* (An option struct: zero-initialize it, see above.) */
typedef struct csock_server_opts {
    unsigned threads;          /* loops (threads); 0: one per online CPU */
    unsigned max_conns;        /* open connections across all loops; 0: no limit */
    uint64_t drain_timeout_ms; /* after a stop, close what is left; 0: 10 s */
    int handle_signals;        /* SIGINT/SIGTERM drain gracefully; a second one
                                  closes everything at once. Block both in
                                  the calling thread first to keep a later
                                  one from killing the process in the
                                  teardown (csock_signal_start) */
    int reuseport;             /* share ports with other processes (of the same
                                  user) whose listeners allow it, e.g. the old
                                  and the new server of a zero-downtime
                                  restart, both started with it; the kernel
                                  spreads connections among them all */
    int verbose;               /* reserved */
    /* Called on each loop's thread before it runs and after it stops (may
     * be NULL): per-loop state for the application. */
    void (*loop_start)(csock_server *srv, csock_loop *loop, unsigned index);
    void (*loop_stop)(csock_server *srv, csock_loop *loop, unsigned index);
    /* Called on each loop's thread when the drain begins (close your own
     * handles on that loop here so it can finish). */
    void (*loop_drain)(csock_server *srv, csock_loop *loop, unsigned index);
    void *data;                /* for the callbacks: csock_server_data() */
    uint64_t reserved[8];
} csock_server_opts;

/* Create a server with its loops (not yet running; opts may be NULL). The
 * loops use the default backend ($CSOCK_BACKEND, see loop.h). Returns 0
 * and sets *out, or -ENOMEM, a loop's creation error, or (handle_signals)
 * signalfd(2)'s error; nothing is left over on failure. */
CSOCK_API int csock_server_new(const csock_server_opts *opts, csock_server **out);

/* Serve a stream endpoint (tcp, unix) on every loop. With port 0 one port
 * is picked and every loop shares it. Returns 0; -EINVAL (addr or cb NULL);
 * CSOCK_ESCHEME for a datagram address; -ENOSPC past 64 endpoints;
 * -EADDRINUSE when another socket listens there (see the `reuseport`
 * option); socket(2)'s, bind(2)'s or listen(2)'s error (-EACCES, -EMFILE).
 * On failure nothing of the endpoint is left open. Call before run. tls://
 * addresses are served as TCP: put TLS on each accepted stream. */
CSOCK_API int csock_server_listen(csock_server *srv, const csock_addr *addr, csock_accept_cb cb, void *data);

/* csock_server_listen() with listen options: opts->proxy_protocol and
 * proxy_timeout_ms, backlog and v6only apply (max_conns is the server's;
 * reuseport too). opts NULL is csock_server_listen(). */
CSOCK_API int csock_server_listen_opts(csock_server *srv, const csock_addr *addr, const csock_listen_opts *opts,
                                       csock_accept_cb cb, void *data);

/* Serve a listening socket made elsewhere (systemd's socket activation, an
 * inherited fd: see csock_listen_fd() for what it must be). Every loop
 * accepts from it. The server owns the fd once this returns 0 (on an
 * error it is left open). opts as for csock_server_listen_opts. */
CSOCK_API int csock_server_listen_fd(csock_server *srv, int fd, const csock_listen_opts *opts,
                                     csock_accept_cb cb, void *data);

/* Serve a datagram endpoint (on the first loop): cb receives its datagrams,
 * with `data` in the socket's data slot. Returns 0, -EINVAL (addr or cb
 * NULL), -ENOSPC past 64 endpoints, or csock_dgram_new()'s error. Call
 * before run. */
CSOCK_API int csock_server_dgram(csock_server *srv, const csock_addr *addr, csock_recv_cb cb, void *data);

/* The address endpoint number i (in the order added) is bound to (the real
 * port when 0 was asked for). Returns 0, or -EINVAL when there is no
 * endpoint i. */
CSOCK_API int csock_server_addr(const csock_server *srv, unsigned i, csock_addr *out);

/* The listening sockets of stream endpoint i (one per loop with
 * SO_REUSEPORT, else one shared), to hand them to another process (a
 * zero-downtime restart passes them with LISTEN_FDS, see csock(1)). Writes
 * up to `max` distinct fds to fds and returns how many the endpoint has
 * (0 for a datagram endpoint), or -EINVAL when there is no endpoint i.
 * The fds stay the server's: dup them, or make sure they are inherited
 * only across an exec. From then on the server leaves the endpoint's Unix
 * socket file in place when it stops (the other process serves it). Call
 * from loop 0's thread (or before run), before the server stops. */
CSOCK_API int csock_server_endpoint_fds(csock_server *srv, unsigned i, int *fds, unsigned max);

/* Run every loop (loop 0 on the calling thread, the others on threads of
 * their own) until the server has drained after csock_server_stop() or a
 * signal, or until no loop has anything left to do. Returns 0, a loop's
 * error, or pthread_create(3)'s (then the loops that started are stopped
 * and joined). Call once. */
CSOCK_API int csock_server_run(csock_server *srv);

/* Begin a graceful drain: stop accepting at once; idle connections close,
 * busy ones close as soon as their replies are out; what is left at the
 * drain timeout is closed. Safe from any thread. */
CSOCK_API void csock_server_stop(csock_server *srv);

/* The number of loops; loop `index` (NULL past the last); the open
 * connections across all loops (safe from any thread). */
CSOCK_API unsigned csock_server_threads(const csock_server *srv);
CSOCK_API csock_loop *csock_server_loop(const csock_server *srv, unsigned index);
CSOCK_API unsigned csock_server_conns(const csock_server *srv);
CSOCK_API void *csock_server_data(const csock_server *srv);

/* Free the server after run returned (or if it never ran); NULL is a no-op.
 * Whatever is still open on its loops, the application's handles included,
 * is closed (csock_loop_walk(); stream close callbacks set with
 * csock_stream_on_close() run now), each loop runs until every close has
 * finished, and the loops are freed. Call it from the thread that ran the
 * server, after every loop_stop callback. */
CSOCK_API void csock_server_free(csock_server *srv);

/* ---- PROXY protocol --------------------------------------------------------- */

/* What a PROXY protocol header says (HAProxy's doc/proxy-protocol.txt). */
typedef struct csock_proxy_info {
    int version;    /* 1 (text) or 2 (binary) */
    int local;      /* 1: no client address to use: v2 LOCAL command (a
                       balancer's own connection, e.g. a health check),
                       v1 UNKNOWN, v2 unspecified family or protocol */
    csock_addr src; /* the client (scheme tcp, or unix), when !local */
    csock_addr dst; /* the address the client connected to, when !local */
} csock_proxy_info;

/* The longest v1 header (CRLF included), and the v2 bytes csock must see to
 * know the addresses: the 16-byte head and the largest address block (two
 * Unix paths). */
#define CSOCK_PROXY_V1_MAX 107
#define CSOCK_PROXY_V2_ADDR_MAX (16 + 216)

/* Pure: parse the PROXY header at the start of buf[0..len). Returns
 *   > 0       the header's length in bytes: *out is filled. For v2 it may
 *             exceed len: the addresses have arrived, and the rest (TLVs)
 *             is to be read and skipped;
 *   0         not enough bytes yet (what is there is a valid beginning);
 *   -EPROTO   not a PROXY header, or a malformed one (bad signature,
 *             version, command, family, address, port; v2 length shorter
 *             than its addresses);
 *   -EMSGSIZE a v1 header with no CRLF within CSOCK_PROXY_V1_MAX bytes;
 *   -EINVAL   buf or out NULL.
 * Never reads past len. */
CSOCK_API ssize_t csock_proxy_parse(const void *buf, size_t len, csock_proxy_info *out);

/* The longest header csock_proxy_format() writes: v2 with two Unix paths. */
#define CSOCK_PROXY_HEADER_MAX CSOCK_PROXY_V2_ADDR_MAX

/* Pure: write the PROXY header a balancer sends before the client's bytes
 * (HAProxy's send-proxy is version 1, send-proxy-v2 version 2) into buf,
 * naming the client `src` and the address it reached `dst`. Both IPv4, or
 * both IPv6 (an IPv4-mapped IPv6 pair is written as IPv4), or for v2 both
 * Unix; NULL src (and dst): v1 "PROXY UNKNOWN", v2 LOCAL (a balancer's own
 * connection, e.g. a health check), as the spec says for a client whose
 * address cannot be told. Returns the header's length, -ENOSPC when size
 * is too small (CSOCK_PROXY_HEADER_MAX always suffices), -EAFNOSUPPORT
 * for families the version cannot carry or that differ, -EINVAL for a
 * version other than 1 and 2 or buf NULL. csock_proxy_parse() reads back
 * what it writes. No TLVs. */
CSOCK_API ssize_t csock_proxy_format(int version, const csock_addr *src, const csock_addr *dst, void *buf,
                                     size_t size);

/* ---- framing --------------------------------------------------------------- */

typedef enum {
    CSOCK_FRAME_LINE = 1, /* lines ending in LF or CRLF */
    CSOCK_FRAME_LP32,     /* a 32-bit big-endian length, then that many bytes */
} csock_frame_kind;

/* (An option struct: zero-initialize it, see above.) */
typedef struct csock_framing {
    csock_frame_kind kind;
    size_t max;        /* the largest message (line without its ending; LP32 body) */
    int keep_delimiter;/* LINE: include the LF / CRLF in the message */
    uint64_t reserved[2];
} csock_framing;

/* Pure: find the first message in buf[0..len). Returns the bytes it spans
 * (> 0) and sets *msg / *msg_len (a slice of buf); 0 when more input is
 * needed; CSOCK_ETOOBIG when the message is larger than f->max (for a
 * line: no line ending within max + 2 bytes). Reads nothing past len. */
CSOCK_API ssize_t csock_frame_next(const csock_framing *f, const char *buf, size_t len, const char **msg,
                         size_t *msg_len);

/* Message callback for a framed stream. What it receives, in order:
 *  - status 0 and one whole message, for each message, in the order sent;
 *  - then exactly once a final status (msg NULL, len 0), after which it is
 *    never called again:
 *      CSOCK_EOF      the peer finished (a final unterminated line is
 *                     delivered first as a message);
 *      -EPROTO        the peer finished inside an LP32 frame;
 *      CSOCK_ETOOBIG  a message larger than f->max (the stream stops
 *                     reading but stays writable);
 *      < 0            a stream error: -ECONNRESET, -ETIMEDOUT (idle, read,
 *                     write or receive timeout; csock closes the stream
 *                     right after the callback), -ENOMEM...
 * Messages that arrived before a bad one are delivered before its error,
 * and the replies written for them are handed to the socket before the
 * error is delivered (csock_stream_end keeps any the socket could not take
 * yet; csock_stream_close drops those). A final
 * status does not close the stream (except after a timeout): the callback
 * closes or ends it. The message is a slice of the read buffer, valid
 * during the call. */
typedef void (*csock_msg_cb)(csock_stream *s, int status, const char *msg, size_t len);

/* Read the stream as messages. Sets the stream's maximum read buffer to fit
 * one maximal message. Copies *f. */
CSOCK_API int csock_stream_read_framed(csock_stream *s, const csock_framing *f, csock_msg_cb cb);

/* Write one message framed as `f` says (adds the LF, or the length header).
 * CSOCK_ETOOBIG when len > f->max; -EMSGSIZE for an LP32 body over
 * UINT32_MAX bytes (its header cannot say the length). */
CSOCK_API int csock_stream_write_msg(csock_stream *s, const csock_framing *f, const void *msg, size_t len);

#ifdef __cplusplus
}
#endif
#endif
