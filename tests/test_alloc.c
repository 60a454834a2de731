/* bpi_alloc: zero-filled, 64-byte aligned, and buffers from
 * BPI_HUGE_MIN_BYTES on advised for transparent huge pages (their pages
 * carry the kernel's "hg" flag in /proc/self/smaps) from their first byte
 * to their last, smaller ones not. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "tu_suite.h"

/* 1 if the mapping holding address `at` has the "hg" (MADV_HUGEPAGE) flag,
 * 0 if not, -1 if that cannot be seen. Read on x86-64 only: CI runs the
 * other builds (aarch64) under qemu-user, whose /proc/self/smaps is an
 * emulation without the advice flags. Lines are read whole (a mapped
 * file's path can be PATH_MAX long), so no tail of one is taken for the
 * header of a mapping. */
static int advised_huge(const void *at)
{
#if !defined(__x86_64__)
    (void)at;
    return -1;
#endif
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return -1;
    char line[8192];
    int inside = 0, found = -1;
    unsigned long a = (unsigned long)at;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            inside = lo <= a && a < hi;
            continue;
        }
        if (inside && strncmp(line, "VmFlags:", 8) == 0) {
            found = strstr(line, " hg") != NULL;
            break;
        }
    }
    fclose(f);
    return found;
}

static int all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return 0;
    return 1;
}

START_TEST(test_large_buffers_are_advised)
{
    size_t bytes = 2 * BPI_HUGE_MIN_BYTES + 123;
    unsigned char *p = bpi_alloc(bytes);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq((uintptr_t)p % BPI_ALIGN, 0);
    ck_assert(all_zero(p, bytes));
    int hg = advised_huge(p + bytes / 2);
    if (hg < 0)
        fprintf(stderr, "test_alloc: the huge-page advice is not visible here: not checked\n");
    else
        ck_assert_msg(hg == 1, "a %zu-byte buffer is not advised for huge pages", bytes);
    bpi_free(p);
}
END_TEST

/* Just above the threshold: on a huge-page boundary, advised at both ends
 * (the first and last pages are not left to small pages). */
START_TEST(test_buffers_are_huge_to_their_ends)
{
    size_t bytes = BPI_HUGE_MIN_BYTES + 123;
    unsigned char *p = bpi_alloc(bytes);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq((uintptr_t)p % BPI_HUGE_PAGE_BYTES, 0);
    ck_assert(all_zero(p, bytes));
    int first = advised_huge(p), last = advised_huge(p + bytes - 1);
    if (first < 0 || last < 0)
        fprintf(stderr, "test_alloc: the huge-page advice is not visible here: not checked\n");
    else
        ck_assert_msg(first == 1 && last == 1,
                      "a %zu-byte buffer is advised at its first byte: %d, last: %d", bytes,
                      first, last);
    bpi_free(p);
}
END_TEST

START_TEST(test_small_buffers_are_not)
{
    size_t bytes = BPI_HUGE_MIN_BYTES / 64;
    unsigned char *p = bpi_alloc(bytes);
    ck_assert_ptr_nonnull(p);
    ck_assert(all_zero(p, bytes));
    int hg = advised_huge(p + bytes / 2);
    ck_assert_msg(hg != 1, "a %zu-byte buffer is advised for huge pages", bytes);
    bpi_free(p);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("alloc");
    TCase *tc = tcase_create("alloc");
    tcase_add_test(tc, test_large_buffers_are_advised);
    tcase_add_test(tc, test_buffers_are_huge_to_their_ends);
    tcase_add_test(tc, test_small_buffers_are_not);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(suite());
}
