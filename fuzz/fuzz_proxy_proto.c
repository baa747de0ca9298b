/* libFuzzer target for src/net/proxy_proto.c: csock_proxy_parse.
 *
 * Input: a would-be PROXY header (v1 text or v2 binary) and what follows.
 * Checks beyond "no crash, no sanitizer report" (the input is copied to a
 * buffer of exactly its size, so a read past len is caught):
 *  - the result is > 0, 0, -EPROTO or -EMSGSIZE, nothing else;
 *  - a v1 header is at most CSOCK_PROXY_V1_MAX bytes and within the input,
 *    a v2 one at most 16 + 65535 bytes;
 *  - every prefix of a complete header is "more, please" (0) or the same
 *    verdict: a header never changes meaning as bytes arrive, which is
 *    what the listener relies on when it reads the header piece by piece;
 *  - a parsed address has a family that fits its scheme and a length
 *    inside its storage; a formatted one is NUL-terminated;
 *  - csock_proxy_format() writes the parsed addresses back as a header
 *    of the same version that parses to the same client.
 */
#include <errno.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "csock/csock.h"
#include "fuzz_common.h"

static void check_addr(const csock_addr *a)
{
    CHECK(a->len <= sizeof a->sa);
    int fam = a->sa.ss_family;
    CHECK(fam == AF_INET || fam == AF_INET6 || fam == AF_UNIX);
    CHECK((fam == AF_UNIX) == (a->scheme == CSOCK_UNIX));
    char text[CSOCK_ADDR_STRLEN];
    int n = csock_addr_format(a, text, sizeof text);
    CHECK(n > 0 && strlen(text) == (size_t)n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = malloc(size ? size : 1);
    CHECK(buf != NULL);
    memcpy(buf, data, size);
    csock_proxy_info info;
    ssize_t rc = csock_proxy_parse(buf, size, &info);
    CHECK(rc >= 0 || rc == -EPROTO || rc == -EMSGSIZE);
    if (rc > 0) {
        CHECK(info.version == 1 || info.version == 2);
        if (info.version == 1) CHECK(rc <= CSOCK_PROXY_V1_MAX && (size_t)rc <= size);
        else CHECK(rc >= 16 && rc <= 16 + 65535);
        if (!info.local) {
            check_addr(&info.src);
            check_addr(&info.dst);
            unsigned char again[CSOCK_PROXY_HEADER_MAX];
            ssize_t n = csock_proxy_format(info.version, &info.src, &info.dst, again, sizeof again);
            CHECK(n > 0);
            csock_proxy_info back;
            CHECK(csock_proxy_parse(again, (size_t)n, &back) == n);
            /* An IPv4-mapped IPv6 pair is written as IPv4, on purpose. */
            const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&info.src.sa,
                                      *d6 = (const struct sockaddr_in6 *)&info.dst.sa;
            int mapped = info.src.sa.ss_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr) &&
                         IN6_IS_ADDR_V4MAPPED(&d6->sin6_addr);
            if (!mapped)
                CHECK(back.src.len == info.src.len && memcmp(&back.src.sa, &info.src.sa, info.src.len) == 0);
        }
        size_t end = (size_t)rc < size ? (size_t)rc : size;
        for (size_t k = 0; k < end; k++) {
            csock_proxy_info part;
            ssize_t r = csock_proxy_parse(buf, k, &part);
            CHECK(r == 0 || r == rc);
        }
    }
    free(buf);
    return 0;
}
