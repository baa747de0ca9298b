/* csock bench --http: the request it sends and a small parser for the
 * responses (status line, Content-Length or chunked body, Connection:
 * close), fed the bytes as they arrive without copying them. */
#ifndef CSOCK_CLI_BENCH_HTTP_H
#define CSOCK_CLI_BENCH_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define BENCH_HTTP_MAX_HEAD 65536 /* a response head larger than this is an error */

typedef struct bench_http_resp {
    int state;          /* where in the response (bench_http.c) */
    int status;         /* of the response being read */
    int close;          /* the last head said Connection: close (or was 1.0) */
    uint64_t body_left; /* bytes of the body (or of a chunk and its CRLF) to skip */
    int head;           /* the requests are HEAD: no response has a body */
} bench_http_resp;

/* Take what it can of one response from buf. Returns the bytes consumed
 * (0 when more are needed), with *done set to the status code once the
 * response is complete (0 otherwise; *r is then ready for the next one,
 * and r->close says whether the server closes now), or -EPROTO for a
 * response that cannot be parsed. Zero *r before the first response. */
ssize_t bench_http_parse(bench_http_resp *r, const char *buf, size_t len, int *done);

/* The request csock bench sends, every time the same. */
typedef struct bench_http_req {
    const char *method, *path, *host;
    const char *const *headers; /* "Name: value" lines; a Host one replaces ours */
    unsigned nheaders;
    const char *body;           /* NULL: none (and no Content-Length) */
    size_t body_len;
    unsigned copies;            /* written this many times back to back (--pipeline) */
} bench_http_req;

/* "METHOD PATH HTTP/1.1\r\nHost: HOST\r\n[headers][Content-Length]\r\n[body]"
 * rq->copies times into a new buffer, or NULL when out of memory; *len is
 * the length of one. */
char *bench_http_request(const bench_http_req *rq, size_t *len);

#endif
