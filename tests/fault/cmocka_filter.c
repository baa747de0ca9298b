/* Run one test case of a cmocka program (the fault build wraps
 * _cmocka_run_group_tests, which cmocka_run_group_tests() expands to), so
 * a sweep can fail the N-th allocation of one test at a time:
 *
 *   CSOCK_TEST_LIST=1     print the program's test names, one a line, and
 *                         run none
 *   CSOCK_TEST_ONLY=NAME  run only the test called NAME (group setup and
 *                         teardown still run)
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

int __wrap__cmocka_run_group_tests(const char *group_name, const struct CMUnitTest *const tests,
                                   const size_t num_tests, CMFixtureFunction group_setup,
                                   CMFixtureFunction group_teardown)
{
    const char *only = getenv("CSOCK_TEST_ONLY");
    if (getenv("CSOCK_TEST_LIST")) {
        for (size_t i = 0; i < num_tests; i++) printf("%s\n", tests[i].name);
        return 0;
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
