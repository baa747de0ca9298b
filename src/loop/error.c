/* Error codes: names and descriptions for library codes and -errno values,
 * and the version string.
 *
 * Library codes come from the one CSOCK_ERRNO_MAP table in csock/error.h, so a new
 * code needs no edit here. errno values use glibc's strerrordesc_np() and
 * strerrorname_np() (2.32+): unlike strerror() they return static strings
 * that do not depend on the locale, and they are thread-safe.
 */
#include <string.h>

#include "csock/error.h"

#define CSOCK__STR(x) #x
#define CSOCK__XSTR(x) CSOCK__STR(x)

#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
#define CSOCK__HAVE_STRERRORNAME_NP 1
#endif

const char *csock_strerror(int err)
{
    const char *s = NULL;
    switch (err) {
#define CSOCK__ERR_MSG(name, value, msg) \
    case CSOCK_##name: return msg;
        CSOCK_ERRNO_MAP(CSOCK__ERR_MSG)
#undef CSOCK__ERR_MSG
    case 0:
        return "success"; /* not an error, but callers print statuses too */
    }
    /* Only negative values are errors: a positive one is a caller's bug
     * (an errno passed without its minus) and must not pass for valid. */
#ifdef CSOCK__HAVE_STRERRORNAME_NP
    if (err < 0 && err > -4000)
        s = strerrordesc_np(-err);
#endif
    return s ? s : "unknown error";
}

const char *csock_err_name(int err)
{
    const char *s = NULL;
    switch (err) {
#define CSOCK__ERR_NAME(name, value, msg) \
    case CSOCK_##name: return #name;
        CSOCK_ERRNO_MAP(CSOCK__ERR_NAME)
#undef CSOCK__ERR_NAME
    case 0:
        return "OK";
    }
#ifdef CSOCK__HAVE_STRERRORNAME_NP
    if (err < 0 && err > -4000)
        s = strerrorname_np(-err);
#endif
    return s ? s : "UNKNOWN";
}

const char *csock_version(void)
{
    return CSOCK__XSTR(CSOCK_VERSION_MAJOR) "." CSOCK__XSTR(CSOCK_VERSION_MINOR) "."
        CSOCK__XSTR(CSOCK_VERSION_PATCH);
}
