/* From a request target to a file under the root: decoding, normalising
 * and opening it so that no path leaves the root.
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
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

#include "proto/static_int.h"

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
int csock__static_normalise(const char *p, size_t n, char *out, size_t cap, int *dir_slash)
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

int csock__static_open_beneath(const csock_http_static *st, const char *rel, int flags)
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

int csock__static_errno_status(int err)
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
