/* Peers of the relay: their life from admission (--allow/--deny, -m) to
 * close, reading them, and the --chat announcements. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "cli/netcat.h"

static void peer_describe(nc_peer *p, const csock_addr *mapped)
{
    csock_addr plain, *a = mapped ? &plain : NULL;
    if (mapped) plain = *mapped, cli_addr_unmap(&plain);
    if (!a) {
        snprintf(p->name, sizeof p->name, "peer");
        snprintf(p->host, sizeof p->host, "peer");
        return;
    }
    csock_addr_format(a, p->name, sizeof p->name);
    const void *ip = NULL;
    if (a->sa.ss_family == AF_INET) ip = &((const struct sockaddr_in *)&a->sa)->sin_addr;
    if (a->sa.ss_family == AF_INET6) ip = &((const struct sockaddr_in6 *)&a->sa)->sin6_addr;
    if (!ip || !inet_ntop(a->sa.ss_family, ip, p->host, sizeof p->host))
        snprintf(p->host, sizeof p->host, "%s", p->name);
}

nc_peer *peer_new(nc_ctx *c, const csock_addr *a)
{
    nc_peer *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->c = c;
    p->id = c->next_id++;
    snprintf(p->tag, sizeof p->tag, "user%u", p->id);
    peer_describe(p, a);
    p->prev = c->tail;
    if (c->tail)
        c->tail->next = p;
    else
        c->head = p;
    c->tail = p;
    c->npeers++;
    c->served = 1;
    p->last_io = csock_loop_now(c->loop);
    return p;
}

void peer_unlink(nc_peer *p)
{
    nc_ctx *c = p->c;
    if (p->prev)
        p->prev->next = p->next;
    else
        c->head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        c->tail = p->prev;
    p->prev = p->next = NULL;
    c->npeers--;
}

/* Peers whose stream is still closing wait on c->ending (singly linked
 * through next/prev as a doubly linked list) so teardown can find them. */
void ending_add(nc_peer *p)
{
    nc_ctx *c = p->c;
    p->prev = NULL;
    p->next = c->ending;
    if (c->ending) c->ending->prev = p;
    c->ending = p;
}

void ending_remove(nc_peer *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        p->c->ending = p->next;
    if (p->next) p->next->prev = p->prev;
}

void peer_free(nc_peer *p)
{
    free(p->wline);
    free(p);
}

void on_peer_stream_closed(csock_stream *s)
{
    nc_peer *p = csock_stream_data(s);
    char counts[64];
    /* Now that nothing more goes out, the line can say how much did. */
    if (p->c->o->verbose)
        cli_warn("closed %s (%s)", p->name, cli_counts_text(s, counts, sizeof counts));
    nc_ctx *c = p->c;
    ending_remove(p);
    peer_free(p);
    check_done(c); /* it may have been the last one still sending */
}

/* Take the peer out of the session. `graceful`: what is queued for it is
 * still sent (streams end with csock_stream_end), else it is dropped. */
void peer_close(nc_peer *p, int graceful)
{
    nc_ctx *c = p->c;
    if (p->gone) return;
    p->gone = 1;
    peer_unlink(p);
    if (p->congested) {
        p->congested = 0;
        if (--c->peers_congested == 0) sync_sources(c);
    }
    if (c->o->verbose && !p->s && !p->ws) /* streams: when closed */
        cli_warn("closed %s", p->name);
    if (graceful) child_in_finish(p);
    child_forget_pipes(p);
    if (p->idle) csock_timer_close(p->idle, NULL);
    p->idle = NULL;
    if (p->announced) chat_announce_leave(c, p);
    if (p->s) {
        ending_add(p);
        if (graceful)
            csock_stream_end(p->s, on_peer_stream_closed);
        else
            csock_stream_close(p->s, on_peer_stream_closed);
    } else if (p->ws) { /* freed on its CLOSED event */
        ending_add(p);
        nc_ws_finish(p, graceful);
    } else {
        peer_free(p);
    }
    check_done(c);
}

/* A peer that failed: in single-peer modes the session fails with it. */
void peer_failed(nc_peer *p, int status)
{
    nc_ctx *c = p->c;
    if (p->gone) return; /* already leaving: its error says nothing new */
    char why[CLI_REASON_TEXT];
    const char *reason = p->s ? cli_tls_reason(p->s, status, why, sizeof why)
                                   : csock_strerror(status);
    if (status == -ETIMEDOUT && c->o->idle_ms) { /* the stream's -i clock (ncat says so too) */
        snprintf(why, sizeof why, "idle timeout expired (%llu ms, -i)",
                 (unsigned long long)c->o->idle_ms);
        reason = why;
    }
    if (!c->o->keep_open && !c->quitting) {
        cli_warn("%s: %s", p->name, reason);
        c->status = CLI_ERR;
    } else if (c->o->verbose) {
        cli_warn("%s: %s", p->name, reason);
    }
    peer_close(p, 0);
}

void peer_input(nc_peer *p, const char *buf, size_t len)
{
    nc_ctx *c = p->c;
    hexdump(c, 0, p, buf, len);
    c->progress.received += len;
    delay_after_read(c);
    p->last_io = csock_loop_now(c->loop);
    if (exec_mode(c)) {
        if (!p->child_in) return; /* the child stopped reading: drop */
        peer_write(p, p->child_in, buf, len); /* a datagram peer just loses that one */
        if (p->s && csock_stream_write_queue_size(p->child_in) > HIGH_WATER)
            csock_stream_read_stop(p->s);
    } else if (c->o->chat) {
        chat_input(p, buf, len);
    } else if (c->o->broker) {
        /* As ncat: --send-only ignores what peers send, --recv-only sends
         * nothing to them; either way the broker relays nothing. */
        if (!c->o->send_only && !c->o->recv_only) broadcast(c, p, buf, len);
    } else {
        out_write(c, buf, len);
    }
}

#define EOF_GRACE_MS 1000 /* the peer's EOF came first: how long stdin may stay silent */

/* 1 when stdin has bytes to read right now (a file always has: its end
 * comes without waiting on anyone). */
static int stdin_ready(void)
{
    struct pollfd pfd = {.fd = 0, .events = POLLIN};
    return poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLIN | POLLHUP));
}

static void on_eof_grace(csock_timer *t)
{
    nc_ctx *c = csock_timer_data(t);
    c->eof_grace = 0;
    close_finished_peers(c); /* stdin had nothing more to say */
}

/* The peer's EOF while connected ends only its half of the session, as in
 * ncat's connect mode: stdin is sent to its own end, which then closes the
 * peer (stdin_ended). Ending at once cut uploads short whenever the server
 * had nothing to say (`csock listen < /dev/null` half-closes at once).
 * Stdin that stays silent EOF_GRACE_MS after the peer's EOF (a terminal,
 * an idle pipe) still ends the session, so a server that talks and hangs
 * up is not waited on forever. A peer that closed for good answers the
 * next write with a reset, which the read callback reports. Returns 1 when
 * the peer stays. */
static int peer_half_open(nc_ctx *c, const nc_peer *p)
{
    if (c->o->listen || !p->s || !c->in || !c->in_reading || c->in_eof) return 0;
    if (stdin_ready()) return 1;
    if (csock_timer_start(c->quiet, on_eof_grace, EOF_GRACE_MS, 0) < 0) return 0;
    c->eof_grace = 1;
    return 1;
}

/* The peer finished sending (a stream's EOF). */
static void peer_eof(nc_peer *p)
{
    nc_ctx *c = p->c;
    p->eof = 1;
    if (exec_mode(c) && p->child_out) {
        /* The child still answers: give it EOF and wait for its end. */
        child_in_finish(p);
        return;
    }
    if (peer_half_open(c, p)) return;
    peer_close(p, 1);
}

size_t on_peer_read(csock_stream *s, int status, const char *buf, size_t len)
{
    nc_peer *p = csock_stream_data(s);
    if (len) peer_input(p, buf, len);
    if (status == CSOCK_EOF)
        peer_eof(p);
    else if (status < 0) /* a reset, or -ETIMEDOUT from -i */
        peer_failed(p, status);
    return len;
}

static void on_peer_drain(csock_stream *s, int status)
{
    nc_peer *p = csock_stream_data(s);
    if (status < 0) return; /* the read callback reports it */
    if (p->child_out) csock_stream_read_start(p->child_out, on_child_out);
    if (p->congested) {
        p->congested = 0;
        if (--p->c->peers_congested == 0) sync_sources(p->c);
    }
}

/* Refuse a newcomer by --allow/--deny or -m; logs the reason with -v. */
int admit(nc_ctx *c, const csock_addr *a, const char *name)
{
    if (a && !nc_acl_permits(c->o, a)) {
        if (c->o->verbose) cli_warn("denied %s (--allow/--deny)", name);
        return 0;
    }
    if (c->o->max_conns && c->npeers >= c->o->max_conns) {
        if (c->o->verbose) cli_warn("refused %s: %u connections already (-m)", name, c->npeers);
        return 0;
    }
    return 1;
}

/* Wire a new peer to its child or start it reading; chat says hello. */
int peer_start(nc_peer *p)
{
    nc_ctx *c = p->c;
    if (c->o->verbose)
        cli_warn("%s %s", c->o->listen ? "connection from" : "connected to", p->name);
    int rc = exec_mode(c) ? child_start(p) : 0;
    if (rc == 0 && c->o->chat) rc = chat_announce_join(c, p);
    if (rc < 0) {
        if (!c->o->keep_open) c->status = CLI_ERR; /* single peer: the session failed */
        peer_close(p, 0);
        return -1;
    }
    if (!c->o->keep_open) nc_stdin_start(c); /* single peer: stdin flows from now on */
    return 0;
}

void peer_idle_timeout(const nc_ctx *c, csock_stream *s)
{
    /* In a chat room the others' lines and the announcements would keep a
     * silent member's idle clock running forever: there only what the
     * member sends counts as activity. */
    if (c->o->idle_ms && c->o->chat)
        csock_stream_set_recv_timeout(s, c->o->idle_ms);
    else if (c->o->idle_ms)
        csock_stream_set_idle_timeout(s, c->o->idle_ms);
}

void nc_peer_add_stream(nc_ctx *c, csock_stream *s, int accepted)
{
    csock_addr a;
    int has = csock_stream_peer(s, &a) == 0;
    char name[CLI_ADDR_TEXT] = "peer";
    if (has) cli_addr_unmap(&a); /* a stream's address only names it */
    if (has) csock_addr_format(&a, name, sizeof name);
    if (accepted && !admit(c, has ? &a : NULL, name)) {
        csock_stream_close(s, NULL);
        return;
    }
    nc_peer *p = peer_new(c, has ? &a : NULL);
    if (!p) {
        csock_stream_close(s, NULL);
        if (!accepted) { /* connect: that was the one peer */
            cli_warn("%s: %s", name, csock_strerror(-ENOMEM));
            return nc_finish(c, CLI_ERR);
        }
        if (c->o->verbose) cli_warn("refused %s: %s", name, csock_strerror(-ENOMEM));
        return; /* the listener goes on, as after a failed accept */
    }
    p->s = s;
    csock_stream_set_data(s, p);
    csock_stream_on_drain(s, on_peer_drain);
    /* The relay's own flow control (sync_sources) throttles a peer's
     * sources. The stream's would also stop reading the peer while what we
     * send it waits: with a peer that does the same (an echo server) and a
     * slow stdout, each waits for the other to read, forever. */
    csock_stream_set_watermarks(s, 0, 0);
    peer_idle_timeout(c, s);
    if (peer_start(p) < 0) return;
    if (exec_mode(c) || peers_may_read(c)) csock_stream_read_start(s, on_peer_read);
}
