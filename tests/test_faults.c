/* Allocation failure, on the public API: for every set-up path (context,
 * net, optimizer, datasets created, split and loaded from IDX plain and
 * gzip and from CSV, model save and load), the n-th allocation is made to
 * fail (bp_debug_fail_alloc) for n = 1, 2, ... until the call makes fewer
 * than n allocations and succeeds. Each failing call must return BP_ENOMEM
 * with a message, leave the caller's out-pointers and objects as they were
 * (and a model file being replaced byte for byte), and free what it took:
 * the leak checkers of the CI stages (ASan's LeakSanitizer, valgrind) fail
 * the run otherwise. Training, evaluation and prediction must allocate
 * nothing at all. */
#include <backprop.h>
#include <check.h>
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "testutil.h"
#include "tu_suite.h"

static char g_dir[64];
static bp_ctx *g_ctx;
/* Distinct from any pointer the library could return. */
static char sentinel_byte;
#define SENTINEL ((void *)&sentinel_byte)

static void setup(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/bp_faults_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
    ck_assert_int_eq(bp_ctx_create(&g_ctx, 2), BP_OK);
}

static void teardown(void)
{
    DIR *d = opendir(g_dir);
    struct dirent *e;
    char p[512];
    while (d && (e = readdir(d)) != NULL) {
        snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
        if (e->d_name[0] != '.')
            unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(g_dir);
    bp_ctx_destroy(g_ctx);
    bp_debug_fail_alloc(0);
}

static void path_in(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", g_dir, name);
}


static unsigned char *read_bytes(const char *path, size_t *size)
{
    unsigned char *buf = tu_read_file(path, size);
    ck_assert_msg(buf != NULL, "cannot read %s", path);
    return buf;
}

/* ------------------------------------------------------ the injection */

/* A call under test. run() makes the call; on failure it must have left
 * everything as it was, which unchanged() checks (NULL: nothing to check
 * beyond the status); undo() releases what a successful run made. */
typedef struct scenario {
    const char *name;
    bp_status (*run)(void *state);
    int (*unchanged)(void *state);
    void (*undo)(void *state);
    void *state;
} scenario;

/* Fail allocation 1, 2, ... of sc until one run makes fewer allocations
 * than the armed number and succeeds. Returns the allocations it makes. */
static long inject_every(const scenario *sc)
{
    for (long n = 1;; n++) {
        ck_assert_msg(n < 10000, "%s: does not terminate", sc->name);
        bp_debug_fail_alloc(n);
        bp_status s = sc->run(sc->state);
        long pending = bp_debug_fail_alloc_pending();
        bp_debug_fail_alloc(0);
        if (pending > 0) {
            /* Fewer than n allocations: nothing failed, so it must work. */
            ck_assert_msg(s == BP_OK, "%s: no allocation failed but got %s: %s", sc->name,
                          bp_status_str(s), bp_last_error());
            sc->undo(sc->state);
            ck_assert_msg(n > 1, "%s: allocates nothing", sc->name);
            return n - 1;
        }
        ck_assert_msg(s == BP_ENOMEM, "%s: allocation %ld failed but got %s: %s", sc->name, n,
                      bp_status_str(s), bp_last_error());
        ck_assert_msg(bp_last_error()[0] != '\0', "%s: no message", sc->name);
        if (sc->unchanged)
            ck_assert_msg(sc->unchanged(sc->state), "%s: allocation %ld failed and changed "
                          "the caller's objects", sc->name, n);
    }
}

/* ------------------------------------------------------------ context */

typedef struct ctx_state {
    bp_ctx *ctx;
} ctx_state;

static bp_status run_ctx_create(void *p) { return bp_ctx_create(&((ctx_state *)p)->ctx, 2); }
static int ctx_unchanged(void *p) { return ((ctx_state *)p)->ctx == SENTINEL; }
static void undo_ctx(void *p)
{
    ctx_state *s = p;
    bp_ctx_destroy(s->ctx);
    s->ctx = SENTINEL;
}

static bp_status run_set_threads(void *p) { return bp_ctx_set_threads(p, 3); }
static int threads_unchanged(void *p) { return bp_ctx_threads(p) == 1; }
static void undo_threads(void *p) { ck_assert_int_eq(bp_ctx_set_threads(p, 1), BP_OK); }

START_TEST(test_ctx)
{
    ctx_state s = {SENTINEL};
    scenario create = {"bp_ctx_create", run_ctx_create, ctx_unchanged, undo_ctx, &s};
    inject_every(&create);

    bp_ctx *ctx = NULL;
    ck_assert_int_eq(bp_ctx_create(&ctx, 1), BP_OK);
    scenario threads = {"bp_ctx_set_threads", run_set_threads, threads_unchanged,
                        undo_threads, ctx};
    /* Without OpenMP the count stays 1 and nothing is allocated. */
    if (bp_build_features() & BP_FEATURE_OPENMP)
        inject_every(&threads);
    bp_ctx_destroy(ctx);
}
END_TEST

/* ------------------------------------------------------- net, optimizer */

static const bp_layer_spec layers[3] = {
    {16, BP_ACT_RELU, 0.0f}, {8, BP_ACT_TANH, 0.0f}, {3, BP_ACT_IDENTITY, 0.0f}};

typedef struct net_state {
    bp_net *net;
    bp_optim *opt;
    bp_optim_config cfg;
} net_state;

static bp_status run_net_create(void *p)
{
    return bp_net_create(&((net_state *)p)->net, g_ctx, 5, 3, layers, BP_HEAD_SOFTMAX_CE, 4);
}
static int net_unchanged(void *p) { return ((net_state *)p)->net == SENTINEL; }
static void undo_net(void *p)
{
    net_state *s = p;
    bp_net_destroy(s->net);
    s->net = SENTINEL;
}

static bp_status run_optim_create(void *p)
{
    net_state *s = p;
    return bp_optim_create(&s->opt, s->net, &s->cfg);
}
static int optim_unchanged(void *p) { return ((net_state *)p)->opt == SENTINEL; }
static void undo_optim(void *p)
{
    net_state *s = p;
    bp_optim_destroy(s->opt);
    s->opt = SENTINEL;
}

START_TEST(test_net_and_optimizers)
{
    net_state s = {SENTINEL, SENTINEL, {0}};
    scenario net = {"bp_net_create", run_net_create, net_unchanged, undo_net, &s};
    inject_every(&net);

    ck_assert_int_eq(bp_net_create(&s.net, g_ctx, 5, 3, layers, BP_HEAD_SOFTMAX_CE, 4), BP_OK);
    scenario opt = {"bp_optim_create", run_optim_create, optim_unchanged, undo_optim, &s};
    const bp_optim_type types[] = {BP_OPTIM_SGD, BP_OPTIM_SGD, BP_OPTIM_ADAM, BP_OPTIM_ADAMW};
    for (int k = 0; k < 4; k++) {
        ck_assert_int_eq(bp_optim_config_default(&s.cfg, types[k]), BP_OK);
        s.cfg.momentum = k == 1 ? 0.9f : 0.0f;
        inject_every(&opt);
    }
    bp_net_destroy(s.net);
}
END_TEST

/* --------------------------------------------------------------- data */

#define N_ROWS 6
#define N_FEAT 4

typedef struct data_state {
    bp_dataset *ds, *train, *val;
    const bp_dataset *src;
    char images[256], labels[256], csv[256];
    const bp_csv_options *csv_opt;
} data_state;

static const float g_X[N_ROWS * N_FEAT] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
                                           12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23};
static const int32_t g_labels[N_ROWS] = {0, 1, 2, 0, 1, 2};

static bp_status run_ds_create(void *p)
{
    return bp_dataset_create(&((data_state *)p)->ds, N_ROWS, N_FEAT, g_X, g_labels, NULL, 0);
}
static bp_status run_ds_create_targets(void *p)
{
    return bp_dataset_create(&((data_state *)p)->ds, N_ROWS, 2, g_X, NULL, g_X, 2);
}
static bp_status run_idx(void *p)
{
    data_state *s = p;
    return bp_dataset_load_idx(&s->ds, s->images, s->labels[0] ? s->labels : NULL);
}
static bp_status run_csv(void *p)
{
    data_state *s = p;
    return bp_dataset_load_csv(&s->ds, s->csv, s->csv_opt);
}
static int ds_unchanged(void *p) { return ((data_state *)p)->ds == SENTINEL; }
static void undo_ds(void *p)
{
    data_state *s = p;
    ck_assert_uint_eq(bp_dataset_size(s->ds), N_ROWS);
    bp_dataset_destroy(s->ds);
    s->ds = SENTINEL;
}

static bp_status run_split(void *p)
{
    data_state *s = p;
    return bp_dataset_split(s->src, 0.5, 7, &s->train, &s->val);
}
static int split_unchanged(void *p)
{
    data_state *s = p;
    return s->train == SENTINEL && s->val == SENTINEL && bp_dataset_size(s->src) == N_ROWS &&
           memcmp(bp_dataset_features(s->src), g_X, sizeof g_X) == 0;
}
static void undo_split(void *p)
{
    data_state *s = p;
    ck_assert_uint_eq(bp_dataset_size(s->train) + bp_dataset_size(s->val), N_ROWS);
    bp_dataset_destroy(s->train);
    bp_dataset_destroy(s->val);
    s->train = s->val = SENTINEL;
}

START_TEST(test_dataset_create_and_split)
{
    data_state s;
    memset(&s, 0, sizeof s);
    s.ds = s.train = s.val = SENTINEL;
    scenario create = {"bp_dataset_create", run_ds_create, ds_unchanged, undo_ds, &s};
    inject_every(&create);
    scenario targets = {"bp_dataset_create (targets)", run_ds_create_targets, ds_unchanged,
                        undo_ds, &s};
    inject_every(&targets);

    bp_dataset *src = NULL;
    ck_assert_int_eq(bp_dataset_create(&src, N_ROWS, N_FEAT, g_X, g_labels, NULL, 0), BP_OK);
    s.src = src;
    scenario split = {"bp_dataset_split", run_split, split_unchanged, undo_split, &s};
    inject_every(&split);
    bp_dataset_destroy(src);
}
END_TEST

/* An IDX file: header of n_dims big-endian sizes, then bytes 0, 1, 2, ... */
static void write_idx(const char *path, int gz, unsigned n_dims, const unsigned *dims)
{
    unsigned char buf[4 + 12 + 4096];
    size_t n = 4, data = 1;
    buf[0] = buf[1] = 0;
    buf[2] = 8;
    buf[3] = (unsigned char)n_dims;
    for (unsigned i = 0; i < n_dims; i++) {
        for (int b = 3; b >= 0; b--)
            buf[n++] = (unsigned char)(dims[i] >> (8 * b));
        data *= dims[i];
    }
    ck_assert_uint_le(n + data, sizeof buf);
    for (size_t i = 0; i < data; i++)
        buf[n++] = (unsigned char)(n_dims == 1 ? i % 3 : i);
    if (gz) {
        gzFile g = gzopen(path, "wb");
        ck_assert_ptr_nonnull(g);
        ck_assert_int_eq(gzwrite(g, buf, (unsigned)n), (int)n);
        ck_assert_int_eq(gzclose(g), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        ck_assert_uint_eq(fwrite(buf, 1, n, f), n);
        ck_assert_int_eq(fclose(f), 0);
    }
}

START_TEST(test_load_idx)
{
    data_state s;
    memset(&s, 0, sizeof s);
    s.ds = SENTINEL;
    const unsigned img_dims[3] = {N_ROWS, 2, 3}, lab_dims[1] = {N_ROWS};
    scenario idx = {"bp_dataset_load_idx", run_idx, ds_unchanged, undo_ds, &s};
    for (int gz = 0; gz < 2; gz++) {
        path_in(s.images, sizeof s.images, gz ? "img.gz" : "img");
        path_in(s.labels, sizeof s.labels, gz ? "lab.gz" : "lab");
        write_idx(s.images, gz, 3, img_dims);
        write_idx(s.labels, gz, 1, lab_dims);
        long pair = inject_every(&idx);
        s.labels[0] = '\0';
        long images_only = inject_every(&idx);
        /* zlib's state and window come from the same allocator. */
        if (gz)
            ck_assert_int_gt(pair, images_only);
    }
}
END_TEST

START_TEST(test_load_csv)
{
    data_state s;
    memset(&s, 0, sizeof s);
    s.ds = SENTINEL;
    path_in(s.csv, sizeof s.csv, "data.csv");
    FILE *f = fopen(s.csv, "w");
    ck_assert_ptr_nonnull(f);
    /* A long header makes the line buffer grow several times. */
    fprintf(f, "a");
    for (int i = 0; i < 200; i++)
        fprintf(f, "%s", "_long_header_text");
    fprintf(f, ",b,c,label\n");
    for (int r = 0; r < N_ROWS; r++)
        fprintf(f, "%d.5,%d,-%d,%d\r\n", r, r * 2, r, r % 3);
    ck_assert_int_eq(fclose(f), 0);
    bp_csv_options opt;
    ck_assert_int_eq(bp_csv_options_default(&opt), BP_OK);
    opt.header = 1;
    s.csv_opt = &opt;
    scenario csv = {"bp_dataset_load_csv", run_csv, ds_unchanged, undo_ds, &s};
    long n = inject_every(&csv);
    ck_assert_int_ge(n, 5); /* the dataset's blocks and the line buffer's growth */
}
END_TEST

/* -------------------------------------------------------------- models */

typedef struct model_state {
    char path[256];
    const bp_net *net;
    const bp_optim *opt;
    unsigned char *before; /* the file being replaced */
    size_t before_size;
    bp_net *loaded;
    bp_optim *loaded_opt;
    bp_kv *meta;
    size_t n_meta;
    bp_model_info info;
} model_state;

static const bp_kv g_meta[2] = {{"dataset", "synthetic"}, {"note", "fault injection"}};

static bp_status run_save(void *p)
{
    model_state *s = p;
    return bp_model_save(s->path, s->net, s->opt, 11, 3, g_meta, 2);
}
static int save_unchanged(void *p)
{
    model_state *s = p;
    size_t n;
    unsigned char *now = read_bytes(s->path, &n);
    int same = n == s->before_size && memcmp(now, s->before, n) == 0;
    free(now);
    return same && tu_count_named(g_dir, ".tmp.") == 0;
}
static void undo_save(void *p)
{
    model_state *s = p;
    /* Put the old file back for the next run. */
    FILE *f = fopen(s->path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(s->before, 1, s->before_size, f), s->before_size);
    ck_assert_int_eq(fclose(f), 0);
}

static bp_status run_load(void *p)
{
    model_state *s = p;
    return bp_model_load(s->path, g_ctx, 4, &s->loaded, &s->loaded_opt, &s->info, &s->meta,
                         &s->n_meta);
}
static int load_unchanged(void *p)
{
    model_state *s = p;
    return s->loaded == SENTINEL && s->loaded_opt == SENTINEL && s->meta == SENTINEL &&
           s->n_meta == 99 && s->info.epoch == 99;
}
static void undo_load(void *p)
{
    model_state *s = p;
    ck_assert_ptr_nonnull(s->loaded_opt);
    ck_assert_uint_eq(s->n_meta, 2);
    ck_assert_str_eq(s->meta[1].value, "fault injection");
    ck_assert_uint_eq(s->info.epoch, 3);
    bp_kv_free(s->meta, s->n_meta);
    bp_optim_destroy(s->loaded_opt);
    bp_net_destroy(s->loaded);
    s->loaded = SENTINEL;
    s->loaded_opt = SENTINEL;
    s->meta = SENTINEL;
    s->n_meta = 99;
    s->info.epoch = 99;
}

START_TEST(test_model_save_and_load)
{
    bp_net *net = NULL, *other = NULL;
    bp_optim *opt = NULL;
    bp_optim_config cfg;
    ck_assert_int_eq(bp_net_create(&net, g_ctx, 5, 3, layers, BP_HEAD_SOFTMAX_CE, 4), BP_OK);
    ck_assert_int_eq(bp_net_init(net, BP_INIT_HE_UNIFORM, 1), BP_OK);
    ck_assert_int_eq(bp_optim_config_default(&cfg, BP_OPTIM_ADAM), BP_OK);
    ck_assert_int_eq(bp_optim_create(&opt, net, &cfg), BP_OK);
    ck_assert_int_eq(bp_net_create(&other, g_ctx, 5, 1, layers, BP_HEAD_SOFTMAX_CE, 4), BP_OK);

    model_state s;
    memset(&s, 0, sizeof s);
    path_in(s.path, sizeof s.path, "model.bpm");
    /* The file a failed save must leave alone: a different model. */
    ck_assert_int_eq(bp_model_save(s.path, other, NULL, 0, 0, NULL, 0), BP_OK);
    s.before = read_bytes(s.path, &s.before_size);
    s.net = net;
    s.opt = opt;
    scenario save = {"bp_model_save", run_save, save_unchanged, undo_save, &s};
    inject_every(&save);

    ck_assert_int_eq(bp_model_save(s.path, net, opt, 11, 3, g_meta, 2), BP_OK);
    s.loaded = SENTINEL;
    s.loaded_opt = SENTINEL;
    s.meta = SENTINEL;
    s.n_meta = 99;
    s.info.epoch = 99;
    scenario load = {"bp_model_load", run_load, load_unchanged, undo_load, &s};
    long n = inject_every(&load);
    /* file, specs, the net's blocks, the optimizer's, the metadata */
    ck_assert_int_ge(n, 8);
    free(s.before);
    bp_net_destroy(other);
    bp_optim_destroy(opt);
    bp_net_destroy(net);
}
END_TEST

/* -------------------------------------------- nothing else allocates */

static int count_batches(void *user, size_t done, size_t n, float loss)
{
    (void)done, (void)n, (void)loss;
    ++*(int *)user;
    return 0;
}

START_TEST(test_training_allocates_nothing)
{
    enum { N = 40, F = 5 };
    float X[N * F], Y[8 * 3];
    int32_t labels[N];
    tu_rng r;
    tu_seed(&r, 3);
    tu_fill(&r, X, N * F, -1, 1);
    for (int i = 0; i < N; i++)
        labels[i] = i % 3;
    bp_net *net = NULL;
    bp_optim *opt = NULL;
    bp_dataset *ds = NULL;
    bp_optim_config cfg;
    ck_assert_int_eq(bp_net_create(&net, g_ctx, F, 3, layers, BP_HEAD_SOFTMAX_CE, 8), BP_OK);
    ck_assert_int_eq(bp_net_init(net, BP_INIT_HE_UNIFORM, 1), BP_OK);
    ck_assert_int_eq(bp_optim_config_default(&cfg, BP_OPTIM_ADAM), BP_OK);
    cfg.clip_norm = 1.0f;
    ck_assert_int_eq(bp_optim_create(&opt, net, &cfg), BP_OK);
    ck_assert_int_eq(bp_dataset_create(&ds, N, F, X, labels, NULL, 0), BP_OK);

    bp_debug_fail_alloc(1); /* the very next allocation would fail */
    float loss = 0, acc = 0;
    int batches = 0;
    ck_assert_int_eq(bp_train_step(net, opt, X, labels, NULL, 8, &loss), BP_OK);
    ck_assert_int_eq(bp_train_epoch(net, opt, ds, 8, 1, 0, &loss), BP_OK);
    ck_assert_int_eq(bp_train_epoch_progress(net, opt, ds, 8, 1, 1, &loss, count_batches,
                                             &batches, NULL), BP_OK);
    ck_assert_int_eq(bp_evaluate(net, ds, 8, &loss, &acc), BP_OK);
    ck_assert_int_eq(bp_net_predict(net, X, 8, Y), BP_OK);
    ck_assert_int_eq(bp_net_forward(net, X, 8), BP_OK);
    ck_assert_int_eq(bp_net_backward(net, labels, NULL, &loss), BP_OK);
    ck_assert_int_eq(bp_optim_step(opt), BP_OK);
    ck_assert_int_eq(bp_debug_fail_alloc_pending(), 1);
    bp_debug_fail_alloc(0);
    ck_assert_int_eq(batches, N / 8);

    bp_dataset_destroy(ds);
    bp_optim_destroy(opt);
    bp_net_destroy(net);
}
END_TEST

/* ------------------------------------------------ the hook is per thread */

static void *create_in_thread(void *arg)
{
    bp_ctx *ctx = NULL;
    *(bp_status *)arg = bp_ctx_create(&ctx, 1);
    bp_ctx_destroy(ctx);
    return NULL;
}

START_TEST(test_hook_is_per_thread)
{
    bp_debug_fail_alloc(1);
    bp_status in_thread = BP_EINVAL;
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, create_in_thread, &in_thread), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_int_eq(in_thread, BP_OK);
    ck_assert_int_eq(bp_debug_fail_alloc_pending(), 1);
    bp_ctx *ctx = SENTINEL;
    ck_assert_int_eq(bp_ctx_create(&ctx, 1), BP_ENOMEM);
    ck_assert_ptr_eq(ctx, SENTINEL);
    ck_assert_int_eq(bp_debug_fail_alloc_pending(), 0);
    /* Once only: the next call works. */
    ck_assert_int_eq(bp_ctx_create(&ctx, 1), BP_OK);
    bp_ctx_destroy(ctx);
    bp_debug_fail_alloc(0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("faults");
    TCase *tc = tcase_create("alloc");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_ctx);
    tcase_add_test(tc, test_net_and_optimizers);
    tcase_add_test(tc, test_dataset_create_and_split);
    tcase_add_test(tc, test_load_idx);
    tcase_add_test(tc, test_load_csv);
    tcase_add_test(tc, test_model_save_and_load);
    tcase_add_test(tc, test_training_allocates_nothing);
    tcase_add_test(tc, test_hook_is_per_thread);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
