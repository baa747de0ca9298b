/* libFuzzer target for src/net/addr.c: csock_addr_parse (numeric only, so
 * no DNS), csock_addr_format and the port accessors.
 *
 * Input: one flags byte, then the address text (cut at the first NUL).
 * Checks beyond "no crash, no sanitizer report":
 *  - the result is 0 or a csock error, never another negative;
 *  - a parsed address has a length inside its storage, a known family, a
 *    port in 0..65535 (0 for Unix) and a NUL-terminated host;
 *  - it formats, the text is NUL-terminated and no longer than said, and
 *    parsing that text again gives the same address (scheme, family, port
 *    and the sockaddr bytes): format and parse agree on every address;
 *  - a buffer one byte too short is refused with -ENOSPC, never overrun.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "csock/csock.h"
#include "fuzz_common.h"

static void check_round_trip(const csock_addr *a, int flags)
{
    char text[600];
    int n = csock_addr_format(a, text, sizeof text);
    CHECK(n > 0 && (size_t)n < sizeof text && strlen(text) == (size_t)n);

    char *tight = malloc((size_t)n); /* one short: no room for the NUL */
    CHECK(tight != NULL);
    CHECK(csock_addr_format(a, tight, (size_t)n) == -ENOSPC);
    free(tight);

    csock_addr b;
    int rc = csock_addr_parse(text, flags & ~CSOCK_ADDR_PASSIVE, &b);
    if (rc != 0) {
        fprintf(stderr, "formatted %s does not parse back: %d\n", text, rc);
        abort();
    }
    CHECK(b.scheme == a->scheme && b.sa.ss_family == a->sa.ss_family);
    CHECK(csock_addr_port(&b) == csock_addr_port(a));
    CHECK(b.len == a->len && memcmp(&b.sa, &a->sa, a->len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int flags = (data[0] & (CSOCK_ADDR_IPV4 | CSOCK_ADDR_IPV6 | CSOCK_ADDR_PASSIVE)) |
                CSOCK_ADDR_NUMERIC;
    char *text = malloc(size); /* exact size: an over-read is caught */
    CHECK(text != NULL);
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';

    csock_addr a;
    memset(&a, 0xA5, sizeof a); /* garbage in, so a field left unset shows */
    int rc = csock_addr_parse(text, flags, &a);
    CHECK(rc == 0 || rc == CSOCK_EBADADDR || rc == CSOCK_ENONAME || rc == CSOCK_EAGAINRESOLVE ||
          rc == CSOCK_ENOPORT || rc == CSOCK_EBADPORT || rc == CSOCK_EBRACKETS ||
          rc == CSOCK_EUNKSCHEME ||           rc == -ENOMEM || rc == -EINVAL);
    if (rc == 0) {
        CHECK(a.len > 0 && a.len <= sizeof a.sa);
        CHECK(memchr(a.host, '\0', sizeof a.host) != NULL);
        int port = csock_addr_port(&a);
        if (a.sa.ss_family == AF_UNIX) {
            CHECK(port == 0);
        } else {
            CHECK(a.sa.ss_family == AF_INET || a.sa.ss_family == AF_INET6);
            CHECK(port >= 0 && port <= 65535);
        }
        CHECK(csock_addr_is_stream(&a) == 0 || csock_addr_is_stream(&a) == 1);
        check_round_trip(&a, flags);
    }
    free(text);
    return 0;
}
