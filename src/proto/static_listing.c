/* Directory listings (csock_http_static_opts.list): an HTML page of the
 * directory's entries, sorted, names escaped for HTML and URLs. */
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/static_int.h"

/* First sizes, doubled as needed: a page for a few dozen entries, and room
 * for as many names, so a small directory costs one allocation each. */
#define LISTING_FIRST_CAP 4096
#define NAMES_FIRST_CAP 64

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
        size_t cap = b->cap ? b->cap * 2 : LISTING_FIRST_CAP;
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

/* The directory's entries but "." and "..", directories marked with a
 * trailing '/', sorted; *n of them. *short_read: memory ran out on the way
 * (no listing that lacks names is sent). The caller frees each and the
 * array. */
static char **read_names(DIR *d, size_t *n, int *short_read)
{
    char **names = NULL;
    size_t cap = 0;
    struct dirent *e;
    *n = 0;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : NAMES_FIRST_CAP;
            char **nn = realloc(names, cap * sizeof *names);
            if (!nn) break;
            names = nn;
        }
        size_t l = strlen(e->d_name);
        char *nm = malloc(l + 2);
        if (!nm) break;
        memcpy(nm, e->d_name, l);
        nm[l] = e->d_type == DT_DIR ? '/' : 0;
        nm[l + 1] = 0;
        names[(*n)++] = nm;
    }
    *short_read = e != NULL;
    if (*n) qsort(names, *n, sizeof *names, cmp_names);
    return names;
}

/* The page for directory `rel`; frees the names as it goes. */
static void render(buf *b, const char *rel, char **names, size_t n)
{
    B_LIT(b, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of /");
    b_html(b, rel);
    B_LIT(b, "</title></head>\n<body><h1>Index of /");
    b_html(b, rel);
    B_LIT(b, "</h1>\n<ul>\n");
    if (*rel) B_LIT(b, "<li><a href=\"../\">../</a></li>\n");
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(names[i]);
        int isdir = l > 0 && names[i][l - 1] == '/';
        if (isdir) names[i][l - 1] = 0;
        B_LIT(b, "<li><a href=\"");
        b_url(b, names[i]);
        if (isdir) B_LIT(b, "/");
        B_LIT(b, "\">");
        b_html(b, names[i]);
        if (isdir) B_LIT(b, "/");
        B_LIT(b, "</a></li>\n");
        free(names[i]);
    }
    B_LIT(b, "</ul></body></html>\n");
}

void csock__static_send_listing(csock_http_req *r, int fd, const char *rel)
{
    int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int err = dfd < 0 ? -errno : 0;
    close(fd);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        if (dfd >= 0) close(dfd);
        return csock__static_send_status(r, csock__static_errno_status(err ? err : -ENOMEM));
    }
    size_t n;
    buf b = {0};
    char **names = read_names(d, &n, &b.oom); /* stopped short: oom, no page */
    closedir(d);
    render(&b, rel, names, n);
    free(names);
    if (b.oom) {
        free(b.p);
        return csock__static_send_status(r, 503);
    }
    csock_http_add_header(r, "Content-Type", "text/html; charset=utf-8");
    csock_http_send(r, 200, b.p, b.len);
    free(b.p);
}
