/* What the HTTP/1.1 server offers other handlers of src/proto (the static
 * files) beyond csock/http.h: calls that skip checks a caller inside the
 * library has already made once. */
#ifndef CSOCK_PROTO_HTTP1_FIELDS_H
#define CSOCK_PROTO_HTTP1_FIELDS_H

#include <stddef.h>

#include "csock/http.h"

/* Add `len` bytes of ready fields to the answer: whole "Name: value\r\n"
 * lines that csock_http_add_header would accept, none of them Upgrade (the
 * static files format theirs once per file, not once per request). Like
 * csock_http_add_header otherwise: -EALREADY once the head is out, -ENOMEM
 * (and the answer becomes a 500). */
int csock__http_add_fields(csock_http_req *r, const char *fields, size_t len);

/* csock_http_send_file with the descriptor given back by `release(ud)`
 * (see csock_stream_write_file_ref) instead of closed: a cached file's
 * descriptor, shared by the answers in flight, costs no dup and close per
 * answer. */
int csock__http_send_file_ref(csock_http_req *r, int status, int fd, off_t offset, size_t len,
                              void (*release)(void *ud), void *ud);

#endif
