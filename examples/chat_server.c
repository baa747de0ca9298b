/* chat_server [ADDR]: a line chat. Every line a member sends goes to every
 * other member as "ID: line". Prints "listening ADDR" (ADDR defaults to
 * tcp://127.0.0.1:0, so the kernel picks the port) and serves until SIGINT
 * or SIGTERM; then it stops accepting, ends every connection (what is
 * queued is still sent) and exits 0 once they are closed.
 *
 * The members are a list the program keeps itself: a stream's close
 * callback (set with csock_stream_on_close) unlinks and frees its member,
 * however the stream closes (EOF, reset, our shutdown), so the list never
 * holds a closed stream. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csock/csock.h"

#define MAX_LINE 4096
/* A member that does not read while others talk would make us queue
 * without bound; past this many bytes waiting for it, it is dropped. */
#define MAX_BACKLOG (1u << 20)

typedef struct chat chat;

typedef struct member {
    chat *chat;
    csock_stream *s;
    unsigned id;
    struct member *prev, *next;
} member;

struct chat {
    csock_listener *listener;
    csock_signal *sigint, *sigterm;
    member *members;
    unsigned next_id;
};

static const csock_framing lines = {.kind = CSOCK_FRAME_LINE, .max = MAX_LINE};

static void broadcast(chat *c, const member *from, const char *msg, size_t len)
{
    char out[MAX_LINE + 32];
    int head = snprintf(out, sizeof out, "%u: ", from->id);
    memcpy(out + head, msg, len);
    for (member *m = c->members; m; m = m->next) {
        if (m == from) continue;
        if (csock_stream_write_queue_size(m->s) > MAX_BACKLOG ||
            csock_stream_write_msg(m->s, &lines, out, (size_t)head + len) < 0)
            csock_stream_close(m->s, NULL); /* its close callback unlinks it, later */
    }
}

static void on_line(csock_stream *s, int status, const char *msg, size_t len)
{
    member *m = csock_stream_data(s);
    if (status == 0) {
        broadcast(m->chat, m, msg, len);
        return;
    }
    /* EOF, a line over MAX_LINE, or an error: this member is done. */
    csock_stream_end(s, NULL);
}

/* Runs once per stream, however it closed: the one place a member goes. */
static void on_member_closed(csock_stream *s)
{
    member *m = csock_stream_data(s);
    if (m->prev) m->prev->next = m->next;
    else m->chat->members = m->next;
    if (m->next) m->next->prev = m->prev;
    free(m);
}

static void on_accept(csock_listener *l, csock_stream *s, int status)
{
    chat *c = csock_listener_data(l);
    if (status < 0) {
        fprintf(stderr, "chat_server: accept: %s\n", csock_strerror(status));
        return;
    }
    member *m = calloc(1, sizeof *m);
    if (!m) {
        csock_stream_close(s, NULL);
        return;
    }
    *m = (member){.chat = c, .s = s, .id = ++c->next_id, .next = c->members};
    if (c->members) c->members->prev = m;
    c->members = m;
    csock_stream_set_data(s, m);
    csock_stream_on_close(s, on_member_closed);
    if (csock_stream_read_framed(s, &lines, on_line) < 0) csock_stream_close(s, NULL);
}

static void on_signal(csock_signal *sig, int signum)
{
    chat *c = csock_signal_data(sig);
    (void)signum;
    /* The watchers stay open (unreferenced) during the shutdown, so a second
     * signal comes here instead of killing us: it makes the shutdown
     * immediate. The members' close callbacks run later, so the list stays
     * walkable while we close or end them. */
    if (!c->listener) {
        for (member *m = c->members; m; m = m->next) csock_stream_close(m->s, NULL);
        return;
    }
    csock_listener_close(c->listener, NULL);
    c->listener = NULL;
    /* End, not close: lines already queued for a member still reach it. */
    for (member *m = c->members; m; m = m->next) csock_stream_end(m->s, NULL);
}

int main(int argc, char **argv)
{
    const char *text = argc > 1 ? argv[1] : "tcp://127.0.0.1:0";
    chat c = {0};
    csock_addr addr;
    csock_loop *loop = NULL;
    int rc = csock_addr_parse(text, 0, &addr);
    if (rc == 0) rc = csock_loop_new(NULL, &loop);
    if (rc == 0) rc = csock_signal_new(loop, &c.sigint);
    if (rc == 0) rc = csock_signal_new(loop, &c.sigterm);
    if (rc == 0) rc = csock_listen(loop, &addr, NULL, on_accept, &c, &c.listener);
    if (rc == 0) rc = csock_listener_addr(c.listener, &addr);
    if (rc < 0) {
        fprintf(stderr, "chat_server: %s: %s\n", text, csock_strerror(rc));
        return 1;
    }
    csock_signal_set_data(c.sigint, &c);
    csock_signal_set_data(c.sigterm, &c);
    csock_signal_start(c.sigint, on_signal, SIGINT);
    csock_signal_start(c.sigterm, on_signal, SIGTERM);
    csock_signal_unref(c.sigint); /* the run ends when the members and listener are gone */
    csock_signal_unref(c.sigterm);
    char name[CSOCK_ADDR_STRLEN];
    csock_addr_format(&addr, name, sizeof name);
    printf("listening %s\n", name);
    fflush(stdout); /* the readiness signal for whoever started us */
    rc = csock_loop_run(loop, CSOCK_RUN_DEFAULT);
    if (rc < 0) fprintf(stderr, "chat_server: %s\n", csock_strerror(rc));
    /* Only the signal watchers are left: close them last, let the closes
     * finish, and the loop frees cleanly. */
    csock_signal_close(c.sigint, NULL);
    csock_signal_close(c.sigterm, NULL);
    csock_loop_run(loop, CSOCK_RUN_DEFAULT);
    rc = csock_loop_free(loop) < 0 || rc < 0;
    return rc;
}
