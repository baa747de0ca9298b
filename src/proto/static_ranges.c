/* Byte ranges (RFC 9110 section 14): parsing and merging the Range
 * field, and answering several ranges as multipart/byteranges. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/http1_fields.h"
#include "proto/static_int.h"

/* ---- ranges (RFC 9110 section 14) ------------------------------------------------ */

/* One range-spec "A-B", "A-" or "-N" in p[0..n) against `size`: 1 with *r
 * when satisfiable, 0 when valid but not satisfiable, -1 when invalid. */
static int parse_spec(const char *p, size_t n, uint64_t size, range *r)
{
    const char *end = p + n;
    uint64_t a = 0, b = 0;
    int has_a = 0, has_b = 0;
    for (; p < end && isdigit((unsigned char)*p); p++, has_a = 1) {
        if (a > (UINT64_MAX - 9) / 10) return -1;
        a = a * 10 + (uint64_t)(*p - '0');
    }
    if (p >= end || *p++ != '-') return -1;
    for (; p < end && isdigit((unsigned char)*p); p++, has_b = 1) {
        if (b > (UINT64_MAX - 9) / 10) return -1;
        b = b * 10 + (uint64_t)(*p - '0');
    }
    if (p != end || (!has_a && !has_b)) return -1;
    if (!has_a) { /* suffix: the last b bytes */
        if (b == 0 || size == 0) return 0;
        *r = (range){b >= size ? 0 : size - b, size - 1};
        return 1;
    }
    if (has_b && b < a) return -1; /* last-pos before first-pos: invalid (14.1.1) */
    if (a >= size) return 0;
    *r = (range){a, has_b && b < size ? b : size - 1};
    return 1;
}

/* Add r to the ranges kept so far, coalescing it with any it overlaps or
 * touches (RFC 9110 section 15.3.7.2 allows it): the merged range takes the
 * place of the earliest one it absorbs; the others keep the order they were
 * asked in (15.3.7.2: the parts should come in that order). Ends lie below
 * the file's size, so `last + 1` cannot wrap. */
static void add_range(range *rs, size_t *n, range r)
{
    size_t at = *n, i = 0;
    while (i < *n) {
        range o = rs[i];
        if (r.first > o.last + 1 || o.first > r.last + 1) {
            i++;
            continue;
        }
        if (o.first < r.first) r.first = o.first;
        if (o.last > r.last) r.last = o.last;
        if (i < at) at = i;
        memmove(rs + i, rs + i + 1, (*n - i - 1) * sizeof *rs);
        (*n)--;
        i = 0; /* the grown range may now touch one it passed */
    }
    if (at > *n) at = *n;
    memmove(rs + at + 1, rs + at, (*n - at) * sizeof *rs);
    rs[at] = r;
    (*n)++;
}

/* Parse a Range field against `size` into rs[MAX_RANGES]. Returns the
 * number of ranges to send (>= 1), 0 to ignore the field and send the whole
 * file (another unit, or more than MAX_RANGES specs: RFC 9110 section 14.2
 * lets a server ignore Range), or -1 for 416: no spec is satisfiable, or
 * the field is invalid (a spec such as "5-2"; section 14.2 lets a server
 * reject an invalid ranges-specifier, and nginx and lighttpd both answer
 * 416 to it). */
int csock__static_parse_ranges(csock_http_str v, uint64_t size, range *rs)
{
    if (v.len < 6 || strncasecmp(v.ptr, "bytes=", 6)) return 0; /* MUST ignore other units */
    const char *p = v.ptr + 6, *end = v.ptr + v.len;
    size_t n = 0, specs = 0;
    while (p <= end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *e = comma ? comma : end;
        const char *s = p;
        while (s < e && (*s == ' ' || *s == '\t')) s++;
        const char *t = e;
        while (t > s && (t[-1] == ' ' || t[-1] == '\t')) t--;
        if (t > s) { /* empty list elements are allowed (RFC 9110 section 5.6.1) */
            if (++specs > MAX_RANGES) return 0;
            range r;
            int rc = parse_spec(s, (size_t)(t - s), size, &r);
            if (rc < 0) return -1;
            if (rc > 0) add_range(rs, &n, r);
        }
        if (!comma) break;
        p = comma + 1;
    }
    if (!specs) return -1;
    return n ? (int)n : -1;
}

/* ---- multipart/byteranges (RFC 9110 section 14.6) ---------------------------------- */

/* A part's header: the boundary (under 40), a MIME type from our table
 * (under 40) and three 20-digit numbers leave this ample room. */
#define PART_HEAD_MAX 256

/* The header of part i ("\r\n--B\r\nContent-Type: ...\r\nContent-Range: ...\r\n\r\n"),
 * or with i == n the closing delimiter ("\r\n--B--\r\n"), into out[PART_HEAD_MAX]. */
static int part_head(char *out, const char *boundary, const finfo *fi, const range *rs, int i,
                     int n)
{
    if (i == n) return snprintf(out, PART_HEAD_MAX, "\r\n--%s--\r\n", boundary);
    return snprintf(out, PART_HEAD_MAX, "\r\n--%s\r\nContent-Type: %s\r\nContent-Range: bytes %llu-%llu/%llu\r\n\r\n",
                    boundary, fi->mime, (unsigned long long)rs[i].first,
                    (unsigned long long)rs[i].last, (unsigned long long)fi->size);
}

/* Several ranges in one 206: from memory (a cached file, one send), from
 * the cache's shared descriptor `sfd` (each piece holding a reference, so
 * a snapshot's memory stays counted while they are in flight), or from
 * `fd` (closed once sent); the body starts at `base` (a snapshot's, after
 * its head). The parts' heads go between pieces sent with sendfile. */
void csock__static_send_multipart(csock_http_req *r, int fd, sharedfd *sfd, off_t base,
                                  const char *data, const finfo *fi, const range *rs, int n)
{
    char boundary[40], ct[80], ph[PART_HEAD_MAX];
    /* Not in the data with any useful likelihood; differs per file version.
     * The size is spread over 32 bits by Knuth's multiplicative hash
     * (2^32 / the golden ratio). */
    snprintf(boundary, sizeof boundary, "csock-%08x%08x", (unsigned)csock__static_path_hash(fi->etag),
             (unsigned)(fi->size * 2654435761u));
    snprintf(ct, sizeof ct, "multipart/byteranges; boundary=%s", boundary);
    csock_http_add_header(r, "Content-Type", ct);
    uint64_t total = 0;
    for (int i = 0; i <= n; i++) {
        total += (uint64_t)part_head(ph, boundary, fi, rs, i, n);
        if (i < n) total += rs[i].last - rs[i].first + 1;
    }
    if (data) { /* a cached file: at most CACHE_MAX_FILE bytes of data */
        char *body = malloc(total);
        if (!body) return csock__static_send_status(r, 503);
        size_t w = 0;
        for (int i = 0; i <= n; i++) {
            int hl = part_head(ph, boundary, fi, rs, i, n); /* not in place: its NUL */
            memcpy(body + w, ph, (size_t)hl);
            w += (size_t)hl;
            if (i < n) {
                memcpy(body + w, data + rs[i].first, (size_t)(rs[i].last - rs[i].first + 1));
                w += (size_t)(rs[i].last - rs[i].first + 1);
            }
        }
        csock_http_send(r, 206, body, w);
        free(body);
        return;
    }
    int rc = csock_http_start_length(r, 206, total);
    for (int i = 0; i <= n && rc >= 0; i++) {
        int len = part_head(ph, boundary, fi, rs, i, n);
        rc = csock_http_write(r, ph, (size_t)len);
        if (rc < 0 || i == n) continue;
        off_t at = base + (off_t)rs[i].first;
        size_t plen = (size_t)(rs[i].last - rs[i].first + 1);
        if (sfd) {
            sfd->refs++; /* given back when the piece is sent (or refused) */
            rc = csock__http_write_file_ref(r, sfd->fd, at, plen, csock__static_fd_release, sfd);
            continue;
        }
        int last = i == n - 1; /* the last piece takes the fd along */
        rc = csock_http_write_file(r, fd, at, plen, last);
        if (last) fd = -1; /* closed by the call, whatever it returned */
    }
    if (fd >= 0) close(fd);
    csock_http_end(r);
}
