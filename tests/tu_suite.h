/* The main() of a Check test program: run one suite, exit status from its
 * failures. Header-only, so programs without Check (test_mpi) need not
 * link it. */
#ifndef BP_TU_SUITE_H
#define BP_TU_SUITE_H

#include <check.h>
#include <stdlib.h>

static inline int tu_run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

#endif
