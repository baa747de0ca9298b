/* udp:// listeners of csock proxy: a session per client address. A
 * client's first datagram picks a backend and opens a socket connected to
 * it (so the backend's replies come back on it and nowhere else); its
 * later datagrams go the same way, and each reply goes back to that
 * client from the listening socket. A session without a datagram either
 * way for --udp-idle ends (one sweep timer for all of them). */
#include <stdlib.h>
#include <string.h>

#include "cli/proxy.h"

#define UDP_BUCKETS 1024

typedef struct udp_front udp_front; /* struct udp_front in proxy.h */

typedef struct udp_session {
    struct udp_session *next; /* the bucket's chain */
    udp_front *front;
    csock_dgram *d;           /* connected to the backend */
    backend *be;
    uint64_t last_io;
    uint64_t up, down;        /* datagrams' bytes each way */
    csock_addr client;
} udp_session;

struct udp_front {
    proxy *px;
    csock_dgram *d;
    csock_timer *sweep;
    udp_session *buckets[UDP_BUCKETS];
};

static int same_client(const csock_addr *a, const csock_addr *b)
{
    return a->len == b->len && !memcmp(&a->sa, &b->sa, a->len);
}

static uint32_t bucket_of(const csock_addr *a)
{
    /* The whole sockaddr, port included: each client socket is a session. */
    const unsigned char *p = (const unsigned char *)&a->sa;
    uint32_t h = 2166136261u;
    for (socklen_t i = 0; i < a->len; i++) h = (h ^ p[i]) * 16777619u;
    return h % UDP_BUCKETS;
}

static void session_end(udp_session *u, const char *why)
{
    proxy *px = u->front->px;
    if (px->verbose) {
        char peer[CLI_ADDR_TEXT];
        cli_addr_name(&u->client, peer, sizeof peer);
        cli_warn("udp session %s ended (%s): %llu bytes up, %llu down", peer, why,
                 (unsigned long long)u->up, (unsigned long long)u->down);
    }
    csock_dgram_close(u->d, NULL);
    if (u->be) u->be->conns--;
    free(u);
}

static void on_reply(csock_dgram *d, int status, const char *buf, size_t len, const csock_addr *from)
{
    udp_session *u = csock_dgram_data(d);
    (void)from;
    if (status < 0) return; /* an ICMP error from the backend: the client times out */
    u->last_io = csock_loop_now(u->front->px->loop);
    if (csock_dgram_send(u->front->d, buf, len, &u->client) == 0) u->down += len;
}

static udp_session *session_new(udp_front *f, const csock_addr *client)
{
    proxy *px = f->px;
    backend *b = backend_pick(px, proxy_addr_hash(client), 0, NULL);
    if (!b || !b->naddrs) return NULL; /* none up, or a name not resolved yet */
    udp_session *u = calloc(1, sizeof *u);
    if (!u) return NULL;
    u->front = f;
    u->client = *client;
    if (csock_dgram_new(px->loop, NULL, &b->addrs[0], &u->d) < 0) {
        free(u);
        return NULL;
    }
    csock_dgram_set_data(u->d, u);
    csock_dgram_recv_start(u->d, on_reply);
    u->be = b;
    b->conns++;
    uint32_t k = bucket_of(client);
    u->next = f->buckets[k];
    f->buckets[k] = u;
    if (px->verbose) {
        char peer[CLI_ADDR_TEXT];
        cli_addr_name(client, peer, sizeof peer);
        cli_warn("udp session %s -> %s", peer, b->name);
    }
    return u;
}

static void on_client(csock_dgram *d, int status, const char *buf, size_t len, const csock_addr *from)
{
    udp_front *f = csock_dgram_data(d);
    if (status < 0 || !from) return;
    udp_session *u = f->buckets[bucket_of(from)];
    while (u && !same_client(&u->client, from)) u = u->next;
    if (!u && !(u = session_new(f, from))) return; /* dropped, as a lossy network would */
    u->last_io = csock_loop_now(f->px->loop);
    if (csock_dgram_send(u->d, buf, len, NULL) == 0) u->up += len;
}

static void on_sweep(csock_timer *t)
{
    udp_front *f = csock_timer_data(t);
    uint64_t now = csock_loop_now(f->px->loop);
    for (unsigned k = 0; k < UDP_BUCKETS; k++) {
        udp_session **pp = &f->buckets[k];
        while (*pp) {
            udp_session *u = *pp;
            if (now - u->last_io < f->px->udp_idle_ms) {
                pp = &u->next;
                continue;
            }
            *pp = u->next;
            session_end(u, "idle");
        }
    }
}

void proxy_udp_listen(proxy *px, const char *text)
{
    csock_addr a;
    cli_addr(text, CSOCK_ADDR_PASSIVE, &a);
    udp_front *f = calloc(1, sizeof *f);
    if (!f) cli_die(CLI_ERR, "listen %s: %s", text, csock_strerror(-ENOMEM));
    f->px = px;
    int rc = csock_dgram_new(px->loop, &a, NULL, &f->d);
    if (rc == 0) rc = csock_timer_new(px->loop, &f->sweep);
    if (rc < 0) cli_die(CLI_ERR, "listen %s: %s", text, csock_strerror(rc));
    csock_dgram_set_data(f->d, f);
    csock_dgram_recv_start(f->d, on_client);
    csock_timer_set_data(f->sweep, f);
    uint64_t every = px->udp_idle_ms / 4 < 1000 ? px->udp_idle_ms / 4 : 1000;
    csock_timer_start(f->sweep, on_sweep, every ? every : 1, every ? every : 1);
    csock_addr bound;
    csock_dgram_local(f->d, &bound);
    cli_print_listening(stdout, &bound);
    px->udp_fronts[px->nudp++] = f;
}

void proxy_udp_stop(proxy *px)
{
    for (unsigned i = 0; i < px->nudp; i++) {
        udp_front *f = px->udp_fronts[i];
        for (unsigned k = 0; k < UDP_BUCKETS; k++)
            while (f->buckets[k]) {
                udp_session *u = f->buckets[k];
                f->buckets[k] = u->next;
                session_end(u, "stop");
            }
        csock_dgram_close(f->d, NULL);
        csock_timer_close(f->sweep, NULL);
        free(f);
    }
    px->nudp = 0;
}
