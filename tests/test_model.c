/* Model files (bp_model_save / bp_model_load), on the public API:
 *  - round trips are bit-exact (architecture, parameters, optimizer
 *    configuration, steps and every state slot, training position,
 *    metadata), and training resumed from a file gives the same bits as
 *    training straight through;
 *  - the bytes follow doc/model-format.md (checked with an independent
 *    CRC32 written here);
 *  - every corruption we can think of is BP_EFORMAT: every byte flipped,
 *    every truncation, and hand-made files whose CRCs are recomputed so the
 *    structural checks themselves are exercised;
 *  - a failed save leaves the previous file and no temporary behind.
 * Files live in a mkdtemp directory under /tmp, removed after each test. */
#include <backprop.h>
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"
#include "tu_suite.h"

#define HEADER 24
#define ARCH_OFF HEADER /* the first section */

static char g_dir[64];
static bp_ctx *g_ctx;

/* --------------------------------------------------------------- files */

static void path_in(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", g_dir, name);
}

/* Remove everything under dir (one level of subdirectories is enough here). */
static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            remove_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}


static unsigned char *read_bytes(const char *path, size_t *size)
{
    unsigned char *buf = tu_read_file(path, size);
    ck_assert_msg(buf != NULL, "cannot read %s", path);
    return buf;
}

static void write_bytes(const char *path, const unsigned char *buf, size_t size)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(buf, 1, size, f), size);
    ck_assert_int_eq(fclose(f), 0);
}

static void setup(void)
{
    strcpy(g_dir, "/tmp/bp_model_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
    ck_assert_int_eq(bp_ctx_create(&g_ctx, 1), BP_OK);
}

static void teardown(void)
{
    bp_ctx_destroy(g_ctx);
    remove_tree(g_dir);
}

/* ------------------------------------------------- format, independently */

/* CRC-32 (ISO-HDLC), bit by bit: independent of zlib's table version. */
static uint32_t crc32_ref(const unsigned char *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return c ^ 0xFFFFFFFFu;
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const unsigned char *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static void set_le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void set_le64(unsigned char *p, uint64_t v)
{
    set_le32(p, (uint32_t)v);
    set_le32(p + 4, (uint32_t)(v >> 32));
}

static void fix_header_crc(unsigned char *buf)
{
    set_le32(buf + 20, crc32_ref(buf, 20));
}

/* Offset of the section with `tag` (walking the declared lengths), or -1. */
static long find_section(const unsigned char *buf, size_t size, const char *tag)
{
    size_t off = HEADER;
    while (off + 16 <= size) {
        if (memcmp(buf + off, tag, 4) == 0)
            return (long)off;
        off += 16 + (size_t)le64(buf + off + 4);
    }
    return -1;
}

static size_t section_payload(const unsigned char *buf, const char *tag, size_t size)
{
    long off = find_section(buf, size, tag);
    ck_assert_int_ge(off, 0);
    return (size_t)off + 12;
}

static void fix_section_crc(unsigned char *buf, size_t off)
{
    size_t len = (size_t)le64(buf + off + 4);
    set_le32(buf + off + 12 + len, crc32_ref(buf + off, 12 + len));
}

/* ------------------------------------------------------------ models */

/* 3 -> 5 (leaky 0.125) -> 4 (tanh) -> 3 (identity), sigmoid-BCE head. */
static const bp_layer_spec big_layers[3] = {
    {5, BP_ACT_LEAKY_RELU, 0.125f}, {4, BP_ACT_TANH, 0.0f}, {3, BP_ACT_IDENTITY, 0.0f}};
/* The 3-4-2 net for the byte-by-byte tests. */
static const bp_layer_spec small_layers[2] = {{4, BP_ACT_LEAKY_RELU, 0.01f},
                                              {2, BP_ACT_IDENTITY, 0.0f}};

static size_t tensor_size(const bp_net *net, size_t layer, bp_tensor which)
{
    bp_layer_spec s;
    ck_assert_int_eq(bp_net_layer(net, layer, &s), BP_OK);
    size_t n_in = layer == 0 ? bp_net_n_in(net) : 0;
    if (layer > 0) {
        bp_layer_spec prev;
        ck_assert_int_eq(bp_net_layer(net, layer - 1, &prev), BP_OK);
        n_in = prev.n_out;
    }
    return which == BP_WEIGHT ? s.n_out * n_in : s.n_out;
}

/* Random values with a signed zero and a subnormal, to see every bit survive. */
static void fill_odd(tu_rng *r, float *x, size_t n)
{
    tu_fill(r, x, n, -2.0, 2.0);
    x[0] = -0.0f;
    if (n > 1)
        x[n - 1] = 1e-40f;
}

static bp_net *make_net(const bp_layer_spec *layers, size_t n_layers, bp_head head,
                        uint64_t seed)
{
    bp_net *net = NULL;
    ck_assert_int_eq(bp_net_create(&net, g_ctx, 3, n_layers, layers, head, 8), BP_OK);
    tu_rng r;
    tu_seed(&r, seed);
    float buf[64];
    for (size_t i = 0; i < n_layers; i++)
        for (int w = 0; w < 2; w++) {
            size_t n = tensor_size(net, i, (bp_tensor)w);
            ck_assert_uint_le(n, 64);
            fill_odd(&r, buf, n);
            ck_assert_int_eq(bp_net_set_param(net, i, (bp_tensor)w, buf, n), BP_OK);
        }
    return net;
}

static bp_optim *make_optim(bp_net *net, const bp_optim_config *cfg, uint64_t seed)
{
    bp_optim *opt = NULL;
    ck_assert_int_eq(bp_optim_create(&opt, net, cfg), BP_OK);
    tu_rng r;
    tu_seed(&r, seed);
    float buf[64];
    for (size_t k = 0; k < bp_optim_n_slots(opt); k++)
        for (size_t i = 0; i < bp_net_n_layers(net); i++)
            for (int w = 0; w < 2; w++) {
                size_t n = tensor_size(net, i, (bp_tensor)w);
                fill_odd(&r, buf, n);
                ck_assert_int_eq(bp_optim_set_state(opt, i, (bp_tensor)w, k, buf, n), BP_OK);
            }
    ck_assert_int_eq(bp_optim_set_steps(opt, 12345), BP_OK);
    return opt;
}

static int same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

static void assert_nets_equal(const bp_net *a, const bp_net *b)
{
    ck_assert_uint_eq(bp_net_n_in(a), bp_net_n_in(b));
    ck_assert_uint_eq(bp_net_n_layers(a), bp_net_n_layers(b));
    ck_assert_int_eq(bp_net_head(a), bp_net_head(b));
    for (size_t i = 0; i < bp_net_n_layers(a); i++) {
        bp_layer_spec sa, sb;
        ck_assert_int_eq(bp_net_layer(a, i, &sa), BP_OK);
        ck_assert_int_eq(bp_net_layer(b, i, &sb), BP_OK);
        ck_assert_uint_eq(sa.n_out, sb.n_out);
        ck_assert_int_eq(sa.activation, sb.activation);
        ck_assert(same_bits(sa.alpha, sb.alpha));
        for (int w = 0; w < 2; w++) {
            const float *pa, *pb;
            size_t n = tensor_size(a, i, (bp_tensor)w);
            ck_assert_int_eq(bp_net_param_view(a, i, (bp_tensor)w, &pa, NULL, NULL), BP_OK);
            ck_assert_int_eq(bp_net_param_view(b, i, (bp_tensor)w, &pb, NULL, NULL), BP_OK);
            ck_assert_msg(memcmp(pa, pb, n * sizeof(float)) == 0,
                          "layer %zu tensor %d differs", i, w);
        }
    }
}

static void assert_configs_equal(const bp_optim_config *a, const bp_optim_config *b)
{
    ck_assert_int_eq(a->type, b->type);
    ck_assert(same_bits(a->lr, b->lr));
    ck_assert(same_bits(a->momentum, b->momentum));
    ck_assert_int_eq(a->nesterov, b->nesterov);
    ck_assert(same_bits(a->beta1, b->beta1));
    ck_assert(same_bits(a->beta2, b->beta2));
    ck_assert(same_bits(a->eps, b->eps));
    ck_assert(same_bits(a->weight_decay, b->weight_decay));
    ck_assert(same_bits(a->clip_norm, b->clip_norm));
    ck_assert_int_eq(a->schedule, b->schedule);
    ck_assert_uint_eq(a->step_size, b->step_size);
    ck_assert(same_bits(a->gamma, b->gamma));
    ck_assert_uint_eq(a->warmup_steps, b->warmup_steps);
    ck_assert_uint_eq(a->total_steps, b->total_steps);
    ck_assert(same_bits(a->min_lr, b->min_lr));
}

static void assert_optims_equal(const bp_optim *a, const bp_optim *b, const bp_net *net)
{
    bp_optim_config ca, cb;
    ck_assert_int_eq(bp_optim_config_get(a, &ca), BP_OK);
    ck_assert_int_eq(bp_optim_config_get(b, &cb), BP_OK);
    assert_configs_equal(&ca, &cb);
    ck_assert_uint_eq(bp_optim_steps(a), bp_optim_steps(b));
    ck_assert_uint_eq(bp_optim_n_slots(a), bp_optim_n_slots(b));
    float xa[64], xb[64];
    for (size_t k = 0; k < bp_optim_n_slots(a); k++)
        for (size_t i = 0; i < bp_net_n_layers(net); i++)
            for (int w = 0; w < 2; w++) {
                size_t n = tensor_size(net, i, (bp_tensor)w);
                ck_assert_int_eq(bp_optim_get_state(a, i, (bp_tensor)w, k, xa, n), BP_OK);
                ck_assert_int_eq(bp_optim_get_state(b, i, (bp_tensor)w, k, xb, n), BP_OK);
                ck_assert_msg(memcmp(xa, xb, n * sizeof(float)) == 0,
                              "slot %zu layer %zu tensor %d differs", k, i, w);
            }
}

static void assert_same_predictions(bp_net *a, bp_net *b)
{
    float X[4 * 3], ya[4 * 3], yb[4 * 3];
    tu_rng r;
    tu_seed(&r, 5);
    tu_fill(&r, X, 12, -1.0, 1.0);
    ck_assert_int_eq(bp_net_predict(a, X, 4, ya), BP_OK);
    ck_assert_int_eq(bp_net_predict(b, X, 4, yb), BP_OK);
    size_t n = 4 * bp_net_n_out(a);
    ck_assert(memcmp(ya, yb, n * sizeof(float)) == 0);
}

static const bp_kv test_meta[4] = {{"name", "demo model"},
                                   {"comment", "na\xc3\xafve \xe6\xa8\xa1\xe5\x9e\x8b"},
                                   {"empty", ""},
                                   {"", "empty key"}};

/* ----------------------------------------------------------- round trip */

/* Save net (+ opt, + metadata) and load it back; check everything. */
static void roundtrip(const bp_optim_config *cfg, size_t n_meta)
{
    char path[256];
    path_in(path, sizeof path, "model.bpm");
    bp_net *net = make_net(big_layers, 3, BP_HEAD_SIGMOID_BCE, 11);
    bp_optim *opt = cfg ? make_optim(net, cfg, 12) : NULL;
    ck_assert_int_eq(bp_model_save(path, net, opt, 0xDEADBEEFCAFEull, 7, test_meta, n_meta),
                     BP_OK);
    bp_net *net2 = NULL;
    bp_optim *opt2 = (bp_optim *)&net2; /* must be overwritten */
    bp_model_info info;
    bp_kv *meta = (bp_kv *)&net2;
    size_t n_meta2 = 99;
    ck_assert_int_eq(bp_model_load(path, g_ctx, 4, &net2, &opt2, &info, &meta, &n_meta2),
                     BP_OK);
    ck_assert_uint_eq(info.format_version, 1);
    ck_assert_uint_eq(info.library_version, bp_version());
    ck_assert_int_eq(info.has_optimizer, cfg != NULL);
    ck_assert_uint_eq(info.seed, 0xDEADBEEFCAFEull);
    ck_assert_uint_eq(info.epoch, 7);
    ck_assert_uint_eq(bp_net_max_batch(net2), 4);
    assert_nets_equal(net, net2);
    assert_same_predictions(net, net2);
    if (cfg)
        assert_optims_equal(opt, opt2, net);
    else
        ck_assert_ptr_null(opt2);
    ck_assert_uint_eq(n_meta2, n_meta);
    if (n_meta == 0)
        ck_assert_ptr_null(meta);
    for (size_t i = 0; i < n_meta; i++) {
        ck_assert_str_eq(meta[i].key, test_meta[i].key);
        ck_assert_str_eq(meta[i].value, test_meta[i].value);
    }
    bp_kv_free(meta, n_meta2);
    bp_optim_destroy(opt2);
    bp_net_destroy(net2);
    bp_optim_destroy(opt);
    bp_net_destroy(net);
    ck_assert_int_eq(tu_count_named(g_dir, ".tmp."), 0);
}

START_TEST(test_roundtrip_no_optimizer)
{
    roundtrip(NULL, 0);
}
END_TEST

START_TEST(test_roundtrip_sgd_momentum)
{
    bp_optim_config c;
    ck_assert_int_eq(bp_optim_config_default(&c, BP_OPTIM_SGD), BP_OK);
    c.lr = 0.05f;
    c.momentum = 0.9f;
    c.nesterov = 1;
    c.weight_decay = 1e-4f;
    c.clip_norm = 2.5f;
    c.schedule = BP_SCHED_STEP;
    c.step_size = 7;
    c.gamma = 0.5f;
    roundtrip(&c, 4);
}
END_TEST

START_TEST(test_roundtrip_plain_sgd)
{
    bp_optim_config c;
    ck_assert_int_eq(bp_optim_config_default(&c, BP_OPTIM_SGD), BP_OK);
    roundtrip(&c, 1);
}
END_TEST

START_TEST(test_roundtrip_adam)
{
    bp_optim_config c;
    ck_assert_int_eq(bp_optim_config_default(&c, BP_OPTIM_ADAM), BP_OK);
    c.beta1 = 0.8f;
    c.eps = 1e-7f;
    c.schedule = BP_SCHED_COSINE;
    c.warmup_steps = 10;
    c.total_steps = 1000;
    c.min_lr = 1e-5f;
    roundtrip(&c, 4);
}
END_TEST

START_TEST(test_roundtrip_adamw)
{
    bp_optim_config c;
    ck_assert_int_eq(bp_optim_config_default(&c, BP_OPTIM_ADAMW), BP_OK);
    roundtrip(&c, 0);
}
END_TEST

/* The file has an optimizer and metadata; the caller wants neither. */
START_TEST(test_load_net_only)
{
    char path[256];
    path_in(path, sizeof path, "model.bpm");
    bp_optim_config c;
    ck_assert_int_eq(bp_optim_config_default(&c, BP_OPTIM_ADAM), BP_OK);
    bp_net *net = make_net(big_layers, 3, BP_HEAD_MSE, 3);
    bp_optim *opt = make_optim(net, &c, 4);
    ck_assert_int_eq(bp_model_save(path, net, opt, 1, 2, test_meta, 2), BP_OK);
    bp_net *net2 = NULL;
    ck_assert_int_eq(bp_model_load(path, g_ctx, 8, &net2, NULL, NULL, NULL, NULL), BP_OK);
    assert_nets_equal(net, net2);
    bp_net_destroy(net2);
    bp_optim_destroy(opt);
    bp_net_destroy(net);
}
END_TEST

/* ------------------------------------------------------------- resume */

static bp_dataset *make_dataset(void)
{
    enum { N = 23 };
    float X[N * 3];
    int32_t labels[N];
    tu_rng r;
    tu_seed(&r, 77);
    tu_fill(&r, X, N * 3, -1.0, 1.0);
    for (int i = 0; i < N; i++)
        labels[i] = X[3 * i] + X[3 * i + 1] > 0.0f;
    bp_dataset *ds = NULL;
    ck_assert_int_eq(bp_dataset_create(&ds, N, 3, X, labels, NULL, 0), BP_OK);
    return ds;
}

static void new_trainee(const bp_optim_config *cfg, bp_net **net, bp_optim **opt)
{
    ck_assert_int_eq(bp_net_create(net, g_ctx, 3, 2, small_layers, BP_HEAD_SOFTMAX_CE, 5),
                     BP_OK);
    ck_assert_int_eq(bp_net_init(*net, BP_INIT_HE_UNIFORM, 2024), BP_OK);
    ck_assert_int_eq(bp_optim_create(opt, *net, cfg), BP_OK);
}

/* 4 epochs straight == 2 epochs, save, load, epochs 2..3: bit for bit. */
static void resume(const bp_optim_config *cfg)
{
    const uint64_t seed = 99;
    char path[256];
    path_in(path, sizeof path, "resume.bpm");
    bp_dataset *ds = make_dataset();
    bp_net *a, *b, *c;
    bp_optim *oa, *ob, *oc = NULL;
    new_trainee(cfg, &a, &oa);
    for (uint64_t e = 0; e < 4; e++)
        ck_assert_int_eq(bp_train_epoch(a, oa, ds, 5, seed, e, NULL), BP_OK);

    new_trainee(cfg, &b, &ob);
    for (uint64_t e = 0; e < 2; e++)
        ck_assert_int_eq(bp_train_epoch(b, ob, ds, 5, seed, e, NULL), BP_OK);
    ck_assert_int_eq(bp_model_save(path, b, ob, seed, 2, NULL, 0), BP_OK);
    bp_optim_destroy(ob);
    bp_net_destroy(b);

    bp_model_info info;
    ck_assert_int_eq(bp_model_load(path, g_ctx, 5, &c, &oc, &info, NULL, NULL), BP_OK);
    ck_assert_ptr_nonnull(oc);
    for (uint64_t e = info.epoch; e < 4; e++)
        ck_assert_int_eq(bp_train_epoch(c, oc, ds, 5, info.seed, e, NULL), BP_OK);
    assert_nets_equal(a, c);
    assert_optims_equal(oa, oc, a);
    bp_optim_destroy(oc);
    bp_net_destroy(c);
    bp_optim_destroy(oa);
    bp_net_destroy(a);
    bp_dataset_destroy(ds);
}

START_TEST(test_resume_adam)
{
    bp_optim_config c;
    ck_assert_int_eq(bp_optim_config_default(&c, BP_OPTIM_ADAM), BP_OK);
    c.lr = 0.01f;
    c.schedule = BP_SCHED_COSINE;
    c.warmup_steps = 3;
    c.total_steps = 20;
    resume(&c);
}
END_TEST

START_TEST(test_resume_sgd_momentum)
{
    bp_optim_config c;
    ck_assert_int_eq(bp_optim_config_default(&c, BP_OPTIM_SGD), BP_OK);
    c.lr = 0.1f;
    c.momentum = 0.9f;
    c.schedule = BP_SCHED_STEP;
    c.step_size = 4;
    c.gamma = 0.5f;
    resume(&c);
}
END_TEST

/* ------------------------------------------------------------- layout */

START_TEST(test_layout)
{
    static const unsigned char check[] = "123456789";
    ck_assert_uint_eq(crc32_ref(check, 9), 0xCBF43926u);
    char path[256];
    path_in(path, sizeof path, "model.bpm");
    bp_optim_config c;
    ck_assert_int_eq(bp_optim_config_default(&c, BP_OPTIM_ADAM), BP_OK);
    bp_net *net = make_net(small_layers, 2, BP_HEAD_MSE, 1);
    bp_optim *opt = make_optim(net, &c, 2);
    ck_assert_int_eq(bp_model_save(path, net, opt, 0x0102030405060708ull, 3, test_meta, 1),
                     BP_OK);
    size_t size;
    unsigned char *buf = read_bytes(path, &size);
    ck_assert_uint_ge(size, HEADER);
    ck_assert(memcmp(buf, "BPMODEL\0", 8) == 0);
    ck_assert_uint_eq(le32(buf + 8), 1);
    ck_assert_uint_eq(le32(buf + 12), bp_version());
    ck_assert_uint_eq(le32(buf + 16), 5);
    ck_assert_uint_eq(le32(buf + 20), crc32_ref(buf, 20));
    /* Sections in order, each with its CRC, exactly filling the file. */
    static const char *const tags[5] = {"ARCH", "PARM", "OPTM", "TRAN", "META"};
    size_t off = HEADER;
    for (int s = 0; s < 5; s++) {
        ck_assert_uint_le(off + 16, size);
        ck_assert(memcmp(buf + off, tags[s], 4) == 0);
        size_t len = (size_t)le64(buf + off + 4);
        ck_assert_uint_eq(le32(buf + off + 12 + len), crc32_ref(buf + off, 12 + len));
        off += 16 + len;
    }
    ck_assert_uint_eq(off, size);
    /* ARCH: n_in, n_layers, head, then layer 0's n_out, activation, alpha. */
    const unsigned char *a = buf + ARCH_OFF + 12;
    ck_assert_uint_eq(le64(a), 3);
    ck_assert_uint_eq(le32(a + 8), 2);
    ck_assert_uint_eq(le32(a + 12), BP_HEAD_MSE);
    ck_assert_uint_eq(le64(a + 16), 4);
    ck_assert_uint_eq(le32(a + 24), BP_ACT_LEAKY_RELU);
    float alpha = 0.01f;
    uint32_t bits;
    memcpy(&bits, &alpha, 4);
    ck_assert_uint_eq(le32(a + 28), bits);
    /* PARM: W0 then b0 ... as little-endian binary32. */
    const unsigned char *p = buf + section_payload(buf, "PARM", size);
    float w[12];
    ck_assert_int_eq(bp_net_get_param(net, 0, BP_WEIGHT, w, 12), BP_OK);
    for (int i = 0; i < 12; i++) {
        memcpy(&bits, &w[i], 4);
        ck_assert_uint_eq(le32(p + 4 * i), bits);
    }
    /* OPTM: steps at 72, n_slots at 80; TRAN: seed, epoch. */
    const unsigned char *o = buf + section_payload(buf, "OPTM", size);
    ck_assert_uint_eq(le32(o), BP_OPTIM_ADAM);
    ck_assert_uint_eq(le64(o + 72), 12345);
    ck_assert_uint_eq(le32(o + 80), 2);
    const unsigned char *t = buf + section_payload(buf, "TRAN", size);
    ck_assert_uint_eq(le64(t), 0x0102030405060708ull);
    ck_assert_uint_eq(le64(t + 8), 3);
    free(buf);
    bp_optim_destroy(opt);
    bp_net_destroy(net);
}
END_TEST

/* ----------------------------------------------------------- corruption */

/* A small model with every section, as a fresh copy of its bytes. Saved
 * once per process: each save fsyncs, which costs far more than the test. */
static unsigned char *small_model(size_t *size)
{
    static unsigned char *bytes;
    static size_t n_bytes;
    if (!bytes) {
        char path[256];
        path_in(path, sizeof path, "small.bpm");
        bp_optim_config c;
        ck_assert_int_eq(bp_optim_config_default(&c, BP_OPTIM_ADAM), BP_OK);
        bp_net *net = make_net(small_layers, 2, BP_HEAD_SOFTMAX_CE, 21);
        bp_optim *opt = make_optim(net, &c, 22);
        ck_assert_int_eq(bp_model_save(path, net, opt, 5, 6, test_meta, 2), BP_OK);
        bp_optim_destroy(opt);
        bp_net_destroy(net);
        bytes = read_bytes(path, &n_bytes);
    }
    unsigned char *copy = malloc(n_bytes + 1);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, bytes, n_bytes);
    *size = n_bytes;
    return copy;
}

/* The file at path must load as BP_EFORMAT, leaving every out-pointer
 * untouched, with a message naming the file and an offset. */
static void expect_load_format_error(const char *path, const char *what, size_t where)
{
    int sentinel;
    bp_net *net = (bp_net *)&sentinel;
    bp_optim *opt = (bp_optim *)&sentinel;
    bp_kv *meta = (bp_kv *)&sentinel;
    size_t n_meta = 77;
    bp_model_info info;
    bp_status st = bp_model_load(path, g_ctx, 4, &net, &opt, &info, &meta, &n_meta);
    ck_assert_msg(st == BP_EFORMAT, "%s at %zu: status %d (%s)", what, where, (int)st,
                  bp_last_error());
    ck_assert_ptr_eq(net, (bp_net *)&sentinel);
    ck_assert_ptr_eq(opt, (bp_optim *)&sentinel);
    ck_assert_ptr_eq(meta, (bp_kv *)&sentinel);
    ck_assert_uint_eq(n_meta, 77);
    ck_assert_msg(strstr(bp_last_error(), path) != NULL, "message lacks the path: %s",
                  bp_last_error());
    ck_assert_msg(strstr(bp_last_error(), "offset") != NULL, "message lacks the offset: %s",
                  bp_last_error());
}

static void expect_format_error(const unsigned char *buf, size_t size, const char *what,
                                size_t where)
{
    char path[256];
    path_in(path, sizeof path, "bad.bpm");
    write_bytes(path, buf, size);
    expect_load_format_error(path, what, where);
}

/* The file is patched in place, byte by byte: rewriting it whole each time
 * (truncate, write, close) makes ext4 flush it, which is slow under load. */
START_TEST(test_flip_every_byte)
{
    static const unsigned char masks[3] = {0x01, 0x80, 0xFF};
    char path[256];
    path_in(path, sizeof path, "bad.bpm");
    size_t size;
    unsigned char *buf = small_model(&size);
    write_bytes(path, buf, size);
    FILE *f = fopen(path, "r+b");
    ck_assert_ptr_nonnull(f);
    for (size_t i = 0; i < size; i++)
        for (int m = 0; m < 3; m++) {
            ck_assert_int_eq(fseek(f, (long)i, SEEK_SET), 0);
            ck_assert_int_ne(fputc(buf[i] ^ masks[m], f), EOF);
            ck_assert_int_eq(fflush(f), 0);
            expect_load_format_error(path, "flipped byte", i);
            ck_assert_int_eq(fseek(f, (long)i, SEEK_SET), 0);
            ck_assert_int_ne(fputc(buf[i], f), EOF);
            ck_assert_int_eq(fflush(f), 0);
        }
    fclose(f);
    free(buf);
}
END_TEST

START_TEST(test_truncate_every_length)
{
    char path[256];
    path_in(path, sizeof path, "bad.bpm");
    size_t size;
    unsigned char *buf = small_model(&size);
    write_bytes(path, buf, size);
    for (size_t n = size; n-- > 0;) {
        ck_assert_int_eq(truncate(path, (off_t)n), 0);
        expect_load_format_error(path, "truncated to", n);
    }
    free(buf);
}
END_TEST

START_TEST(test_trailing_byte)
{
    size_t size;
    unsigned char *buf = small_model(&size);
    unsigned char *more = malloc(size + 1);
    memcpy(more, buf, size);
    more[size] = 0;
    expect_format_error(more, size + 1, "trailing byte", size);
    free(more);
    free(buf);
}
END_TEST

START_TEST(test_wrong_magic)
{
    size_t size;
    unsigned char *buf = small_model(&size);
    memcpy(buf, "BPMODEL1", 8);
    expect_format_error(buf, size, "magic", 0);
    static const unsigned char text[] = "n_in,n_out\n3,2\n";
    expect_format_error(text, sizeof text - 1, "text file", 0);
    free(buf);
}
END_TEST

/* A newer version is refused as such, although its header CRC is right. */
START_TEST(test_future_version)
{
    size_t size;
    unsigned char *buf = small_model(&size);
    set_le32(buf + 8, 2);
    fix_header_crc(buf);
    expect_format_error(buf, size, "version 2", 8);
    ck_assert_msg(strstr(bp_last_error(), "version") != NULL, "%s", bp_last_error());
    free(buf);
}
END_TEST

/* Edit a u32 or u64 of a section's payload and recompute the CRC, so the
 * loader's own checks of that field are what rejects the file. */
static void expect_field_rejected(const char *tag, size_t field, int bytes, uint64_t value,
                                  const char *what)
{
    size_t size;
    unsigned char *buf = small_model(&size);
    long off = find_section(buf, size, tag);
    ck_assert_int_ge(off, 0);
    unsigned char *p = buf + off + 12 + field;
    if (bytes == 4)
        set_le32(p, (uint32_t)value);
    else
        set_le64(p, value);
    fix_section_crc(buf, (size_t)off);
    expect_format_error(buf, size, what, field);
    free(buf);
}

START_TEST(test_absurd_sizes)
{
    expect_field_rejected("ARCH", 8, 4, 0x80000000u, "n_layers 2^31");
    expect_field_rejected("ARCH", 8, 4, 3, "n_layers 3 (length mismatch)");
    expect_field_rejected("ARCH", 0, 8, (uint64_t)1 << 40, "n_in 2^40");
    expect_field_rejected("ARCH", 0, 8, 0, "n_in 0");
    expect_field_rejected("ARCH", 16, 8, (uint64_t)1 << 24, "n_out 2^24 (PARM mismatch)");
    expect_field_rejected("ARCH", 16, 8, (uint64_t)1 << 33, "n_out 2^33");
    expect_field_rejected("META", 0, 4, 0x80000000u, "meta count 2^31");
    expect_field_rejected("META", 0, 4, 3, "meta count 3");
    expect_field_rejected("META", 4, 4, 0xFFFFFFFFu, "key length 2^32-1");
    expect_field_rejected("OPTM", 80, 4, 0x7FFFFFFFu, "n_slots 2^31");

    /* Declared lengths beyond the file, in the header and a section. */
    size_t size;
    unsigned char *buf = small_model(&size);
    set_le32(buf + 16, 0x80000000u);
    fix_header_crc(buf);
    expect_format_error(buf, size, "section count 2^31", 16);
    free(buf);
    buf = small_model(&size);
    set_le64(buf + ARCH_OFF + 4, (uint64_t)1 << 62);
    expect_format_error(buf, size, "ARCH length 2^62", ARCH_OFF + 4);
    free(buf);
}
END_TEST

START_TEST(test_bad_values)
{
    expect_field_rejected("ARCH", 12, 4, 3, "head 3");
    expect_field_rejected("ARCH", 16 + 8, 4, 99, "activation 99");
    expect_field_rejected("ARCH", 16 + 12, 4, 0x7FC00000u, "alpha NaN");
    expect_field_rejected("ARCH", 32 + 12, 4, 0x3F800000u, "alpha 1 on identity");
    expect_field_rejected("OPTM", 0, 4, 3, "optimizer type 3");
    expect_field_rejected("OPTM", 4, 4, 0x7F800000u, "lr inf");
    expect_field_rejected("OPTM", 12, 4, 2, "nesterov 2");
    expect_field_rejected("OPTM", 16, 4, 0x3FC00000u, "beta1 1.5 (refused by create)");
    expect_field_rejected("OPTM", 24, 4, 0, "eps 0 (refused by create)");
    expect_field_rejected("OPTM", 36, 4, 3, "schedule 3");
    expect_field_rejected("OPTM", 80, 4, 1, "n_slots 1 for Adam");
    expect_field_rejected("META", 8, 4, 0x00C0AFC3u, "invalid UTF-8 key");
    expect_field_rejected("META", 8, 4, 0x00616100u, "NUL in key");
}
END_TEST

/* Rename a section's tag (CRC recomputed). */
static void expect_tag_rejected(const char *tag, const char *new_tag)
{
    size_t size;
    unsigned char *buf = small_model(&size);
    long off = find_section(buf, size, tag);
    ck_assert_int_ge(off, 0);
    memcpy(buf + off, new_tag, 4);
    fix_section_crc(buf, (size_t)off);
    expect_format_error(buf, size, new_tag, (size_t)off);
    free(buf);
}

START_TEST(test_bad_structure)
{
    expect_tag_rejected("TRAN", "TRAX"); /* unknown */
    expect_tag_rejected("TRAN", "OPTM"); /* repeated */
    expect_tag_rejected("META", "ARCH"); /* out of order */
    expect_tag_rejected("TRAN", "META"); /* TRAN missing before META */

    /* TRAN removed altogether, counts and CRC fixed: required section missing. */
    size_t size;
    unsigned char *buf = small_model(&size);
    long off = find_section(buf, size, "TRAN");
    ck_assert_int_ge(off, 0);
    size_t len = 16 + (size_t)le64(buf + off + 4);
    memmove(buf + off, buf + off + len, size - (size_t)off - len);
    set_le32(buf + 16, le32(buf + 16) - 1);
    fix_header_crc(buf);
    expect_format_error(buf, size - len, "TRAN missing", (size_t)off);
    free(buf);

    /* One section fewer declared than present: trailing bytes. */
    buf = small_model(&size);
    set_le32(buf + 16, le32(buf + 16) - 1);
    fix_header_crc(buf);
    expect_format_error(buf, size, "count one short", 16);
    free(buf);
}
END_TEST

/* ------------------------------------------------------------- saving */

START_TEST(test_replace_existing)
{
    char path[256];
    path_in(path, sizeof path, "model.bpm");
    bp_net *a = make_net(big_layers, 3, BP_HEAD_MSE, 1);
    bp_net *b = make_net(small_layers, 2, BP_HEAD_SOFTMAX_CE, 2);
    ck_assert_int_eq(bp_model_save(path, a, NULL, 0, 0, NULL, 0), BP_OK);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0644);
    ck_assert_int_eq(chmod(path, 0640), 0);
    ck_assert_int_eq(bp_model_save(path, b, NULL, 0, 1, NULL, 0), BP_OK);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0640);
    bp_net *c = NULL;
    ck_assert_int_eq(bp_model_load(path, g_ctx, 2, &c, NULL, NULL, NULL, NULL), BP_OK);
    assert_nets_equal(b, c);
    ck_assert_int_eq(tu_count_named(g_dir, ".tmp."), 0);
    bp_net_destroy(c);
    bp_net_destroy(b);
    bp_net_destroy(a);
}
END_TEST

/* Root ignores permissions, so failures are provoked in ways root cannot
 * bypass: a missing directory, a directory in the way, procfs. */
START_TEST(test_save_io_errors)
{
    char path[256], inner[256];
    bp_net *net = make_net(small_layers, 2, BP_HEAD_MSE, 1);
    path_in(path, sizeof path, "missing/model.bpm");
    ck_assert_int_eq(bp_model_save(path, net, NULL, 0, 0, NULL, 0), BP_EIO);
    ck_assert_msg(strstr(bp_last_error(), path) != NULL, "%s", bp_last_error());

    /* The rename fails after the whole temporary file was written. */
    path_in(path, sizeof path, "dir");
    ck_assert_int_eq(mkdir(path, 0755), 0);
    path_in(inner, sizeof inner, "dir/keep");
    write_bytes(inner, (const unsigned char *)"x", 1);
    ck_assert_int_eq(bp_model_save(path, net, NULL, 0, 0, NULL, 0), BP_EIO);
    struct stat st;
    ck_assert_int_eq(stat(inner, &st), 0);
    ck_assert_int_eq(st.st_size, 1);
    ck_assert_int_eq(tu_count_named(g_dir, ".tmp."), 0);

    ck_assert_int_eq(bp_model_save("/proc/self/bp_model_test.bpm", net, NULL, 0, 0, NULL, 0),
                     BP_EIO);
    bp_net_destroy(net);
}
END_TEST

/* A write that fails half-way (file size limit: EFBIG even for root) keeps
 * the previous file byte for byte and leaves no temporary. */
START_TEST(test_save_write_fails)
{
    char path[256];
    path_in(path, sizeof path, "model.bpm");
    bp_net *small = make_net(small_layers, 2, BP_HEAD_MSE, 1);
    ck_assert_int_eq(bp_model_save(path, small, NULL, 0, 0, NULL, 0), BP_OK);
    size_t size0;
    unsigned char *before = read_bytes(path, &size0);

    static const bp_layer_spec wide[2] = {{64, BP_ACT_RELU, 0.0f}, {64, BP_ACT_IDENTITY, 0.0f}};
    bp_net *big = NULL;
    ck_assert_int_eq(bp_net_create(&big, g_ctx, 3, 2, wide, BP_HEAD_MSE, 1), BP_OK);
    struct rlimit old, lim;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 4096;
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    bp_status st = bp_model_save(path, big, NULL, 0, 0, NULL, 0);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, old_handler);
    ck_assert_int_eq(st, BP_EIO);

    size_t size1;
    unsigned char *after = read_bytes(path, &size1);
    ck_assert_uint_eq(size0, size1);
    ck_assert(memcmp(before, after, size0) == 0);
    ck_assert_int_eq(tu_count_named(g_dir, ".tmp."), 0);
    free(before);
    free(after);
    bp_net_destroy(big);
    bp_net_destroy(small);
}
END_TEST

START_TEST(test_invalid_arguments)
{
    char path[256];
    path_in(path, sizeof path, "model.bpm");
    bp_net *net = make_net(small_layers, 2, BP_HEAD_MSE, 1);
    bp_net *other = make_net(small_layers, 2, BP_HEAD_MSE, 2);
    bp_optim_config c;
    ck_assert_int_eq(bp_optim_config_default(&c, BP_OPTIM_SGD), BP_OK);
    bp_optim *opt = NULL;
    ck_assert_int_eq(bp_optim_create(&opt, other, &c), BP_OK);

    ck_assert_int_eq(bp_model_save(NULL, net, NULL, 0, 0, NULL, 0), BP_EINVAL);
    ck_assert_int_eq(bp_model_save("", net, NULL, 0, 0, NULL, 0), BP_EINVAL);
    ck_assert_int_eq(bp_model_save(path, NULL, NULL, 0, 0, NULL, 0), BP_EINVAL);
    ck_assert_int_eq(bp_model_save(path, net, opt, 0, 0, NULL, 0), BP_EINVAL);
    ck_assert_int_eq(bp_model_save(path, net, NULL, 0, 0, NULL, 1), BP_EINVAL);
    bp_kv kv[1] = {{"k", NULL}};
    ck_assert_int_eq(bp_model_save(path, net, NULL, 0, 0, kv, 1), BP_EINVAL);
    kv[0].key = NULL;
    kv[0].value = "v";
    ck_assert_int_eq(bp_model_save(path, net, NULL, 0, 0, kv, 1), BP_EINVAL);
    kv[0].key = "bad \xff utf-8";
    ck_assert_int_eq(bp_model_save(path, net, NULL, 0, 0, kv, 1), BP_EINVAL);
    char *huge = malloc(65538);
    memset(huge, 'a', 65537);
    huge[65537] = '\0';
    kv[0].key = "k";
    kv[0].value = huge;
    ck_assert_int_eq(bp_model_save(path, net, NULL, 0, 0, kv, 1), BP_EINVAL);
    huge[65536] = '\0'; /* exactly the limit is fine */
    ck_assert_int_eq(bp_model_save(path, net, NULL, 0, 0, kv, 1), BP_OK);
    bp_kv *many = calloc(4097, sizeof *many);
    for (int i = 0; i < 4097; i++)
        many[i] = (bp_kv){"k", "v"};
    ck_assert_int_eq(bp_model_save(path, net, NULL, 0, 0, many, 4097), BP_EINVAL);
    ck_assert_int_eq(bp_model_save(path, net, NULL, 0, 0, many, 4096), BP_OK);
    bp_kv *meta = NULL;
    size_t n_meta = 0;
    bp_net *loaded = NULL;
    ck_assert_int_eq(bp_model_load(path, g_ctx, 1, &loaded, NULL, NULL, &meta, &n_meta), BP_OK);
    ck_assert_uint_eq(n_meta, 4096);
    ck_assert_str_eq(meta[4095].value, "v");
    bp_kv_free(meta, n_meta);
    bp_net_destroy(loaded);

    loaded = NULL;
    ck_assert_int_eq(bp_model_load(NULL, g_ctx, 1, &loaded, NULL, NULL, NULL, NULL), BP_EINVAL);
    ck_assert_int_eq(bp_model_load(path, NULL, 1, &loaded, NULL, NULL, NULL, NULL), BP_EINVAL);
    ck_assert_int_eq(bp_model_load(path, g_ctx, 1, NULL, NULL, NULL, NULL, NULL), BP_EINVAL);
    ck_assert_int_eq(bp_model_load(path, g_ctx, 0, &loaded, NULL, NULL, NULL, NULL), BP_EINVAL);
    ck_assert_int_eq(bp_model_load(path, g_ctx, 1, &loaded, NULL, NULL, &meta, NULL),
                     BP_EINVAL);
    ck_assert_ptr_null(loaded);
    path_in(path, sizeof path, "absent.bpm");
    ck_assert_int_eq(bp_model_load(path, g_ctx, 1, &loaded, NULL, NULL, NULL, NULL), BP_EIO);
    ck_assert_int_eq(bp_model_load(g_dir, g_ctx, 1, &loaded, NULL, NULL, NULL, NULL), BP_EIO);
    ck_assert_ptr_null(loaded);
    bp_kv_free(NULL, 0);

    free(many);
    free(huge);
    bp_optim_destroy(opt);
    bp_net_destroy(other);
    bp_net_destroy(net);
}
END_TEST

static Suite *model_suite(void)
{
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("roundtrip");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_roundtrip_no_optimizer);
    tcase_add_test(tc, test_roundtrip_sgd_momentum);
    tcase_add_test(tc, test_roundtrip_plain_sgd);
    tcase_add_test(tc, test_roundtrip_adam);
    tcase_add_test(tc, test_roundtrip_adamw);
    tcase_add_test(tc, test_load_net_only);
    tcase_add_test(tc, test_resume_adam);
    tcase_add_test(tc, test_resume_sgd_momentum);
    tcase_add_test(tc, test_layout);
    suite_add_tcase(s, tc);

    tc = tcase_create("corrupt");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_flip_every_byte);
    tcase_add_test(tc, test_truncate_every_length);
    tcase_add_test(tc, test_trailing_byte);
    tcase_add_test(tc, test_wrong_magic);
    tcase_add_test(tc, test_future_version);
    tcase_add_test(tc, test_absurd_sizes);
    tcase_add_test(tc, test_bad_values);
    tcase_add_test(tc, test_bad_structure);
    suite_add_tcase(s, tc);

    tc = tcase_create("save");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_replace_existing);
    tcase_add_test(tc, test_save_io_errors);
    tcase_add_test(tc, test_save_write_fails);
    tcase_add_test(tc, test_invalid_arguments);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(model_suite());
}
