/* Datagram peers: over one UDP or Unix datagram socket, each sender
 * address is a peer (listen), or the connected address is (connect). */
#include <stdlib.h>
#include <string.h>

#include "cli/netcat.h"

static void on_dgram_idle(csock_timer *t)
{
    nc_peer *p = csock_timer_data(t);
    uint64_t now = csock_loop_now(p->c->loop), ms = p->c->o->idle_ms;
    int rc = -ETIMEDOUT;
    if (now - p->last_io < ms) {
        rc = csock_timer_start(t, on_dgram_idle, ms - (now - p->last_io), 0);
        if (rc == 0) return;
    }
    peer_failed(p, rc); /* idle, or its -i could no longer be kept */
}

/* A peer for a datagram address (NULL: the connected peer). *out is the
 * peer, or NULL when it could not be made (a negative errno: nothing was
 * set up) or was refused at its start (0: peer_start reported it). */
static int dgram_peer_new(nc_ctx *c, const csock_addr *from, nc_peer **out)
{
    csock_timer *idle = NULL;
    int rc = c->o->idle_ms ? csock_timer_new(c->loop, &idle) : 0;
    nc_peer *p = rc < 0 ? NULL : peer_new(c, from);
    *out = NULL;
    if (!p) {
        if (idle) csock_timer_close(idle, NULL);
        return rc < 0 ? rc : -ENOMEM;
    }
    if (from) {
        p->addr = *from;
        p->has_addr = 1;
    }
    if (idle) {
        p->idle = idle;
        csock_timer_set_data(idle, p);
        rc = csock_timer_start(idle, on_dgram_idle, c->o->idle_ms, 0);
        if (rc < 0) {
            peer_failed(p, rc);
            return 0;
        }
    }
    if (peer_start(p) == 0) *out = p;
    return 0;
}

static int same_addr(const csock_addr *a, const csock_addr *b)
{
    return a->len == b->len && !memcmp(&a->sa, &b->sa, a->len);
}

static nc_peer *dgram_peer_for(nc_ctx *c, const csock_addr *from)
{
    for (nc_peer *p = c->head; p; p = p->next)
        if (!from || !p->has_addr || same_addr(&p->addr, from)) return p;
    if (!c->o->listen) return NULL;
    if (c->served && !c->o->keep_open) return NULL; /* single peer: the first one only */
    char name[CLI_ADDR_TEXT] = "peer";
    if (from) cli_addr_name(from, name, sizeof name); /* `from` stays: replies go there */
    if (!from || !admit(c, from, name)) return NULL;
    nc_peer *p;
    int rc = dgram_peer_new(c, from, &p);
    if (rc < 0 && c->o->verbose) cli_warn("refused %s: %s", name, csock_strerror(rc));
    return p;
}

void on_dgram(csock_dgram *d, int status, const char *buf, size_t len,
                     const csock_addr *from)
{
    nc_ctx *c = csock_dgram_data(d);
    if (status < 0) {
        if (!c->o->listen) { /* connect: the peer's port is closed (ICMP) */
            cli_warn("%s: %s", c->head ? c->head->name : "peer", csock_strerror(status));
            return nc_finish(c, CLI_ERR);
        }
        if (c->o->verbose) cli_warn("receive: %s", csock_strerror(status));
        return;
    }
    nc_peer *p = dgram_peer_for(c, c->o->listen ? from : NULL);
    if (!p) return;
    peer_input(p, buf, len);
    if (c->in_eof && !c->o->keep_open && c->quiet) quiet_start(c);
}

int nc_dgram_attach(nc_ctx *c, csock_dgram *d, const csock_addr *peer)
{
    c->dg = d;
    csock_dgram_set_data(d, c);
    int rc = csock_dgram_recv_start(d, on_dgram);
    nc_peer *p = NULL;
    if (rc == 0 && peer) rc = dgram_peer_new(c, peer, &p);
    if (p) p->has_addr = 0; /* connected socket: send with no address */
    return rc;
}
