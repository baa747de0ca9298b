/* --allow / --deny: addresses and CIDR ranges, and the check of a peer. */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "cli/netcat.h"

static void cidr_push(nc_cidr_list *l, const nc_cidr *e)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 8;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
        if (!l->v) cli_die(CLI_ERR, "out of memory");
    }
    l->v[l->n++] = *e;
}

#define ACL_ENTRY_MAX 300 /* one entry as written: an address, a range or a host name */
#define ACL_NAME_ADDRS 16 /* a host name's addresses taken (a name with more is odd) */
#define ACL_LINE_MAX 1024 /* a line of an --allowfile / --denyfile */

/* Parse "10.0.0.0/8", "::1", "[fe80::]/10" or a host name (every address it
 * resolves to). Dies naming the option on anything else. */
static void cidr_parse(const char *opt, const char *text, nc_cidr_list *l)
{
    char buf[ACL_ENTRY_MAX];
    if (strlen(text) >= sizeof buf) cli_die(CLI_USAGE, "%s: entry too long", opt);
    strcpy(buf, text);
    char *slash = strchr(buf, '/');
    if (slash) *slash++ = '\0';
    char *ip = buf;
    size_t n = strlen(ip);
    if (n >= 2 && ip[0] == '[' && ip[n - 1] == ']') {
        ip[n - 1] = '\0';
        ip++;
    }
    nc_cidr e = {0};
    if (inet_pton(AF_INET, ip, e.ip) == 1) {
        e.family = AF_INET;
        e.bits = 32;
    } else if (inet_pton(AF_INET6, ip, e.ip) == 1) {
        e.family = AF_INET6;
        e.bits = 128;
    } else if (!slash && *ip) {
        /* A name: every address it has, exactly. */
        char t[ACL_ENTRY_MAX + 20];
        csock_addr a[ACL_NAME_ADDRS];
        snprintf(t, sizeof t, "tcp://%s:0", ip);
        int k = csock_addr_resolve(t, 0, a, ACL_NAME_ADDRS);
        if (k <= 0)
            cli_die(CLI_USAGE, "%s: '%s' is not an address, a CIDR range or a known host", opt,
                    text);
        for (int i = 0; i < k; i++) {
            nc_cidr h = {0};
            if (a[i].sa.ss_family == AF_INET) {
                h.family = AF_INET, h.bits = 32;
                memcpy(h.ip, &((struct sockaddr_in *)&a[i].sa)->sin_addr, 4);
            } else {
                h.family = AF_INET6, h.bits = 128;
                memcpy(h.ip, &((struct sockaddr_in6 *)&a[i].sa)->sin6_addr, 16);
            }
            cidr_push(l, &h);
        }
        return;
    } else {
        cli_die(CLI_USAGE, "%s: '%s' is not an address or a CIDR range", opt, text);
    }
    if (slash) {
        char *end;
        long bits = strtol(slash, &end, 10);
        if (!*slash || *end || !isdigit((unsigned char)*slash) || bits > e.bits)
            cli_die(CLI_USAGE, "%s: bad CIDR '%s': the prefix length must be 0-%d", opt, text,
                    e.bits);
        e.bits = (int)bits;
    }
    cidr_push(l, &e);
}

/* A comma- or space-separated list of entries. */
void cidr_parse_list(const char *opt, const char *text, nc_cidr_list *l)
{
    char *copy = strdup(text), *save = NULL;
    if (!copy) cli_die(CLI_ERR, "out of memory");
    l->set = 1;
    for (char *tok = strtok_r(copy, ", \t\r\n", &save); tok;
         tok = strtok_r(NULL, ", \t\r\n", &save))
        cidr_parse(opt, tok, l);
    free(copy);
}

/* --allowfile / --denyfile: entries one or more a line; '#' starts a comment. */
void cidr_parse_file(const char *opt, const char *path, nc_cidr_list *l)
{
    FILE *f = fopen(path, "r");
    if (!f) cli_die(CLI_USAGE, "%s: cannot open '%s': %s", opt, path, strerror(errno));
    char line[ACL_LINE_MAX];
    l->set = 1;
    while (fgets(line, sizeof line, f)) {
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        cidr_parse_list(opt, line, l);
    }
    fclose(f);
}

/* The bytes to match of an IP address; IPv4-mapped IPv6 counts as IPv4. */
static int addr_bytes(const csock_addr *a, unsigned char out[16])
{
    if (a->sa.ss_family == AF_INET) {
        memcpy(out, &((const struct sockaddr_in *)&a->sa)->sin_addr, 4);
        return AF_INET;
    }
    if (a->sa.ss_family != AF_INET6) return 0;
    const struct in6_addr *in6 = &((const struct sockaddr_in6 *)&a->sa)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(in6)) {
        memcpy(out, in6->s6_addr + 12, 4);
        return AF_INET;
    }
    memcpy(out, in6->s6_addr, 16);
    return AF_INET6;
}

static int cidr_match(const nc_cidr_list *l, int family, const unsigned char *ip)
{
    for (size_t i = 0; i < l->n; i++) {
        const nc_cidr *e = &l->v[i];
        if (e->family != family) continue;
        int full = e->bits / 8, rest = e->bits % 8;
        if (memcmp(e->ip, ip, (size_t)full)) continue;
        if (rest && ((e->ip[full] ^ ip[full]) & (0xff << (8 - rest)))) continue;
        return 1;
    }
    return 0;
}

int nc_acl_permits(const nc_opts *o, const csock_addr *a)
{
    unsigned char ip[16];
    int family = addr_bytes(a, ip);
    if (!family) return 1; /* Unix peers have no address to judge */
    if (o->deny.set && cidr_match(&o->deny, family, ip)) return 0;
    if (o->allow.set && !cidr_match(&o->allow, family, ip)) return 0;
    return 1;
}
