/* --chat: ncat's announcements as members come and go, and the /nick
 * command that gives a member a name in place of its <userN> tag. Every
 * other byte is ncat's. */
#include <stdlib.h>
#include <string.h>

#include "cli/netcat.h"

/* The join announcement: its first line and "nobody.\n" fit in
 * CHAT_HEAD_MAX; each peer listed adds ", HOST as <TAG>", which fits in
 * CHAT_ENTRY_MAX (a host of up to CLI_ADDR_TEXT bytes, a tag, 8 more). */
#define CHAT_HEAD_MAX 512
#define CHAT_ENTRY_MAX (CLI_ADDR_TEXT + CHAT_TAG_MAX + 16)

static void send_all(nc_ctx *c, const char *msg, size_t n)
{
    for (nc_peer *q = c->head; q; q = q->next)
        peer_send(q, msg, n);
}

/* --chat: ncat's announcements, byte for byte. 0, or -ENOMEM when the
 * message could not be built (the newcomer is then turned away, unseen). */
int chat_announce_join(nc_ctx *c, nc_peer *p)
{
    char line[CHAT_ENTRY_MAX];
    size_t cap = CHAT_HEAD_MAX + (size_t)c->npeers * CHAT_ENTRY_MAX, n;
    char *msg = malloc(cap);
    if (!msg) {
        if (c->o->verbose) cli_warn("refused %s: %s", p->name, csock_strerror(-ENOMEM));
        return -ENOMEM;
    }
    n = (size_t)snprintf(msg, cap,
                         "<announce> %s is connected as <%s>.\n"
                         "<announce> already connected: ",
                         p->host, p->tag);
    int count = 0;
    for (nc_peer *q = c->head; q; q = q->next) {
        if (q == p) continue;
        int k = snprintf(line, sizeof line, "%s%s as <%s>", count++ ? ", " : "", q->host, q->tag);
        memcpy(msg + n, line, (size_t)k);
        n += (size_t)k;
    }
    n += (size_t)sprintf(msg + n, "%s.\n", count ? "" : "nobody");
    send_all(c, msg, n);
    free(msg);
    p->announced = 1;
    return 0;
}

void chat_announce_leave(nc_ctx *c, const nc_peer *gone)
{
    char msg[CHAT_TAG_MAX + 48];
    int n = snprintf(msg, sizeof msg, "<announce> <%s> is disconnected.\n", gone->tag);
    send_all(c, msg, (size_t)n);
}

static int blank(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

/* A line "/nick ..." (whole: it ends with '\n'), the command alone or
 * followed by blanks. */
static int is_nick(const char *s, size_t len)
{
    return len > 5 && s[len - 1] == '\n' && !memcmp(s, "/nick", 5) && blank(s[5]);
}

static int nick_valid(const char *s, size_t n)
{
    if (n < 1 || n > CHAT_NICK_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!(ch >= 'a' && ch <= 'z') && !(ch >= 'A' && ch <= 'Z') && !(ch >= '0' && ch <= '9') &&
            ch != '_' && ch != '-')
            return 0;
    }
    return 1;
}

/* Taken: another member's tag, "announce", or a <userN> tag that another
 * member might still get (no one may pose as someone else). */
static int nick_taken(const nc_ctx *c, const nc_peer *p, const char *name)
{
    if (!strcmp(name, "announce")) return 1;
    if (!strncmp(name, "user", 4) && name[4] && strspn(name + 4, "0123456789") == strlen(name + 4))
        return strcmp(name, p->tag) != 0;
    for (const nc_peer *q = c->head; q; q = q->next)
        if (q != p && !strcmp(q->tag, name)) return 1;
    return 0;
}

/* "/nick NAME": the room is told, and NAME tags the member from now on. A
 * bad or taken name is explained to the member alone. */
static void nick(nc_peer *p, const char *line, size_t len)
{
    nc_ctx *c = p->c;
    char msg[2 * CHAT_TAG_MAX + 128], name[CHAT_NICK_MAX + 1];
    const char *s = line + 5, *end = line + len;
    while (s < end && blank(*s)) s++;
    const char *rest = s;
    while (rest < end && !blank(*rest)) rest++;
    size_t n = (size_t)(rest - s);
    while (rest < end && blank(*rest)) rest++;
    int k;
    if (!nick_valid(s, n) || rest != end) {
        k = snprintf(msg, sizeof msg, "<announce> /nick NAME: 1-%d characters of A-Z a-z 0-9 _ "
                     "and -.\n", CHAT_NICK_MAX);
        return peer_send(p, msg, (size_t)k);
    }
    memcpy(name, s, n);
    name[n] = '\0';
    if (nick_taken(c, p, name)) {
        k = snprintf(msg, sizeof msg, "<announce> /nick: <%s> is taken.\n", name);
        return peer_send(p, msg, (size_t)k);
    }
    k = snprintf(msg, sizeof msg, "<announce> <%s> is now known as <%s>.\n", p->tag, name);
    memcpy(p->tag, name, n + 1);
    send_all(c, msg, (size_t)k);
}

/* What a member sent: commands out of it, the rest to the room as ncat
 * relays it (a chunk at a time, tagged). A command is a whole line at the
 * start of a line: a line cut across reads goes to the room as it is. */
void chat_input(nc_peer *p, const char *buf, size_t len)
{
    size_t start = 0, off = 0;
    while (off < len && !p->gone) {
        const char *nl = memchr(buf + off, '\n', len - off);
        size_t end = nl ? (size_t)(nl - buf) + 1 : len;
        if (!p->midline && is_nick(buf + off, end - off)) {
            if (off > start) broadcast(p->c, p, buf + start, off - start);
            nick(p, buf + off, end - off);
            start = end;
        }
        p->midline = buf[end - 1] != '\n';
        off = end;
    }
    if (start < len && !p->gone) broadcast(p->c, p, buf + start, len - start);
}
