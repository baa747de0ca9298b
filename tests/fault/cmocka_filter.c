/* Run one test case of a cmocka program (the fault build wraps
 * _cmocka_run_group_tests, which cmocka_run_group_tests() expands to), so
 * a sweep can fail the N-th allocation of one test at a time:
 *
 *   CSOCK_TEST_LIST=1     print the program's test names, one a line, and
 *                         run none
 *   CSOCK_TEST_ONLY=NAME  run only the test called NAME (group setup and
 *                         teardown still run)
 *   CSOCK_TEST_SKIP=A,B   run all but the tests called A and B
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

int __real__cmocka_run_group_tests(const char *group_name, const struct CMUnitTest *const tests,
                                   const size_t num_tests, CMFixtureFunction group_setup,
                                   CMFixtureFunction group_teardown);
int __wrap__cmocka_run_group_tests(const char *group_name, const struct CMUnitTest *const tests,
                                   const size_t num_tests, CMFixtureFunction group_setup,
                                   CMFixtureFunction group_teardown);

/* name is one of the comma-separated names in list */
static int listed(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; (p = strstr(p, name)) != NULL; p += n)
        if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == '\0')) return 1;
    return 0;
}

int __wrap__cmocka_run_group_tests(const char *group_name, const struct CMUnitTest *const tests,
                                   const size_t num_tests, CMFixtureFunction group_setup,
                                   CMFixtureFunction group_teardown)
{
    const char *only = getenv("CSOCK_TEST_ONLY");
    if (getenv("CSOCK_TEST_LIST")) {
        for (size_t i = 0; i < num_tests; i++) printf("%s\n", tests[i].name);
        return 0;
    }
    const char *skip = getenv("CSOCK_TEST_SKIP");
    if (only == NULL && skip != NULL) {
        struct CMUnitTest *keep = calloc(num_tests ? num_tests : 1, sizeof *keep);
        size_t n = 0;
        if (keep == NULL) return 1;
        for (size_t i = 0; i < num_tests; i++)
            if (!listed(skip, tests[i].name)) keep[n++] = tests[i];
        int rc = __real__cmocka_run_group_tests(group_name, keep, n, group_setup, group_teardown);
        free(keep);
        return rc;
    }
    if (only == NULL)
        return __real__cmocka_run_group_tests(group_name, tests, num_tests, group_setup,
                                              group_teardown);
    for (size_t i = 0; i < num_tests; i++)
        if (strcmp(tests[i].name, only) == 0)
            return __real__cmocka_run_group_tests(group_name, &tests[i], 1, group_setup,
                                                  group_teardown);
    fprintf(stderr, "cmocka_filter: no test called %s\n", only);
    return 1;
}
