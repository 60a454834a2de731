/* Data loading through the public API: the IDX reader (plain and gzip) and
 * the CSV reader accept valid files and reject every malformed kind with the
 * documented status, a new message naming the file (and the byte offset or
 * the line and column) and the output pointer untouched; plus the dataset
 * helpers (split, feature statistics, standardisation).
 *
 * Every fixture is written by the test into a fresh directory under /tmp;
 * gzip fixtures are made with the gzip tool, so the test needs no zlib. */
#include <backprop.h>
#include <check.h>
#include <dirent.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "testutil.h"
#include "tu_suite.h"

/* ---------------------------------------------------------------- helpers */

static char g_dir[64];

/* Full path of fixture `name`; rotating buffers so one call can take two. */
static const char *fx(const char *name)
{
    static char buf[4][256];
    static unsigned k;
    char *b = buf[k++ % 4];
    snprintf(b, sizeof buf[0], "%s/%s", g_dir, name);
    return b;
}

static void write_bytes(const char *name, const void *p, size_t n)
{
    FILE *f = fopen(fx(name), "wb");
    ck_assert_msg(f != NULL, "cannot create %s", fx(name));
    ck_assert_uint_eq(fwrite(p, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

static void write_text(const char *name, const char *text)
{
    write_bytes(name, text, strlen(text));
}

/* Whole file into buf (cap bytes at most); returns its size. */
static size_t read_bytes(const char *name, unsigned char *buf, size_t cap)
{
    FILE *f = fopen(fx(name), "rb");
    ck_assert_msg(f != NULL, "cannot open %s", fx(name));
    size_t n = fread(buf, 1, cap, f);
    ck_assert_msg(feof(f), "%s is larger than %zu bytes", name, cap);
    fclose(f);
    return n;
}

static void gzip_to(const char *src, const char *dst)
{
    char cmd[700];
    snprintf(cmd, sizeof cmd, "gzip -c -n '%s' > '%s'", fx(src), fx(dst));
    ck_assert_msg(system(cmd) == 0, "%s failed", cmd);
}

/* A known failure first, so a call that fails without recording its own
 * message is caught (the message must differ from this one). */
static char g_primer[600];

static void prime(void)
{
    ck_assert_int_eq(bp_csv_options_default(NULL), BP_EINVAL);
    snprintf(g_primer, sizeof g_primer, "%s", bp_last_error());
}

/* A distinct address standing for "an output the call must not write". */
static char g_sentinel_obj;
#define SENT ((bp_dataset *)(void *)&g_sentinel_obj)

/* `also` is a ';'-separated list of substrings the message must hold. */
static void check_fail(bp_status got, bp_status want, const bp_dataset *ds, const char *file,
                       const char *also, const char *call, int line)
{
    const char *m = bp_last_error();
    ck_assert_msg(got == want, "line %d: %s returned %s, expected %s; message: %s", line, call,
                  bp_status_str(got), bp_status_str(want), m);
    ck_assert_msg(ds == SENT, "line %d: %s changed its output on failure", line, call);
    ck_assert_msg(strcmp(m, g_primer) != 0, "line %d: %s recorded no message", line, call);
    ck_assert_msg(strstr(m, "bp_") != NULL, "line %d: message names no function: %s", line, m);
    ck_assert_msg(!file || strstr(m, file), "line %d: message \"%s\" does not name %s", line, m,
                  file);
    while (also && *also) {
        const char *semi = strchr(also, ';');
        size_t n = semi ? (size_t)(semi - also) : strlen(also);
        char part[128];
        snprintf(part, sizeof part, "%.*s", (int)n, also);
        ck_assert_msg(strstr(m, part) != NULL, "line %d: message \"%s\" lacks \"%s\"", line, m,
                      part);
        also += n + (semi != NULL);
    }
}

/* `call` uses the local `ds`, preset to the sentinel. */
#define EXPECT_FAIL(call, want, file, also)                                  \
    do {                                                                     \
        bp_dataset *ds = SENT;                                               \
        prime();                                                             \
        bp_status s_ = (call);                                               \
        check_fail(s_, (want), ds, (file), (also), #call, __LINE__);         \
    } while (0)

#define EXPECT_OK(call)                                                                  \
    do {                                                                                 \
        bp_status s_ = (call);                                                           \
        ck_assert_msg(s_ == BP_OK, "%s returned %s: %s", #call, bp_status_str(s_),       \
                      bp_last_error());                                                  \
    } while (0)

/* ------------------------------------------------------------ IDX fixtures */

typedef struct blob {
    unsigned char b[4096];
    size_t n;
} blob;

static void put8(blob *x, unsigned v) { x->b[x->n++] = (unsigned char)v; }

static void put32(blob *x, uint32_t v)
{
    for (int s = 24; s >= 0; s -= 8)
        put8(x, (v >> s) & 0xff);
}

static void idx_header(blob *x, unsigned type, unsigned n_dims, const uint32_t *dims)
{
    put8(x, 0);
    put8(x, 0);
    put8(x, type);
    put8(x, n_dims);
    for (unsigned i = 0; i < n_dims; i++)
        put32(x, dims[i]);
}

/* Three 2 x 3 images; pixel 0 of image 0 is 0, the last of image 1 is 255. */
#define NI 3
#define ROWS 2
#define COLS 3
#define NF (ROWS * COLS)
#define IMG3_BYTES (16 + NI * NF)
#define LAB_BYTES (8 + NI)
static const unsigned char g_labels[NI] = {7, 0, 3};

static unsigned char pixel(size_t i, size_t j)
{
    if (i == 0 && j == 0)
        return 0;
    if (i == 1 && j == NF - 1)
        return 255;
    return (unsigned char)((i * 97 + j * 41 + 1) % 255);
}

static blob images_blob(unsigned n_dims)
{
    blob x = {.n = 0};
    uint32_t d3[3] = {NI, ROWS, COLS}, d2[2] = {NI, NF};
    idx_header(&x, 0x08, n_dims, n_dims == 3 ? d3 : d2);
    for (size_t i = 0; i < NI; i++)
        for (size_t j = 0; j < NF; j++)
            put8(&x, pixel(i, j));
    return x;
}

static blob labels_blob(uint32_t n)
{
    blob x = {.n = 0};
    idx_header(&x, 0x08, 1, &n);
    for (uint32_t i = 0; i < n; i++)
        put8(&x, g_labels[i % NI]);
    return x;
}

/* img3 / img2 / lab, plain and .gz. */
static void write_idx_fixtures(void)
{
    blob i3 = images_blob(3), i2 = images_blob(2), l = labels_blob(NI);
    write_bytes("img3", i3.b, i3.n);
    write_bytes("img2", i2.b, i2.n);
    write_bytes("lab", l.b, l.n);
    gzip_to("img3", "img3.gz");
    gzip_to("img2", "img2.gz");
    gzip_to("lab", "lab.gz");
}

static void check_small(const bp_dataset *ds)
{
    ck_assert_uint_eq(bp_dataset_size(ds), NI);
    ck_assert_uint_eq(bp_dataset_n_features(ds), NF);
    ck_assert_uint_eq(bp_dataset_n_targets(ds), 0);
    ck_assert_uint_eq(bp_dataset_n_classes(ds), 8);
    ck_assert_ptr_null(bp_dataset_targets(ds));
    const float *X = bp_dataset_features(ds);
    const int32_t *y = bp_dataset_labels(ds);
    for (size_t i = 0; i < NI; i++) {
        ck_assert_int_eq(y[i], g_labels[i]);
        for (size_t j = 0; j < NF; j++)
            ck_assert_msg(X[i * NF + j] == (float)pixel(i, j) / 255.0f,
                          "X[%zu][%zu] = %g, expected %u / 255", i, j, (double)X[i * NF + j],
                          pixel(i, j));
    }
    ck_assert(X[0] == 0.0f);
    ck_assert(X[1 * NF + NF - 1] == 1.0f);
}

static bp_dataset *load_idx_ok(const char *images, const char *labels)
{
    bp_dataset *ds = NULL;
    EXPECT_OK(bp_dataset_load_idx(&ds, fx(images), fx(labels)));
    return ds;
}

/* ---------------------------------------------------------------- IDX: ok */

START_TEST(idx_valid_plain_and_gzip)
{
    write_idx_fixtures();
    const char *pairs[][2] = {{"img3", "lab"},    {"img2", "lab"},     {"img3.gz", "lab.gz"},
                              {"img2.gz", "lab.gz"}, {"img3.gz", "lab"}, {"img2", "lab.gz"}};
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
        bp_dataset *ds = load_idx_ok(pairs[k][0], pairs[k][1]);
        check_small(ds);
        bp_dataset_destroy(ds);
    }
}
END_TEST

/* Concatenated gzip members are one gzip file (RFC 1952, `cat a.gz b.gz`). */
START_TEST(idx_gzip_multi_member)
{
    blob i3 = images_blob(3), l = labels_blob(NI);
    write_bytes("part1", i3.b, 10);
    write_bytes("part2", i3.b + 10, i3.n - 10);
    write_bytes("lab", l.b, l.n);
    gzip_to("part1", "part1.gz");
    gzip_to("part2", "part2.gz");
    char cmd[800];
    snprintf(cmd, sizeof cmd, "cat '%s' '%s' > '%s'", fx("part1.gz"), fx("part2.gz"),
             fx("multi.gz"));
    ck_assert_int_eq(system(cmd), 0);
    bp_dataset *ds = load_idx_ok("multi.gz", "lab");
    check_small(ds);
    bp_dataset_destroy(ds);
}
END_TEST

/* Larger than the reader's first gzip chunk, so its buffer has to grow. */
#define BIG_N 2000u
#define BIG_F (28u * 28u)

static void write_big(const char *name, uint32_t declared_n, size_t data_bytes)
{
    unsigned char *b = malloc(16 + data_bytes);
    ck_assert_ptr_nonnull(b);
    blob h = {.n = 0};
    uint32_t d[3] = {declared_n, 28, 28};
    idx_header(&h, 0x08, 3, d);
    memcpy(b, h.b, h.n);
    for (size_t i = 0; i < data_bytes; i++)
        b[16 + i] = (unsigned char)((i / BIG_F) * 7 + (i % BIG_F) * 13);
    write_bytes(name, b, 16 + data_bytes);
    free(b);
}

START_TEST(idx_large_gzip)
{
    write_big("big", BIG_N, (size_t)BIG_N * BIG_F);
    gzip_to("big", "big.gz");
    blob l = {.n = 0};
    uint32_t n = BIG_N;
    idx_header(&l, 0x08, 1, &n);
    for (uint32_t i = 0; i < BIG_N; i++)
        put8(&l, i % 10);
    write_bytes("biglab", l.b, l.n);
    bp_dataset *ds = load_idx_ok("big.gz", "biglab");
    ck_assert_uint_eq(bp_dataset_size(ds), BIG_N);
    ck_assert_uint_eq(bp_dataset_n_features(ds), BIG_F);
    ck_assert_uint_eq(bp_dataset_n_classes(ds), 10);
    const float *X = bp_dataset_features(ds);
    for (size_t i = 0; i < (size_t)BIG_N * BIG_F; i += 997)
        ck_assert(X[i] == (float)(unsigned char)((i / BIG_F) * 7 + (i % BIG_F) * 13) / 255.0f);
    for (uint32_t i = 0; i < BIG_N; i++)
        ck_assert_int_eq(bp_dataset_labels(ds)[i], (int32_t)(i % 10));
    bp_dataset_destroy(ds);

    /* One byte short of the declared data, inside the grown buffer. */
    size_t short_bytes = (size_t)BIG_N * BIG_F - 1;
    write_big("bigshort", BIG_N, short_bytes);
    gzip_to("bigshort", "bigshort.gz");
    char want[64];
    snprintf(want, sizeof want, "byte %zu (uncompressed):", 16 + short_bytes);
    EXPECT_FAIL(bp_dataset_load_idx(&ds, fx("bigshort.gz"), fx("biglab")), BP_EFORMAT,
                "bigshort.gz", want);
}
END_TEST

/* --------------------------------------------------------- IDX: malformed */

START_TEST(idx_truncated_plain)
{
    write_idx_fixtures();
    blob i3 = images_blob(3), l = labels_blob(NI);
    char want[32];
    /* Every cut: inside the header, the dimensions and the data. */
    for (size_t k = 0; k < i3.n; k++) {
        write_bytes("cut", i3.b, k);
        snprintf(want, sizeof want, "byte %zu:", k);
        EXPECT_FAIL(bp_dataset_load_idx(&ds, fx("cut"), fx("lab")), BP_EFORMAT, "cut", want);
    }
    for (size_t k = 0; k < l.n; k++) {
        write_bytes("lcut", l.b, k);
        snprintf(want, sizeof want, "byte %zu:", k);
        EXPECT_FAIL(bp_dataset_load_idx(&ds, fx("img3"), fx("lcut")), BP_EFORMAT, "lcut", want);
    }
}
END_TEST

/* A complete gzip stream of a cut IDX file: the offset is the uncompressed one. */
START_TEST(idx_truncated_gzip_content)
{
    write_idx_fixtures();
    blob i3 = images_blob(3);
    const size_t cuts[] = {0, 1, 3, 4, 6, 8, 11, 12, 15, 16, 17, 25, IMG3_BYTES - 1};
    char want[48];
    for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
        write_bytes("cut", i3.b, cuts[c]);
        gzip_to("cut", "cut.gz");
        snprintf(want, sizeof want, "byte %zu (uncompressed):", cuts[c]);
        EXPECT_FAIL(bp_dataset_load_idx(&ds, fx("cut.gz"), fx("lab")), BP_EFORMAT, "cut.gz",
                    want);
    }
}
END_TEST

/* The gzip file itself cut at every length: gzip header, deflate data, trailer. */
START_TEST(idx_truncated_gzip_stream)
{
    write_idx_fixtures();
    unsigned char gz[4096];
    size_t m = read_bytes("img3.gz", gz, sizeof gz);
    ck_assert_uint_gt(m, 18);
    for (size_t k = 0; k < m; k++) {
        write_bytes("gzcut", gz, k);
        EXPECT_FAIL(bp_dataset_load_idx(&ds, fx("gzcut"), fx("lab")), BP_EFORMAT, "gzcut",
                    NULL);
    }
    m = read_bytes("lab.gz", gz, sizeof gz);
    for (size_t k = 2; k < m; k++) {
        write_bytes("lgzcut", gz, k);
        EXPECT_FAIL(bp_dataset_load_idx(&ds, fx("img3.gz"), fx("lgzcut")), BP_EFORMAT, "lgzcut",
                    NULL);
    }
}
END_TEST

START_TEST(idx_bad_gzip)
{
    write_idx_fixtures();
    unsigned char gz[4096], bad[4096 + 16];
    size_t m = read_bytes("img3.gz", gz, sizeof gz);

    const unsigned char garbage[] = {0x1f, 0x8b, 0x13, 0x37, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4,
                                     5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    write_bytes("garbage.gz", garbage, sizeof garbage);
    EXPECT_FAIL(bp_dataset_load_idx(&ds, fx("garbage.gz"), fx("lab")), BP_EFORMAT, "garbage.gz",
                NULL);

    /* A valid gzip header, then garbage instead of deflate data. */
    memcpy(bad, gz, 10);
    memset(bad + 10, 0xff, 40);
    write_bytes("baddeflate.gz", bad, 50);
    EXPECT_FAIL(bp_dataset_load_idx(&ds, fx("baddeflate.gz"), fx("lab")), BP_EFORMAT,
                "baddeflate.gz", NULL);

    /* Flipped bits in the CRC32, in ISIZE and in the deflate data. */
    const size_t flips[] = {m - 8, m - 1, m - 4, 12, m / 2};
    for (size_t f = 0; f < sizeof flips / sizeof flips[0]; f++) {
        memcpy(bad, gz, m);
        bad[flips[f]] ^= 0x10;
        write_bytes("flip.gz", bad, m);
        EXPECT_FAIL(bp_dataset_load_idx(&ds, fx("flip.gz"), fx("lab")), BP_EFORMAT, "flip.gz",
                    NULL);
    }

    /* Bytes after the gzip stream that are not another gzip member. */
    memcpy(bad, gz, m);
    memcpy(bad + m, "junk", 4);
    write_bytes("after.gz", bad, m + 4);
    EXPECT_FAIL(bp_dataset_load_idx(&ds, fx("after.gz"), fx("lab")), BP_EFORMAT, "after.gz",
                NULL);
    memset(bad + m, 0, 8);
    write_bytes("zeros.gz", bad, m + 8);
    EXPECT_FAIL(bp_dataset_load_idx(&ds, fx("zeros.gz"), fx("lab")), BP_EFORMAT, "zeros.gz",
                NULL);
}
END_TEST

/* The images (or labels) fixture with byte `at` set to v must fail with a
 * message naming the patched file and holding `want`. */
static void expect_patched(int images, size_t at, unsigned v, const char *want)
{
    blob x = images ? images_blob(3) : labels_blob(NI);
    x.b[at] = (unsigned char)v;
    const char *name = images ? "patched" : "lpatched";
    write_bytes(name, x.b, x.n);
    EXPECT_FAIL(bp_dataset_load_idx(&ds, fx(images ? name : "img3"), fx(images ? "lab" : name)),
                BP_EFORMAT, name, want);
}

START_TEST(idx_bad_magic_type_dims)
{
    write_idx_fixtures();
    expect_patched(1, 1, 0x01, "byte 0:;0x0001");
    expect_patched(1, 0, 0x08, "byte 0:;0x0800");
    expect_patched(0, 0, 0x01, "byte 0:");

    const unsigned types[] = {0x00, 0x09, 0x0b, 0x0c, 0x0d, 0x0e, 0xff};
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        expect_patched(1, 2, types[t], "byte 2:;0x08");
        expect_patched(0, 2, types[t], "byte 2:;0x08");
    }

    /* Dimension counts other than 3 or 2 (images) and 1 (labels); the
     * file keeps its bytes, so only byte 3 is wrong. */
    const unsigned img_dims[] = {0, 1, 4, 5, 255}, lab_dims[] = {0, 2, 3};
    char want[64];
    for (size_t d = 0; d < sizeof img_dims / sizeof img_dims[0]; d++) {
        snprintf(want, sizeof want, "byte 3:;is %u", img_dims[d]);
        expect_patched(1, 3, img_dims[d], want);
    }
    for (size_t d = 0; d < sizeof lab_dims / sizeof lab_dims[0]; d++) {
        snprintf(want, sizeof want, "byte 3:;is %u", lab_dims[d]);
        expect_patched(0, 3, lab_dims[d], want);
    }
    /* Images and labels swapped. */
    EXPECT_FAIL(bp_dataset_load_idx(&ds, fx("lab"), fx("img3")), BP_EFORMAT, "lab", "byte 3:");
}
END_TEST

START_TEST(idx_zero_dimension)
{
    write_idx_fixtures();
    blob i3 = images_blob(3);
    for (size_t d = 0; d < 3; d++) {
        blob x = i3;
        memset(x.b + 4 + 4 * d, 0, 4);
        write_bytes("zero", x.b, x.n);
        char want[32];
        snprintf(want, sizeof want, "byte %zu:", 4 + 4 * d);
        EXPECT_FAIL(bp_dataset_load_idx(&ds, fx("zero"), fx("lab")), BP_EFORMAT, "zero", want);
        gzip_to("zero", "zero.gz");
        EXPECT_FAIL(bp_dataset_load_idx(&ds, fx("zero.gz"), fx("lab")), BP_EFORMAT, "zero.gz",
                    want);
    }
    blob x = labels_blob(0);
    x.n = 8; /* header only, n = 0 */
    write_bytes("lzero", x.b, x.n);
    EXPECT_FAIL(bp_dataset_load_idx(&ds, fx("img3"), fx("lzero")), BP_EFORMAT, "lzero",
                "byte 4:");
}
END_TEST

/* Cap the address space about 1 GiB above its current size, so an
 * allocation sized from a lying header fails loudly instead of succeeding
 * lazily. Only in a forked test (the cap ends with it), and not under ASan,
 * whose shadow memory reserves terabytes of address space. */
static void cap_address_space(void)
{
    int asan = 0;
#if defined(__SANITIZE_ADDRESS__)
    asan = 1;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    asan = 1;
#endif
#endif
    const char *fork_env = getenv("CK_FORK");
    if (asan || (fork_env && strcmp(fork_env, "no") == 0))
        return;
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    if (!f)
        return;
    int ok = fscanf(f, "%lu", &pages) == 1;
    fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    if (!ok || page <= 0)
        return;
    struct rlimit rl;
    ck_assert_int_eq(getrlimit(RLIMIT_AS, &rl), 0);
    rl.rlim_cur = (rlim_t)pages * (rlim_t)page + ((rlim_t)1 << 30);
    ck_assert_int_eq(setrlimit(RLIMIT_AS, &rl), 0);
}

START_TEST(idx_huge_dimensions)
{
    write_idx_fixtures();
    const uint32_t M = 0xFFFFFFFFu;
    /* Product overflows size_t; fits size_t but not the file; a 4 GiB
     * image count; a 4 GiB image. */
    const uint32_t shapes[][3] = {{M, M, M}, {M, M, 0}, {M, 1, 1}, {1, M, 1}, {3, 65536, 65536},
                                  {3, 1, M}};
    const unsigned ndims[] = {3, 2, 3, 3, 3, 3};
    char name[32], gzname[40];
    for (size_t s = 0; s < sizeof ndims / sizeof ndims[0]; s++) {
        blob x = {.n = 0};
        idx_header(&x, 0x08, ndims[s], shapes[s]);
        for (size_t i = 0; i < 64; i++)
            put8(&x, (unsigned)i);
        snprintf(name, sizeof name, "huge%zu", s);
        snprintf(gzname, sizeof gzname, "huge%zu.gz", s);
        write_bytes(name, x.b, x.n);
        gzip_to(name, gzname);
    }
    cap_address_space();
    for (size_t s = 0; s < sizeof ndims / sizeof ndims[0]; s++) {
        snprintf(name, sizeof name, "huge%zu", s);
        snprintf(gzname, sizeof gzname, "huge%zu.gz", s);
        EXPECT_FAIL(bp_dataset_load_idx(&ds, fx(name), fx("lab")), BP_EFORMAT, name, "byte ");
        EXPECT_FAIL(bp_dataset_load_idx(&ds, fx(gzname), fx("lab")), BP_EFORMAT, gzname,
                    "byte ");
    }
    /* Labels declaring 4 Gi entries, checked before any data is read. */
    blob l = {.n = 0};
    idx_header(&l, 0x08, 1, &M);
    put8(&l, 1);
    write_bytes("hugelab", l.b, l.n);
    EXPECT_FAIL(bp_dataset_load_idx(&ds, fx("img3"), fx("hugelab")), BP_EFORMAT, NULL, NULL);
}
END_TEST

START_TEST(idx_count_mismatch)
{
    write_idx_fixtures();
    blob l2 = labels_blob(NI - 1), l4 = labels_blob(NI + 1);
    write_bytes("lab2", l2.b, l2.n);
    write_bytes("lab4", l4.b, l4.n);
    EXPECT_FAIL(bp_dataset_load_idx(&ds, fx("img3"), fx("lab2")), BP_EFORMAT, "img3", "lab2;3;2");
    EXPECT_FAIL(bp_dataset_load_idx(&ds, fx("img2.gz"), fx("lab4")), BP_EFORMAT, "img2.gz",
                "lab4");
}
END_TEST

START_TEST(idx_trailing_bytes)
{
    write_idx_fixtures();
    blob x = images_blob(3);
    put8(&x, 0);
    write_bytes("trail", x.b, x.n);
    char want[48];
    snprintf(want, sizeof want, "byte %d:", IMG3_BYTES);
    EXPECT_FAIL(bp_dataset_load_idx(&ds, fx("trail"), fx("lab")), BP_EFORMAT, "trail", want);
    gzip_to("trail", "trail.gz");
    snprintf(want, sizeof want, "byte %d (uncompressed):", IMG3_BYTES);
    EXPECT_FAIL(bp_dataset_load_idx(&ds, fx("trail.gz"), fx("lab")), BP_EFORMAT, "trail.gz",
                want);
    for (int k = 0; k < 100; k++)
        put8(&x, 0xAB);
    write_bytes("trail100", x.b, x.n);
    snprintf(want, sizeof want, "byte %d:", IMG3_BYTES);
    EXPECT_FAIL(bp_dataset_load_idx(&ds, fx("trail100"), fx("lab")), BP_EFORMAT, "trail100",
                want);
    blob l = labels_blob(NI);
    put8(&l, 1);
    write_bytes("ltrail", l.b, l.n);
    snprintf(want, sizeof want, "byte %d:", LAB_BYTES);
    EXPECT_FAIL(bp_dataset_load_idx(&ds, fx("img3"), fx("ltrail")), BP_EFORMAT, "ltrail", want);
}
END_TEST

START_TEST(idx_empty_missing_and_arguments)
{
    write_idx_fixtures();
    write_bytes("empty", "", 0);
    EXPECT_FAIL(bp_dataset_load_idx(&ds, fx("empty"), fx("lab")), BP_EFORMAT, "empty", "byte 0:");
    EXPECT_FAIL(bp_dataset_load_idx(&ds, fx("img3"), fx("empty")), BP_EFORMAT, "empty",
                "byte 0:");
    EXPECT_FAIL(bp_dataset_load_idx(&ds, fx("nosuch"), fx("lab")), BP_EIO, "nosuch",
                "No such file");
    EXPECT_FAIL(bp_dataset_load_idx(&ds, fx("img3.gz"), fx("nolabels")), BP_EIO, "nolabels",
                NULL);
    EXPECT_FAIL(bp_dataset_load_idx(&ds, g_dir, fx("lab")), BP_EIO, g_dir, NULL);
    EXPECT_FAIL(bp_dataset_load_idx(&ds, NULL, fx("lab")), BP_EINVAL, NULL, "images");
    ck_assert_int_eq(bp_dataset_load_idx(NULL, fx("img3"), fx("lab")), BP_EINVAL);
}
END_TEST

/* The real Fashion-MNIST test set, where the data package is installed. */
#define FMNIST "/usr/share/datasets/fashion-mnist/"

START_TEST(idx_fashion_mnist)
{
    if (access(FMNIST "train-images-idx3-ubyte.gz", R_OK) != 0) {
        printf("test_data: skipped Fashion-MNIST (" FMNIST " not installed)\n");
        return;
    }
    bp_dataset *ds = NULL;
    EXPECT_OK(bp_dataset_load_idx(&ds, FMNIST "t10k-images-idx3-ubyte.gz",
                                  FMNIST "t10k-labels-idx1-ubyte.gz"));
    ck_assert_uint_eq(bp_dataset_size(ds), 10000);
    ck_assert_uint_eq(bp_dataset_n_features(ds), 784);
    ck_assert_uint_eq(bp_dataset_n_classes(ds), 10);
    size_t count[10] = {0};
    for (size_t i = 0; i < 10000; i++) {
        int32_t y = bp_dataset_labels(ds)[i];
        ck_assert(y >= 0 && y <= 9);
        count[y]++;
    }
    for (int c = 0; c < 10; c++)
        ck_assert_uint_eq(count[c], 1000); /* the test set is balanced */
    const float *X = bp_dataset_features(ds);
    float lo = 1.0f, hi = 0.0f;
    for (size_t i = 0; i < 10000u * 784u; i++) {
        lo = X[i] < lo ? X[i] : lo;
        hi = X[i] > hi ? X[i] : hi;
    }
    ck_assert(lo == 0.0f && hi == 1.0f);
    bp_dataset_destroy(ds);
}
END_TEST

/* --------------------------------------------------------------- CSV: ok */

static bp_csv_options csv_opts(int header, long label_column, size_t n_targets)
{
    bp_csv_options o;
    EXPECT_OK(bp_csv_options_default(&o));
    o.header = header;
    o.label_column = label_column;
    o.n_targets = n_targets;
    return o;
}

static bp_dataset *load_csv_ok(const char *name, const bp_csv_options *o)
{
    bp_dataset *ds = NULL;
    EXPECT_OK(bp_dataset_load_csv(&ds, fx(name), o));
    return ds;
}

static void check_floats(const float *got, const float *want, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(got[i] == want[i], "[%zu] = %g, expected %g", i, (double)got[i],
                      (double)want[i]);
}

START_TEST(csv_defaults_and_basic)
{
    bp_csv_options o;
    EXPECT_OK(bp_csv_options_default(&o));
    ck_assert_int_eq(o.header, 0);
    ck_assert_int_eq(o.delimiter, ',');
    ck_assert_int_eq(o.label_column, -1);
    ck_assert_uint_eq(o.n_targets, 0);

    write_text("basic.csv", "1,2,0\n3.5,-4e-1,1\n0x10, 7 ,4\n");
    bp_dataset *ds = load_csv_ok("basic.csv", &o);
    ck_assert_uint_eq(bp_dataset_size(ds), 3);
    ck_assert_uint_eq(bp_dataset_n_features(ds), 2);
    ck_assert_uint_eq(bp_dataset_n_targets(ds), 0);
    ck_assert_uint_eq(bp_dataset_n_classes(ds), 5);
    ck_assert_ptr_null(bp_dataset_targets(ds));
    const float X[] = {1, 2, 3.5f, -0.4f, 16, 7};
    const int32_t y[] = {0, 1, 4};
    check_floats(bp_dataset_features(ds), X, 6);
    ck_assert_mem_eq(bp_dataset_labels(ds), y, sizeof y);
    bp_dataset_destroy(ds);

    /* opt NULL means the defaults. */
    ds = NULL;
    EXPECT_OK(bp_dataset_load_csv(&ds, fx("basic.csv"), NULL));
    ck_assert_uint_eq(bp_dataset_size(ds), 3);
    bp_dataset_destroy(ds);

    write_text("header.csv", "width,height,class\n1,2,0\n3.5,-4e-1,1\n0x10,7,4");
    o.header = 1;
    ds = load_csv_ok("header.csv", &o);
    check_floats(bp_dataset_features(ds), X, 6);
    ck_assert_mem_eq(bp_dataset_labels(ds), y, sizeof y);
    bp_dataset_destroy(ds);

    write_text("big.csv", "1,2147483647\n2,0\n");
    o.header = 0;
    ds = load_csv_ok("big.csv", &o);
    ck_assert_int_eq(bp_dataset_labels(ds)[0], INT32_MAX);
    ck_assert_uint_eq(bp_dataset_n_classes(ds), (size_t)INT32_MAX + 1);
    bp_dataset_destroy(ds);
}
END_TEST

/* Four columns; the label (r + 1) sits in column `lab`, feature (r, c)
 * is 10 r + c + 0.5, so feature order and row order are both checked. */
START_TEST(csv_label_column_positions)
{
    for (long lab = 0; lab < 4; lab++) {
        char text[256] = "", cell[32];
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 4; c++) {
                if (c == lab)
                    snprintf(cell, sizeof cell, "%d", r + 1);
                else
                    snprintf(cell, sizeof cell, "%g", 10.0 * r + c + 0.5);
                strcat(text, cell);
                strcat(text, c == 3 ? "\n" : ",");
            }
        write_text("pos.csv", text);
        const long given[2] = {lab, lab - 4}; /* and the same column from the end */
        for (int g = 0; g < 2; g++) {
            bp_csv_options o = csv_opts(0, given[g], 0);
            bp_dataset *ds = load_csv_ok("pos.csv", &o);
            ck_assert_uint_eq(bp_dataset_size(ds), 3);
            ck_assert_uint_eq(bp_dataset_n_features(ds), 3);
            ck_assert_uint_eq(bp_dataset_n_classes(ds), 4);
            const float *X = bp_dataset_features(ds);
            for (int r = 0; r < 3; r++) {
                ck_assert_int_eq(bp_dataset_labels(ds)[r], r + 1);
                for (int c = 0, j = 0; c < 4; c++)
                    if (c != lab)
                        ck_assert(X[r * 3 + j++] == (float)(10.0 * r + c + 0.5));
            }
            bp_dataset_destroy(ds);
        }
    }
}
END_TEST

START_TEST(csv_regression_targets)
{
    write_text("reg.csv", "1,2,3,4\n5,6,7,8.25\n");
    bp_csv_options o = csv_opts(0, 1, 2);
    bp_dataset *ds = load_csv_ok("reg.csv", &o);
    ck_assert_uint_eq(bp_dataset_n_targets(ds), 2);
    ck_assert_uint_eq(bp_dataset_n_classes(ds), 0);
    ck_assert_ptr_null(bp_dataset_labels(ds));
    ck_assert_uint_eq(bp_dataset_n_features(ds), 2);
    const float X2[] = {1, 4, 5, 8.25f}, T2[] = {2, 3, 6, 7};
    check_floats(bp_dataset_features(ds), X2, 4);
    check_floats(bp_dataset_targets(ds), T2, 4);
    bp_dataset_destroy(ds);

    o = csv_opts(0, -1, 1);
    ds = load_csv_ok("reg.csv", &o);
    ck_assert_uint_eq(bp_dataset_n_targets(ds), 1);
    const float X1[] = {1, 2, 3, 5, 6, 7}, T1[] = {4, 8.25f};
    check_floats(bp_dataset_features(ds), X1, 6);
    check_floats(bp_dataset_targets(ds), T1, 2);
    bp_dataset_destroy(ds);

    /* Targets may be negative and fractional. */
    write_text("neg.csv", "1,-0.5\n2,-1e3\n");
    ds = load_csv_ok("neg.csv", &o);
    const float T3[] = {-0.5f, -1000.0f};
    check_floats(bp_dataset_targets(ds), T3, 2);
    bp_dataset_destroy(ds);
}
END_TEST

START_TEST(csv_line_ends_and_delimiters)
{
    const char *texts[] = {
        "1,2,0\n3,4,1\n",            /* trailing newline */
        "1,2,0\n3,4,1",              /* none */
        "1,2,0\r\n3,4,1\r\n",        /* CRLF */
        "1,2,0\r\n3,4,1",            /* CRLF, none at the end */
        "1,2,0\n3,4,1\n\n\r\n  \n",  /* trailing empty lines */
        " 1 ,\t2, 0\n3 ,4 ,1 \n",    /* blanks around fields */
    };
    const float X[] = {1, 2, 3, 4};
    const int32_t y[] = {0, 1};
    for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) {
        write_text("ends.csv", texts[t]);
        bp_dataset *ds = load_csv_ok("ends.csv", NULL);
        ck_assert_msg(bp_dataset_size(ds) == 2, "text %zu: %zu rows", t, bp_dataset_size(ds));
        check_floats(bp_dataset_features(ds), X, 4);
        ck_assert_mem_eq(bp_dataset_labels(ds), y, sizeof y);
        bp_dataset_destroy(ds);
    }
    const char delims[] = {'\t', ';', ' ', '|'};
    for (size_t d = 0; d < sizeof delims; d++) {
        char text[64];
        snprintf(text, sizeof text, "1%c2%c0\n3%c4%c1\n", delims[d], delims[d], delims[d],
                 delims[d]);
        write_text("delim.csv", text);
        bp_csv_options o = csv_opts(0, -1, 0);
        o.delimiter = delims[d];
        bp_dataset *ds = load_csv_ok("delim.csv", &o);
        check_floats(bp_dataset_features(ds), X, 4);
        ck_assert_mem_eq(bp_dataset_labels(ds), y, sizeof y);
        bp_dataset_destroy(ds);
    }
}
END_TEST

/* -------------------------------------------------------- CSV: malformed */

typedef struct csv_case {
    const char *text;
    const char *where; /* substrings the message must hold */
} csv_case;

START_TEST(csv_bad_fields)
{
    const csv_case cases[] = {
        {"1,2,0\n3,abc,1\n", "line 2;column 2;abc"},
        {"1,2,0\n1.5x,2,1\n", "line 2;column 1;1.5x"},
        {"1,,0\n", "line 1;column 2;empty"},
        {"1,2,\n", "line 1;column 3;empty"},
        {",2,0\n", "line 1;column 1;empty"},
        {"1,2,0\n3,4\n", "line 2;2 fields;expected 3"},
        {"1,2,0\n3,4,5,6\n", "line 2;4 fields;expected 3"},
        {"1,2,0\r\n3,4\r\n5,6,7\r\n", "line 2"},
        {"1,2,-1\n", "line 1;column 3;-1"},
        {"1,2,1.5\n", "line 1;column 3;1.5"},
        {"1,2,2147483648\n", "line 1;column 3"},
        {"1,2,1e10\n", "line 1;column 3"},
        {"nan,2,0\n", "line 1;column 1;nan"},
        {"1,NAN,0\n", "line 1;column 2"},
        {"1,inf,0\n", "line 1;column 2;inf"},
        {"1,-Infinity,0\n", "line 1;column 2"},
        {"1,2,nan\n", "line 1;column 3"},
        {"1,1e999,0\n", "line 1;column 2"},
        {"1,1e39,0\n", "line 1;column 2"},  /* finite double, not a float */
        {"1,2,0\n\n3,4,1\n", "line 2"},      /* empty line inside the data */
        {"1,2,0\n3,4\r5,1\n", "line 2"},     /* a lone CR is not a line end */
        {"1,2,0\n3;4,1\n", "line 2;2 fields"},
        {"1,2 3,0\n", "line 1;column 2"},
        {"0x,2,0\n", "line 1;column 1"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        write_text("bad.csv", cases[c].text);
        EXPECT_FAIL(bp_dataset_load_csv(&ds, fx("bad.csv"), NULL), BP_EFORMAT, "bad.csv",
                    cases[c].where);
    }
    /* A NUL byte inside a field. */
    write_bytes("nul.csv", "1,2\0003,0\n", 8);
    EXPECT_FAIL(bp_dataset_load_csv(&ds, fx("nul.csv"), NULL), BP_EFORMAT, "nul.csv",
                "line 1;column 2");
    /* Line numbers count the header; a non-numeric header needs header = 1. */
    write_text("hdr.csv", "a,b,c\n1,2,0\nx,2,0\n");
    bp_csv_options o = csv_opts(1, -1, 0);
    EXPECT_FAIL(bp_dataset_load_csv(&ds, fx("hdr.csv"), &o), BP_EFORMAT, "hdr.csv",
                "line 3;column 1");
    EXPECT_FAIL(bp_dataset_load_csv(&ds, fx("hdr.csv"), NULL), BP_EFORMAT, "hdr.csv",
                "line 1;column 1");
    /* Target columns take any finite float, but not text. */
    write_text("regbad.csv", "1,2,3\n4,5,x\n");
    o = csv_opts(0, 1, 2);
    EXPECT_FAIL(bp_dataset_load_csv(&ds, fx("regbad.csv"), &o), BP_EFORMAT, "regbad.csv",
                "line 2;column 3");
}
END_TEST

START_TEST(csv_empty_missing_and_options)
{
    write_text("empty.csv", "");
    EXPECT_FAIL(bp_dataset_load_csv(&ds, fx("empty.csv"), NULL), BP_EFORMAT, "empty.csv", NULL);
    write_text("blank.csv", "\n\r\n\n");
    EXPECT_FAIL(bp_dataset_load_csv(&ds, fx("blank.csv"), NULL), BP_EFORMAT, "blank.csv", NULL);
    write_text("hdronly.csv", "a,b,c\n");
    bp_csv_options o = csv_opts(1, -1, 0);
    EXPECT_FAIL(bp_dataset_load_csv(&ds, fx("hdronly.csv"), &o), BP_EFORMAT, "hdronly.csv",
                "header");
    write_text("hdronly2.csv", "a,b,c");
    EXPECT_FAIL(bp_dataset_load_csv(&ds, fx("hdronly2.csv"), &o), BP_EFORMAT, "hdronly2.csv",
                NULL);
    EXPECT_FAIL(bp_dataset_load_csv(&ds, fx("nosuch.csv"), NULL), BP_EIO, "nosuch.csv",
                "No such file");
    EXPECT_FAIL(bp_dataset_load_csv(&ds, g_dir, NULL), BP_EIO, g_dir, NULL);

    /* Options that do not fit the file's three columns. */
    write_text("three.csv", "1,2,0\n3,4,1\n");
    const long bad_cols[] = {3, 100, -4, LONG_MIN, LONG_MAX};
    for (size_t k = 0; k < sizeof bad_cols / sizeof bad_cols[0]; k++) {
        o = csv_opts(0, bad_cols[k], 0);
        EXPECT_FAIL(bp_dataset_load_csv(&ds, fx("three.csv"), &o), BP_EINVAL, "three.csv",
                    "label_column");
    }
    const struct { long col; size_t nt; } bad_targets[] = {
        {0, 3}, {0, 4}, {2, 2}, {-1, 2}, {0, SIZE_MAX}, {2, SIZE_MAX}};
    for (size_t k = 0; k < sizeof bad_targets / sizeof bad_targets[0]; k++) {
        o = csv_opts(0, bad_targets[k].col, bad_targets[k].nt);
        EXPECT_FAIL(bp_dataset_load_csv(&ds, fx("three.csv"), &o), BP_EINVAL, "three.csv",
                    "targets");
    }
    /* A single column leaves no feature. */
    write_text("one.csv", "1\n2\n");
    EXPECT_FAIL(bp_dataset_load_csv(&ds, fx("one.csv"), NULL), BP_EINVAL, "one.csv", NULL);

    const char bad_delims[] = {'\0', '\n', '\r', '.', '-', '+', '5', 'e'};
    for (size_t k = 0; k < sizeof bad_delims; k++) {
        o = csv_opts(0, -1, 0);
        o.delimiter = bad_delims[k];
        EXPECT_FAIL(bp_dataset_load_csv(&ds, fx("three.csv"), &o), BP_EINVAL, NULL,
                    "delimiter");
    }
    EXPECT_FAIL(bp_dataset_load_csv(&ds, NULL, NULL), BP_EINVAL, NULL, "path");
    ck_assert_int_eq(bp_dataset_load_csv(NULL, fx("three.csv"), NULL), BP_EINVAL);
}
END_TEST

/* ------------------------------------------------------ dataset helpers */

/* Ten rows: features (r, 2 r + 0.5), label r % 3. */
static bp_dataset *ten_rows(void)
{
    char text[256] = "", row[32];
    for (int r = 0; r < 10; r++) {
        snprintf(row, sizeof row, "%d,%g,%d\n", r, 2.0 * r + 0.5, r % 3);
        strcat(text, row);
    }
    write_text("ten.csv", text);
    return load_csv_ok("ten.csv", NULL);
}

/* Row ids of a split part, checking each row moved whole. */
static void row_ids(const bp_dataset *part, int *ids)
{
    const float *X = bp_dataset_features(part);
    for (size_t i = 0; i < bp_dataset_size(part); i++) {
        ids[i] = (int)X[2 * i];
        ck_assert(X[2 * i + 1] == (float)(2.0 * ids[i] + 0.5));
        ck_assert_int_eq(bp_dataset_labels(part)[i], ids[i] % 3);
    }
}

static void split_order(const bp_dataset *ds, uint64_t seed, int *order)
{
    bp_dataset *tr = NULL, *va = NULL;
    EXPECT_OK(bp_dataset_split(ds, 0.3, seed, &tr, &va));
    ck_assert_uint_eq(bp_dataset_size(tr), 7);
    ck_assert_uint_eq(bp_dataset_size(va), 3);
    ck_assert_uint_eq(bp_dataset_n_features(tr), 2);
    row_ids(tr, order);
    row_ids(va, order + 7);
    bp_dataset_destroy(tr);
    bp_dataset_destroy(va);
}

/* Images without labels, and a CSV of features only: unlabelled datasets
 * that predict can use and training refuses. */
START_TEST(unlabelled_datasets)
{
    write_idx_fixtures();
    bp_dataset *labelled = load_idx_ok("img3.gz", "lab.gz"), *ds = NULL;
    EXPECT_OK(bp_dataset_load_idx(&ds, fx("img3.gz"), NULL));
    ck_assert_uint_eq(bp_dataset_size(ds), bp_dataset_size(labelled));
    ck_assert_uint_eq(bp_dataset_n_features(ds), bp_dataset_n_features(labelled));
    ck_assert_mem_eq(bp_dataset_features(ds), bp_dataset_features(labelled),
                     bp_dataset_size(ds) * bp_dataset_n_features(ds) * sizeof(float));
    ck_assert_ptr_null(bp_dataset_labels(ds));
    ck_assert_ptr_null(bp_dataset_targets(ds));
    ck_assert_uint_eq(bp_dataset_n_classes(ds), 0);

    bp_ctx *ctx;
    bp_net *net;
    bp_optim *opt;
    bp_optim_config cfg;
    bp_layer_spec layer = {3, BP_ACT_IDENTITY, 0};
    EXPECT_OK(bp_ctx_create(&ctx, 1));
    EXPECT_OK(bp_net_create(&net, ctx, bp_dataset_n_features(ds), 1, &layer,
                            BP_HEAD_SOFTMAX_CE, 4));
    EXPECT_OK(bp_optim_config_default(&cfg, BP_OPTIM_SGD));
    EXPECT_OK(bp_optim_create(&opt, net, &cfg));
    float loss = 1.5f, acc = 2.5f;
    ck_assert_int_eq(bp_train_epoch(net, opt, ds, 4, 1, 0, &loss), BP_EINVAL);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "unlabelled"));
    ck_assert_int_eq(bp_evaluate(net, ds, 4, &loss, &acc), BP_EINVAL);
    ck_assert(loss == 1.5f && acc == 2.5f);
    bp_optim_destroy(opt);
    bp_net_destroy(net);
    bp_ctx_destroy(ctx);
    bp_dataset_destroy(ds);
    bp_dataset_destroy(labelled);

    bp_csv_options o;
    EXPECT_OK(bp_csv_options_default(&o));
    o.no_labels = 1;
    o.label_column = 99; /* ignored */
    write_text("features.csv", "1,2,3\n4,5,6\n");
    ds = load_csv_ok("features.csv", &o);
    ck_assert_uint_eq(bp_dataset_size(ds), 2);
    ck_assert_uint_eq(bp_dataset_n_features(ds), 3);
    ck_assert_ptr_null(bp_dataset_labels(ds));
    const float X[] = {1, 2, 3, 4, 5, 6};
    check_floats(bp_dataset_features(ds), X, 6);
    bp_dataset *tr = NULL, *va = NULL;
    EXPECT_OK(bp_dataset_split(ds, 0.5, 3, &tr, &va));
    ck_assert_ptr_null(bp_dataset_labels(tr));
    bp_dataset_destroy(tr);
    bp_dataset_destroy(va);
    bp_dataset_destroy(ds);
}
END_TEST

START_TEST(split_is_a_reproducible_permutation)
{
    bp_dataset *ds = ten_rows();
    int a[10], b[10], c[10];
    split_order(ds, 42, a);
    int seen[10] = {0};
    for (int i = 0; i < 10; i++) {
        ck_assert(a[i] >= 0 && a[i] < 10);
        seen[a[i]]++;
    }
    for (int i = 0; i < 10; i++)
        ck_assert_msg(seen[i] == 1, "row %d appears %d times across the parts", i, seen[i]);
    split_order(ds, 42, b);
    ck_assert_mem_eq(a, b, sizeof a);
    split_order(ds, 43, c);
    ck_assert_msg(memcmp(a, c, sizeof a) != 0, "seeds 42 and 43 give the same split");
    /* ds itself is unchanged. */
    int orig[10];
    row_ids(ds, orig);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(orig[i], i);

    bp_dataset *tr = SENT, *va = SENT;
    const double bad[] = {0.0, 1.0, -0.5, 1.5, 0.01, 0.99, NAN};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        ck_assert_int_eq(bp_dataset_split(ds, bad[k], 1, &tr, &va), BP_EINVAL);
        ck_assert(tr == SENT && va == SENT);
    }
    bp_dataset_destroy(ds);
}
END_TEST

START_TEST(split_keeps_targets_with_rows)
{
    char text[256] = "", row[32];
    for (int r = 0; r < 8; r++) {
        snprintf(row, sizeof row, "%d,%g,%g\n", r, r * 0.25, -r * 1.5);
        strcat(text, row);
    }
    write_text("regten.csv", text);
    bp_csv_options o = csv_opts(0, 1, 2);
    bp_dataset *ds = load_csv_ok("regten.csv", &o), *tr = NULL, *va = NULL;
    EXPECT_OK(bp_dataset_split(ds, 0.25, 7, &tr, &va));
    ck_assert_uint_eq(bp_dataset_size(tr), 6);
    ck_assert_uint_eq(bp_dataset_size(va), 2);
    ck_assert_uint_eq(bp_dataset_n_targets(va), 2);
    const bp_dataset *parts[2] = {tr, va};
    for (int p = 0; p < 2; p++)
        for (size_t i = 0; i < bp_dataset_size(parts[p]); i++) {
            float r = bp_dataset_features(parts[p])[i];
            ck_assert(bp_dataset_targets(parts[p])[2 * i] == r * 0.25f);
            ck_assert(bp_dataset_targets(parts[p])[2 * i + 1] == -r * 1.5f);
        }
    bp_dataset_destroy(tr);
    bp_dataset_destroy(va);
    bp_dataset_destroy(ds);
}
END_TEST

START_TEST(stats_and_standardize)
{
    /* Column 0: 1 2 3 6 (mean 3, population variance (4 + 1 + 0 + 9) / 4);
     * column 1: constant, so std 1. */
    write_text("stats.csv", "1,5,0\n2,5,1\n3,5,0\n6,5,1\n");
    bp_dataset *ds = load_csv_ok("stats.csv", NULL);
    float mean[2], sd[2];
    EXPECT_OK(bp_dataset_feature_stats(ds, mean, sd, 2));
    ck_assert_float_eq_tol(mean[0], 3.0f, 1e-6f);
    ck_assert_float_eq_tol(sd[0], (float)sqrt(3.5), 1e-6f);
    ck_assert_float_eq_tol(mean[1], 5.0f, 1e-6f);
    ck_assert_float_eq(sd[1], 1.0f);
    float m0[2] = {-7, -7}, s0[2] = {-7, -7};
    ck_assert_int_eq(bp_dataset_feature_stats(ds, m0, s0, 3), BP_EINVAL);
    ck_assert(m0[0] == -7 && s0[0] == -7);

    /* standardize uses the statistics it is given, not ds's own. */
    const float gm[2] = {1.0f, 4.0f}, gs[2] = {2.0f, 0.5f};
    EXPECT_OK(bp_dataset_standardize(ds, gm, gs, 2));
    const float want[] = {0, 2, 0.5f, 2, 1, 2, 2.5f, 2};
    check_floats(bp_dataset_features(ds), want, 8);
    const float zero_sd[2] = {1.0f, 0.0f};
    ck_assert_int_eq(bp_dataset_standardize(ds, gm, zero_sd, 2), BP_EINVAL);
    check_floats(bp_dataset_features(ds), want, 8);

    /* Training statistics applied to the validation part. */
    bp_dataset *tr = NULL, *va = NULL;
    EXPECT_OK(bp_dataset_split(ds, 0.5, 3, &tr, &va));
    EXPECT_OK(bp_dataset_feature_stats(tr, mean, sd, 2));
    float before[4];
    memcpy(before, bp_dataset_features(va), sizeof before);
    EXPECT_OK(bp_dataset_standardize(va, mean, sd, 2));
    for (int i = 0; i < 4; i++)
        ck_assert_float_eq_tol(bp_dataset_features(va)[i],
                               (before[i] - mean[i % 2]) / sd[i % 2], 1e-6f);
    bp_dataset_destroy(tr);
    bp_dataset_destroy(va);
    bp_dataset_destroy(ds);
}
END_TEST

/* ------------------------------------------------------------------ main */

static Suite *suite(void)
{
    Suite *s = suite_create("data");
    TCase *idx = tcase_create("idx");
    tcase_add_test(idx, idx_valid_plain_and_gzip);
    tcase_add_test(idx, idx_gzip_multi_member);
    tcase_add_test(idx, idx_large_gzip);
    tcase_add_test(idx, idx_truncated_plain);
    tcase_add_test(idx, idx_truncated_gzip_content);
    tcase_add_test(idx, idx_truncated_gzip_stream);
    tcase_add_test(idx, idx_bad_gzip);
    tcase_add_test(idx, idx_bad_magic_type_dims);
    tcase_add_test(idx, idx_zero_dimension);
    tcase_add_test(idx, idx_huge_dimensions);
    tcase_add_test(idx, idx_count_mismatch);
    tcase_add_test(idx, idx_trailing_bytes);
    tcase_add_test(idx, idx_empty_missing_and_arguments);
    tcase_add_test(idx, unlabelled_datasets);
    tcase_add_test(idx, idx_fashion_mnist);
    tcase_set_timeout(idx, 120);
    suite_add_tcase(s, idx);
    TCase *csv = tcase_create("csv");
    tcase_add_test(csv, csv_defaults_and_basic);
    tcase_add_test(csv, csv_label_column_positions);
    tcase_add_test(csv, csv_regression_targets);
    tcase_add_test(csv, csv_line_ends_and_delimiters);
    tcase_add_test(csv, csv_bad_fields);
    tcase_add_test(csv, csv_empty_missing_and_options);
    suite_add_tcase(s, csv);
    TCase *ops = tcase_create("dataset");
    tcase_add_test(ops, split_is_a_reproducible_permutation);
    tcase_add_test(ops, split_keeps_targets_with_rows);
    tcase_add_test(ops, stats_and_standardize);
    suite_add_tcase(s, ops);
    return s;
}

/* Remove the fixture directory (flat: the test makes no subdirectories). */
static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    char path[512];
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

int main(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/bp-test-data-XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("test_data: mkdtemp");
        return 1;
    }
    int status = tu_run_suite(suite());
    remove_dir(g_dir);
    return status;
}
