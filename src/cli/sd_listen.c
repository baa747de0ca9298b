/* Listening sockets handed to csock rather than bound by it: fd:N and
 * systemd's socket activation (sd_listen_fds(3)'s protocol: LISTEN_PID,
 * LISTEN_FDS, LISTEN_FDNAMES; the fds start at 3), without libsystemd. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

#define SD_LISTEN_FDS_START 3

/* How many fds systemd passed to this very process (LISTEN_PID is ours),
 * else 0: variables meant for a parent are not ours. */
static int listen_fds(void)
{
    const char *pid = getenv("LISTEN_PID"), *n = getenv("LISTEN_FDS");
    if (!pid || !n) return 0;
    char *end;
    long p = strtol(pid, &end, 10);
    if (*end || p != (long)getpid()) return 0;
    long k = strtol(n, &end, 10);
    return *end || k < 0 || k > 4096 ? 0 : (int)k;
}

/* The idx-th name of LISTEN_FDNAMES (colon-separated) equals name? */
static int name_is(const char *names, int idx, const char *name)
{
    const char *p = names;
    for (int i = 0; i < idx; i++) {
        p = strchr(p, ':');
        if (!p) return 0;
        p++;
    }
    size_t len = strcspn(p, ":");
    return len == strlen(name) && !strncmp(p, name, len);
}

static int systemd_fds(const char *text, const char *name, int *fds, int max)
{
    int n = listen_fds();
    if (!n)
        cli_die(CLI_USAGE, "bad address '%s': no sockets from systemd (LISTEN_FDS and "
                "LISTEN_PID for this process)", text);
    /* Without LISTEN_FDNAMES every socket is named "unknown", as systemd says. */
    const char *names = getenv("LISTEN_FDNAMES");
    int k = 0;
    for (int i = 0; i < n && k < max; i++)
        if (names ? name_is(names, i, name) : !strcmp(name, "unknown")) fds[k++] = SD_LISTEN_FDS_START + i;
    if (!k) cli_die(CLI_USAGE, "bad address '%s': systemd passed no socket named '%s'", text, name);
    return k;
}

int cli_inherited_fds(const char *text, int *fds, int max, int *tls)
{
    const char *t = text;
    *tls = !strncmp(t, "tls+", 4);
    if (*tls) t += 4;
    if (!strncmp(t, "fd:", 3)) {
        char *end;
        long fd = strtol(t + 3, &end, 10);
        if (!t[3] || *end || fd < 0 || fd > 1 << 20)
            cli_die(CLI_USAGE, "bad address '%s': expected fd:N, N a descriptor number", text);
        fds[0] = (int)fd;
        return 1;
    }
    if (!strncmp(t, "systemd:", 8)) {
        const char *name = t + 8;
        if (!*name || strchr(name, ':') || strlen(name) > 255)
            cli_die(CLI_USAGE, "bad address '%s': expected systemd:NAME (FileDescriptorName=)", text);
        return systemd_fds(text, name, fds, max);
    }
    if (*tls) cli_die(CLI_USAGE, "bad address '%s': tls+ goes before fd:N or systemd:NAME", text);
    return 0;
}

int cli_inherited_named(const char *name)
{
    int n = listen_fds(), k = 0;
    const char *names = getenv("LISTEN_FDNAMES");
    for (int i = 0; i < n && names; i++) k += name_is(names, i, name);
    return k;
}

void cli_inherited_done(void)
{
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
}
