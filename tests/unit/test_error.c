/* csock_strerror(), csock_err_name(), csock_version(). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "csock/csock.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static void library_codes_from_the_table(void **state)
{
    (void)state;
#define CHECK_CODE(name, value, msg)                        \
    assert_string_equal(csock_strerror(CSOCK_##name), msg); \
    assert_string_equal(csock_err_name(CSOCK_##name), #name);
    CSOCK_ERRNO_MAP(CHECK_CODE)
#undef CHECK_CODE
    assert_string_equal(csock_err_name(CSOCK_EOF), "EOF");
    assert_string_equal(csock_strerror(CSOCK_ETOOBIG), "message exceeds the maximum size");
}

static void errno_values(void **state)
{
    (void)state;
    assert_string_equal(csock_err_name(-ECONNREFUSED), "ECONNREFUSED");
    assert_string_equal(csock_strerror(-ECONNREFUSED), "Connection refused");
    assert_string_equal(csock_err_name(-ENOSPC), "ENOSPC");
    assert_string_equal(csock_err_name(-EAGAIN), "EAGAIN");
    assert_string_equal(csock_err_name(-EPIPE), "EPIPE");
    assert_string_equal(csock_strerror(-ETIMEDOUT), "Connection timed out");
}

static void unknown_codes(void **state)
{
    (void)state;
    const int bad[] = {-3999, -4000, -4080, -4096, -5000, -100000, 1, 42, INT32_MIN, INT32_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_string_equal(csock_strerror(bad[i]), "unknown error");
        assert_string_equal(csock_err_name(bad[i]), "UNKNOWN");
    }
    /* 0 is success, not an unknown error. */
    assert_string_equal(csock_strerror(0), "success");
    assert_string_equal(csock_err_name(0), "OK");
}

static void every_errno_is_named(void **state)
{
    (void)state;
    for (int e = 1; e <= 133; e++) { /* glibc names every errno up to EHWPOISON */
        if (e == 41 || e == 58)
            continue; /* unassigned numbers on Linux */
        assert_non_null(csock_strerror(-e));
        assert_string_not_equal(csock_err_name(-e), "UNKNOWN");
    }
}

static void version_string(void **state)
{
    (void)state;
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", CSOCK_VERSION_MAJOR, CSOCK_VERSION_MINOR,
             CSOCK_VERSION_PATCH);
    assert_string_equal(csock_version(), want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(library_codes_from_the_table),
        cmocka_unit_test(errno_values),
        cmocka_unit_test(unknown_codes),
        cmocka_unit_test(every_errno_is_named),
        cmocka_unit_test(version_string),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
