/* UTF-8 validation for text messages and close reasons (RFC 6455 section
 * 8.1), incremental so a message is checked as its bytes arrive, across
 * fragments and partial frames, and fails at its first bad byte.
 *
 * The state packs what the next byte must be: the count of continuation
 * bytes still due (bits 0-1) and the range the next one must fall in (lo in
 * bits 8-15, hi in bits 16-23). The narrow first ranges are the Unicode
 * Standard's table 3-7: after E0 A0..BF (no overlong 3-byte forms), after
 * ED 80..9F (no surrogates), after F0 90..BF (no overlong 4-byte forms),
 * after F4 80..8F (nothing past U+10FFFF); C0, C1 and F5..FF never begin
 * a character. */
#include <string.h>

#include "proto/ws_int.h"

#define ST(need, lo, hi) ((uint32_t)(need) | (uint32_t)(lo) << 8 | (uint32_t)(hi) << 16)

/* The state after a lead byte c >= 0x80, or WS_UTF8_BAD. */
static uint32_t lead(unsigned c)
{
    if (c >= 0xc2 && c <= 0xdf) return ST(1, 0x80, 0xbf);
    if (c == 0xe0) return ST(2, 0xa0, 0xbf);
    if (c == 0xed) return ST(2, 0x80, 0x9f);
    if (c >= 0xe1 && c <= 0xef) return ST(2, 0x80, 0xbf);
    if (c == 0xf0) return ST(3, 0x90, 0xbf);
    if (c >= 0xf1 && c <= 0xf3) return ST(3, 0x80, 0xbf);
    if (c == 0xf4) return ST(3, 0x80, 0x8f);
    return WS_UTF8_BAD;
}

#define HIGH_BITS 0x8080808080808080ull

uint32_t csock__utf8_step(uint32_t st, const unsigned char *p, size_t n)
{
    if (st == WS_UTF8_BAD) return st;
    size_t i = 0;
    while (i < n) {
        if (st == WS_UTF8_OK) {
            /* The ASCII fast path: eight bytes at a time while none has
             * its high bit set. */
            while (n - i >= 8) {
                uint64_t w;
                memcpy(&w, p + i, 8);
                if (w & HIGH_BITS) break;
                i += 8;
            }
            if (i == n) break;
            unsigned c = p[i++];
            if (c < 0x80) continue;
            st = lead(c);
            if (st == WS_UTF8_BAD) return st;
            continue;
        }
        unsigned c = p[i++];
        if (c < ((st >> 8) & 0xff) || c > ((st >> 16) & 0xff)) return WS_UTF8_BAD;
        unsigned need = (st & 3) - 1;
        st = need ? ST(need, 0x80, 0xbf) : WS_UTF8_OK;
    }
    return st;
}
