/* Conditional requests (RFC 9110 section 13): entity-tag matching,
 * HTTP-dates, the preconditions in their order, and If-Range. */
#include <stddef.h>
#include <stdio.h>
#include <strings.h>
#include <time.h>
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

/* The fields conditionals and ranges look at, in one pass over the head:
 * five lookups by name cost five passes. The first of each counts, as
 * csock_http_get_header's. */
void csock__static_conds(const csock_http_req *r, conds *cd)
{
    static const struct {
        const char *name;
        size_t len, at;
    } want[] = {
        {"If-Match", 8, offsetof(conds, if_match)},
        {"If-Unmodified-Since", 19, offsetof(conds, if_unmodified_since)},
        {"If-None-Match", 13, offsetof(conds, if_none_match)},
        {"If-Modified-Since", 17, offsetof(conds, if_modified_since)},
        {"Range", 5, offsetof(conds, range)},
        {"If-Range", 8, offsetof(conds, if_range)},
    };
    *cd = (conds){{NULL, 0}, {NULL, 0}, {NULL, 0}, {NULL, 0}, {NULL, 0}, {NULL, 0}};
    csock_http_str name, value;
    for (size_t i = 0; csock_http_header_at(r, i, &name, &value) == 0; i++) {
        char c = (char)(name.ptr[0] | 0x20); /* every name we want starts with i or r */
        if (c != 'i' && c != 'r') continue;
        for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
            csock_http_str *slot = (csock_http_str *)((char *)cd + want[k].at);
            if (name.len == want[k].len && !slot->ptr && !strncasecmp(name.ptr, want[k].name, name.len)) {
                *slot = value;
                break;
            }
        }
    }
}

/* The preconditions of RFC 9110 section 13.2.2, in its order: 412 when
 * If-Match (or, without it, If-Unmodified-Since) fails; 304 when
 * If-None-Match (or, without it, If-Modified-Since) finds the file
 * unchanged; 0 to go on. An invalid date is ignored (13.1.3, 13.1.4). */
int csock__static_preconditions(const conds *cd, const finfo *fi)
{
    if (cd->if_match.ptr) {
        if (!etag_match(cd->if_match, fi->etag, 0)) return 412;
    } else {
        int64_t ius = parse_http_date(cd->if_unmodified_since);
        if (ius >= 0 && fi->mtime > ius) return 412;
    }
    if (cd->if_none_match.ptr) return etag_match(cd->if_none_match, fi->etag, 1) ? 304 : 0;
    int64_t ims = parse_http_date(cd->if_modified_since);
    return ims >= 0 && fi->mtime <= ims ? 304 : 0;
}

/* The Range field to honour: only for GET (14.2), and with If-Range only
 * when its validator still names this file (13.1.5: an entity-tag by
 * strong comparison, a date by exact match). */
csock_http_str csock__static_wanted_range(const csock_http_req *r, const conds *cd, const finfo *fi)
{
    csock_http_str none = {NULL, 0}, ifr = cd->if_range;
    if (!cd->range.ptr || csock_http_is_head(r)) return none;
    if (ifr.ptr && !(ifr.len == strlen(fi->etag) && !memcmp(ifr.ptr, fi->etag, ifr.len)) &&
        parse_http_date(ifr) != fi->mtime)
        return none;
    return cd->range;
}
