/* Static files under one directory, for csock_http_static_handler(). See
 * csock/http.h for what is served and what is refused.
 *
 * Confinement is layered: the target is percent-decoded and normalised
 * first (so "%2e%2e/" is a "..", and a ".." that would climb above the root
 * is refused before the file system is asked), then the file is opened
 * relative to an fd of the root with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_MAGICLINKS), so the kernel refuses any symlink or ".." that
 * would lead outside (EXDEV: 403). Without openat2 (Linux < 5.6), the file is
 * opened with O_NOFOLLOW and its real path, read back from /proc/self/fd,
 * must lie under the root's real path.
 */
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "csock/csock.h"

#define PATH_MAX_DECODED 4096
#define CACHE_SLOTS 256      /* direct-mapped by path hash */
#define CACHE_MAX_FILE 8192  /* files up to this size are cached whole */
#define CACHE_PATH 240       /* longest cached path */
#define CACHE_TTL_MS 1000    /* a changed file is seen within this long */

/* What an answer needs to know about a file, computed once per open (or
 * once per cache fill). */
typedef struct finfo {
    uint64_t size;
    int64_t mtime;
    char etag[48];
    char lm[32];
    const char *mime;
} finfo;

/* A small file held in memory: no open, fstat, read or close per request. */
typedef struct centry {
    char path[CACHE_PATH];
    uint64_t loaded;          /* loop time of the fill */
    finfo fi;
    size_t len;
    char data[CACHE_MAX_FILE];
} centry;

struct csock_http_static {
    int dirfd;          /* the root, O_PATH */
    char *root_real;    /* its real path, for the fallback check */
    size_t root_len;
    int list;           /* --list */
    char *index;        /* "index.html" */
    int no_openat2;     /* the kernel lacks openat2 (or CSOCK_HTTP_NO_OPENAT2 is set) */
    int shared;         /* a clone: dirfd, root_real and index belong to the original */
    centry *cache[CACHE_SLOTS]; /* NULL slots are empty; filled lazily */
};

/* ---- MIME types ------------------------------------------------------------ */

static const struct {
    const char *ext, *type;
} mime_types[] = {
    {"html", "text/html; charset=utf-8"}, {"htm", "text/html; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},   {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"}, {"json", "application/json"},
    {"txt", "text/plain; charset=utf-8"}, {"md", "text/markdown; charset=utf-8"},
    {"csv", "text/csv; charset=utf-8"},   {"xml", "application/xml"},
    {"svg", "image/svg+xml"},             {"png", "image/png"},
    {"jpg", "image/jpeg"},                {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},                 {"webp", "image/webp"},
    {"avif", "image/avif"},               {"ico", "image/x-icon"},
    {"pdf", "application/pdf"},           {"wasm", "application/wasm"},
    {"zip", "application/zip"},           {"gz", "application/gzip"},
    {"tar", "application/x-tar"},         {"mp4", "video/mp4"},
    {"webm", "video/webm"},               {"mp3", "audio/mpeg"},
    {"ogg", "audio/ogg"},                 {"woff", "font/woff"},
    {"woff2", "font/woff2"},              {"ttf", "font/ttf"},
};

static const char *mime_type(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (dot && !strchr(dot, '/'))
        for (size_t i = 0; i < sizeof mime_types / sizeof mime_types[0]; i++)
            if (!strcasecmp(dot + 1, mime_types[i].ext)) return mime_types[i].type;
    return "application/octet-stream";
}

/* ---- paths ----------------------------------------------------------------------- */

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decode and normalise the path of a target into a relative path
 * ("" for the root). Returns its length, or a negative HTTP status: 400 for
 * %00, malformed escapes, NUL, backslash, a ".." above the root; 414 when it
 * does not fit. *dir_slash says whether the path ended with '/'. */
static int normalise(const char *p, size_t n, char *out, size_t cap, int *dir_slash)
{
    size_t w = 0, seg = 0; /* seg: where the current segment starts in out */
    *dir_slash = n > 0 && p[n - 1] == '/';
    for (size_t i = 0; i <= n; i++) {
        int c = i == n ? '/' : (unsigned char)p[i]; /* a final '/' ends the last segment */
        int encoded = 0;
        if (c == '%' && i < n) {
            if (i + 2 >= n) return -400;
            int hi = hexval((unsigned char)p[i + 1]), lo = hexval((unsigned char)p[i + 2]);
            if (hi < 0 || lo < 0) return -400;
            c = hi * 16 + lo;
            i += 2;
            encoded = 1;
        }
        if (c == 0 || c == '\\') return -400;
        if (encoded && c == '/') return -400; /* %2F is not a separator: refuse it */
        if (c != '/') {
            if (w + 2 >= cap) return -414;
            out[w++] = (char)c;
            continue;
        }
        size_t len = w - seg; /* the segment out[seg..w) is complete */
        if (len && i == n && out[seg] == '.' && (len == 1 || (len == 2 && out[seg + 1] == '.')))
            *dir_slash = 1; /* "/a/." and "/a/.." name directories */
        if (len == 0 || (len == 1 && out[seg] == '.')) {
            w = seg;
        } else if (len == 2 && out[seg] == '.' && out[seg + 1] == '.') {
            if (seg == 0) return -400; /* would climb above the root */
            w = seg - 1;               /* back over the '/' that ended the previous one */
            while (w > 0 && out[w - 1] != '/') w--;
        } else {
            out[w++] = '/';
        }
        seg = w;
    }
    if (w > 0) w--; /* the '/' after the last segment */
    out[w] = 0;
    return (int)w;
}

static int open_beneath(const csock_http_static *st, const char *rel, int flags)
{
    if (!*rel) rel = ".";
    if (!st->no_openat2) {
        struct open_how how = {
            .flags = (uint64_t)(flags | O_CLOEXEC),
            .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
        };
        long fd = syscall(SYS_openat2, st->dirfd, rel, &how, sizeof how);
        return fd < 0 ? -errno : (int)fd;
    }
    int fd = openat(st->dirfd, rel, flags | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return -errno;
    char link[64], real[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, real, sizeof real - 1);
    if (n < 0) {
        close(fd);
        return -EACCES;
    }
    real[n] = 0;
    int inside = (size_t)n >= st->root_len && !memcmp(real, st->root_real, st->root_len) &&
                 (real[st->root_len] == '/' || real[st->root_len] == 0 ||
                  (st->root_len == 1 && real[0] == '/'));
    if (!inside) {
        close(fd);
        return -EXDEV;
    }
    return fd;
}

static int errno_status(int err)
{
    switch (err) {
    case -ENOENT:
    case -ENOTDIR:
    case -ENAMETOOLONG: return 404;
    case -EXDEV:
    case -ELOOP:
    case -EACCES:
    case -EPERM: return 403;
    case -EMFILE: /* out of descriptors or memory for now: try again later */
    case -ENFILE:
    case -ENOMEM: return 503;
    default: return 500;
    }
}

/* ---- answers --------------------------------------------------------------------- */

static void send_status(csock_http_req *r, int status)
{
    char body[64];
    int n = snprintf(body, sizeof body, "%d %s\n", status, csock_http_reason(status));
    csock_http_add_header(r, "Content-Type", "text/plain; charset=utf-8");
    csock_http_send(r, status, body, (size_t)n);
}

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

/* ---- ranges (RFC 9110 section 14) ------------------------------------------------ */

#define MAX_RANGES 32 /* more range-specs than this: the Range field is ignored */

typedef struct range {
    uint64_t first, last;
} range;

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
static int parse_ranges(csock_http_str v, uint64_t size, range *rs)
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

static void file_info(finfo *fi, const struct stat *sb, const char *name)
{
    fi->size = (uint64_t)sb->st_size;
    fi->mtime = sb->st_mtim.tv_sec;
    snprintf(fi->etag, sizeof fi->etag, "\"%llx-%llx\"",
             (unsigned long long)sb->st_mtim.tv_sec * 1000000000ull +
                 (unsigned long long)sb->st_mtim.tv_nsec,
             (unsigned long long)fi->size);
    csock_http_date(sb->st_mtim.tv_sec, fi->lm);
    fi->mime = mime_type(name);
}

/* The preconditions of RFC 9110 section 13.2.2, in its order: 412 when
 * If-Match (or, without it, If-Unmodified-Since) fails; 304 when
 * If-None-Match (or, without it, If-Modified-Since) finds the file
 * unchanged; 0 to go on. An invalid date is ignored (13.1.3, 13.1.4). */
static int preconditions(const csock_http_req *r, const finfo *fi)
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
static csock_http_str wanted_range(const csock_http_req *r, const finfo *fi)
{
    csock_http_str none = {NULL, 0}, want = csock_http_get_header(r, "Range");
    if (!want.ptr || csock_http_is_head(r)) return none;
    csock_http_str ifr = csock_http_get_header(r, "If-Range");
    if (ifr.ptr && !(ifr.len == strlen(fi->etag) && !memcmp(ifr.ptr, fi->etag, ifr.len)) &&
        parse_http_date(ifr) != fi->mtime)
        return none;
    return want;
}

/* ---- multipart/byteranges (RFC 9110 section 14.6) ---------------------------------- */

static uint32_t path_hash(const char *p)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *p; p++) h = (h ^ (unsigned char)*p) * 16777619u;
    return h;
}


/* The header of part i ("\r\n--B\r\nContent-Type: ...\r\nContent-Range: ...\r\n\r\n"),
 * or with i == n the closing delimiter ("\r\n--B--\r\n"), into out[256]. */
static int part_head(char *out, const char *boundary, const finfo *fi, const range *rs, int i,
                     int n)
{
    if (i == n) return snprintf(out, 256, "\r\n--%s--\r\n", boundary);
    return snprintf(out, 256, "\r\n--%s\r\nContent-Type: %s\r\nContent-Range: bytes %llu-%llu/%llu\r\n\r\n",
                    boundary, fi->mime, (unsigned long long)rs[i].first,
                    (unsigned long long)rs[i].last, (unsigned long long)fi->size);
}

/* Several ranges in one 206: from memory (a cached file, one send) or
 * from `fd` (the parts' heads written between pieces sent with sendfile). */
static void send_multipart(csock_http_req *r, int fd, const char *data, const finfo *fi,
                           const range *rs, int n)
{
    char boundary[40], ct[80], ph[256];
    /* Not in the data with any useful likelihood; differs per file version. */
    snprintf(boundary, sizeof boundary, "csock-%08x%08x", (unsigned)path_hash(fi->etag),
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
        if (!body) return send_status(r, 503);
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
        int last = i == n - 1; /* the last piece takes the fd along */
        rc = csock_http_write_file(r, fd, (off_t)rs[i].first,
                                   (size_t)(rs[i].last - rs[i].first + 1), last);
        if (last) fd = -1; /* closed by the call, whatever it returned */
    }
    if (fd >= 0) close(fd);
    csock_http_end(r);
}

/* Answer with a file: from `data` when it is in memory, else from `fd`
 * (which this closes). Conditionals first, then ranges. */
static void serve_file(csock_http_req *r, int fd, const char *data, const finfo *fi)
{
    char cr[96];
    uint64_t size = fi->size;
    csock_http_add_header(r, "ETag", fi->etag);
    csock_http_add_header(r, "Last-Modified", fi->lm);
    int pre = preconditions(r, fi);
    if (pre) {
        if (fd >= 0) close(fd);
        if (pre == 304) csock_http_send(r, 304, NULL, 0);
        else send_status(r, pre);
        return;
    }
    csock_http_add_header(r, "Accept-Ranges", "bytes");
    csock_http_str want = wanted_range(r, fi);
    range rs[MAX_RANGES];
    int n = want.ptr ? parse_ranges(want, size, rs) : 0;
    if (n < 0) {
        if (fd >= 0) close(fd);
        snprintf(cr, sizeof cr, "bytes */%llu", (unsigned long long)size);
        csock_http_add_header(r, "Content-Range", cr);
        csock_http_send(r, 416, NULL, 0);
        return;
    }
    if (n > 1) return send_multipart(r, fd, data, fi, rs, n);
    csock_http_add_header(r, "Content-Type", fi->mime);
    uint64_t first = 0, last = size ? size - 1 : 0;
    int status = 200;
    if (n == 1) {
        first = rs[0].first;
        last = rs[0].last;
        snprintf(cr, sizeof cr, "bytes %llu-%llu/%llu", (unsigned long long)first,
                 (unsigned long long)last, (unsigned long long)size);
        csock_http_add_header(r, "Content-Range", cr);
        status = 206;
    }
    size_t len = size ? (size_t)(last - first + 1) : 0;
    if (data)
        csock_http_send(r, status, data + first, len);
    else
        csock_http_send_file(r, status, fd, (off_t)first, len, 1);
}

/* A cached small file named `rel` that is younger than CACHE_TTL_MS. */
static const centry *cache_get(csock_http_static *st, const char *rel, uint64_t now)
{
    const centry *e = st->cache[path_hash(rel) % CACHE_SLOTS];
    if (e && now - e->loaded < CACHE_TTL_MS && !strcmp(e->path, rel)) return e;
    return NULL;
}

/* Keep a small regular file just opened (fd is left open for the caller). */
static const centry *cache_put(csock_http_static *st, const char *rel, int fd,
                               const struct stat *sb, uint64_t now)
{
    size_t pl = strlen(rel);
    if (pl >= CACHE_PATH || (uint64_t)sb->st_size > CACHE_MAX_FILE) return NULL;
    centry **slot = &st->cache[path_hash(rel) % CACHE_SLOTS];
    if (!*slot && !(*slot = malloc(sizeof **slot))) return NULL;
    centry *e = *slot;
    ssize_t n = sb->st_size ? pread(fd, e->data, (size_t)sb->st_size, 0) : 0;
    if (n != (ssize_t)sb->st_size) {
        e->path[0] = 0;
        e->loaded = 0;
        return NULL;
    }
    memcpy(e->path, rel, pl + 1);
    e->len = (size_t)n;
    e->loaded = now;
    file_info(&e->fi, sb, rel);
    return e;
}

/* Serve a regular file just opened: through the cache when it is small. */
static void serve_opened(csock_http_static *st, csock_http_req *r, int fd, const struct stat *sb,
                         const char *rel, uint64_t now)
{
    const centry *e = cache_put(st, rel, fd, sb, now);
    if (e) {
        close(fd);
        return serve_file(r, -1, e->data, &e->fi);
    }
    finfo fi;
    file_info(&fi, sb, rel);
    serve_file(r, fd, NULL, &fi);
}

/* ---- listings -------------------------------------------------------------------------- */

typedef struct buf {
    char *p;
    size_t len, cap;
    int oom;
} buf;

static void b_add(buf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + n) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}
#define B_LIT(b, s) b_add((b), (s), sizeof(s) - 1)

static void b_html(buf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': B_LIT(b, "&lt;"); break;
        case '>': B_LIT(b, "&gt;"); break;
        case '&': B_LIT(b, "&amp;"); break;
        case '"': B_LIT(b, "&quot;"); break;
        case '\'': B_LIT(b, "&#39;"); break;
        default: b_add(b, s, 1);
        }
    }
}

/* Percent-encode everything but unreserved characters (a name is one segment). */
static void b_url(buf *b, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || strchr("-._~", c)) {
            b_add(b, s, 1);
        } else {
            char e[4];
            snprintf(e, sizeof e, "%%%02X", c);
            b_add(b, e, 3);
        }
    }
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void send_listing(csock_http_req *r, int fd, const char *rel)
{
    int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int err = dfd < 0 ? -errno : 0;
    close(fd);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        if (dfd >= 0) close(dfd);
        return send_status(r, errno_status(err ? err : -ENOMEM));
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    buf b = {0};
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **nn = realloc(names, cap * sizeof *names);
            if (!nn) break;
            names = nn;
        }
        size_t l = strlen(e->d_name);
        int isdir = e->d_type == DT_DIR;
        char *nm = malloc(l + 2);
        if (!nm) break;
        memcpy(nm, e->d_name, l);
        nm[l] = isdir ? '/' : 0;
        nm[l + 1] = 0;
        names[n++] = nm;
    }
    b.oom = e != NULL; /* stopped short: no listing that lacks names */
    closedir(d);
    if (n) qsort(names, n, sizeof *names, cmp_names);
    B_LIT(&b, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of /");
    b_html(&b, rel);
    B_LIT(&b, "</title></head>\n<body><h1>Index of /");
    b_html(&b, rel);
    B_LIT(&b, "</h1>\n<ul>\n");
    if (*rel) B_LIT(&b, "<li><a href=\"../\">../</a></li>\n");
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(names[i]);
        int isdir = l > 0 && names[i][l - 1] == '/';
        if (isdir) names[i][l - 1] = 0;
        B_LIT(&b, "<li><a href=\"");
        b_url(&b, names[i]);
        if (isdir) B_LIT(&b, "/");
        B_LIT(&b, "\">");
        b_html(&b, names[i]);
        if (isdir) B_LIT(&b, "/");
        B_LIT(&b, "</a></li>\n");
        free(names[i]);
    }
    free(names);
    B_LIT(&b, "</ul></body></html>\n");
    if (b.oom) {
        free(b.p);
        return send_status(r, 503);
    }
    csock_http_add_header(r, "Content-Type", "text/html; charset=utf-8");
    csock_http_send(r, 200, b.p, b.len);
    free(b.p);
}

/* ---- the handler ---------------------------------------------------------------------- */

/* The path part of the target: origin-form as is, absolute-form without its
 * scheme and authority. NULL for the asterisk and authority forms. */
static csock_http_str target_path(const csock_http_req *r)
{
    csock_http_str p = csock_http_path(r);
    if (p.len && p.ptr[0] == '/') return p;
    size_t skip = 0;
    if (p.len > 7 && !strncasecmp(p.ptr, "http://", 7)) skip = 7;
    if (p.len > 8 && !strncasecmp(p.ptr, "https://", 8)) skip = 8;
    if (!skip) return (csock_http_str){NULL, 0};
    const char *slash = memchr(p.ptr + skip, '/', p.len - skip);
    if (!slash) return (csock_http_str){"/", 1};
    return (csock_http_str){slash, p.len - (size_t)(slash - p.ptr)};
}

/* "/dir" names a directory: 301 to "/dir/", with the query kept ("/dir?x"
 * goes to "/dir/?x", as nginx and lighttpd do). */
static void redirect_slash(csock_http_req *r, csock_http_str path)
{
    char loc[PATH_MAX_DECODED + 2];
    csock_http_str q = csock_http_query(r);
    size_t ql = q.len ? q.len + 1 : 0;
    if (path.len + ql + 2 > sizeof loc) return send_status(r, 414);
    memcpy(loc, path.ptr, path.len);
    loc[path.len] = '/';
    if (ql) {
        loc[path.len + 1] = '?';
        memcpy(loc + path.len + 2, q.ptr, q.len);
    }
    loc[path.len + 1 + ql] = 0;
    csock_http_add_header(r, "Location", loc);
    send_status(r, 301);
}

void csock_http_static_handler(csock_http_req *r, void *data)
{
    csock_http_static *st = data;
    csock_http_str m = csock_http_method(r);
    if (!((m.len == 3 && !memcmp(m.ptr, "GET", 3)) || csock_http_is_head(r))) {
        csock_http_add_header(r, "Allow", "GET, HEAD");
        return send_status(r, 405);
    }
    csock_http_str path = target_path(r);
    if (!path.ptr) return send_status(r, 400);
    char rel[PATH_MAX_DECODED + 64];
    int slash;
    int n = normalise(path.ptr, path.len, rel, PATH_MAX_DECODED, &slash);
    if (n < 0) return send_status(r, -n);
    uint64_t now = csock_loop_now(csock_stream_loop(csock_http_stream(r)));
    const centry *e = cache_get(st, rel, now);
    if (e) return serve_file(r, -1, e->data, &e->fi);
    int fd = open_beneath(st, rel, O_RDONLY | O_NONBLOCK);
    if (fd < 0) return send_status(r, errno_status(fd));
    struct stat sb;
    if (fstat(fd, &sb) < 0) {
        close(fd);
        return send_status(r, 500);
    }
    if (S_ISDIR(sb.st_mode)) {
        if (!slash) {
            close(fd);
            return redirect_slash(r, path);
        }
        char idx[sizeof rel + 256];
        snprintf(idx, sizeof idx, "%s%s%s", rel, n ? "/" : "", st->index);
        int ifd = open_beneath(st, idx, O_RDONLY | O_NONBLOCK);
        if (ifd >= 0 && fstat(ifd, &sb) == 0 && S_ISREG(sb.st_mode)) {
            close(fd);
            return serve_opened(st, r, ifd, &sb, idx, now);
        }
        if (ifd >= 0) close(ifd);
        if (ifd < 0 && ifd != -ENOENT) {
            close(fd);
            return send_status(r, errno_status(ifd));
        }
        if (!st->list) {
            close(fd);
            return send_status(r, 403);
        }
        return send_listing(r, fd, rel);
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return send_status(r, 403);
    }
    serve_opened(st, r, fd, &sb, rel, now);
}

int csock_http_static_new(const char *root, const csock_http_static_opts *opts,
                          csock_http_static **out)
{
    csock_http_static *st = calloc(1, sizeof *st);
    if (!st) return -ENOMEM;
    st->dirfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (st->dirfd < 0) {
        int err = -errno;
        free(st);
        return err;
    }
    st->root_real = realpath(root, NULL);
    st->index = strdup(opts && opts->index ? opts->index : "index.html");
    if (!st->root_real || !st->index) {
        csock_http_static_free(st);
        return -ENOMEM;
    }
    st->root_len = strlen(st->root_real);
    st->list = opts ? opts->list : 0;
    /* Probe openat2 once: ENOSYS on kernels before 5.6 (or under seccomp). */
    struct open_how how = {.flags = O_RDONLY | O_CLOEXEC, .resolve = RESOLVE_BENEATH};
    long fd = syscall(SYS_openat2, st->dirfd, ".", &how, sizeof how);
    if (fd >= 0) close((int)fd);
    st->no_openat2 = fd < 0 || getenv("CSOCK_HTTP_NO_OPENAT2") != NULL;
    *out = st;
    return 0;
}

/* Another loop's handler for the same root: the root's fd is shared (an fd
 * of a directory may be used by several threads at once; openat2 resolves
 * beneath it without changing it), so a server with many loops needs no fd
 * per loop, and nothing is opened once the loops run. Only the cache, which
 * is not locked, is the clone's own. */
int csock_http_static_clone(const csock_http_static *st, csock_http_static **out)
{
    csock_http_static *c = calloc(1, sizeof *c);
    if (!c) return -ENOMEM;
    c->dirfd = st->dirfd;
    c->root_real = st->root_real;
    c->root_len = st->root_len;
    c->list = st->list;
    c->index = st->index;
    c->no_openat2 = st->no_openat2;
    c->shared = 1;
    *out = c;
    return 0;
}

void csock_http_static_free(csock_http_static *st)
{
    if (!st) return;
    if (!st->shared) {
        if (st->dirfd >= 0) close(st->dirfd);
        free(st->root_real);
        free(st->index);
    }
    for (size_t i = 0; i < CACHE_SLOTS; i++) free(st->cache[i]);
    free(st);
}
