/* HTTP/1.1 server on csock streams (RFC 9110, RFC 9112), and a static-file
 * handler.
 *
 * A csock_http_server belongs to one loop (one per loop of a csock_server):
 * hand it accepted streams with csock_http_server_accept(). Each connection
 * parses requests in the stream's read buffer, copies each complete one
 * (head and body) into storage of its own, runs the matching route's
 * handler, and writes the response. Every complete request in one read is
 * answered in the same callback, so replies to pipelined requests leave in
 * one write.
 *
 * The request's lifetime: a csock_http_req, and every string its accessors
 * return (method, target, path, query, fields, body), stay valid and
 * unchanged from the handler's call until its answer completes (the return
 * of csock_http_send(), csock_http_send_file() or csock_http_end()), now or
 * later, even if the connection closes meanwhile; the access log sees the
 * same request. After that the request is gone: copy what you need longer.
 *
 * Safety: a request the parser finds ambiguous (Content-Length with
 * Transfer-Encoding, a repeated or non-final chunked, differing
 * Content-Lengths, bare CR, obs-fold, whitespace before a colon, no Host in
 * 1.1) is answered 400 and the connection closed; a long request line 414,
 * a large head 431, a body over max_body 413. A head must arrive within
 * header_timeout, a body within body_timeout, the next request within
 * keepalive_timeout, or the connection is closed (a slow client cannot hold
 * a connection by trickling bytes).
 *
 * https: put TLS on the accepted stream first (csock_tls_accept() from
 * csock/tls.h) and hand it to csock_http_server_accept() in the handshake
 * callback; the server sees the same stream API either way.
 *
 * Threads: everything here runs on the loop's thread, and a
 * csock_http_static belongs to one loop too (it caches): make one per loop.
 */
#ifndef CSOCK_HTTP_H
#define CSOCK_HTTP_H

#include "csock/api.h"
#include "csock/net.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct csock_loop csock_loop;
typedef struct csock_stream csock_stream;
typedef struct csock_http_server csock_http_server;
typedef struct csock_http_req csock_http_req;
typedef struct csock_http_static csock_http_static;

/* A run of bytes, not NUL-terminated; {NULL, 0} when absent. */
typedef struct csock_http_str {
    const char *ptr;
    size_t len;
} csock_http_str;

/* A request handler. It answers with exactly one of csock_http_send(),
 * csock_http_send_file() or csock_http_start() ... csock_http_end(), now or
 * later on the loop's thread, and must answer every request it is given:
 * the answer is what releases the request. The next request on the
 * connection waits until the answer is complete. The request and its
 * strings stay valid until then (see the lifetime above). If the connection
 * closes before a later answer, the answer's calls return -EPIPE and send
 * nothing, and csock_http_stream() returns NULL. */
typedef void (*csock_http_handler)(csock_http_req *req, void *data);

/* Option structs are ABI: zero-initialize them (= {0}, or designated
 * initializers); zero means the default for every member. A later minor
 * version takes new members out of `reserved`, so sizeof and every offset
 * stay the same within a major version (the library's SOVERSION): leave
 * `reserved` zero. */
/* A route: the first one whose method (NULL: any) and path prefix match
 * (NULL or "": any) handles the request. */
typedef struct csock_http_route {
    const char *method;
    const char *prefix;
    csock_http_handler handler;
    void *data;
    uint64_t reserved[2]; /* routes come in arrays: their size is ABI too */
} csock_http_route;

/* Called once per response, when its head is written: for an access log.
 * `body_len` is the body's length as announced (also for HEAD, which gets
 * no bytes; csock_http_start_length()'s length), -1 for a streamed body of
 * unknown length (csock_http_start()), 0 for 1xx, 204 and 304. The request
 * is the one being answered, readable (method, target, headers) during the
 * call, also for an answer given later. For an error the server answers on
 * its own (400, 408, 413, ...) before a whole head arrived, the method and
 * target are absent ({NULL, 0}). */
typedef void (*csock_http_log_cb)(const csock_http_req *req, int status, int64_t body_len,
                                  void *data);

/* (An option struct: zero-initialize it, see above.) */
typedef struct csock_http_opts {
    const csock_http_route *routes; /* tried in order; copied by csock_http_server_new */
    size_t nroutes;
    csock_http_handler handler;     /* when no route matches; NULL: 404 */
    void *data;                     /* for `handler` */
    size_t max_request_line;        /* longer: 414; 0: 8 KiB */
    size_t max_head;                /* request line + fields, longer: 431; 0: 32 KiB */
    uint64_t max_body;              /* larger request body: 413; 0: 1 MiB. The stream
                                       buffers head + twice this (chunk framing) at
                                       most: a chunked body framed in chunks so small
                                       that it takes more is 413 too */
    uint64_t header_timeout_ms;     /* a head must be complete this long after its first
                                       byte (or after accept); 0: 10 s */
    uint64_t body_timeout_ms;       /* a body must be complete this long after its head; 0: 30 s */
    uint64_t keepalive_timeout_ms;  /* idle between requests; 0: 30 s */
    uint64_t send_timeout_ms;       /* no byte taken by the client while answering; 0: 60 s */
    const char *server_name;        /* the Server field; NULL: "csock" */
    csock_http_log_cb log;          /* NULL: no log */
    void *log_data;
    uint64_t reserved[8];
} csock_http_opts;

/* Make an HTTP server for `loop`. Copies *opts (the routes array too, not
 * the strings it points to, which must outlive the server). */
CSOCK_API int csock_http_server_new(csock_loop *loop, const csock_http_opts *opts, csock_http_server **out);

/* Serve HTTP on an accepted stream; the server owns it from now on (it sets
 * the stream's data, read callback, close callback, max read size and write
 * timeout). Returns 0, or an error (-ENOMEM, or csock_stream_read_start()'s)
 * after which the stream has been closed. */
CSOCK_API int csock_http_server_accept(csock_http_server *hs, csock_stream *s);

/* Close every connection of the server now and free it (asynchronously: its
 * memory goes on a later loop iteration). Call before the loop is freed. */
CSOCK_API void csock_http_server_close(csock_http_server *hs);

/* The number of open connections. */
CSOCK_API unsigned csock_http_server_conns(const csock_http_server *hs);

/* ---- the request ----------------------------------------------------------- */

CSOCK_API csock_http_str csock_http_method(const csock_http_req *r);
CSOCK_API csock_http_str csock_http_target(const csock_http_req *r); /* as received: "/a%20b?x=1" */
CSOCK_API csock_http_str csock_http_path(const csock_http_req *r);   /* target before '?', not decoded */
CSOCK_API csock_http_str csock_http_query(const csock_http_req *r);  /* after '?', or {NULL, 0} */
CSOCK_API int csock_http_minor(const csock_http_req *r);             /* 0: HTTP/1.0, 1: HTTP/1.1 */
CSOCK_API int csock_http_is_head(const csock_http_req *r);           /* the method is HEAD */
/* The first field named `name` (ASCII case-insensitive), or {NULL, 0}. */
CSOCK_API csock_http_str csock_http_get_header(const csock_http_req *r, const char *name);
/* Every field in order: returns 0 and sets name/value for i < count, else
 * -ENOENT (name and value untouched). */
CSOCK_API int csock_http_header_at(const csock_http_req *r, size_t i, csock_http_str *name,
                         csock_http_str *value);
/* The whole request body (Content-Length or de-chunked); length 0 when none. */
CSOCK_API csock_http_str csock_http_body(const csock_http_req *r);
/* The connection's stream (for its peer address); do not read or close it.
 * NULL once the connection has closed (an answer given later). */
CSOCK_API csock_stream *csock_http_stream(const csock_http_req *r);

/* ---- the response -------------------------------------------------------------- */

/* Add a response field before the answer starts. Date, Server,
 * Content-Length, Transfer-Encoding and Connection are written by the
 * server (do not add them). Returns 0, -EINVAL (an empty name, CR, LF or
 * ':' in the name, CR or LF in the value), -EALREADY (answer started) or
 * -ENOMEM; after -ENOMEM the answer, whatever it is, goes out
 * as a bodiless 500 that closes the connection (never an answer missing a
 * field it needs), and the answering call returns -ENOMEM. */
CSOCK_API int csock_http_add_header(csock_http_req *r, const char *name, const char *value);

/* Ask for the connection to close after this answer (Connection: close). */
CSOCK_API void csock_http_close_after(csock_http_req *r);

/* Every answer's status is 100-999 (three digits on the wire, RFC 9112
 * section 4): another one is -EINVAL, nothing is sent, and the request
 * still waits for its answer. 1xx, 204 and 304 answers carry no body. The
 * answering calls return -EALREADY when the answer was already given or
 * started, -EPIPE when the connection has gone (the answer still
 * completes), -ENOMEM as csock_http_add_header() says or when the answer
 * could not be queued (the connection is closed). */

/* Answer with a fixed body (copied; HEAD gets the length, not the bytes).
 * Completes the answer. */
CSOCK_API int csock_http_send(csock_http_req *r, int status, const void *body, size_t len);

/* Answer with `len` bytes of file `fd` from `offset`, sent with sendfile(2)
 * (files up to 8 KiB are read at once and sent with the head in one write:
 * if that read fails or comes short, the answer becomes a bodiless 500 that
 * closes the connection and the call returns -errno or -EIO). The server
 * closes `fd` when done if `close_fd` is non-zero (also on error). */
CSOCK_API int csock_http_send_file(csock_http_req *r, int status, int fd, off_t offset, size_t len,
                         int close_fd);

/* A streamed body: start, write pieces (sent as chunks to HTTP/1.1 clients,
 * as a close-delimited body to HTTP/1.0 ones), end. Pieces of an answer to
 * HEAD, of a bodiless status, or of an answer whose start failed are
 * dropped (0); csock_http_end() completes the answer in every case.
 * csock_http_start_length() announces the body's length (Content-Length,
 * no chunks): a piece beyond it is -EINVAL (not sent), and an end short of
 * it returns -EINVAL and closes the connection, so the client sees the cut.
 * csock_http_write_file() sends a piece from a file with sendfile(2) (it
 * closes `fd` when done if `close_fd`, also on error). Writing or ending
 * without csock_http_start*() first is -EINVAL; a piece written after the
 * connection has gone is -EPIPE (csock_http_end() still completes). */
CSOCK_API int csock_http_start(csock_http_req *r, int status);
CSOCK_API int csock_http_start_length(csock_http_req *r, int status, uint64_t len);
CSOCK_API int csock_http_write(csock_http_req *r, const void *buf, size_t len);
CSOCK_API int csock_http_write_file(csock_http_req *r, int fd, off_t offset, size_t len, int close_fd);
CSOCK_API int csock_http_end(csock_http_req *r);

/* Switch the connection to another protocol (RFC 9110 section 7.8; a
 * WebSocket: csock_ws_accept() in csock/ws.h uses this): answer 101
 * Switching Protocols with the fields added with csock_http_add_header()
 * (Upgrade at least) and "Connection: Upgrade", which completes the
 * request, and hand the connection's stream over. From then on the stream
 * is the caller's: the HTTP server no longer counts, times or closes it; it
 * reads with `cb`, and its data is `data` (its close and drain callbacks
 * and its write timeout are cleared: the new protocol sets its own; its
 * maximum read size stays as the server set it). Bytes the client sent
 * after the request are offered to `cb` first. Returns 0 and *out; -EALREADY (answered already); -EPIPE (the
 * connection has gone, or the client finished sending: the request is
 * complete, nothing is sent); -EINVAL (cb NULL: nothing is done); -ENOMEM
 * (a field could not be added: the answer went out as a 500 and the
 * connection ends; or the answer could not be queued). */
CSOCK_API int csock_http_upgrade(csock_http_req *r, csock_read_cb cb, void *data, csock_stream **out);

/* The reason phrase for a status code ("Not Found"; "" when unknown). */
CSOCK_API const char *csock_http_reason(int status);

/* Format `t` (seconds since the epoch) as an IMF-fixdate, "Sun, 06 Nov 1994
 * 08:49:37 GMT", into buf (at least 30 bytes). */
CSOCK_API void csock_http_date(int64_t t, char *buf);

/* ---- static files ------------------------------------------------------------ */

/* (An option struct: zero-initialize it, see above.) */
typedef struct csock_http_static_opts {
    int list;               /* directories without index.html get an HTML listing */
    const char *index;      /* the index file name; NULL: "index.html" */
    /* Where snapshots of larger files are made (see below): a directory
     * on a disk file system for unlinked files (O_TMPFILE). NULL or "":
     * memfds. */
    const char *snapshot_dir;
    uint64_t reserved[3];
} csock_http_static_opts;

/* Serve the files under directory `root`: GET and HEAD, index files,
 * listings (a directory without its slash: 301 to it, the query kept),
 * ETag/Last-Modified with the preconditions of RFC 9110 section 13.2.2
 * (If-Match, If-Unmodified-Since: 412; If-None-Match, If-Modified-Since:
 * 304), byte ranges on GET (206; several: multipart/byteranges, overlapping
 * or touching ones merged, at most 32 else the whole file; none
 * satisfiable, or an invalid one such as "5-2": 416).
 * No path leaves root: the target is percent-decoded (%00 and malformed
 * escapes are 400), NUL and backslash are 400, a `..` that would climb
 * above root is 400, and files are opened with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_MAGICLINKS) below an fd of root (where the kernel lacks it:
 * O_NOFOLLOW and a realpath check), so a symlink that leads outside root is
 * 403 Forbidden. Files up to 8 KiB are kept in memory for up to one second
 * (a changed file is seen within a second). Use it from one loop only.
 * Files of 8-256 KiB are copied, at their second full answer, with that
 * answer's head into a snapshot, and the answers after it with the same
 * head leave in one sendfile (at most 16 MiB of snapshots per handler,
 * those answers in flight hold included). A snapshot is a memfd, or with
 * opts->snapshot_dir an unlinked file there (O_TMPFILE | O_EXCL, mode
 * 0600: no name, though an inotify watch on the directory sees it made):
 * the kernel reads a disk file system's page cache for sendfile cheaper
 * than a memfd's (a 100 KB answer 0.95x the server CPU, Linux 6.18), at
 * the price of file system work (an inode and journal entries per
 * snapshot, usually one a second per busy file, ten at most; with delayed
 * allocation the data of one replaced within the dirty expiry, 30 s, is
 * never written).
 * The directory is opened and tried once, here; one that later refuses a
 * snapshot (full, a disk error) is left for memfds for a minute.
 * Environment: CSOCK_HTTP_NO_OPENAT2 set (to anything) when the handler is
 * made takes the O_NOFOLLOW and realpath path even where openat2 exists (a
 * test switch, read by csock_http_static_new() only). opts may be NULL.
 * Returns 0 and *out, -errno opening root (-ENOENT, -ENOTDIR, -EACCES) or
 * the snapshot directory (those, or -EOPNOTSUPP, -EROFS where it takes no
 * O_TMPFILE), or -ENOMEM. */
CSOCK_API int csock_http_static_new(const char *root, const csock_http_static_opts *opts,
                          csock_http_static **out);

/* The handler: pass the csock_http_static as its data. */
CSOCK_API void csock_http_static_handler(csock_http_req *r, void *data);

/* Another csock_http_static for the same root, for another loop: it shares
 * the root's fd (opened once by csock_http_static_new, so nothing is opened
 * when the loops start) and has a cache of its own. Free every clone before
 * the original. Call it on any thread (it reads `st` only). Returns 0 or
 * -ENOMEM. */
CSOCK_API int csock_http_static_clone(const csock_http_static *st, csock_http_static **out);

/* Free it once no server uses it, on its loop's thread or after that
 * thread has ended (answers still in flight share its cached descriptors,
 * which the last of them closes). */
CSOCK_API void csock_http_static_free(csock_http_static *st);

#ifdef __cplusplus
}
#endif
#endif
