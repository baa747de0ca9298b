/* csock bench: a thread's connections and their state, shared by
 * bench_run.c (the load, the checks, csock streams, WebSocket and UDP) and
 * bench_raw.c (plain TCP and Unix sockets driven directly). */
#ifndef CSOCK_CLI_BENCH_CONN_H
#define CSOCK_CLI_BENCH_CONN_H

#include "cli/bench.h"
#include "cli/bench_http.h"
#include "csock/ws.h"

#define TICK_MS 1                 /* end of run, housekeeping, live line */
#define MIN_PACE_NS 50000ull      /* open loop: sends are batched at most 50 us apart */
#define HOUSEKEEP_TICKS 10        /* reconnects and timeouts: every 10 ms */
#define RETRY_NS 100000000ull     /* a refused connect is tried again after 100 ms */
#define MAX_INFLIGHT (1u << 20)   /* open loop: messages waiting on one connection */

enum { C_DOWN, C_CONNECTING, C_UP, C_CLOSING };

typedef struct run run;

/* Stamps kept in the connection itself (depth 1 to 4, the usual case): a
 * separate allocation is one more cache miss an answer with thousands of
 * connections. */
#define INLINE_STAMPS 4

typedef struct conn {
    /* What every answer touches first, together. */
    run *r;
    uint64_t *stamps;    /* due times of messages in flight, by seq & mask */
    uint64_t mask;
    uint64_t sent, done; /* messages sent and answered on this stream */
    size_t rpos;         /* bytes of message `done` received so far */
    csock_io *io;        /* plain tcp:// and unix: (bench_raw.c), instead of s */
    /* bench_raw.c: messages [wseq, sent) are not written yet, wpos bytes
     * of message wseq are; the bytes come from the pattern again. */
    uint64_t wseq;
    size_t wpos;
    unsigned id; /* over all threads: which slice of the pattern it sends */
    int state;
    int answered; /* an answer was checked on this connection (any of its streams) */
    int watching; /* the events io watches */
    uint64_t inline_stamps[INLINE_STAMPS]; /* `stamps` while depth <= INLINE_STAMPS */
    /* The rest. */
    csock_stream *s;
    csock_ws *ws; /* ws:// and wss://, instead of s */
    csock_dgram *d; /* udp://, instead of s */
    uint64_t retry_at;   /* C_DOWN: when to connect again */
    uint64_t connect_at; /* when the connect began (--connect: the message's start) */
    bench_http_resp http; /* --http: the response being read */
    uint64_t rbytes;      /* --http: bytes of that response so far */
} conn;

struct run {
    bench_thread *t;
    const bench_opts *o;
    csock_loop *loop;
    csock_timer *tick;
    conn *conns;
    unsigned n, rr, ticks;
    int stopping;
    /* Open loop: message k of this thread is due at t0 + k * interval. A
     * timerfd wakes the loop for them: the loop's timers count whole
     * milliseconds, which would add up to 1 ms of lag to every message. */
    uint64_t t0, k;
    int pace_fd;
    csock_io *pacer;
    double interval_ns;
    /* The live line: answers so far, and the last second's latencies. */
    uint64_t completed, next_live;
    bench_hist *second;
    /* Throughput over time: answers in the window go to series[slot], which
     * ends at slot_end (a comparison an answer instead of a division). */
    uint64_t slot, slot_end;
    char *rbuf; /* o->raw: the buffer answers are read into */
    /* bench_raw.c: the connection whose answers are being checked; the
     * messages they let go are written together once all are read. */
    conn *raw_input;
};


/* bench_run.c */
int bench_err_kind(int status);
void bench_count_err(run *r, int kind);
/* Close the connection, counting the error of `kind` (< 0: none); it is
 * made again after retry_after_ns. */
void bench_conn_fail(conn *c, int kind, uint64_t retry_after_ns);
/* Closed: make it again when due. */
void bench_conn_down(conn *c);
/* Connected: start the load (rc: how starting to read went). */
void bench_conn_up(conn *c, int rc);
/* Answer bytes of an echo or upper connection: checked, counted, the next
 * messages sent. 0, or -1 when the connection failed (and was closed). */
int bench_echo_input(conn *c, const char *buf, size_t len);
/* Where in the pattern message k of c starts. */
size_t bench_msg_off(const conn *c, uint64_t k);

/* bench_raw.c */
#define BENCH_RAW_RBUF (64 * 1024) /* one read a wake-up takes all of a burst */
/* Whether this run drives its sockets directly: plain tcp:// or unix:,
 * --echo or --upper, not --streams, and a readiness backend (io_uring's
 * streams do their I/O by completion, which a readiness watcher would
 * only slow down). `backend`: the one the threads' loops will get. */
int bench_raw_wanted(const bench_opts *o, const char *backend);
/* Begin a connect; errors are counted and retried as for a stream. */
void bench_raw_connect(conn *c);
/* Write messages [wseq, sent), many in one sendmsg(2); what the socket
 * does not take waits for it to be writable. 0 or a negative errno. */
int bench_raw_flush(conn *c);
/* Stop watching and close the socket (bench_conn_down follows). */
void bench_raw_close(conn *c);

#endif
