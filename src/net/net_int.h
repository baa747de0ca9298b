/* Internal contract of the net layer: the stream as the listener, the
 * connector, framing and the TLS layer (through a filter) see it. */
#ifndef CSOCK_NET_INT_H
#define CSOCK_NET_INT_H

#include "csock/net.h"
#include "loop/loop_int.h"

/* ---- socket helpers (sock.c) ---- */
int csock__socket(int family, int type);            /* non-blocking, close-on-exec */
int csock__set_nonblock(int fd, int on);
int csock__set_cloexec(int fd);
int csock__sockaddr_to_addr(const struct sockaddr *sa, socklen_t len, csock_scheme scheme,
                            csock_addr *out);

/* ---- connection groups (group.c) ---- */
/* Connection counting shared by a listener and the streams it accepted; it
 * outlives whichever of them closes first. Counted by references: each
 * owner (a listener, a server loop) and each open stream holds one. */
typedef struct csock__conn_group {
    unsigned conns;         /* open accepted streams (this loop) */
    unsigned refs;          /* the owner(s) + each open stream */
    /* The loop of its streams (all on one: a listener's, a server loop's),
     * set by the first. A drain finds them on the loop's list of handles,
     * so a stream pays no list links of its own for a rare walk. */
    csock_loop *loop;
    atomic_uint *shared;    /* a count across loops (the server's), or NULL */
    unsigned draining : 1;  /* new streams start draining too */
} csock__conn_group;
/* A group with one reference (the caller's); `shared`, when not NULL, counts
 * the open connections across loops (a server's). NULL when out of memory. */
csock__conn_group *csock__group_new(atomic_uint *shared);
void csock__group_ref(csock__conn_group *g);
/* Drop a reference; the last frees the group. NULL is ignored. */
void csock__group_release(csock__conn_group *g);
/* A new stream joins (csock__stream_new) and leaves when it closes; it
 * holds a reference meanwhile and gives back its slot when it leaves. */
void csock__group_add(csock__conn_group *g, csock_stream *s);
void csock__group_remove(csock_stream *s);
/* Take a connection slot before making an accepted stream: 0 when `max`
 * (0: no limit) open connections already exist, counted across loops when
 * the group shares a counter. A stream made with the group owns the slot
 * and gives it back when it closes; csock__group_unreserve() gives back a
 * slot no stream took. */
int csock__group_reserve(csock__conn_group *g, unsigned max);
void csock__group_unreserve(csock__conn_group *g);
/* Graceful drain: every stream closes (csock_stream_end) as soon as it has
 * no unconsumed input and nothing queued; idle ones at once. */
void csock__group_drain(csock__conn_group *g);
/* Close every stream of the group now (drain timeout). */
void csock__group_close_all(csock__conn_group *g);
/* ---- listeners (listener.c) ---- */
/* A listener on an fd someone else owns (shared between loops), or on a new
 * socket; `group` NULL makes a private one. */
int csock__listen_fd(csock_loop *loop, int fd, int owned, csock_scheme scheme,
                     const csock_listen_opts *opts, csock__conn_group *group,
                     csock_accept_cb cb, void *data, csock_listener **out);
/* socket + options + bind + listen. Returns the fd or an error. */
int csock__bind_listen(const csock_addr *addr, const csock_listen_opts *opts);

/* A filter sits between the socket and the application (TLS): raw bytes go
 * through it on the way in and out, and the app sees plaintext. */
typedef struct csock__filter {
    /* Raw bytes from the socket. Push plaintext with csock__stream_input(),
     * queue handshake/record bytes with csock__stream_queue_raw(). Returns 0
     * or an error (the stream then fails with it). */
    int (*input)(csock_stream *s, const char *raw, size_t len);
    /* The peer closed its raw side (EOF). Return CSOCK_EOF for a clean end
     * or an error (e.g. truncation). */
    int (*eof)(csock_stream *s);
    /* Application bytes to send: transform and csock__stream_queue_raw(). */
    int (*write)(csock_stream *s, const void *buf, size_t len);
    /* Before the raw write side is shut down (send close_notify). */
    void (*shutdown)(csock_stream *s);
    /* The stream is closing: free the filter state. */
    void (*free)(csock_stream *s);
    /* Optional: 0 while write() would only hold the bytes in the filter's
     * own memory (a TLS handshake): the stream then keeps a file's bytes
     * in the file. The filter calls csock__stream_flush() when ready. */
    int (*ready)(csock_stream *s);
} csock__filter;

/* 0, or -ENOMEM (a filter lives in the stream's extension). */
int csock__stream_set_filter(csock_stream *s, const csock__filter *f, void *state);
void *csock__stream_filter_state(const csock_stream *s);
/* Append decoded input for the application (from a filter's input()). */
int csock__stream_input(csock_stream *s, const char *buf, size_t len);
/* Queue raw bytes for the socket, bypassing the filter (copied). */
int csock__stream_queue_raw(csock_stream *s, const void *buf, size_t len);
/* Try to send what is queued now. */
void csock__stream_flush(csock_stream *s);
/* Fail the stream: deliver err to the read callback once (deferred). */
void csock__stream_fail(csock_stream *s, int err);

/* Streams made by the listener and the connector. */
csock_stream *csock__stream_new(csock_loop *loop, int fd, csock__conn_group *group);
/* Start connecting a fresh stream; connect.c owns this part of the stream. */
int csock__stream_connecting(csock_stream *s, csock_stream_cb cb, uint64_t timeout_ms);
/* Report a connect that failed at once: cb(s, err) from the loop (not if the
 * stream is closed first), then close the stream. 0 or -ENOMEM. */
int csock__stream_connect_failed(csock_stream *s, csock_stream_cb cb, int err);

#endif
