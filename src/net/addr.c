/* Addresses: parse "tcp://host:port", "udp://[::1]:7", "unix:/path",
 * "unix:@abstract" and bare "host:port" into csock_addr, resolve names, and
 * format addresses back into the same text.
 *
 * Parsing is strict on purpose: a typo in an address should fail loudly at
 * start-up rather than bind to something unexpected, and say what is wrong
 * where it can (CSOCK_ENOPORT, CSOCK_EBADPORT, CSOCK_EBRACKETS,
 * CSOCK_EUNKSCHEME; CSOCK_EBADADDR for the rest).
 * Numeric hosts never touch DNS (getaddrinfo with AI_NUMERICHOST), so only a
 * real name can block.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#include "csock/error.h"
#include "csock/net.h"

/* The text of an address, cut into its parts (slices of the caller's text,
 * except port which is already a number). */
typedef struct {
    csock_scheme scheme;
    const char *host; /* IP forms: host without brackets; Unix: the path */
    size_t host_len;
    int bracketed;    /* host was written as [IPv6] */
    int port;
} addr_parts;

static const struct {
    const char *prefix; /* matched case-insensitively, like URL schemes */
    csock_scheme scheme;
} schemes[] = {
    {"tcp://", CSOCK_TCP},   {"udp://", CSOCK_UDP},         {"tls://", CSOCK_TLS},
    {"unix:", CSOCK_UNIX},   {"unixgram:", CSOCK_UNIXGRAM},
};

static const char *scheme_name(csock_scheme s)
{
    switch (s) {
    case CSOCK_TCP: return "tcp";
    case CSOCK_UDP: return "udp";
    case CSOCK_TLS: return "tls";
    case CSOCK_UNIX: return "unix";
    case CSOCK_UNIXGRAM: return "unixgram";
    }
    return NULL;
}

static int is_unix(csock_scheme s)
{
    return s == CSOCK_UNIX || s == CSOCK_UNIXGRAM;
}

/* Decimal 0-65535, digits only: no sign, no spaces (strtol would accept
 * both). Leading zeros are harmless and allowed. Nothing after the colon is
 * a missing port; digits past 65535 a port out of range; anything else is
 * malformed. */
static int parse_port(const char *s)
{
    long v = 0;
    if (*s == '\0')
        return CSOCK_ENOPORT;
    for (const char *d = s; *d; d++)
        if (*d < '0' || *d > '9')
            return CSOCK_EBADADDR;
    for (; *s; s++) {
        v = v * 10 + (*s - '0');
        if (v > 65535)
            return CSOCK_EBADPORT;
    }
    return (int)v;
}

/* An unbracketed host is a name or an IPv4 literal: letters, digits, '.',
 * '-' and '_'. Anything else ("%", "/", spaces, a stray "[") is a typo, and
 * refusing it here keeps junk from ever reaching DNS. */
static int name_chars_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_'))
            return 0;
    }
    return 1;
}

/* s[0..n) is an IPv6 literal (a "%scope" suffix allowed): written without
 * brackets, its colons cannot be told from the port's. */
static int is_ipv6(const char *s, size_t n)
{
    char buf[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
    struct in6_addr a6;
    const char *pct = memchr(s, '%', n);
    if (pct)
        n = (size_t)(pct - s);
    if (n >= sizeof buf)
        return 0;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return inet_pton(AF_INET6, buf, &a6) == 1;
}

/* "[IPv6]:PORT" into p; returns where the port's colon is, or an error. */
static int split_bracketed(const char *s, addr_parts *p, const char **colon)
{
    const char *close = strchr(s, ']');
    if (close == NULL || close == s + 1)
        return CSOCK_EBADADDR;
    if (close[1] == '\0')
        return CSOCK_ENOPORT; /* "[::1]" */
    if (close[1] != ':')
        return CSOCK_EBADADDR;
    p->host = s + 1;
    p->host_len = (size_t)(close - p->host);
    p->bracketed = 1;
    *colon = close + 1;
    return 0;
}

/* Split "HOST:PORT" or "[IPv6]:PORT" (the part after the scheme). */
static int split_host_port(const char *s, addr_parts *p)
{
    const char *colon;
    if (*s == '[') {
        int rc = split_bracketed(s, p, &colon);
        if (rc < 0)
            return rc;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL) /* "localhost", "127.0.0.1"; nothing at all is malformed */
            return *s ? CSOCK_ENOPORT : CSOCK_EBADADDR;
        p->host = s;
        p->host_len = (size_t)(colon - s);
        /* An unbracketed IPv6 address is ambiguous ("::1:80"): refuse it,
         * saying so when it is one ("::1:80", and "fe80::1" whole). */
        if (memchr(s, ':', p->host_len) != NULL)
            return is_ipv6(s, p->host_len) || is_ipv6(s, strlen(s)) ? CSOCK_EBRACKETS
                                                                    : CSOCK_EBADADDR;
        if (!name_chars_ok(p->host, p->host_len))
            return CSOCK_EBADADDR;
    }
    p->port = parse_port(colon + 1);
    return p->port < 0 ? p->port : 0;
}

static int split(const char *text, addr_parts *p)
{
    const char *rest = text;
    memset(p, 0, sizeof *p);
    p->scheme = CSOCK_TCP; /* a bare HOST:PORT */
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
        size_t n = strlen(schemes[i].prefix);
        if (strncasecmp(text, schemes[i].prefix, n) == 0) {
            p->scheme = schemes[i].scheme;
            rest = text + n;
            break;
        }
    }
    /* "foo://x:1" would otherwise read as host "foo//x". */
    if (rest == text && strstr(text, "://") != NULL)
        return CSOCK_EUNKSCHEME;
    if (is_unix(p->scheme)) {
        p->host = rest;
        p->host_len = strlen(rest);
        return 0;
    }
    return split_host_port(rest, p);
}

/* unix:PATH, or unix:@NAME for Linux's abstract namespace, which has no file
 * and is marked by a leading NUL; its length counts only the name's bytes. */
static int fill_unix(const addr_parts *p, csock_addr *out)
{
    struct sockaddr_un *un = (struct sockaddr_un *)&out->sa;
    int abstract = p->host_len > 0 && p->host[0] == '@';
    size_t n = abstract ? p->host_len - 1 : p->host_len;

    if (n == 0)
        return CSOCK_EBADADDR; /* "unix:" and "unix:@" name nothing */
    /* A path needs room for its terminating NUL; an abstract name has the
     * leading NUL instead. Either way n + 1 bytes of sun_path. */
    if (n + 1 > sizeof un->sun_path)
        return CSOCK_EBADADDR;
    un->sun_family = AF_UNIX;
    if (abstract) {
        un->sun_path[0] = '\0';
        memcpy(un->sun_path + 1, p->host + 1, n);
    } else {
        memcpy(un->sun_path, p->host, n + 1);
    }
    out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    return 1;
}

static int map_gai_error(int rc)
{
    switch (rc) {
    case EAI_NONAME:
#ifdef EAI_NODATA
    case EAI_NODATA:
#endif
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY: /* the name exists, not in the family asked for */
#endif
    case EAI_FAIL:
        return CSOCK_ENONAME;
    case EAI_AGAIN:
        return CSOCK_EAGAINRESOLVE;
    case EAI_MEMORY:
        return -ENOMEM;
    case EAI_SYSTEM:
        return errno ? -errno : -EIO;
    default:
        return -EINVAL;
    }
}

static int wanted_family(int flags)
{
    int v4 = (flags & CSOCK_ADDR_IPV4) != 0, v6 = (flags & CSOCK_ADDR_IPV6) != 0;
    if (v4 == v6)
        return AF_UNSPEC; /* neither, or both: anything */
    return v4 ? AF_INET : AF_INET6;
}

static void set_port(struct sockaddr_storage *ss, int port)
{
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
    else if (ss->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
}

/* Copy getaddrinfo's results, skipping duplicates (a name listed twice in
 * /etc/hosts, or the same address under several socket types). */
static int collect(const struct addrinfo *res, const addr_parts *p, int family,
                   csock_addr *out, size_t max)
{
    size_t n = 0;
    for (const struct addrinfo *ai = res; ai != NULL && n < max; ai = ai->ai_next) {
        csock_addr *a = &out[n];
        int dup = 0;
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        if (family != AF_UNSPEC && ai->ai_family != family)
            continue;
        if (ai->ai_addrlen > sizeof a->sa)
            continue;
        memset(a, 0, sizeof *a);
        memcpy(&a->sa, ai->ai_addr, ai->ai_addrlen);
        a->len = ai->ai_addrlen;
        a->scheme = p->scheme;
        set_port(&a->sa, p->port);
        memcpy(a->host, p->host, p->host_len);
        a->host[p->host_len] = '\0';
        for (size_t i = 0; i < n && !dup; i++)
            dup = out[i].len == a->len && memcmp(&out[i].sa, &a->sa, a->len) == 0;
        if (!dup)
            n++;
    }
    /* Numeric text of the other family ("127.0.0.1" with CSOCK_ADDR_IPV6). */
    return n > 0 ? (int)n : CSOCK_ENONAME;
}

/* An empty host when binding: every interface of the family asked for. */
static int fill_any(const addr_parts *p, int flags, csock_addr *out)
{
    memset(out, 0, sizeof *out);
    out->scheme = p->scheme;
    if (wanted_family(flags) == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&out->sa;
        s6->sin6_family = AF_INET6;
        s6->sin6_addr = in6addr_any;
        out->len = sizeof *s6;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&out->sa;
        s4->sin_family = AF_INET;
        s4->sin_addr.s_addr = htonl(INADDR_ANY);
        out->len = sizeof *s4;
    }
    set_port(&out->sa, p->port);
    return 1;
}

static int resolve_ip(const addr_parts *p, int flags, csock_addr *out, size_t max)
{
    char host[sizeof out->host];
    struct addrinfo hints, *res = NULL;
    int family = wanted_family(flags), rc, n;

    if (p->host_len == 0)
        return (flags & CSOCK_ADDR_PASSIVE) ? fill_any(p, flags, out) : CSOCK_EBADADDR;
    if (p->host_len >= sizeof host)
        return CSOCK_EBADADDR; /* longer than any DNS name (253) anyway */
    memcpy(host, p->host, p->host_len);
    host[p->host_len] = '\0';

    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = (p->scheme == CSOCK_UDP) ? SOCK_DGRAM : SOCK_STREAM;
    /* Fast path, no DNS: is it an address literal? Asked without a family so
     * that "127.0.0.1" with CSOCK_ADDR_IPV6 is "wrong family", not "a name". */
    hints.ai_flags = AI_NUMERICHOST;
    hints.ai_family = p->bracketed ? AF_INET6 : AF_UNSPEC;
    rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc == 0) {
        n = collect(res, p, family, out, max);
        freeaddrinfo(res);
        return n;
    }
    if (p->bracketed && rc != EAI_MEMORY && rc != EAI_SYSTEM)
        return CSOCK_EBADADDR; /* brackets hold an IPv6 literal, nothing else */
    if (rc != EAI_NONAME)
        return map_gai_error(rc);
    if (flags & CSOCK_ADDR_NUMERIC)
        return CSOCK_ENONAME;

    /* A real name. No AI_ADDRCONFIG: it hides "localhost" on hosts that
     * have only loopback interfaces. */
    hints.ai_flags = (flags & CSOCK_ADDR_PASSIVE) ? AI_PASSIVE : 0;
    hints.ai_family = family;
    rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0)
        return map_gai_error(rc);
    n = collect(res, p, family, out, max);
    freeaddrinfo(res);
    return n;
}

int csock_addr_resolve(const char *text, int flags, csock_addr *out, size_t max)
{
    addr_parts p;
    int rc;

    if (text == NULL || out == NULL || max == 0)
        return -EINVAL;
    rc = split(text, &p);
    if (rc < 0)
        return rc;
    if (is_unix(p.scheme)) {
        memset(out, 0, sizeof *out);
        out->scheme = p.scheme;
        rc = fill_unix(&p, out);
        if (rc > 0)
            memcpy(out->host, p.host, p.host_len + 1); /* fits: checked above */
        return rc;
    }
    return resolve_ip(&p, flags, out, max);
}

int csock_addr_parse(const char *text, int flags, csock_addr *out)
{
    int n = csock_addr_resolve(text, flags, out, 1);
    return n < 0 ? n : 0;
}

/* "[v6%scope]" or "v4" into buf. Link-local scopes read better as interface
 * names ("fe80::1%eth0"); any other scope, or an unknown index, as a number. */
static int format_ip_host(const struct sockaddr_storage *ss, char *buf, size_t size)
{
    char ip[INET6_ADDRSTRLEN], scope[IF_NAMESIZE + 1] = "";
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip);
        return snprintf(buf, size, "%s", ip);
    }
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
    inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
    if (s6->sin6_scope_id != 0) {
        char name[IF_NAMESIZE];
        if (IN6_IS_ADDR_LINKLOCAL(&s6->sin6_addr) && if_indextoname(s6->sin6_scope_id, name))
            snprintf(scope, sizeof scope, "%%%s", name);
        else
            snprintf(scope, sizeof scope, "%%%u", (unsigned)s6->sin6_scope_id);
    }
    return snprintf(buf, size, "[%s%s]", ip, scope);
}

int csock_addr_format(const csock_addr *a, char *buf, size_t size)
{
    char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 4];
    const char *scheme = scheme_name(a->scheme);
    int n;

    if (a->sa.ss_family == AF_UNIX) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)&a->sa;
        size_t off = offsetof(struct sockaddr_un, sun_path);
        /* The path may fill sun_path with no NUL: never read past len. */
        size_t plen = a->len > off ? a->len - off : 0;
        if (plen > sizeof un->sun_path)
            plen = sizeof un->sun_path;
        if (!is_unix(a->scheme))
            scheme = "unix";
        if (plen > 0 && un->sun_path[0] == '\0') /* abstract: bytes after the NUL */
            n = snprintf(buf, size, "%s:@%.*s", scheme, (int)(plen - 1), un->sun_path + 1);
        else /* a path, or "unix:" for an unnamed socket (an unbound client) */
            n = snprintf(buf, size, "%s:%.*s", scheme, (int)strnlen(un->sun_path, plen),
                         un->sun_path);
    } else if (a->sa.ss_family == AF_INET || a->sa.ss_family == AF_INET6) {
        if (scheme == NULL || is_unix(a->scheme))
            scheme = "tcp";
        format_ip_host(&a->sa, host, sizeof host);
        n = snprintf(buf, size, "%s://%s:%d", scheme, host, csock_addr_port(a));
    } else {
        return -EAFNOSUPPORT;
    }
    if (n < 0)
        return -EINVAL;
    if ((size_t)n >= size) {
        if (size > 0)
            buf[0] = '\0'; /* no truncated address that looks valid */
        return -ENOSPC;
    }
    return n;
}

int csock_addr_port(const csock_addr *a)
{
    if (a->sa.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->sa)->sin_port);
    if (a->sa.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&a->sa)->sin6_port);
    return 0;
}

/* A no-op for Unix addresses. The port is taken modulo 65536. */
void csock_addr_set_port(csock_addr *a, int port)
{
    set_port(&a->sa, port);
}

int csock_addr_is_stream(const csock_addr *a)
{
    return a->scheme == CSOCK_TCP || a->scheme == CSOCK_UNIX || a->scheme == CSOCK_TLS;
}
