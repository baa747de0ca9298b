/* fd set-up shared by every socket csock makes. */
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "net/net_int.h"

int csock__socket(int family, int type)
{
    int fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    return fd < 0 ? -errno : fd;
}

int csock__set_nonblock(int fd, int on)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0) return -errno;
    int nfl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
    if (nfl != fl && fcntl(fd, F_SETFL, nfl) < 0) return -errno;
    return 0;
}

int csock__set_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFD);
    if (fl < 0) return -errno;
    if (!(fl & FD_CLOEXEC) && fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0) return -errno;
    return 0;
}

int csock__sockaddr_to_addr(const struct sockaddr *sa, socklen_t len, csock_scheme scheme,
                            csock_addr *out)
{
    if (len > sizeof out->sa) return -EINVAL;
    memset(out, 0, sizeof *out);
    out->scheme = scheme;
    out->len = len;
    memcpy(&out->sa, sa, len);
    return 0;
}
