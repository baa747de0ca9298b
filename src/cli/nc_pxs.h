/* csock listen --proxy-type: what the proxy server's pieces share
 * (nc_proxy_server.c: the server, SOCKS5 and CONNECT; nc_proxy_fwd.c: HTTP
 * forwarding of absolute URIs). */
#ifndef CSOCK_CLI_NC_PXS_H
#define CSOCK_CLI_NC_PXS_H

#include <stdint.h>

#include "cli/netcat.h"
#include "cli/splice_relay.h"

#define PX_HEAD_MAX 8192          /* a client's request header, at most */
#define PX_CONNECT_MS 10000       /* a target that does not answer */
#define PX_REQUEST_MS 30000       /* a client that does not finish its request */
#define PX_HIGH (256u * 1024)     /* a sink over this stops its source */

typedef struct pxc pxc;

typedef struct pxs {
    const nc_opts *o;
    csock_loop *loop;
    csock_listener *listener;
    csock_signal *sig[2];
    char auth_b64[700];           /* HTTP: base64 of --proxy-auth */
    int http;                     /* --proxy-type http (else socks5) */
    unsigned npairs;              /* clients being served (-m counts them) */
    pxc *spliced;                 /* tunnels relayed by splice(2), a list */
    splice_pool pool;             /* their idle pipes */
} pxs;

/* HTTP forwarding of one request (an absolute URI): its state. */
typedef struct pxf {
    char *head;                   /* the request head for the origin (origin-form) */
    size_t head_len;
    uint64_t left;                /* Content-Length: body bytes still to forward */
    uint64_t chunk;               /* chunked: bytes left in this chunk */
    int ck;                       /* chunked: PXF_CK_* where the scanner is */
    int chunked;                  /* the body is chunked (else `left` counts it) */
    int body_done;                /* the request's body is all forwarded */
    int answered;                 /* the origin's final head went to the client */
} pxf;

struct pxc {
    pxs *srv;
    csock_stream *cs, *ts;        /* the client, the target (NULL until connecting) */
    int state;                    /* PX_*: what the client's bytes are now */
    int refs;                     /* open streams + a lookup in flight */
    int dead;                     /* the client is gone: a late lookup only frees */
    char host[256];               /* the target as asked */
    int port;
    int eof_c, eof_t;             /* each side has finished sending */
    pxf *fwd;                     /* HTTP forwarding (NULL: a tunnel) */
    splice_relay sp;              /* a tunnel between plain sockets: cs and ts became sp's */
    pxc *next, *prev;             /* in srv->spliced while sp relays */
};

enum { PX_GREETING = 1, PX_AUTH, PX_REQUEST, PX_HTTP, PX_WAIT, PX_RELAY };

/* nc_proxy_server.c */
int px_write(pxc *p, csock_stream *s, const void *buf, size_t len);
void px_http_answer(pxc *p, const char *status, const char *extra, const char *body);
void px_refuse(pxc *p, int rep, const char *status);
void px_resolve(pxc *p);
int px_http_auth_ok(const pxc *p, const char *h, size_t len);
void px_relay_drain(csock_stream *s, int status);

/* nc_proxy_fwd.c: `b` is a request head of `hlen` bytes whose target is an
 * absolute URI (not CONNECT): check, rewrite for the origin and resolve.
 * Returns the bytes consumed. */
size_t pxf_request(pxc *p, const char *b, size_t hlen);
/* The origin is connected: the request goes, the relay starts. */
void pxf_start(pxc *p);
/* The read callback that serves `s` (a forwarding pair's client or origin). */
csock_read_cb pxf_read_cb(const pxc *p, const csock_stream *s);
void pxf_free(pxf *f);

#endif
