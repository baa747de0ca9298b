/* WebSocket (RFC 6455) on csock streams: the server side as an upgrade
 * from the HTTP server (one port serves pages and sockets), the client side
 * from a ws:// URL.
 *
 * A csock_ws is a message connection. Messages (text or binary) arrive
 * whole, reassembled from their fragments, through one event callback
 * together with the connection's other events; they are sent whole with
 * csock_ws_send() or in pieces with csock_ws_send_part().
 *
 * The protocol is checked strictly, and a peer that breaks it gets a close
 * frame with the code RFC 6455 asks for, then the connection ends:
 *   1002 (protocol error): an unmasked frame from a client, a masked one
 *        from a server, reserved bits set (but RSV1 on the first frame of
 *        a message when compression was negotiated), an
 *        unknown opcode, a control frame over 125 bytes or fragmented, a
 *        continuation with no message begun or a new message inside one, a
 *        64-bit length with its top bit set, a close frame of 1 byte or
 *        with a code a peer may not send (below 1000, 1004-1006, 1015-2999,
 *        5000 and above);
 *   1007 (invalid data): a text message or a close reason that is not
 *        UTF-8 (checked as the bytes arrive, across fragments: the first
 *        bad byte fails the connection, not the end of the message);
 *   1009 (too big): a message longer than max_message, decided from the
 *        frame's length field before anything is allocated.
 * Pings are answered with pongs on their own.
 *
 * Lifetime. A csock_ws owns its stream (do not read, write or close it).
 * Every connection ends with exactly one CSOCK_WS_CLOSED event, from the
 * loop (never inside a call of yours), however it ends: a closing
 * handshake, an error, a timeout, csock_ws_abort(), a failed connect. The
 * memory is freed when that callback returns: do not use the csock_ws after
 * it. Before it, calls on a closing connection are safe and return -EPIPE.
 *
 * Threads: a csock_ws belongs to its loop's thread, like its stream.
 */
#ifndef CSOCK_WS_H
#define CSOCK_WS_H

#include "csock/api.h"
#include "csock/http.h"
#include "csock/net.h"
#include "csock/tls.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct csock_ws csock_ws;

/* Message types: the frame opcodes of RFC 6455 section 5.2. */
enum {
    CSOCK_WS_TEXT = 1,
    CSOCK_WS_BINARY = 2,
};

/* Close codes (RFC 6455 section 7.4.1). 1005 and 1006 are never sent: they
 * say that a close frame had no code, or that none came. */
enum {
    CSOCK_WS_NORMAL = 1000,
    CSOCK_WS_GOING_AWAY = 1001,
    CSOCK_WS_PROTOCOL_ERROR = 1002,
    CSOCK_WS_UNSUPPORTED = 1003,
    CSOCK_WS_NO_STATUS = 1005,
    CSOCK_WS_ABNORMAL = 1006,
    CSOCK_WS_INVALID_DATA = 1007,
    CSOCK_WS_POLICY = 1008,
    CSOCK_WS_TOO_BIG = 1009,
    CSOCK_WS_EXTENSION = 1010,
    CSOCK_WS_INTERNAL = 1011,
};

/* What the event callback is told. */
typedef enum {
    CSOCK_WS_OPEN = 1, /* client: the handshake succeeded (a server's
                          connection is open when csock_ws_accept returns);
                          `buf`, `len`: the server's answer as it came (the
                          101 status line and fields, up to the blank line) */
    CSOCK_WS_MESSAGE,  /* a whole message: `type`, `buf`, `len` */
    CSOCK_WS_PONG,     /* a pong arrived: its payload in `buf`, `len` */
    CSOCK_WS_DRAIN,    /* everything sent has been handed to the kernel (after
                          a send that had to queue): send more */
    CSOCK_WS_CLOSED,   /* the end, once: `code`, `buf`/`len` (the reason),
                          `sent`, `status`; the csock_ws is freed after it */
} csock_ws_event_kind;

typedef struct csock_ws_event {
    csock_ws_event_kind kind;
    int type;        /* MESSAGE: CSOCK_WS_TEXT (valid UTF-8) or CSOCK_WS_BINARY */
    const char *buf; /* MESSAGE, PONG: the payload; CLOSED: the peer's reason
                        (UTF-8, not NUL-terminated). Valid during the call. */
    size_t len;
    int code;        /* CLOSED: the code of the peer's close frame; 1005 when
                        its frame had none, 1006 when none came */
    int sent;        /* CLOSED: the code of the close frame we sent (0: none,
                        1005: one without a code) */
    int status;      /* CLOSED: 0 after a closing handshake (either side began
                        it); else why it ended: -EPROTO the peer broke the
                        protocol (`sent` says how: 1002, 1007), CSOCK_ETOOBIG a
                        message over max_message (1009), -ETIMEDOUT (connect,
                        handshake, close or keep-alive timeout), CSOCK_EOF the
                        peer closed without a close frame, -ECANCELED
                        csock_ws_abort(), a connect error (-ECONNREFUSED...),
                        -ECONNRESET, -ENOMEM. */
    int http_status; /* CLOSED, client: the status code when the server answered
                        the handshake with something other than 101 (403,
                        404, 426...; `status` is then -EPROTO and `buf`/`len`
                        hold the answer's head, its first 1 KiB); 0 otherwise */
} csock_ws_event;

/* The event callback, with the `data` given to csock_ws_accept() or
 * csock_ws_connect(). Inside it every call on `ws` is allowed. */
typedef void (*csock_ws_cb)(csock_ws *ws, const csock_ws_event *ev, void *data);

/* Option structs are ABI: zero-initialize them (= {0}, or designated
 * initializers); zero means the default for every member. A later minor
 * version takes new members out of `reserved` (permessage-deflate's came
 * from there), so sizeof and every offset stay the same within a major
 * version: leave `reserved` zero. */
typedef struct csock_ws_opts {
    uint64_t max_message;          /* a longer message is refused (close 1009); 0: 1 MiB */
    uint64_t close_timeout_ms;     /* after our close frame, wait this long for the
                                      peer's; 0: 5 s */
    uint64_t handshake_timeout_ms; /* client: connect and 101 within this; 0: 10 s */
    uint64_t ping_interval_ms;     /* send a ping after this long without input;
                                      0: never */
    uint64_t ping_timeout_ms;      /* no input for this long after such a ping: the
                                      peer is dead (CLOSED, -ETIMEDOUT); 0: the
                                      interval */
    const char *const *subprotocols; /* server: those it speaks, best first (the
                                      first one the client offers is chosen);
                                      client: those offered */
    size_t nsubprotocols;
    const char *const *origins;    /* server: the Origin values accepted (exact,
                                      ASCII case-insensitive); a request with another
                                      Origin is answered 403. NULL: any. A request
                                      without Origin (not from a browser) passes */
    size_t norigins;
    const char *const *headers;    /* client: extra request fields, "Name: value" each */
    size_t nheaders;
    csock_tls_ctx *tls;            /* client, wss://: the TLS context (a client one);
                                      NULL: one that verifies with the system's CAs */
    /* permessage-deflate (RFC 7692), see "Compression" below. */
    int deflate;                   /* 1: the client offers it, the server accepts an
                                      offer of it; 0: neither (the default) */
    int deflate_level;             /* zlib's level, 1 (fast) .. 9 (small); 0: 6 */
    unsigned char server_max_window_bits; /* 9..15 (8 counts as 9, see below); 0: 15.
                                      Server: the most its compressor uses. Client:
                                      asks the server to use at most this */
    unsigned char client_max_window_bits; /* the same for the client's compressor:
                                      the client uses and offers it; the server asks
                                      the client for it (when the offer allows) */
    unsigned char server_no_context_takeover; /* 1: the server compresses each message
                                      on its own (the server does; a client asks) */
    unsigned char client_no_context_takeover; /* 1: the same for the client's messages
                                      (the client does; a server asks) */
    uint32_t deflate_threshold;    /* messages shorter than this go uncompressed;
                                      0: 64 bytes (1: compress everything) */
    uint64_t deflate_memory;       /* the most zlib may hold for one connection,
                                      compressor and decompressor together; 0: 512 KiB */
    uint64_t reserved[5];
} csock_ws_opts;

/* Compression (RFC 7692 permessage-deflate, through zlib), when
 * opts.deflate is set on both sides and the peer agrees: the server picks
 * the first offer of the client's it can honour (an offer with unknown,
 * repeated or malformed parameters is declined, never an error) and answers
 * with the parameters it will use; the client offers one set and fails the
 * handshake (-EPROTO) on an answer it did not allow. The negotiation is
 * invisible to the application: messages are sent and delivered as ever.
 *
 * - A compressed message is a TEXT/BINARY frame with RSV1 set on its first
 *   frame, the deflate stream with its 0x00 0x00 0xff 0xff flush tail
 *   removed. RSV1 on a control frame or a continuation, or without
 *   compression negotiated, is still a protocol error (1002); compressed
 *   data zlib refuses is 1007.
 * - max_message limits the decompressed size. Input is inflated a bounded
 *   chunk (16 KiB) at a time and the connection fails with 1009 as soon as
 *   the output passes max_message: a small message never inflates into
 *   gigabytes (DEFLATE expands at most ~1032:1, so 1 GiB needs ~1 MiB
 *   sent). The compressed size of a message may exceed max_message by an
 *   eighth plus 1 KiB (incompressible data grows a little), no more.
 * - Window bits: 8 is allowed by the RFC, but zlib's compressor cannot make
 *   256-byte windows (it silently uses 9, which a peer holding us to 8 might
 *   not decode): csock's compressor never promises 8. A server declines an
 *   offer that holds it to server_max_window_bits=8; a client fails on an
 *   answer of client_max_window_bits=8; an option of 8 counts as 9.
 *   Decompressing, any of 8..15 is fine.
 * - Memory: a connection holds no zlib state until it first compresses or
 *   decompresses a message (so idle connections cost nothing extra), and a
 *   direction without context takeover frees its state after each message.
 *   With context takeover the state stays: at the defaults about 262 KiB to
 *   compress (window 15, memLevel 8) and 40 KiB to decompress. zlib's
 *   allocations are counted against deflate_memory: the compressor's
 *   memLevel and window shrink to fit it beside the decompressor, an offer
 *   whose decompressor cannot fit is declined, and an allocation past it
 *   fails (1011, -ENOMEM).
 * - Messages shorter than deflate_threshold are sent uncompressed (a frame
 *   without RSV1 is allowed in a compressed connection): below ~64 bytes
 *   deflate rarely saves a byte and costs a zlib call on each side (about
 *   1.3-1.5 us per short message with context takeover, 2-5 us without,
 *   as much as a whole uncompressed echo costs the server). A
 *   message sent in parts is compressed unless it is one short part.
 *   Control frames are never compressed. */

/* 1 when the request asks for a WebSocket upgrade (an Upgrade field naming
 * websocket), else 0: to serve a page and a socket on one path. */
CSOCK_API int csock_ws_is_upgrade(const csock_http_req *r);

/* Server: answer the request `r` (from an HTTP handler, now or later) with
 * the upgrade, and make the connection a WebSocket. Checks the request: GET,
 * HTTP/1.1, Upgrade: websocket, Connection: upgrade,
 * Sec-WebSocket-Version: 13 and a key of 16 bytes in base64; the Origin if
 * opts->origins; picks a subprotocol if opts->subprotocols. Answers 101 with
 * Sec-WebSocket-Accept, and the HTTP server lets go of the connection (see
 * csock_http_upgrade()). Returns 0 and *out (open: send at once); else the
 * request has been answered with an error and the HTTP connection goes on
 * or ends as HTTP does: -EPROTO (not a valid WebSocket request: 400, 405,
 * or 426 for another version), -EACCES (Origin refused: 403), -EPIPE (the
 * connection has gone), -ENOMEM (then the connection is closed). Copies
 * what it needs of *opts (opts may be NULL). */
CSOCK_API int csock_ws_accept(csock_http_req *r, const csock_ws_opts *opts, csock_ws_cb cb, void *data,
                    csock_ws **out);

/* Client: connect to `url`, ws://HOST[:PORT][/PATH][?QUERY] (port 80 by
 * default) or wss://... (TLS with opts->tls, port 443 by default; the
 * server's certificate is verified for HOST); HOST a name, an IPv4 address
 * or [IPv6]. The connect is csock_dial_start()'s (see csock/dial.h): a name
 * is resolved on the resolver thread, never blocking the loop, and its
 * addresses race as Happy Eyeballs has them; handshake_timeout_ms bounds
 * all of it. Sends the handshake and checks the answer:
 * 101, Upgrade and Connection, Sec-WebSocket-Accept from our key, no
 * extension but permessage-deflate if offered, a subprotocol we offered if any. Returns 0 and *out at once;
 * then exactly one of: CSOCK_WS_OPEN, or CSOCK_WS_CLOSED with the failure
 * (a resolution or connect error: CSOCK_ENONAME, -ECONNREFUSED...; CSOCK_ETLS;
 * -EPROTO for a refused or malformed handshake; -ETIMEDOUT). On an error
 * return (-EINVAL a malformed URL, CSOCK_ESCHEME another scheme, an address
 * that cannot parse, -ENOMEM, a TLS context's error) nothing was made and
 * `cb` never runs. Sending before OPEN is -ENOTCONN; csock_ws_stream() is
 * NULL until the connect is made. */
CSOCK_API int csock_ws_connect(csock_loop *loop, const char *url, const csock_ws_opts *opts,
                     csock_ws_cb cb, void *data, csock_ws **out);

/* Client on a stream the caller connected (with csock_dial_start(), through
 * a proxy, over TLS or not): run the handshake for `url` (a ws:// or wss://
 * URL as for csock_ws_connect, whose host goes into the Host field and
 * whose path and query are the request target; nothing is connected, and
 * for wss:// TLS is the caller's to have run). The stream must be
 * connected and not reading. Returns 0 and *out: the csock_ws owns the
 * stream from then on, and the events are csock_ws_connect()'s (OPEN or
 * CLOSED, bounded by handshake_timeout_ms). On an error return (-EINVAL,
 * CSOCK_ESCHEME, -ENOMEM, the stream's write error) nothing was made and
 * the stream is still the caller's. */
CSOCK_API int csock_ws_connect_stream(csock_stream *s, const char *url, const csock_ws_opts *opts,
                                      csock_ws_cb cb, void *data, csock_ws **out);

/* Send one message of `type` (CSOCK_WS_TEXT: the caller makes sure it is
 * UTF-8; CSOCK_WS_BINARY), copied or queued as the stream does, as one
 * frame. Returns 0, -EINVAL (another type), -EBUSY (a message sent in
 * parts is unfinished), -ENOTCONN (a client not open yet), -EPIPE (closing:
 * a close frame was sent or the connection failed), -ENOMEM, or the
 * stream's error. Backpressure: csock_ws_buffered() says how much waits;
 * CSOCK_WS_DRAIN comes when it has all gone. */
CSOCK_API int csock_ws_send(csock_ws *ws, int type, const void *buf, size_t len);

/* Send a message in parts (streaming a large one): each call sends one
 * frame; `fin` non-zero ends the message. The first part's `type` is the
 * message's; later parts ignore it. Pings, pongs and the close may go
 * between parts. Returns as csock_ws_send(). */
CSOCK_API int csock_ws_send_part(csock_ws *ws, int type, const void *buf, size_t len, int fin);

/* Send a ping with up to 125 bytes of payload (the peer's pong comes as
 * CSOCK_WS_PONG). Returns 0, -EMSGSIZE, or as csock_ws_send(). */
CSOCK_API int csock_ws_ping(csock_ws *ws, const void *buf, size_t len);

/* Begin the closing handshake: send a close frame with `code` (0: none;
 * else 1000-1003, 1007-1014 or 3000-4999) and `reason` (UTF-8, up to 123
 * bytes; may be NULL with len 0), then wait up to close_timeout for the
 * peer's close frame; then the connection ends (CLOSED, status 0, or
 * -ETIMEDOUT if the peer never answered). Messages that arrive meanwhile
 * are dropped. On a client still connecting it is csock_ws_abort().
 * Returns 0, -EINVAL (a code or reason not allowed), -EALREADY (closing
 * already). A server stopping gracefully (csock_server_stop, a signal)
 * says goodbye from its loop_drain callback: csock_ws_close(ws, 1001,
 * "going away", 10) for each connection; the handshake then runs to its
 * end (or close_timeout), not cut short by the drain's rule that a quiet
 * connection ends after 250 ms. */
CSOCK_API int csock_ws_close(csock_ws *ws, int code, const char *reason, size_t len);

/* A half close: begin the closing handshake as csock_ws_close() does (the
 * same codes, reasons, returns and close_timeout), but the messages (and
 * pongs) the peer sends before its close frame are still delivered: it may
 * not have seen ours yet and finishes what it was sending, as after a TCP
 * shutdown. A stopped connection stays stopped (csock_ws_read_start
 * resumes it; mind close_timeout), and csock_ws_read_stop/start keep
 * working until the peer's close frame. */
CSOCK_API int csock_ws_shutdown(csock_ws *ws, int code, const char *reason, size_t len);

/* End the connection now, without a closing handshake (queued frames are
 * dropped). CLOSED comes from the loop with status -ECANCELED. A no-op on
 * a connection already ending. */
CSOCK_API void csock_ws_abort(csock_ws *ws);

/* Flow control: stop and resume delivering messages, e.g. while the place
 * they go (a slow file, another socket) cannot take more. Stopped, the
 * connection reads nothing more from its socket, so the peer's sends back up
 * into TCP's flow control; a message already whole in the buffer waits
 * there too. Called inside a MESSAGE event, no further message of that read
 * is delivered. While stopped the keep-alive neither pings nor declares the
 * peer dead (the silence is ours), pings are not answered, and
 * csock_ws_close() reads again (the closing handshake needs the peer's
 * answer; messages still coming are then dropped). A client may stop
 * before it is open. Returns 0, or -EPIPE once the connection is closing
 * (after csock_ws_shutdown: once the peer's close frame has come). */
CSOCK_API int csock_ws_read_stop(csock_ws *ws);
CSOCK_API int csock_ws_read_start(csock_ws *ws);

/* Bytes sent and not yet handed to the kernel (the stream's write queue). */
CSOCK_API size_t csock_ws_buffered(const csock_ws *ws);

/* The subprotocol agreed on, or NULL. */
CSOCK_API const char *csock_ws_subprotocol(const csock_ws *ws);

/* 1 when permessage-deflate was agreed on (see "Compression"), else 0. */
CSOCK_API int csock_ws_compressed(const csock_ws *ws);

/* The connection's stream (for its peer address); do not read, write or
 * close it. NULL for a client whose connect has not been made. */
CSOCK_API csock_stream *csock_ws_stream(const csock_ws *ws);

CSOCK_API void *csock_ws_data(const csock_ws *ws);
CSOCK_API void csock_ws_set_data(csock_ws *ws, void *data);

#ifdef __cplusplus
}
#endif
#endif
