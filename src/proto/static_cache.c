/* The small-file cache: files up to CACHE_MAX_FILE bytes, held whole in a
 * direct-mapped table by path hash, so a popular small file costs no open,
 * fstat, read or close per request. An entry lives CACHE_TTL_MS: a changed
 * file is seen within that long. One cache per csock_http_static (one per
 * loop): not locked. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/static_int.h"

uint32_t csock__static_path_hash(const char *p)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *p; p++) h = (h ^ (unsigned char)*p) * 16777619u;
    return h;
}

/* A cached small file named `rel` that is younger than CACHE_TTL_MS. */
const centry *csock__static_cache_get(csock_http_static *st, const char *rel, uint64_t now)
{
    const centry *e = st->cache[csock__static_path_hash(rel) % CACHE_SLOTS];
    if (e && now - e->loaded < CACHE_TTL_MS && !strcmp(e->path, rel)) return e;
    return NULL;
}

/* Keep a small regular file just opened (fd is left open for the caller). */
const centry *csock__static_cache_put(csock_http_static *st, const char *rel, int fd,
                                      const struct stat *sb, uint64_t now)
{
    size_t pl = strlen(rel);
    if (pl >= CACHE_PATH || (uint64_t)sb->st_size > CACHE_MAX_FILE) return NULL;
    centry **slot = &st->cache[csock__static_path_hash(rel) % CACHE_SLOTS];
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
    csock__static_file_info(&e->fi, sb, rel);
    return e;
}
