/* What an answer needs to know about a file: its MIME type (by extension),
 * its ETag and its Last-Modified date, computed once per open or cache
 * fill. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/static_int.h"

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

void csock__static_file_info(finfo *fi, const struct stat *sb, const char *name)
{
    fi->size = (uint64_t)sb->st_size;
    fi->mtime = sb->st_mtim.tv_sec;
    snprintf(fi->etag, sizeof fi->etag, "\"%llx-%llx\"",
             (unsigned long long)sb->st_mtim.tv_sec * 1000000000ull +
                 (unsigned long long)sb->st_mtim.tv_nsec,
             (unsigned long long)fi->size);
    csock_http_date(sb->st_mtim.tv_sec, fi->lm);
    fi->mime = mime_type(name);
    char *f = fi->fields;
    int n = snprintf(f, FIELDS_MAX, "ETag: %s\r\nLast-Modified: %s\r\n", fi->etag, fi->lm);
    fi->vlen = (unsigned short)n;
    n += snprintf(f + n, FIELDS_MAX - (size_t)n, "Accept-Ranges: bytes\r\n");
    fi->alen = (unsigned short)n;
    n += snprintf(f + n, FIELDS_MAX - (size_t)n, "Content-Type: %s\r\n", fi->mime);
    fi->flen = (unsigned short)n;
}
