/* The HTTP/1.1 request parser and chunked body decoder (RFC 9112), in the
 * style of picohttpparser: pure functions, no I/O, no allocation, no global
 * state. Results are slices into the caller's buffer, valid as long as that
 * buffer is neither freed nor moved. Every function is re-entrant and may be
 * called from any thread on distinct state.
 *
 * Return values: bytes consumed (>= 0 where stated), CSOCK_HTTP_INCOMPLETE
 * ("call again with more bytes", not an error), or one of the CSOCK_HTTP_E*
 * codes below, each of which maps to the status code the server answers with
 * (csock_http_status()). They sit below -4096, outside the errno range and
 * away from the library codes in csock.h, so one int carries any of them.
 */
#ifndef CSOCK_PROTO_HTTP1_PARSE_H
#define CSOCK_PROTO_HTTP1_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "csock/csock.h"

enum {
    CSOCK_HTTP_INCOMPLETE = -4300,  /* need more input; not an error */
    CSOCK_HTTP_EBADREQ = -4400,     /* 400: malformed or ambiguous (smuggling) */
    CSOCK_HTTP_ETOOLARGE = -4413,   /* 413: chunked body beyond the caller's limit */
    CSOCK_HTTP_EURITOOLONG = -4414, /* 414: request line beyond max_request_line */
    CSOCK_HTTP_EHDRTOOBIG = -4431,  /* 431: head beyond max_head, or too many fields */
    CSOCK_HTTP_ENOTIMPL = -4501,    /* 501: a transfer coding other than chunked */
    CSOCK_HTTP_EVERSION = -4505,    /* 505: well-formed but unsupported HTTP version */
};

/* Defaults used when a limit is 0 or the limits pointer is NULL. */
#define CSOCK_HTTP_MAX_REQUEST_LINE 8192 /* bytes, excluding CRLF */
#define CSOCK_HTTP_MAX_HEAD 32768        /* bytes, request line to final CRLF */

/* A run of bytes inside the caller's buffer; not NUL-terminated. */
typedef struct csock_http_slice {
    const char *ptr;
    size_t len;
} csock_http_slice;

typedef struct csock_http_header {
    csock_http_slice name;  /* a token, case as received */
    csock_http_slice value; /* leading and trailing SP/HTAB removed */
} csock_http_header;

typedef struct csock_http_limits {
    size_t max_request_line; /* longer request line: 414; 0 = the default */
    size_t max_head;         /* longer head: 431; 0 = the default */
} csock_http_limits;

/* One parsed request head. The caller sets `headers` and `max_headers` (the
 * capacity of that array; more fields than that is 431); the parser fills the
 * rest. Nothing here is owned: all slices point into the parsed buffer. */
typedef struct csock_http_request {
    csock_http_slice method;    /* a token, e.g. "GET" */
    csock_http_slice target;    /* request-target as received, e.g. "/a?b" */
    int minor_version;          /* 0 for HTTP/1.0, 1 for HTTP/1.1 (and 1.x > 1) */
    csock_http_header *headers; /* caller's array, filled in order received */
    size_t max_headers;         /* caller: capacity of `headers` */
    size_t num_headers;         /* parser: fields stored */
    int64_t content_length;     /* Content-Length, or -1 when absent */
    bool chunked;               /* Transfer-Encoding: chunked (the only one accepted) */
    bool keep_alive;            /* connection persists (version default + Connection) */
    bool expect_continue;       /* Expect: 100-continue */
    bool has_host;              /* exactly one Host field (required for 1.1) */
    bool upgrade;               /* Connection: upgrade and an Upgrade field present */
} csock_http_request;

/* Parse the request head at the start of buf[0..len). Returns the head's length
 * in bytes (> 0; the body or the next pipelined request starts there),
 * CSOCK_HTTP_INCOMPLETE when the head is not all there yet (call again with
 * the same start and more bytes), or a CSOCK_HTTP_E* error after which the
 * connection must be answered with csock_http_status() and closed. Never reads
 * outside buf[0..len). `limits` may be NULL. On error `req` is unspecified. */
int csock_http_parse_request(const char *buf, size_t len, csock_http_request *req,
                             const csock_http_limits *limits);

/* The HTTP status code a parse or decode error calls for (400, 413, 414, 431,
 * 501, 505), or 0 for anything that is not a CSOCK_HTTP_E* code. */
int csock_http_status(int err);

/* A short English description of a CSOCK_HTTP_* code; static, never NULL. */
const char *csock_http_strerror(int err);

/* ---- chunked transfer coding (RFC 9112 section 7.1) ----------------------- */

enum {
    CSOCK_HTTP_CHUNK_DONE = 0, /* body and trailers ended; the rest is the next message */
    CSOCK_HTTP_CHUNK_DATA = 1, /* *data holds body bytes; call again for more */
};

#define CSOCK_HTTP_MAX_CHUNK_EXT 1024 /* bytes after the size, before CR: 400 beyond */
#define CSOCK_HTTP_MAX_TRAILER 8192   /* bytes of trailer section: 431 beyond */

/* The decoder's state: plain data, embed it (e.g. in a connection) and set it
 * up with csock_http_chunked_init(). Fields are private to the decoder except
 * the limits, which the caller may change after init. */
typedef struct csock_http_chunked {
    uint64_t max_body;    /* caller: total decoded bytes allowed, 413 beyond */
    uint32_t max_ext;     /* caller: extension bytes per chunk line */
    uint32_t max_trailer; /* caller: trailer section bytes */
    uint64_t total;       /* data bytes so far */
    uint64_t remaining;   /* data bytes left in the current chunk (or its size so far) */
    uint32_t count;       /* bytes seen of the current extension or the trailer */
    uint8_t state;        /* where in the grammar we are (private enum) */
    uint8_t digits;       /* 1 once the current chunk size has a hex digit */
} csock_http_chunked;

/* Start decoding a new chunked body of at most `max_body` decoded bytes. */
void csock_http_chunked_init(csock_http_chunked *st, uint64_t max_body);

/* Feed buf[0..len) to the decoder. Framing is consumed silently; body bytes
 * are reported, never copied: the call stops at the first run of them.
 * Sets *consumed to the bytes used (data included) and returns
 *   CSOCK_HTTP_CHUNK_DATA: *data is a slice of buf; call again with buf + *consumed;
 *   CSOCK_HTTP_CHUNK_DONE: the body ended (a call after that returns DONE, 0 used);
 *   CSOCK_HTTP_INCOMPLETE: all len bytes used, more are needed;
 *   CSOCK_HTTP_EBADREQ, ETOOLARGE or EHDRTOOBIG: the stream is unusable, and
 *   every later call returns CSOCK_HTTP_EBADREQ.
 * Re-entrant: all state is in *st. */
int csock_http_chunked_decode(csock_http_chunked *st, const char *buf, size_t len, size_t *consumed,
                              csock_http_slice *data);

#endif
