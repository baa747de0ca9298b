/* A stream read as messages (csock_stream_read_framed) and written as
 * messages (csock_stream_write_msg), over csock_frame_next(). */

#include "net/stream_int.h"

/* The bytes a frame has beside its body: LP32's length header, or a line's
 * CR LF ending (at most 2), whichever is larger. */
#define LP32_HEADER 4
#define FRAME_OVERHEAD LP32_HEADER

/* A framed stream's one final status: EOF, a framing error or a stream
 * error (reset, timeout). A framing error leaves the stream writable: the
 * replies to the messages before it are flushed when the read callback
 * returns, so csock_stream_end() from msg_cb still delivers them. */
static size_t framed_end(csock_stream *s, int status, size_t len)
{
    s->flags |= F_MSG_END;
    if (status != CSOCK_EOF && !(s->flags & F_FAILED)) {
        s->flags &= ~F_READING; /* nothing can follow the bad message */
        csock__stream_update_events(s);
        if (s->wq_head && (s->flags & F_IN_READ) && !(s->flags & F_CONNECTING)) {
            /* The replies held for the messages before it leave now: an
             * application that closes on the error would drop them. */
            s->flags &= ~F_IN_READ;
            int ok = csock__stream_send_queue(s);
            s->flags |= F_IN_READ;
            if (!ok && s->h.closing) return len;
        }
    }
    s->msg_cb(s, status, NULL, 0);
    return len;
}

/* Another message may go to msg_cb. Not once msg_cb switched the stream
 * to plain reads (csock_stream_read_start: read_cb took msg_cb's place):
 * the rest of the buffer is the new callback's, offered to it next. */
static int framed_may_deliver(const csock_stream *s)
{
    return (s->flags & (F_READING | F_PAUSED | F_FRAMED)) == (F_READING | F_FRAMED) &&
           !s->h.closing;
}

/* The read callback of a framed stream: cut messages for msg_cb. Errors
 * reach it from the stream with F_FAILED already set (deliver_error, the
 * timer): they are its final status like any other. */
size_t csock__stream_framed_read(csock_stream *s, int status, const char *buf, size_t len)
{
    if (s->flags & F_MSG_END) return len;
    const csock_framing f = {.kind = (csock_frame_kind)s->fkind, .max = s->fmax,
                             .keep_delimiter = s->fkeep};
    size_t used = 0;
    while (used < len && framed_may_deliver(s)) {
        const char *msg;
        size_t mlen;
        ssize_t n = csock_frame_next(&f, buf + used, len - used, &msg, &mlen);
        if (n == 0) break;
        if (n < 0) return framed_end(s, (int)n, len);
        used += (size_t)n;
        s->msg_cb(s, 0, msg, mlen);
    }
    if (status == 0 || s->h.closing || !(s->flags & F_FRAMED)) return used;
    if (status == CSOCK_EOF && used < len) {
        /* Messages still wait (msg_cb stopped or paused reading): the rest
         * and the EOF are offered again on resume. */
        if (!framed_may_deliver(s)) return used;
        if (f.kind != CSOCK_FRAME_LINE) return framed_end(s, -EPROTO, len); /* truncated */
        s->msg_cb(s, 0, buf + used, len - used); /* a final unterminated line */
        if (s->h.closing || !(s->flags & F_FRAMED)) return len;
    }
    return framed_end(s, status, len);
}

int csock_stream_read_framed(csock_stream *s, const csock_framing *f, csock_msg_cb cb)
{
    if (!f || !cb || (f->kind != CSOCK_FRAME_LINE && f->kind != CSOCK_FRAME_LP32)) return -EINVAL;
    if (f->max > UINT32_MAX - FRAME_OVERHEAD) return -EINVAL;
    s->fkind = (unsigned)f->kind & 3u;
    s->fkeep = f->keep_delimiter ? 1 : 0;
    s->fmax = (uint32_t)f->max;
    size_t need = f->max + FRAME_OVERHEAD; /* a whole message with its ending or header */
    if (need > s->max_read) {
        int rc = csock_stream_set_max_read(s, need);
        if (rc < 0) return rc;
    }
    /* read_start only asks for input (nothing is offered before we
     * return), then msg_cb takes read_cb's place: F_FRAMED says which. */
    int rc = csock_stream_read_start(s, csock__stream_framed_read);
    if (rc < 0) return rc;
    s->msg_cb = cb;
    s->flags |= F_FRAMED;
    return 0;
}

int csock_stream_write_msg(csock_stream *s, const csock_framing *f, const void *msg, size_t len)
{
    /* Checked first: f->max is a size_t, and a longer body would wrap its
     * 32-bit header into a frame that lies about its length. */
    if (f->kind == CSOCK_FRAME_LP32 && len > UINT32_MAX) return -EMSGSIZE;
    if (len > f->max) return CSOCK_ETOOBIG;
    struct iovec iov[2];
    unsigned char hdr[LP32_HEADER];
    if (f->kind == CSOCK_FRAME_LP32) {
        hdr[0] = (unsigned char)(len >> 24);
        hdr[1] = (unsigned char)(len >> 16);
        hdr[2] = (unsigned char)(len >> 8);
        hdr[3] = (unsigned char)len;
        iov[0] = (struct iovec){hdr, LP32_HEADER};
        iov[1] = (struct iovec){(void *)msg, len};
    } else {
        iov[0] = (struct iovec){(void *)msg, len};
        iov[1] = (struct iovec){"\n", 1};
    }
    return csock_stream_writev(s, iov, 2);
}
