/* Two plain sockets relayed both ways, by splice(2) or a copy, half-close
 * passed on.
 * Used by csock proxy (proxy_relay.c) and by csock listen --proxy-type
 * (nc_proxy_server.c) once a tunnel's two ends are plain sockets.
 *
 * A direction that streams never takes its bytes into user space:
 * splice(2) moves them from one socket into a pipe and from the pipe into
 * the other. The pipe is taken from a pool only while bytes are in it, so
 * an idle pair holds no pipe (two descriptors and 64 KiB of kernel buffer
 * less). A direction that carries messages (a read that empties the
 * socket before it fills 64 KiB) copies instead, with recv and send
 * through the pool's one scratch buffer: the receiving peer then gets
 * fresh, whole segments, where spliced ones point into the sender's
 * pages, and that costs the peers more than the copy costs the relay
 * (BENCHMARKS.md, "copy or splice"). A full read switches the direction to
 * splice; three reads in a row of at most half a chunk switch it back
 * (HAProxy's splice-auto decides the same way, with its own counts).
 *
 * The sockets are watched with csock_io, level-triggered: a source is read
 * only while its pipe (or a copy's unsent rest) is empty, which is the
 * backpressure.
 *
 * A stream's socket is taken with csock_stream_detach(), which hands it
 * over once nothing of the stream's is in flight (its output sent; on
 * io_uring its recv completed), with the input the stream read but no one
 * consumed: those bytes go to the other side first.
 *
 * An EOF from one side is passed on as a shutdown of the other's write
 * side; the relay ends when both directions have ended that way, or at the
 * first error (a reset). One loop, one thread: a relay and its pool belong
 * to the loop that runs them. */
#ifndef CSOCK_CLI_SPLICE_RELAY_H
#define CSOCK_CLI_SPLICE_RELAY_H

#include <stdint.h>

#include "csock/csock.h"

#define SPLICE_POOL_MAX 64 /* idle pipes kept for reuse */

/* Pipes not in use, shared by the relays of one loop, and the copy's
 * scratch buffer. Zeroed: empty. */
typedef struct splice_pool {
    int fd[SPLICE_POOL_MAX][2];
    unsigned n;
    char *scratch; /* SPLICE_CHUNK bytes, made at the first copy (NULL: not yet) */
} splice_pool;

/* Give the pooled pipes back to the kernel and free the scratch buffer. */
void splice_pool_free(splice_pool *pool);

typedef struct splice_half {
    int pipe[2];        /* -1 while the direction holds no bytes */
    uint32_t inpipe;    /* bytes in the pipe */
    char *early;        /* the source stream's unconsumed input, sent first (NULL: none) */
    uint32_t early_off, early_len;
    unsigned char eof;  /* the source finished */
    unsigned char shut; /* the sink's write side is shut down */
    unsigned char splicing; /* streaming: read by splice (0: copy) */
    unsigned char small;    /* splice reads of at most half a chunk in a row */
    uint64_t bytes;     /* relayed */
} splice_half;

typedef struct splice_relay splice_relay;

/* The relay ended: why is 0 (both directions finished) or the -errno that
 * cut it short. The sockets are still open: the callback ends the relay
 * with splice_relay_close() (it may free sr). */
typedef void (*splice_end_cb)(splice_relay *sr, int why);

struct splice_relay {
    csock_loop *loop;
    splice_pool *pool;
    splice_end_cb on_end;
    void *data;            /* the owner's */
    csock_io *io[2];
    int fd[2];             /* owned: closed by splice_relay_close() */
    unsigned char want[2]; /* the events io[i] watches */
    splice_half h[2];      /* h[0]: fd[0] -> fd[1], h[1]: fd[1] -> fd[0] */
    uint64_t last_io;      /* loop ms of the last read from either side (0: none) */
    struct splice_take *take[2]; /* side i's stream being detached (NULL: none) */
    unsigned char started; /* splice_relay_start() was called */
    int err;               /* a side that could not be taken: the relay ends with it */
};

/* An empty relay (no sockets yet). */
void splice_relay_init(splice_relay *sr, csock_loop *loop, splice_pool *pool, splice_end_cb on_end,
                       void *data);
/* Side i's socket (0 or 1). The relay owns fd from here, even when this
 * fails. io: a watcher of fd the caller made already, whose callback calls
 * splice_relay_events(sr, i, events) (it passes to the relay too); NULL:
 * the relay makes its own. Returns 0 or -errno. */
int splice_relay_attach(splice_relay *sr, int i, int fd, csock_io *io);
/* Side i from the plain stream *s, by csock_stream_detach(): the stream is
 * the relay's from this call on, whatever it returns, and *s is set to
 * NULL; its close callback is not called. The socket and the stream's
 * unconsumed input join the relay once the stream has let them go (later,
 * from the loop). Returns 0, or -errno when the detach could not begin:
 * the stream is closed then, and the caller ends the relay. */
int splice_relay_take(splice_relay *sr, int i, csock_stream **s);
/* Every side attached or being taken: start relaying (once the takes have
 * come, should any still be on their way). Returns 0, or -errno (a take
 * that failed): the caller ends the relay. */
int splice_relay_start(splice_relay *sr);
/* Side i's socket is ready (for watchers the caller made). */
void splice_relay_events(splice_relay *sr, int i, int events);
/* Stop watching, close both sockets, give the pipes back; a take still on
 * its way is called off (its stream closed). */
void splice_relay_close(splice_relay *sr);

#endif
