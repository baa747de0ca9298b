/* connect -z -u: the UDP probe, as ncat does it. A UDP port does not answer
 * a connect: one zero byte is sent to it and the kernel reports the ICMP
 * "port unreachable" that comes back as ECONNREFUSED on the socket. A port
 * that sent no such error within the wait is reported open (it may as well
 * be filtered: UDP cannot tell, ncat says "sent successfully" the same). */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli/netcat.h"

#define UDP_SCAN_PARALLEL 64 /* probes in flight, as the TCP scan */

typedef struct udp_probe {
    struct pollfd *pfd;
    size_t *index; /* pfd[i] probes ports[index[i]] */
    size_t n;
} udp_probe;

/* Send the zero byte to `port`: a connected socket, or -1 (then closed). */
static int probe_send(const csock_addr *base, int port)
{
    csock_addr a = *base;
    csock_addr_set_port(&a, port);
    int fd = socket(a.sa.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (connect(fd, (const struct sockaddr *)&a.sa, a.len) < 0 || send(fd, "", 1, 0) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* After poll: 1 a reply came (open), 0 the port is closed, -1 no news yet. */
static int probe_result(int fd)
{
    char byte;
    ssize_t n = recv(fd, &byte, 1, 0);
    if (n >= 0) return 1;
    return errno == EAGAIN || errno == EWOULDBLOCK ? -1 : 0;
}

/* Wait up to `ms` for the batch's answers; a probe still silent is open. */
static void batch_wait(udp_probe *b, uint64_t ms, const int *ports, unsigned char *open,
                       int verbose)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    size_t left = b->n;
    for (;;) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        int64_t spent = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
        if (!left || spent >= (int64_t)ms) break;
        if (poll(b->pfd, b->n, (int)((int64_t)ms - spent)) < 0 && errno != EINTR) break;
        for (size_t i = 0; i < b->n; i++) {
            if (b->pfd[i].fd < 0 || !b->pfd[i].revents) continue;
            int r = probe_result(b->pfd[i].fd);
            if (r < 0) continue;
            open[b->index[i]] = (unsigned char)r;
            if (!r && verbose) cli_warn("port %d closed: %s", ports[b->index[i]], strerror(ECONNREFUSED));
            close(b->pfd[i].fd);
            b->pfd[i].fd = -1;
            left--;
        }
    }
    for (size_t i = 0; i < b->n; i++)
        if (b->pfd[i].fd >= 0) close(b->pfd[i].fd); /* silent: open (or filtered) */
}

void nc_scan_udp(const nc_opts *o, const csock_addr *host, const int *ports, size_t n,
                 unsigned char *open, uint64_t wait_ms)
{
    struct pollfd pfd[UDP_SCAN_PARALLEL];
    size_t index[UDP_SCAN_PARALLEL];
    for (size_t next = 0; next < n;) {
        udp_probe b = {pfd, index, 0};
        for (; next < n && b.n < UDP_SCAN_PARALLEL; next++) {
            int fd = probe_send(host, ports[next]);
            open[next] = fd >= 0; /* silent until told otherwise */
            if (fd < 0) {
                if (o->verbose) cli_warn("port %d: %s", ports[next], strerror(errno));
                continue;
            }
            pfd[b.n] = (struct pollfd){.fd = fd, .events = POLLIN};
            index[b.n++] = next;
        }
        batch_wait(&b, wait_ms, ports, open, o->verbose);
    }
}
