/* Message framing: cut the first message out of a byte buffer.
 *
 * csock_frame_next() is pure (no I/O, no allocation) in the picohttpparser
 * style: it returns the bytes the message spans, 0 for "need more input", or
 * an error, and the message is a slice of the caller's buffer. It never reads
 * at or past buf[len], so it is safe on the tail of any allocation.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "csock/csock.h"

/* LINE: a message ends at LF; a CR right before the LF belongs to the ending.
 * f->max bounds the content (without the ending), so the longest acceptable
 * line spans max + 2 bytes (content, CR, LF). */
static ssize_t frame_line(const csock_framing *f, const char *buf, size_t len,
                          const char **msg, size_t *msg_len)
{
    /* Saturate: max + 2 must not wrap for max near SIZE_MAX. */
    size_t limit = f->max > SIZE_MAX - 2 ? SIZE_MAX : f->max + 2;
    size_t scan = len < limit ? len : limit;
    const char *lf = memchr(buf, '\n', scan);

    if (lf == NULL) {
        /* Too big as soon as it is certain, not only once an LF turns up:
         * max + 2 bytes without LF can never become a legal line, nor can
         * max + 1 bytes whose last byte is not a CR (only "content CR" may
         * still be followed by the LF). */
        if (len >= limit || (len > f->max && buf[f->max] != '\r'))
            return CSOCK_ETOOBIG;
        return 0;
    }

    size_t span = (size_t)(lf - buf) + 1;    /* through the LF */
    size_t end = span - 1;                   /* content ends before the LF ... */
    if (end > 0 && buf[end - 1] == '\r')
        end--;                               /* ... or before the CRLF */
    if (end > f->max)
        return CSOCK_ETOOBIG;
    *msg = buf;
    *msg_len = f->keep_delimiter ? span : end;
    return (ssize_t)span;
}

#define LP32_HEADER 4 /* the body length, big-endian */

/* LP32: a 4-byte big-endian body length, then the body. The length is
 * checked as soon as the header is complete, so an oversize frame is refused
 * before anyone waits (or buffers) for its body. */
static ssize_t frame_lp32(const csock_framing *f, const char *buf, size_t len,
                          const char **msg, size_t *msg_len)
{
    const unsigned char *h = (const unsigned char *)buf;
    if (len < LP32_HEADER)
        return 0;
    uint32_t n = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
    if (n > f->max || (uint64_t)n + LP32_HEADER > (uint64_t)SSIZE_MAX)
        return CSOCK_ETOOBIG;
    if (len - LP32_HEADER < n)
        return 0;
    *msg = buf + LP32_HEADER;
    *msg_len = n;
    return (ssize_t)(LP32_HEADER + (size_t)n);
}

ssize_t csock_frame_next(const csock_framing *f, const char *buf, size_t len, const char **msg,
                         size_t *msg_len)
{
    if (f == NULL || (buf == NULL && len > 0) || msg == NULL || msg_len == NULL)
        return -EINVAL;
    if (len == 0 && (f->kind == CSOCK_FRAME_LINE || f->kind == CSOCK_FRAME_LP32))
        return 0; /* nothing to look at (and memchr(NULL, .., 0) is undefined) */
    switch (f->kind) {
    case CSOCK_FRAME_LINE:
        return frame_line(f, buf, len, msg, msg_len);
    case CSOCK_FRAME_LP32:
        return frame_lp32(f, buf, len, msg, msg_len);
    }
    return -EINVAL;
}
