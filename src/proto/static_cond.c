/* Conditional requests (RFC 9110 section 13): entity-tag matching,
 * HTTP-dates, the preconditions in their order, and If-Range. */
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/static_int.h"

/* Does the entity-tag list (If-Match, If-None-Match) hold our tag? `weak`:
 * the weak comparison (W/"x" matches "x"), else the strong one (a weak tag
 * matches nothing), RFC 9110 section 8.8.3.2. "*" matches any file. */
static int etag_match(csock_http_str list, const char *etag, int weak)
{
    size_t el = strlen(etag), i = 0;
    while (i < list.len) {
        while (i < list.len && (list.ptr[i] == ' ' || list.ptr[i] == '\t' || list.ptr[i] == ','))
            i++;
        size_t s = i;
        while (i < list.len && list.ptr[i] != ',') i++;
        size_t e = i;
        while (e > s && (list.ptr[e - 1] == ' ' || list.ptr[e - 1] == '\t')) e--;
        if (e - s == 1 && list.ptr[s] == '*') return 1;
        if (e - s > 2 && list.ptr[s] == 'W' && list.ptr[s + 1] == '/') {
            if (!weak) continue;
            s += 2;
        }
        if (e - s == el && !memcmp(list.ptr + s, etag, el)) return 1;
    }
    return 0;
}

/* An HTTP-date in any of its three forms (RFC 9110 section 5.6.7: a
 * recipient must accept all three), or -1. */
static int64_t parse_http_date(csock_http_str v)
{
    static const char *const forms[] = {
        "%a, %d %b %Y %H:%M:%S GMT", /* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
        "%A, %d-%b-%y %H:%M:%S GMT", /* RFC 850: Sunday, 06-Nov-94 08:49:37 GMT */
        "%a %b %e %H:%M:%S %Y",      /* asctime: Sun Nov  6 08:49:37 1994 */
    };
    char buf[64];
    if (!v.ptr || v.len >= sizeof buf) return -1;
    memcpy(buf, v.ptr, v.len);
    buf[v.len] = 0;
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        struct tm tm = {0};
        char *end = strptime(buf, forms[i], &tm);
        if (end && !*end) return (int64_t)timegm(&tm);
    }
    return -1;
}

/* The preconditions of RFC 9110 section 13.2.2, in its order: 412 when
 * If-Match (or, without it, If-Unmodified-Since) fails; 304 when
 * If-None-Match (or, without it, If-Modified-Since) finds the file
 * unchanged; 0 to go on. An invalid date is ignored (13.1.3, 13.1.4). */
int csock__static_preconditions(const csock_http_req *r, const finfo *fi)
{
    csock_http_str im = csock_http_get_header(r, "If-Match");
    if (im.ptr) {
        if (!etag_match(im, fi->etag, 0)) return 412;
    } else {
        int64_t ius = parse_http_date(csock_http_get_header(r, "If-Unmodified-Since"));
        if (ius >= 0 && fi->mtime > ius) return 412;
    }
    csock_http_str inm = csock_http_get_header(r, "If-None-Match");
    if (inm.ptr) return etag_match(inm, fi->etag, 1) ? 304 : 0;
    int64_t ims = parse_http_date(csock_http_get_header(r, "If-Modified-Since"));
    return ims >= 0 && fi->mtime <= ims ? 304 : 0;
}

/* The Range field to honour: only for GET (14.2), and with If-Range only
 * when its validator still names this file (13.1.5: an entity-tag by
 * strong comparison, a date by exact match). */
csock_http_str csock__static_wanted_range(const csock_http_req *r, const finfo *fi)
{
    csock_http_str none = {NULL, 0}, want = csock_http_get_header(r, "Range");
    if (!want.ptr || csock_http_is_head(r)) return none;
    csock_http_str ifr = csock_http_get_header(r, "If-Range");
    if (ifr.ptr && !(ifr.len == strlen(fi->etag) && !memcmp(ifr.ptr, fi->etag, ifr.len)) &&
        parse_http_date(ifr) != fi->mtime)
        return none;
    return want;
}
