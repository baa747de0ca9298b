/* The request's accessors (csock/http.h): slices of the connection's copy
 * of the request, valid until its answer completes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "proto/http1_int.h"

/* ---- small helpers -------------------------------------------------------------- */

int csock__http_lower_eq(csock_http_str s, const char *name)
{
    size_t n = strlen(name);
    if (s.len != n) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char a = (unsigned char)s.ptr[i], b = (unsigned char)name[i];
        if (a >= 'A' && a <= 'Z') a |= 0x20;
        if (b >= 'A' && b <= 'Z') b |= 0x20;
        if (a != b) return 0;
    }
    return 1;
}

/* ---- request accessors --------------------------------------------------------------- */

static csock_http_str str(csock_http_slice s) { return (csock_http_str){s.ptr, s.len}; }

csock_http_str csock_http_method(const csock_http_req *r) { return str(r->p.method); }
csock_http_str csock_http_target(const csock_http_req *r) { return str(r->p.target); }
csock_http_str csock_http_path(const csock_http_req *r) { return r->path; }
csock_http_str csock_http_query(const csock_http_req *r) { return r->query; }
int csock_http_minor(const csock_http_req *r) { return r->p.minor_version; }
int csock_http_is_head(const csock_http_req *r) { return r->head; }
csock_http_str csock_http_body(const csock_http_req *r) { return r->body; }
csock_stream *csock_http_stream(const csock_http_req *r) { return r->c->s; /* NULL once closed */ }

csock_http_str csock_http_get_header(const csock_http_req *r, const char *name)
{
    for (size_t i = 0; i < r->p.num_headers; i++)
        if (csock__http_lower_eq(str(r->p.headers[i].name), name)) return str(r->p.headers[i].value);
    return (csock_http_str){NULL, 0};
}

int csock_http_header_at(const csock_http_req *r, size_t i, csock_http_str *name,
                         csock_http_str *value)
{
    if (i >= r->p.num_headers) return -ENOENT;
    *name = str(r->p.headers[i].name);
    *value = str(r->p.headers[i].value);
    return 0;
}
