/* sd_notify(3)'s protocol without libsystemd: one datagram of "KEY=VALUE"
 * lines to the Unix socket $NOTIFY_SOCKET names (a path, or @name for the
 * abstract namespace), and the watchdog's keep-alive every half
 * $WATCHDOG_USEC. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli/cli.h"

int cli_sd_notify(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path) return 0;
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    size_t n = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || n >= sizeof sun.sun_path) return -EAFNOSUPPORT;
    memcpy(sun.sun_path, path, n);
    if (path[0] == '@') sun.sun_path[0] = '\0'; /* abstract: no NUL terminator counted */
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] == '/'));
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    /* Never wait on a manager that does not read: readiness is advisory. */
    ssize_t rc = sendto(fd, state, strlen(state), MSG_NOSIGNAL | MSG_DONTWAIT, (struct sockaddr *)&sun, len);
    int err = errno;
    close(fd);
    return rc < 0 ? -err : 0;
}

void cli_sd_ready(void)
{
    char msg[64];
    snprintf(msg, sizeof msg, "READY=1\nMAINPID=%ld", (long)getpid());
    cli_sd_notify(msg);
}

/* Half of $WATCHDOG_USEC in ms when the watchdog is meant for us, else 0. */
static uint64_t watchdog_ms(void)
{
    const char *us = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
    if (!us || (pid && strtol(pid, NULL, 10) != (long)getpid())) return 0;
    char *end;
    unsigned long long v = strtoull(us, &end, 10);
    if (*end || v == 0) return 0;
    uint64_t ms = v / 2000;
    return ms ? ms : 1;
}

static void on_watchdog(csock_timer *t) { cli_sd_notify("WATCHDOG=1"); }

void cli_sd_loop_start(cli_sd *sd, csock_loop *loop, unsigned index)
{
    uint64_t every = index == 0 ? watchdog_ms() : 0;
    if (!every) return;
    /* Without the timer systemd would kill a healthy server: say so. */
    if (csock_timer_new(loop, &sd->watchdog) < 0) {
        cli_warn("watchdog: %s", csock_strerror(-ENOMEM));
        sd->watchdog = NULL;
        return;
    }
    csock_timer_unref(sd->watchdog); /* never holds the loop */
    csock_timer_start(sd->watchdog, on_watchdog, every, every);
    cli_sd_notify("WATCHDOG=1");
}

void cli_sd_loop_drain(cli_sd *sd, unsigned index)
{
    if (index == 0) cli_sd_notify("STOPPING=1");
}

void cli_sd_loop_stop(cli_sd *sd, unsigned index)
{
    if (index != 0 || !sd->watchdog) return;
    csock_timer_close(sd->watchdog, NULL);
    sd->watchdog = NULL;
}
