/* WebSocket frames (RFC 6455 section 5.2): header parsing and building,
 * the rules a header must follow, masking, close codes. Pure functions:
 * the connection (ws_conn.c) applies them to the stream's read buffer in
 * place. */
#include <string.h>

#include "proto/ws_int.h"

int csock__ws_parse_head(const unsigned char *b, size_t n, csock__ws_frame *f)
{
    if (n < 2) return 0;
    f->fin = b[0] >> 7;
    f->rsv = (b[0] >> 4) & 7;
    f->op = b[0] & 0x0f;
    f->masked = b[1] >> 7;
    unsigned need = 2 + (f->masked ? 4 : 0);
    uint64_t len = b[1] & 0x7f;
    if (len == 126) need += 2;
    else if (len == 127) need += 8;
    if (n < need) return 0;
    const unsigned char *p = b + 2;
    if (len == 126) {
        len = (uint64_t)p[0] << 8 | p[1];
        p += 2;
    } else if (len == 127) {
        if (p[0] & 0x80) return -1; /* "the most significant bit MUST be 0" */
        len = 0;
        for (int i = 0; i < 8; i++) len = len << 8 | p[i];
        p += 8;
    }
    if (f->masked) memcpy(f->key, p, 4);
    f->len = len;
    f->head = need;
    return (int)need;
}

int csock__ws_check(const csock__ws_frame *f, int from_client, int in_message, int deflate)
{
    /* RSV1 marks a compressed message, on its first frame only (RFC 7692
     * section 6): not on a continuation or a control frame. */
    unsigned rsv_ok = deflate && (f->op == WS_OP_TEXT || f->op == WS_OP_BINARY) ? 4 : 0;
    if (f->rsv & ~rsv_ok) return CSOCK_WS_PROTOCOL_ERROR;
    if (f->masked != (from_client != 0)) return CSOCK_WS_PROTOCOL_ERROR;
    switch (f->op) {
    case WS_OP_CONT:
        return in_message ? 0 : CSOCK_WS_PROTOCOL_ERROR;
    case WS_OP_TEXT:
    case WS_OP_BINARY:
        return in_message ? CSOCK_WS_PROTOCOL_ERROR : 0;
    case WS_OP_CLOSE:
    case WS_OP_PING:
    case WS_OP_PONG:
        if (!f->fin || f->len > WS_CONTROL_MAX) return CSOCK_WS_PROTOCOL_ERROR;
        return 0;
    default:
        return CSOCK_WS_PROTOCOL_ERROR;
    }
}

unsigned csock__ws_build_head(unsigned char *out, int op, int fin, uint64_t len,
                              const unsigned char *key)
{
    unsigned n = 2;
    out[0] = (unsigned char)((fin ? 0x80 : 0) | (op & (WS_RSV1 | 0x0f)));
    unsigned char m = key ? 0x80 : 0;
    if (len < 126) {
        out[1] = (unsigned char)(m | len);
    } else if (len <= 0xffff) {
        out[1] = m | 126;
        out[2] = (unsigned char)(len >> 8);
        out[3] = (unsigned char)len;
        n = 4;
    } else {
        out[1] = m | 127;
        for (int i = 0; i < 8; i++) out[2 + i] = (unsigned char)(len >> (56 - 8 * i));
        n = 10;
    }
    if (key) {
        memcpy(out + n, key, 4);
        n += 4;
    }
    return n;
}

unsigned csock__ws_mask(unsigned char *buf, size_t len, const unsigned char key[4], unsigned phase)
{
    size_t i = 0;
    /* Bytes up to an 8-byte boundary, then words: the key repeated from the
     * phase the boundary falls on, XORed 8 bytes at a time (memcpy keeps it
     * free of alignment and aliasing trouble; compilers make it a load). */
    while (i < len && ((uintptr_t)(buf + i) & 7)) buf[i++] ^= key[phase++ & 3];
    if (len - i >= 8) {
        unsigned char k8[8];
        for (int j = 0; j < 8; j++) k8[j] = key[(phase + (unsigned)j) & 3];
        uint64_t k;
        memcpy(&k, k8, 8);
        for (; len - i >= 8; i += 8) {
            uint64_t w;
            memcpy(&w, buf + i, 8);
            w ^= k;
            memcpy(buf + i, &w, 8);
        }
    }
    while (i < len) buf[i++] ^= key[phase++ & 3];
    return phase & 3;
}

int csock__ws_code_ok(unsigned code)
{
    if (code >= 3000 && code <= 4999) return 1;
    if (code >= 1000 && code <= 1003) return 1;
    return code >= 1007 && code <= 1014;
}
