/* Private to the WebSocket code (src/proto/ws*.c). Who does what:
 * ws_frame.c   frame headers (parse, build), masking, close payloads: pure;
 * ws_utf8.c    the incremental UTF-8 validator: pure;
 * ws_conn.c    the connection: reading frames in the stream's buffer,
 *              messages, control frames, sending, closing, timers;
 * ws_handshake.c  the opening handshake: the server's upgrade, the
 *              client's connect and its answer check, SHA-1 and base64;
 * ws_deflate.c permessage-deflate (RFC 7692): the offer and answer, and
 *              zlib with bounded output and counted memory. */
#ifndef CSOCK_PROTO_WS_INT_H
#define CSOCK_PROTO_WS_INT_H

#include <stddef.h>
#include <stdint.h>

#include "csock/csock.h"
#include "csock/dial.h"
#include "csock/ws.h"

/* ---- frames (ws_frame.c) ------------------------------------------------------ */

enum {
    WS_OP_CONT = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA,
};

/* RSV1, in the first header byte: a compressed message's first frame. */
#define WS_RSV1 0x40

/* The most a frame header takes: 2 + 8 (length) + 4 (mask). */
#define WS_HEAD_MAX 14
/* Control frames carry at most this much (RFC 6455 section 5.5). */
#define WS_CONTROL_MAX 125

typedef struct csock__ws_frame {
    uint64_t len;        /* payload length */
    unsigned char op;    /* opcode */
    unsigned char fin;
    unsigned char rsv;   /* the three reserved bits, as 0..7 */
    unsigned char masked;
    unsigned char key[4];
    unsigned head;       /* header bytes */
} csock__ws_frame;

/* Parse the frame header at buf[0..n). Returns its length (> 0) and fills
 * *f; 0 when more bytes are needed; -1 for a 64-bit length with its top bit
 * set (a protocol error). Checks nothing else: csock__ws_check does. */
int csock__ws_parse_head(const unsigned char *buf, size_t n, csock__ws_frame *f);

/* The close code for a header breaking the rules for a peer of this kind
 * (`from_client`: frames must be masked, else must not be), given whether
 * a fragmented message is in progress and whether compression was
 * negotiated (`deflate`: RSV1 allowed on a message's first frame); 0 when
 * it is fine. */
int csock__ws_check(const csock__ws_frame *f, int from_client, int in_message, int deflate);

/* Write a header for a frame of `len` bytes into out (WS_HEAD_MAX bytes);
 * `op` may carry WS_RSV1; with a `key` the frame is masked. Returns the
 * header's length. */
unsigned csock__ws_build_head(unsigned char *out, int op, int fin, uint64_t len,
                              const unsigned char *key);

/* XOR buf[0..len) with the key, starting at key byte `phase` (0-3), a word
 * at a time. Returns the phase for the bytes that follow. */
unsigned csock__ws_mask(unsigned char *buf, size_t len, const unsigned char key[4], unsigned phase);

/* A close code a peer may send (RFC 6455 section 7.4 and the IANA
 * registry): 1000-1003, 1007-1014, 3000-4999. */
int csock__ws_code_ok(unsigned code);

/* ---- UTF-8 (ws_utf8.c) --------------------------------------------------------- */

/* The validator's state: 0 between characters (WS_UTF8_OK), WS_UTF8_BAD
 * after an invalid byte, else inside a character. */
#define WS_UTF8_OK 0u
#define WS_UTF8_BAD 0xffffffffu

/* Feed buf[0..n) to the validator in state `st`: returns the new state, or
 * WS_UTF8_BAD at the first byte that cannot begin or continue a well-formed
 * sequence (overlong forms, surrogates, past U+10FFFF, stray continuations
 * all fail there, not at the end). A text is valid when the final state
 * is WS_UTF8_OK. ASCII runs go a word at a time. */
uint32_t csock__utf8_step(uint32_t st, const unsigned char *buf, size_t n);

/* ---- permessage-deflate (ws_deflate.c) ------------------------------------------ */

/* The parameters of one permessage-deflate offer or answer. */
typedef struct csock__ws_pmd {
    unsigned char server_nct;  /* server_no_context_takeover */
    unsigned char client_nct;  /* client_no_context_takeover */
    unsigned char server_bits; /* server_max_window_bits: 0 absent, else 8..15 */
    unsigned char client_bits; /* client_max_window_bits: 0 absent, 1 without a
                                  value, else 8..15 */
} csock__ws_pmd;

enum { WS_PMD_END = -1, WS_PMD_OTHER = 0, WS_PMD_OK = 1, WS_PMD_BAD = 2, WS_PMD_SYNTAX = 3 };

/* The next element of the extension list v[*pos..n) (a
 * Sec-WebSocket-Extensions value): WS_PMD_OK a well-formed
 * permessage-deflate one (its parameters in *p), WS_PMD_BAD one with
 * unknown, repeated or malformed parameters, WS_PMD_OTHER another
 * extension, WS_PMD_SYNTAX a list that does not parse (the rest is
 * skipped), WS_PMD_END no more. */
int csock__ws_pmd_next(const char *v, size_t n, size_t *pos, csock__ws_pmd *p);

/* A connection's compression: its parameters, and zlib's streams, made
 * when first needed. */
typedef struct csock__ws_z {
    struct z_stream_s *def, *inf;
    uint64_t mem, mem_max;     /* bytes zlib holds now, and the cap */
    uint64_t zin;              /* compressed bytes of the message coming in */
    uint32_t threshold;
    signed char level;
    unsigned char def_bits, def_mem_level, def_reset; /* our compressor */
    unsigned char inf_bits, inf_reset;               /* the peer's */
    unsigned char inf_ended;   /* the peer ended its deflate stream (BFINAL) in
                                  this message: the rest of it is ignored */
} csock__ws_z;

/* Server: pick the first offer of the request's Sec-WebSocket-Extensions
 * values (`vals`, `nvals`) that opts allow; returns 1 and makes *out with
 * the answer in ans (a field value, NUL-terminated), 0 when none fits (no
 * compression), -ENOMEM. */
int csock__ws_pmd_accept(const csock_ws_opts *o, const char *const *vals, const size_t *lens, size_t nvals,
                         char *ans, size_t anssize, csock__ws_z **out);
/* Client: the offer for opts into buf (a field value, NUL-terminated). */
void csock__ws_pmd_offer(const csock_ws_opts *o, char *buf, size_t size);
/* Client: check the server's answer v[0..n) to our offer; 0 and *out, or
 * -EPROTO, -ENOMEM. */
int csock__ws_pmd_answer(const csock_ws_opts *o, const char *v, size_t n, csock__ws_z **out);
void csock__ws_z_free(csock__ws_z *z);

/* Compress one message part buf[0..len) (the last when `fin`: then the
 * flush tail is removed) into a malloc'd buffer with `headroom` bytes free
 * before the data; *out, *outlen (the data's length). 0 or -ENOMEM. */
int csock__ws_deflate(csock__ws_z *z, const void *buf, size_t len, int fin, size_t headroom,
                      unsigned char **out, size_t *outlen);

/* Forget the compressor's state after a compressed part that was not sent:
 * the next part starts a fresh stream, which refers to nothing the peer
 * missed (its decompressor, at a block boundary, reads it as it is). */
void csock__ws_deflate_drop(csock__ws_z *z);

/* Where inflated bytes go: 0, or an error that stops the inflating. */
typedef int (*csock__ws_sink)(void *ctx, const unsigned char *p, size_t n);

/* Decompress in[0..n) of a message (and its flush tail when `last`),
 * handing the output to `sink` at most 16 KiB at a time. Returns 0, the
 * sink's error, -EPROTO (data zlib refuses), -ENOMEM. After the last
 * piece, without context takeover, the state is freed. */
int csock__ws_inflate(csock__ws_z *z, const unsigned char *in, size_t n, int last, csock__ws_sink sink,
                      void *ctx);

/* ---- the connection (ws_conn.c) ------------------------------------------------ */

enum { WS_CONNECTING, WS_OPEN, WS_CLOSING, WS_ENDED };

struct csock_ws {
    csock_stream *s;          /* NULL until a client's connect is made */
    csock_loop *loop;
    csock_ws_cb cb;
    void *data;
    csock_timer *timer;       /* made when first needed (close, keep-alive, handshake) */
    char *msg;                /* a fragmented or streamed message being put together */
    size_t mlen, mcap;
    uint64_t max_message;
    uint32_t close_ms, ping_ms, ping_timeout_ms; /* clamped to 2^31 ms (24 days) */
    uint32_t last_in;         /* loop time of the last input (keep-alive), modulo 2^32:
                                 differences are right below 49 days, and the
                                 intervals compared are at most 2^31 ms */
    uint64_t frame_left;      /* payload bytes of the frame being streamed into msg */
    uint32_t utf8;            /* the validator's state for the text message */
    unsigned char state;      /* WS_* */
    unsigned char client : 1; /* we are the client: mask what we send */
    unsigned char in_msg : 1; /* a fragmented message has begun */
    unsigned char msg_text : 1;
    unsigned char frame_fin : 1; /* the streamed frame ends its message */
    unsigned char sending_part : 1; /* csock_ws_send_part's message unfinished */
    unsigned char got_close : 1;
    unsigned char want_drain : 1; /* a send of ours had to queue: DRAIN when it has gone */
    unsigned char msg_z : 1;  /* the message coming in is compressed */
    unsigned char send_z : 1; /* the message being sent in parts is compressed */
    unsigned char paused : 1; /* csock_ws_read_stop: no messages until read_start */
    unsigned char ping_out : 1; /* the keep-alive's ping is in flight */
    unsigned char finishing : 1; /* csock_ws_shutdown: closing, messages still delivered */
    unsigned char frame_key[4];  /* the streamed frame's mask key */
    unsigned char frame_phase;
    int peer_code;            /* CLOSED's code */
    int sent_code;            /* CLOSED's sent */
    int status;               /* CLOSED's status, once known */
    char *peer_reason;        /* CLOSED's reason (malloc'd, when the peer gave one) */
    size_t peer_reason_len;
    char *subprotocol;        /* the agreed one, malloc'd */
    struct ws_client *cl;     /* the client's handshake state, until OPEN */
    csock__ws_z *z;           /* permessage-deflate, when negotiated */
    unsigned char *keys;      /* client: 32 bytes of random mask keys (made at its first send) */
    unsigned char nkeys;      /* keys left in them, refilled 8 at a time */
};

/* A new connection object (not yet on a stream). */
int csock__ws_new(csock_loop *loop, const csock_ws_opts *opts, int client, csock_ws_cb cb, void *data,
                  csock_ws **out);
/* Free one that never got a stream. */
void csock__ws_free(csock_ws *ws);
/* Take the stream over: set its callbacks and read limit. */
void csock__ws_attach(csock_ws *ws, csock_stream *s);
/* The read callback of an open connection. */
size_t csock__ws_on_read(csock_stream *s, int status, const char *buf, size_t len);
/* The stream's close callback: the CLOSED event, then the memory. */
void csock__ws_on_closed(csock_stream *s);
/* Fail: send a close frame with `code` (0: none), end the stream; CLOSED
 * will carry `status`. */
void csock__ws_fail(csock_ws *ws, int code, int status);
/* The client's handshake is done: OPEN, the keep-alive starts. */
void csock__ws_opened(csock_ws *ws, const char *answer, size_t len);
/* Client: the status code of a refused handshake's answer (0: none). */
int csock__ws_http_status(const csock_ws *ws);
/* Start (or restart) the connection's timer to fire in `ms`. */
int csock__ws_timer(csock_ws *ws, uint64_t ms);
/* Deliver an event to the application. */
void csock__ws_emit(csock_ws *ws, csock_ws_event *ev);

/* ---- the handshake (ws_handshake.c) --------------------------------------------- */

/* Sec-WebSocket-Accept for a key: base64(SHA-1(key + the RFC's GUID)),
 * 28 characters and a NUL into out. */
void csock__ws_accept_key(const char *key, size_t len, char out[29]);
void csock__sha1(const void *data, size_t len, unsigned char out[20]);
/* base64 of n bytes into out (4 * ceil(n / 3) + 1 bytes), NUL-terminated. */
void csock__base64(const unsigned char *in, size_t n, char *out);
/* A client with no stream yet (dialling) ends: CLOSED with `status`, then
 * the memory. From the loop only. */
void csock__ws_end_unattached(csock_ws *ws, int status);
/* Cancel a client's dial, if one runs. */
void csock__ws_client_cancel(csock_ws *ws);
/* The client's timer fired before OPEN. */
void csock__ws_client_timeout(csock_ws *ws);
/* Free the client's handshake state. */
void csock__ws_client_free(csock_ws *ws);

#endif
