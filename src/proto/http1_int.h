/* Private to the HTTP/1.1 server (src/proto/http1_*.c): the server, a
 * connection and its request, and the calls the files make of each other.
 * Who does what: http1_server.c the server, its connections' lifecycle and
 * timeout lists; http1_read.c reading and dispatching requests;
 * http1_write.c writing answers (the csock_http_send family);
 * http1_request.c the request's accessors. */
#ifndef CSOCK_PROTO_HTTP1_INT_H
#define CSOCK_PROTO_HTTP1_INT_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "csock/csock.h"
#include "proto/http1_parse.h"

/* Fields per request: real clients send a few dozen at most (nginx and
 * picohttpparser's users allow about as many); more is a 431. */
#define MAX_HEADERS 100
/* Fields a connection has room for in itself: a browser's request has 10
 * to 20, curl's and load generators' a handful. A request with more gives
 * its connection an array of MAX_HEADERS (kept until it closes). A small
 * connection matters beyond its own bytes: an upgraded one (a WebSocket)
 * is freed, and the long-lived objects of later connections are carved
 * from the hole it leaves (measured with 10,000 idle WebSockets: 3,951 B
 * of RSS each with 100 fields inline, 1,281 B with 16). */
#define INLINE_HEADERS 16
/* Pipelined requests answered in one read callback before we wait for the
 * client to take the answers: a client sending thousands of requests at
 * once must not make us queue thousands of answers. */
#define BATCH_MAX 64
#define QUEUE_MAX (256u * 1024)      /* ...or this many answer bytes queued */
/* Files up to this size are read and go with the head in one write: one
 * syscall instead of a writev and a sendfile. As large as the stack buffer
 * we read them into may sensibly be. */
#define SMALL_FILE 8192
/* Housekeeping resolution: timeouts are seconds long, so a quarter of a
 * second late is fine, and four wakeups a second cost nothing. */
#define TICK_MS 250
/* "Date: " + an IMF-fixdate (29 characters, csock_http_date) + CRLF. */
#define DATE_PREFIX 6
#define DATE_LINE_LEN (DATE_PREFIX + 29 + 2)
/* "Server: " + a name cut at SERVER_NAME_MAX + CRLF must fit server[]. */
#define SERVER_NAME_MAX 60

enum { TL_HEADER, TL_BODY, TL_KEEPALIVE, TL_COUNT, TL_NONE = TL_COUNT };

typedef struct conn conn;

struct csock_http_req {
    conn *c;
    csock_http_request p;           /* the parsed head; slices of the connection's copy
                                       (conn.rq), or empty between requests */
    csock_http_header *hdrs;        /* hdrs_in, or MAX_HEADERS of them on the heap */
    size_t hcap;
    csock_http_header hdrs_in[INLINE_HEADERS];
    csock_http_str path, query, body;
    char *extra;                    /* fields added with csock_http_add_header */
    size_t elen, ecap;
    int64_t left;                   /* body bytes still to come after csock_http_start_length
                                       (-1: not a fixed-length streamed body) */
    unsigned head : 1;              /* HEAD: no body bytes in the answer */
    unsigned started : 1;           /* the answer's head is written */
    unsigned streaming : 1;         /* between csock_http_start and csock_http_end */
    unsigned chunked_out : 1;       /* the streamed body goes as chunks */
    unsigned close : 1;             /* close the connection after this answer */
    unsigned oom : 1;               /* a field could not be added: the answer becomes a 500 */
    unsigned dropped : 1;           /* the streamed body is not sent (the answer became a 500) */
    unsigned upgrade : 1;           /* a 101 of csock_http_upgrade: "Connection: Upgrade" */
    unsigned offers_upgrade : 1;    /* the handler added an Upgrade field (a 426): the
                                       Connection field names it too (RFC 9110 7.8) */
};

struct conn {
    csock_http_server *hs;          /* NULL once the server has let go of us */
    csock_stream *s;
    conn *next, *prev;              /* the server's connections */
    conn *tnext, *tprev;            /* the timeout list we are on */
    uint64_t deadline;
    unsigned char tl;               /* which list (TL_NONE: none) */
    unsigned busy : 1;              /* a request is being answered */
    unsigned in_read : 1;           /* inside on_read: it continues with the next request */
    unsigned closing : 1;           /* ending: no more requests */
    unsigned peer_eof : 1;          /* the client finished sending */
    unsigned sent_continue : 1;     /* 100 Continue sent for the current request */
    unsigned want_body : 1;         /* the last parse found a head waiting for its body */
    unsigned orphan : 1;            /* closed while its answer was pending: freed by finish() */
    unsigned upgraded : 1;          /* csock_http_upgrade handed the stream over inside
                                       on_read: on_read forwards the rest and frees us */
    char *rq;                       /* the request's own copy of its head and body */
    size_t rqcap;
    char *ob;                       /* answers made inside on_read, queued by reference */
    size_t olen, ocap;              /* when it returns (see out_write) */
    csock_read_cb up_cb;            /* the new owner's read callback (upgraded) */
    csock_http_req req;
};

struct csock_http_server {
    csock_loop *loop;
    csock_http_opts o;
    csock_http_route *routes;
    conn *conns;
    unsigned nconns;
    struct {
        conn *head, *tail;
    } tl[TL_COUNT];
    uint64_t tl_ms[TL_COUNT];
    csock_timer *timer;
    uint64_t date_next;             /* loop time at which the Date line goes stale */
    char date[DATE_LINE_LEN + 1];   /* "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n" */
    char server[SERVER_NAME_MAX + 20]; /* "Server: csock\r\n" */
    size_t server_len;
    csock_http_limits limits;
    size_t max_read;
};

/* http1_server.c: timeout lists and connections */
void csock__http_tl_remove(conn *c);
void csock__http_tl_set(conn *c, int which);
void csock__http_conn_free(conn *c);
void csock__http_conn_detach(conn *c);

/* http1_read.c: requests */
size_t csock__http_on_read(csock_stream *s, int status, const char *buf, size_t len);
void csock__http_conn_next(conn *c);
void csock__http_clear_request(csock_http_req *r);
size_t csock__http_upgraded_rest(conn *c, csock_stream *s, int status, const char *buf, size_t used,
                                 size_t len);

/* http1_write.c: answers */
void csock__http_send_error(conn *c, int status);
void csock__http_out_flush(conn *c);
int csock__http_out_bytes(conn *c, const void *buf, size_t len);

/* http1_request.c */
int csock__http_lower_eq(csock_http_str s, const char *name);

#endif
