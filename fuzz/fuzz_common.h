/* Shared by the libFuzzer targets: a CHECK that aborts (libFuzzer keeps the
 * input) and a reader that takes control bytes off the front of an input. */
#ifndef CSOCK_FUZZ_COMMON_H
#define CSOCK_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

typedef struct fz_in {
    const uint8_t *p;
    size_t len;
} fz_in;

/* The next byte (0 once the input is used up). */
static inline uint8_t fz_byte(fz_in *in)
{
    if (in->len == 0) return 0;
    in->len--;
    return *in->p++;
}

static inline uint32_t fz_u16(fz_in *in)
{
    uint32_t hi = fz_byte(in);
    return hi << 8 | fz_byte(in);
}

/* Up to `max` bytes of the input, as a slice. */
static inline const uint8_t *fz_take(fz_in *in, size_t max, size_t *got)
{
    const uint8_t *p = in->p;
    *got = max < in->len ? max : in->len;
    in->p += *got;
    in->len -= *got;
    return p;
}

#endif
