/* The stream's private contract: struct csock_stream, its flags and
 * deferred-call bits, and the helpers the stream_*.c files share. Only the
 * stream files include it; the rest of the net layer and TLS see a stream
 * through net_int.h. */
#ifndef CSOCK_STREAM_INT_H
#define CSOCK_STREAM_INT_H

#include "net/net_int.h"

/* How long csock_stream_end() waits for the peer's EOF once its output is
 * out, and how long it waits for a peer that takes none of that output. */
#define LINGER_MS 2000

enum wkind { W_MEM, W_REF, W_FILE };
/* Where a W_MEM chunk's memory came from (wchunk.pooled). */
enum { POOL_NONE, POOL_BIG /* CSOCK__BUF_SIZE */, POOL_SMALL /* CSOCK__SBUF_SIZE */ };

typedef struct wchunk {
    struct wchunk *next;
    const char *p;        /* next byte to send (MEM, REF) */
    size_t len;           /* bytes left to send */
    size_t cap;           /* MEM: bytes of data[] in all (for appending) */
    void (*release)(void *ud); /* REF, FILE: called once done with p or fd */
    void *ud;
    int fd;               /* FILE */
    off_t off;            /* FILE: next offset */
    unsigned char kind;
    unsigned char pooled; /* MEM: from a loop pool (POOL_BIG, POOL_SMALL) or not (0) */
    char data[];
} wchunk;

/* Stream flags. */
enum {
    F_READING = 1 << 0,    /* the application wants reads */
    F_PAUSED = 1 << 1,     /* reading paused by backpressure (write queue high) */
    F_EOF = 1 << 2,        /* the peer finished: nothing more to read */
    F_IN_READ = 1 << 3,    /* inside the read callback: writes are held */
    F_SHUT_REQ = 1 << 4,   /* shutdown once the queue drains */
    F_SHUT_DONE = 1 << 5,  /* write side shut down */
    F_ENDING = 1 << 6,     /* csock_stream_end(): discard input, close after */
    F_CONNECTING = 1 << 7, /* connect in progress (connect.c) */
    F_NOT_SOCK = 1 << 8,   /* a pipe or tty: plain writev, no sendfile */
    F_FAILED = 1 << 9,     /* an error was delivered: no more callbacks but close */
    F_FRAMED = 1 << 11,    /* reads are cut into messages for msg_cb */
    F_EOF_DONE = 1 << 12,  /* the application has taken the EOF */
    F_SHUT_FILTER = 1 << 13, /* the filter's shutdown (close_notify) is queued */
    F_DRAIN = 1 << 14,     /* server draining: end the stream once it is idle */
    F_RING = 1 << 15,      /* socket I/O by completion (s->rreq/wreq), not readiness */
    F_MSG_END = 1 << 16,   /* framed: msg_cb has had its final status */
    F_ZOMBIE = 1 << 17,    /* closed, finished once its requests complete (ring) */
    F_DRAIN_CANCEL = 1 << 18, /* the recv was cancelled to see if a drain may end it */
    F_DETACH = 1 << 19,    /* csock_stream_detach(): waiting to hand its socket over */
    F_MSHOT_SEEN = 1 << 20, /* ring: the socket's family was looked at (F_MSHOT_OK) */
    F_MSHOT_OK = 1 << 21,   /* ring: a TCP socket, whose recv may be multishot */
};

/* What the stream's one timer is armed for. T_WATCH covers the idle, read
 * and write timeouts at once: it fires at the earliest of their deadlines. */
enum { T_NONE, T_CONNECT, T_WATCH, T_LINGER, T_DRAIN };

/* What a stream needs only sometimes lives beside it, made on first use, so
 * a plain idle stream costs one pointer for all of it: the timer and the
 * timeouts (the requests of completion I/O are in the handle: every ring
 * stream has a recv in flight, so a separate block would cost it more). Times are loop
 * milliseconds modulo 2^32: differences are right for any interval under
 * 49 days. */
/* A ring stream's readiness watcher (connecting, sending a file by
 * sendfile), made when first needed: its handle has room for the requests
 * or a watcher, not both. */
typedef struct ring_watch {
    csock__watcher w;
    csock_stream *s;
} ring_watch;

typedef struct stream_ext {
    ring_watch *rw;       /* F_RING: the readiness watcher, once needed (freed with s) */
    csock_timer *timer;   /* made when first armed */
    uint32_t idle_ms, read_ms, write_ms, recv_ms; /* 0: off */
    uint32_t read_since;  /* input has waited unconsumed since then */
    uint32_t write_since; /* output has waited, none taken by the kernel, since */
    /* With a write timeout, once our queue drained: the bytes the kernel
     * held unsent at the last look (SIOCOUTQNSD; UINT32_MAX: not looked
     * yet; 0: none). They wait for the peer as our queue did. */
    uint32_t unsent;
    uint32_t recv_since;  /* the last byte (or EOF) received, or reading (re)started */
    uint32_t due;         /* when the T_WATCH timer fires */
    /* Filtered streams (TLS): plaintext still to go through the filter,
     * behind everything in the raw queue (see feed_filter). */
    wchunk *plain_head, *plain_tail;
    size_t plain_bytes;   /* of it, counted in wq_bytes too */
    csock_stream_cb shutdown_cb, connect_cb; /* rare: kept out of the handle */
    csock_stream_cb stop_cb; /* csock_stream_on_stop: its owner ends it in a drain */
    /* A filter (TLS) and its state: here, not in the handle, so a plain
     * stream's handle stays small; a filtered stream keeps its extension. */
    const csock__filter *filter;
    void *filter_state;
    /* The client a PROXY protocol header named, which csock_stream_peer()
     * returns (NULL: getpeername). Here, not in the handle: only streams
     * behind a balancer pay for it (ext_trim keeps the extension then). */
    csock_addr *peer;
} stream_ext;

struct csock_stream {
    csock__handle h;
    unsigned flags;
    unsigned timer_mode : 3; /* T_* */
    unsigned fkind : 2, fkeep : 1; /* framing: csock_frame_kind, keep_delimiter */
    unsigned char deferred; /* D_*: what the queued `task` is to do (0: not queued) */
    /* The first error seen, delivered once: a negative errno or a CSOCK_E*
     * code, all above INT16_MIN (asserted in stream.c). */
    int16_t err;
    /* The application's callback: a framed stream's (F_FRAMED) gets
     * messages, cut by csock__stream_framed_read (see csock__stream_read_cb). */
    union {
        csock_read_cb read_cb;
        csock_msg_cb msg_cb;
    };
    void *data;
    /* input: bytes [roff, roff+rlen) of rbuf are unconsumed */
    char *rbuf;
    uint32_t roff, rlen, rcap;
    uint32_t max_read;
    /* output */
    wchunk *wq_head, *wq_tail;
    size_t wq_bytes;
    uint32_t high, low;
    csock_stream_cb drain_cb;
    csock_stream_close_cb close_cb;
    csock__task task;       /* the stream's one deferred call (see csock__stream_defer) */
    stream_ext *x;          /* timer, timeouts, completion I/O: made on first use */
    csock__conn_group *group; /* its streams are found on the loop's list of handles */
    /* How the socket is served, chosen when the stream is made: by
     * readiness (its watcher) or by completion (F_RING: the one recv and
     * one send in flight; a watcher it needs goes in its extension, see
     * ring_watch). One or the other: they share their place. The socket
     * is s->w.fd for either kind: rreq.fd lies at the same offset
     * (asserted in stream.c), and the backend keeps it there. */
    union {
        csock__watcher w;
        struct {
            csock__ioreq rreq, wreq;
        };
    };
    /* The last byte read or written, in loop milliseconds modulo 2^32 (for
     * the idle timeout and the drain's quiet period). 32 bits keep the handle
     * small (an idle echo connection: 232 bytes, a 240-byte malloc chunk). */
    uint32_t last_io;
    uint32_t fmax; /* framing: the largest message */
    /* csock_stream_counts(): application bytes received (plaintext, made
     * available to the read callback) and sent (taken by the kernel; on a
     * filtered stream, taken by the filter). */
    uint64_t bytes_in, bytes_out;
};


/* What the stream's deferred call does: it needs at most these, so one
 * intrusive task serves them all and deferring cannot fail. */
enum {
    D_PROCESS = 1, /* offer buffered input (or the EOF) again */
    D_ERROR = 2,   /* deliver s->err */
    D_CONNECT = 4, /* report a connect that failed at once */
    D_FREE = 8,    /* the stream finished while the task was queued: free it */
    D_STOP = 16,   /* tell the owner (stop_cb) that a drain began */
};


/* Output waits: raw bytes for the socket, or plaintext for the filter. */
static inline int plain_waits(const csock_stream *s) { return s->x && s->x->plain_head; }
/* The stream's filter (TLS), or NULL. */
static inline const csock__filter *sfilt(const csock_stream *s) { return s->x ? s->x->filter : NULL; }
static inline int queued(const csock_stream *s) { return s->wq_head || plain_waits(s); }
/* The kernel still holds a request on the stream (completion I/O). */
static inline int ring_busy(const csock_stream *s)
{
    return (s->flags & F_RING) && (s->rreq.busy || s->wreq.busy);
}

/* framing (stream_framed.c): a framed stream's reads */
size_t csock__stream_framed_read(csock_stream *s, int status, const char *buf, size_t len);

/* Offer input (or a final status) to the application: one load and a
 * branch more than a plain call, and a framed stream keeps no callback of
 * its own for the framing. */
static inline size_t csock__stream_read_cb(csock_stream *s, int status, const char *buf, size_t len)
{
    if (s->flags & F_FRAMED) return csock__stream_framed_read(s, status, buf, len);
    return s->read_cb(s, status, buf, len);
}

/* lifecycle (stream.c) */
/* The rarely needed part of a stream, made on first use (NULL: ENOMEM). */
stream_ext *csock__stream_ext(csock_stream *s);
/* What csock_stream_peer() returns from now on, instead of getpeername()
 * (the client a PROXY protocol header named; the listener sets it). 0 or
 * -ENOMEM. */
int csock__stream_set_peer(csock_stream *s, const csock_addr *peer);
/* Free a closed stream: after its close callback, once no request is in flight. */
void csock__stream_finish_now(csock_stream *s);
/* Ask the stream's one task for D_* `what` on the next pending phase. */
void csock__stream_defer(csock_stream *s, unsigned what);
/* Serve the socket `fd` by completion (ring, F_RING: the handle holds the
 * two requests) or by readiness (the handle holds the watcher). They share
 * their place, so a stream switched later must have no request busy and
 * its watcher stopped. */
void csock__stream_serve_by(csock_stream *s, int fd, int ring);
/* A ring stream's readiness watcher (see ring_watch): made with `make`
 * (NULL on ENOMEM), else NULL when it has none. */
csock__watcher *csock__stream_ring_watcher(csock_stream *s, int make);
/* Make the watcher (or the recv request) match what the stream wants now. */
void csock__stream_update_events(csock_stream *s);

/* connecting (connect.c) */
void csock__stream_connect_done(csock_stream *s);
void csock__stream_connect_failed_early(csock_stream *s);

/* input (stream_read.c) */
void csock__stream_deferred_process(csock_stream *s);
/* `n` bytes arrived (0: EOF): in `raw`, or already appended to rbuf when NULL. */
void csock__stream_got_bytes(csock_stream *s, const char *raw, size_t n);
void csock__stream_on_readable(csock_stream *s);
size_t csock__stream_read_limit(const csock_stream *s);
void csock__stream_release_rbuf(csock_stream *s);
void csock__stream_schedule_process(csock_stream *s);

/* output (stream_write.c) */
void csock__stream_advance(csock_stream *s, size_t n);
/* After a flush: resume reading, then a half-close, an end, the drain callback. */
void csock__stream_after_drain(csock_stream *s, int was_queued);
void csock__stream_flush(csock_stream *s);
void csock__stream_drop_queue(csock_stream *s);
void csock__stream_maybe_pause(csock_stream *s);
void csock__stream_maybe_resume(csock_stream *s);
/* Hand the kernel what it takes now: 0 when the stream failed or closed, else 1. */
int csock__stream_send_queue(csock_stream *s);

/* completion I/O (stream_uring.c) */
void csock__stream_ring_recv(csock_stream *s);
void csock__stream_ring_fin(csock_stream *s);
int csock__stream_ring_send(csock_stream *s);
void csock__stream_ring_setup(csock_stream *s);

/* timers (stream_timeout.c) */
void csock__stream_touch(csock_stream *s);
void csock__stream_read_clock(csock_stream *s);
void csock__stream_recv_clock(csock_stream *s);
void csock__stream_write_clock(csock_stream *s);
int csock__stream_arm_timer(csock_stream *s, int mode, uint64_t ms);
void csock__stream_linger(csock_stream *s);
/* The T_WATCH timer fires by the earliest idle/read/write/receive deadline. */
void csock__stream_watch(csock_stream *s);
void csock__stream_watch_io(csock_stream *s);
/* The write queue drained: with a write timeout, note what the kernel
 * still holds unsent (it waits for the peer as our queue did). */
void csock__stream_note_unsent(csock_stream *s);

/* connection groups (group.c) */
/* A draining stream ends once idle (or is checked again later). */
void csock__stream_drain_check(csock_stream *s);

#endif
