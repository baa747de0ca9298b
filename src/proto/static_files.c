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

/* Does the If-None-Match list hold our tag (weak comparison)? */
static int etag_match(csock_http_str inm, const char *etag)
{
    size_t el = strlen(etag), i = 0;
    while (i < inm.len) {
        while (i < inm.len && (inm.ptr[i] == ' ' || inm.ptr[i] == '\t' || inm.ptr[i] == ',')) i++;
        size_t s = i;
        while (i < inm.len && inm.ptr[i] != ',') i++;
        size_t e = i;
        while (e > s && (inm.ptr[e - 1] == ' ' || inm.ptr[e - 1] == '\t')) e--;
        if (e - s == 1 && inm.ptr[s] == '*') return 1;
        if (e - s > 2 && inm.ptr[s] == 'W' && inm.ptr[s + 1] == '/') s += 2;
        if (e - s == el && !memcmp(inm.ptr + s, etag, el)) return 1;
    }
    return 0;
}

static int64_t parse_http_date(csock_http_str v)
{
    char buf[64];
    struct tm tm = {0};
    if (!v.ptr || v.len >= sizeof buf) return -1;
    memcpy(buf, v.ptr, v.len);
    buf[v.len] = 0;
    char *end = strptime(buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!end || *end) return -1;
    return (int64_t)timegm(&tm);
}

/* One range "bytes=A-B", "bytes=A-" or "bytes=-N" against `size`. Returns 1
 * with [*first, *last], 0 to ignore it (malformed, or several ranges: the
 * whole file is sent), -1 when unsatisfiable (416). */
static int parse_range(csock_http_str v, uint64_t size, uint64_t *first, uint64_t *last)
{
    if (v.len < 7 || strncasecmp(v.ptr, "bytes=", 6) || memchr(v.ptr, ',', v.len)) return 0;
    const char *p = v.ptr + 6, *end = v.ptr + v.len;
    uint64_t a = 0, b = 0;
    int has_a = 0, has_b = 0;
    while (p < end && *p == ' ') p++;
    for (; p < end && isdigit((unsigned char)*p); p++, has_a = 1) {
        if (a > (UINT64_MAX - 9) / 10) return 0;
        a = a * 10 + (uint64_t)(*p - '0');
    }
    if (p >= end || *p++ != '-') return 0;
    for (; p < end && isdigit((unsigned char)*p); p++, has_b = 1) {
        if (b > (UINT64_MAX - 9) / 10) return 0;
        b = b * 10 + (uint64_t)(*p - '0');
    }
    while (p < end && *p == ' ') p++;
    if (p != end || (!has_a && !has_b)) return 0;
    if (!has_a) { /* suffix: the last b bytes */
        if (b == 0 || size == 0) return -1;
        *first = b >= size ? 0 : size - b;
        *last = size - 1;
        return 1;
    }
    if (has_b && b < a) return 0; /* invalid: ignored (RFC 9110 14.1.1) */
    if (a >= size) return -1;
    *first = a;
    *last = has_b && b < size ? b : size - 1;
    return 1;
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

/* Answer with a file: from `data` when it is in memory, else from `fd`
 * (which this closes). Conditionals first, then ranges. */
static void serve_file(csock_http_req *r, int fd, const char *data, const finfo *fi)
{
    char cr[96];
    uint64_t size = fi->size;
    csock_http_add_header(r, "ETag", fi->etag);
    csock_http_add_header(r, "Last-Modified", fi->lm);
    csock_http_str inm = csock_http_get_header(r, "If-None-Match");
    int not_modified = 0;
    if (inm.ptr) {
        not_modified = etag_match(inm, fi->etag);
    } else {
        int64_t ims = parse_http_date(csock_http_get_header(r, "If-Modified-Since"));
        not_modified = ims >= 0 && fi->mtime <= ims;
    }
    if (not_modified) {
        if (fd >= 0) close(fd);
        csock_http_send(r, 304, NULL, 0);
        return;
    }
    csock_http_add_header(r, "Content-Type", fi->mime);
    csock_http_add_header(r, "Accept-Ranges", "bytes");
    csock_http_str range = csock_http_get_header(r, "Range");
    if (range.ptr) {
        /* If-Range with another validator: the whole (changed) file. */
        csock_http_str ifr = csock_http_get_header(r, "If-Range");
        if (ifr.ptr && !(ifr.len == strlen(fi->etag) && !memcmp(ifr.ptr, fi->etag, ifr.len)) &&
            parse_http_date(ifr) != fi->mtime)
            range.ptr = NULL;
    }
    uint64_t first = 0, last = size ? size - 1 : 0;
    int rc = range.ptr ? parse_range(range, size, &first, &last) : 0;
    int status = 200;
    if (rc < 0) {
        if (fd >= 0) close(fd);
        snprintf(cr, sizeof cr, "bytes */%llu", (unsigned long long)size);
        csock_http_add_header(r, "Content-Range", cr);
        csock_http_send(r, 416, NULL, 0);
        return;
    }
    if (rc > 0) {
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

static uint32_t path_hash(const char *p)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *p; p++) h = (h ^ (unsigned char)*p) * 16777619u;
    return h;
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
    close(fd);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        if (dfd >= 0) close(dfd);
        return send_status(r, 500);
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
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
    closedir(d);
    qsort(names, n, sizeof *names, cmp_names);
    buf b = {0};
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
        return send_status(r, 500);
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

static void redirect_slash(csock_http_req *r, csock_http_str path)
{
    char loc[PATH_MAX_DECODED + 2];
    if (path.len + 2 > sizeof loc) return send_status(r, 414);
    memcpy(loc, path.ptr, path.len);
    loc[path.len] = '/';
    loc[path.len + 1] = 0;
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

void csock_http_static_free(csock_http_static *st)
{
    if (!st) return;
    if (st->dirfd >= 0) close(st->dirfd);
    free(st->root_real);
    free(st->index);
    for (size_t i = 0; i < CACHE_SLOTS; i++) free(st->cache[i]);
    free(st);
}
