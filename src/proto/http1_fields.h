/* What the HTTP/1.1 server offers other handlers of src/proto (the static
 * files) beyond csock/http.h: calls that skip checks a caller inside the
 * library has already made once. */
#ifndef CSOCK_PROTO_HTTP1_FIELDS_H
#define CSOCK_PROTO_HTTP1_FIELDS_H

#include <stddef.h>
#include <sys/types.h>

#include "csock/http.h"

/* Add `len` bytes of ready fields to the answer: whole "Name: value\r\n"
 * lines that csock_http_add_header would accept, none of them Upgrade (the
 * static files format theirs once per file, not once per request). Like
 * csock_http_add_header otherwise: -EALREADY once the head is out, -ENOMEM
 * (and the answer becomes a 500). */
int csock__http_add_fields(csock_http_req *r, const char *fields, size_t len);

/* A file that may hold the answer's head just before its body: the static
 * files' snapshot (static_cache.c) of a larger file, so that the whole
 * answer leaves in one sendfile (a head sent on its own cost a 100 KB
 * answer a sixth more CPU: BENCHMARKS.md, session 33). The head written
 * there is compared, byte for byte, with the one this answer would send:
 * only an equal one (same Date second, fields and Connection) is sent
 * from the file, so what goes out never depends on guessing what varies. */
typedef struct csock__http_prefix {
    const char *head; /* the file's first hlen bytes (NULL: none yet); the body follows */
    size_t hlen;
    char *out;        /* a head that did not match is copied here when it fits in cap */
    size_t cap;
    size_t out_len;   /* out: its length, 0 if none was copied */
    int matched;      /* out: the answer went from the file's offset 0 */
} csock__http_prefix;

/* csock_http_send_file with the descriptor given back by `release(ud)`
 * (see csock_stream_write_file_ref) instead of closed: a cached file's
 * descriptor, shared by the answers in flight, costs no dup and close per
 * answer. `pre` (or NULL) is the head the file may start with; it is used
 * only when [offset, offset + len) is all of the body, right after it. */
int csock__http_send_file_ref(csock_http_req *r, int status, int fd, off_t offset, size_t len,
                              void (*release)(void *ud), void *ud, csock__http_prefix *pre);

/* csock_http_write_file with the descriptor given back by `release(ud)`
 * (given back at once when the piece is refused). */
int csock__http_write_file_ref(csock_http_req *r, int fd, off_t offset, size_t len,
                               void (*release)(void *ud), void *ud);

#endif
