/* Model files: a net, its optimizer, the training position and metadata,
 * in the format specified in doc/model-format.md (little endian, one CRC32
 * per section). Saving is atomic (temporary file, fsync, rename); loading
 * checks every size against the bytes the file really holds before
 * allocating anything. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "alloc.h"
#include "error.h"
#include "net.h"
#include "optim.h"

_Static_assert(sizeof(float) == 4, "the format stores binary32 floats");

#define FORMAT_VERSION 1u
#define HEADER_BYTES 24
#define SECTION_OVERHEAD 16 /* tag, u64 length, u32 CRC */
#define ARCH_FIXED 16       /* n_in, n_layers, head */
#define ARCH_PER_LAYER 16   /* n_out, activation, alpha */
#define OPTM_FIXED 84       /* configuration, steps, n_slots */
#define TRAN_BYTES 16
#define META_PER_PAIR 8     /* the two u32 lengths */
/* The limits of bp_net_create() (net.c): checking them here lets a failure
 * of bp_net_create() be blamed on the caller's max_batch, not the file. */
#define MAX_WIDTH ((uint64_t)BPI_MAX_WIDTH)
#define MAX_LAYERS ((unsigned)BPI_MAX_LAYERS)
#define MAX_META_PAIRS 4096u
#define MAX_META_STRING 65536u

static const unsigned char magic[8] = {'B', 'P', 'M', 'O', 'D', 'E', 'L', '\0'};

enum { SEC_ARCH, SEC_PARM, SEC_OPTM, SEC_TRAN, SEC_META, N_SECTIONS };
static const char tags[N_SECTIONS][5] = {"ARCH", "PARM", "OPTM", "TRAN", "META"};
static const int required[N_SECTIONS] = {1, 1, 0, 1, 0};

/* ------------------------------------------------------------ encoding */

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint32_t float_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static float bits_float(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* zlib's crc32() takes an unsigned int length: feed large buffers in pieces. */
static uLong crc_update(uLong crc, const unsigned char *p, size_t n)
{
    while (n > 0) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = crc32(crc, p, k);
        p += k;
        n -= k;
    }
    return crc;
}

/* Length of the valid UTF-8 sequence starting at s (n >= 1 bytes left), 0 if
 * invalid: overlong forms, surrogates and code points above U+10FFFF are. */
static size_t utf8_sequence(const unsigned char *s, size_t n)
{
    unsigned c = s[0], lo = 0x80, hi = 0xBF;
    size_t len;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        lo = c == 0xE0 ? 0xA0 : lo; /* E0 80..9F would be overlong */
        hi = c == 0xED ? 0x9F : hi; /* ED A0..BF are surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        lo = c == 0xF0 ? 0x90 : lo; /* overlong */
        hi = c == 0xF4 ? 0x8F : hi; /* above U+10FFFF */
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return len;
}

/* Offset of the first NUL or invalid UTF-8 byte of s (n bytes), n if none. */
static size_t bad_string_at(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t k = s[i] == 0 ? 0 : utf8_sequence(s + i, n - i);
        if (k == 0)
            return i;
        i += k;
    }
    return n;
}

/* ------------------------------------------------------------- writing */

/* Buffered writer: the CRC is updated over each chunk as it is flushed, so
 * the CRC of a section covers exactly the bytes put since crc_begin. */
typedef struct writer {
    FILE *f;
    uLong crc;
    size_t n;
    int err; /* errno of the first failure, 0 if none */
    unsigned char buf[16384];
} writer;

static void w_flush(writer *w)
{
    if (w->n > 0 && w->err == 0) {
        w->crc = crc_update(w->crc, w->buf, w->n);
        if (fwrite(w->buf, 1, w->n, w->f) != w->n)
            w->err = errno ? errno : EIO;
    }
    w->n = 0;
}

static void w_put(writer *w, const void *src, size_t n)
{
    const unsigned char *p = src;
    while (n > 0) {
        if (w->n == sizeof w->buf)
            w_flush(w);
        size_t k = sizeof w->buf - w->n < n ? sizeof w->buf - w->n : n;
        memcpy(w->buf + w->n, p, k);
        w->n += k;
        p += k;
        n -= k;
    }
}

static void w_u32(writer *w, uint32_t v)
{
    unsigned char b[4];
    put_u32(b, v);
    w_put(w, b, 4);
}

static void w_u64(writer *w, uint64_t v)
{
    unsigned char b[8];
    put_u64(b, v);
    w_put(w, b, 8);
}

static void w_f32(writer *w, float x) { w_u32(w, float_bits(x)); }

static void w_floats(writer *w, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        w_f32(w, x[i]);
}

static void w_crc_begin(writer *w)
{
    w_flush(w); /* earlier bytes belong to the previous CRC */
    w->crc = crc32(0L, Z_NULL, 0);
}

/* Append the CRC of everything put since w_crc_begin. */
static void w_crc_end(writer *w)
{
    w_flush(w);
    w_u32(w, (uint32_t)w->crc);
}

static void w_section(writer *w, int sec, uint64_t len)
{
    w_crc_begin(w);
    w_put(w, tags[sec], 4);
    w_u64(w, len);
}

/* Every tensor of a parameter-shaped block, in PARM order. */
static void w_tensors(writer *w, const bp_net *net, const float *block)
{
    for (size_t i = 0; i < net->n_layers; i++) {
        const bpi_layer *L = &net->layers[i];
        w_floats(w, block + L->w_off, L->n_out * L->n_in);
        w_floats(w, block + L->b_off, L->n_out);
    }
}

static void write_arch(writer *w, const bp_net *net)
{
    w_section(w, SEC_ARCH, ARCH_FIXED + (uint64_t)ARCH_PER_LAYER * net->n_layers);
    w_u64(w, net->n_in);
    w_u32(w, (uint32_t)net->n_layers);
    w_u32(w, (uint32_t)net->head);
    for (size_t i = 0; i < net->n_layers; i++) {
        w_u64(w, net->layers[i].n_out);
        w_u32(w, (uint32_t)net->layers[i].act);
        w_f32(w, net->layers[i].alpha);
    }
    w_crc_end(w);
}

static void write_parm(writer *w, const bp_net *net)
{
    w_section(w, SEC_PARM, 4 * (uint64_t)net->n_params);
    w_tensors(w, net, net->params);
    w_crc_end(w);
}

static void write_optm(writer *w, const bp_optim *opt)
{
    const bp_optim_config *c = &opt->cfg;
    const bp_net *net = opt->net;
    w_section(w, SEC_OPTM, OPTM_FIXED + 4 * (uint64_t)opt->n_slots * net->n_params);
    w_u32(w, (uint32_t)c->type);
    w_f32(w, c->lr);
    w_f32(w, c->momentum);
    w_u32(w, c->nesterov ? 1 : 0);
    w_f32(w, c->beta1);
    w_f32(w, c->beta2);
    w_f32(w, c->eps);
    w_f32(w, c->weight_decay);
    w_f32(w, c->clip_norm);
    w_u32(w, (uint32_t)c->schedule);
    w_u64(w, c->step_size);
    w_f32(w, c->gamma);
    w_u64(w, c->warmup_steps);
    w_u64(w, c->total_steps);
    w_f32(w, c->min_lr);
    w_u64(w, opt->steps);
    w_u32(w, (uint32_t)opt->n_slots);
    for (size_t k = 0; k < opt->n_slots; k++)
        w_tensors(w, net, opt->state + k * net->block_floats);
    w_crc_end(w);
}

static void write_tran(writer *w, uint64_t seed, uint64_t epoch)
{
    w_section(w, SEC_TRAN, TRAN_BYTES);
    w_u64(w, seed);
    w_u64(w, epoch);
    w_crc_end(w);
}

static void write_meta(writer *w, const bp_kv *meta, size_t n, uint64_t len)
{
    w_section(w, SEC_META, len);
    w_u32(w, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        size_t kn = strlen(meta[i].key), vn = strlen(meta[i].value);
        w_u32(w, (uint32_t)kn);
        w_put(w, meta[i].key, kn);
        w_u32(w, (uint32_t)vn);
        w_put(w, meta[i].value, vn);
    }
    w_crc_end(w);
}

typedef struct save_args {
    const bp_net *net;
    const bp_optim *opt;
    uint64_t seed, epoch;
    const bp_kv *meta;
    size_t n_meta;
    uint64_t meta_len; /* META payload length, from check_meta */
} save_args;

static void write_model(writer *w, const save_args *a)
{
    w_crc_begin(w);
    w_put(w, magic, sizeof magic);
    w_u32(w, FORMAT_VERSION);
    w_u32(w, (uint32_t)bp_version());
    w_u32(w, 3u + (a->opt != NULL) + (a->n_meta > 0));
    w_crc_end(w);
    write_arch(w, a->net);
    write_parm(w, a->net);
    if (a->opt)
        write_optm(w, a->opt);
    write_tran(w, a->seed, a->epoch);
    if (a->n_meta > 0)
        write_meta(w, a->meta, a->n_meta, a->meta_len);
    w_flush(w);
}

/* -------------------------------------------------------------- saving */

static bp_status io_fail(const char *fn, const char *path, const char *what, int err)
{
    char msg[128];
    if (strerror_r(err, msg, sizeof msg) != 0)
        snprintf(msg, sizeof msg, "error %d", err);
    return bpi_fail(BP_EIO, "%s: %s: %s: %s", fn, path, what, msg);
}

static bp_status check_string(const char *s, const char *what, size_t i, size_t *len)
{
    const char *fn = "bp_model_save";
    if (!s)
        return bpi_fail(BP_EINVAL, "%s: meta[%zu].%s is NULL", fn, i, what);
    *len = strnlen(s, MAX_META_STRING + 1);
    if (*len > MAX_META_STRING)
        return bpi_fail(BP_EINVAL, "%s: meta[%zu].%s is longer than %u bytes", fn, i, what,
                        MAX_META_STRING);
    size_t bad = bad_string_at((const unsigned char *)s, *len);
    if (bad < *len)
        return bpi_fail(BP_EINVAL, "%s: meta[%zu].%s is not valid UTF-8 at byte %zu", fn, i,
                        what, bad);
    return BP_OK;
}

/* Validate the metadata and compute the META payload length. */
static bp_status check_meta(const bp_kv *meta, size_t n, uint64_t *len)
{
    if (n > 0 && !meta)
        return bpi_fail(BP_EINVAL, "bp_model_save: meta is NULL with n_meta %zu", n);
    if (n > MAX_META_PAIRS)
        return bpi_fail(BP_EINVAL, "bp_model_save: n_meta is %zu (at most %u)", n,
                        MAX_META_PAIRS);
    *len = 4;
    for (size_t i = 0; i < n; i++) {
        size_t kn = 0, vn = 0;
        BPI_TRY(check_string(meta[i].key, "key", i, &kn));
        BPI_TRY(check_string(meta[i].value, "value", i, &vn));
        *len += META_PER_PAIR + (uint64_t)kn + vn;
    }
    return BP_OK;
}

static bp_status check_save(const char *path, const save_args *a, uint64_t *meta_len)
{
    const char *fn = "bp_model_save";
    if (!path || !*path)
        return bpi_fail(BP_EINVAL, "%s: path is %s", fn, path ? "empty" : "NULL");
    if (!a->net)
        return bpi_fail(BP_EINVAL, "%s: net is NULL", fn);
    if (a->opt && a->opt->net != a->net)
        return bpi_fail(BP_EINVAL, "%s: opt was created for another net", fn);
    return check_meta(a->meta, a->n_meta, meta_len);
}

/* Permission bits for the new file: those of the file it replaces, else
 * 0644 (mkstemp's 0600 would surprise users of a plain fopen). */
static mode_t target_mode(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
        return st.st_mode & 07777;
    return 0644;
}

/* Write the model into the open temporary file fd and close it, data on disk. */
static bp_status write_temp(int fd, const char *path, const save_args *a)
{
    const char *fn = "bp_model_save";
    if (fchmod(fd, target_mode(path)) != 0) {
        int e = errno;
        close(fd);
        return io_fail(fn, path, "cannot set the temporary file's mode", e);
    }
    writer *w = bpi_alloc(sizeof *w);
    if (!w) {
        close(fd);
        return bpi_fail(BP_ENOMEM, "%s: %s: cannot allocate the write buffer", fn, path);
    }
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        int e = errno;
        bpi_free(w);
        close(fd);
        return io_fail(fn, path, "cannot open the temporary file", e);
    }
    w->f = f;
    write_model(w, a);
    int e = w->err;
    bpi_free(w);
    if (e == 0 && fflush(f) != 0)
        e = errno;
    if (e == 0 && fsync(fileno(f)) != 0)
        e = errno;
    if (fclose(f) != 0 && e == 0)
        e = errno;
    return e ? io_fail(fn, path, "cannot write the temporary file", e) : BP_OK;
}

/* The directory holding path, into dir (room for strlen(path) + 1 bytes). */
static void dir_name(const char *path, char *dir)
{
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (slash == path ? 1 : (size_t)(slash - path)) : 1;
    memcpy(dir, slash ? path : ".", n);
    dir[n] = '\0';
}

/* fsync the directory dir holding path, so the rename itself is durable. */
static bp_status sync_dir(const char *path, const char *dir)
{
    int e = 0, fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        e = errno;
    /* EINVAL: the file system cannot sync directories; nothing more to do. */
    else if (fsync(fd) != 0 && errno != EINVAL)
        e = errno;
    if (fd >= 0)
        close(fd);
    return e ? io_fail("bp_model_save", path, "saved, but cannot fsync its directory", e)
             : BP_OK;
}

bp_status bp_model_save(const char *path, const bp_net *net, const bp_optim *opt,
                        uint64_t seed, uint64_t epoch, const bp_kv *meta, size_t n_meta)
{
    const char *fn = "bp_model_save";
    save_args a = {net, opt, seed, epoch, meta, n_meta, 0};
    BPI_TRY(check_save(path, &a, &a.meta_len));
    static const char suffix[] = ".tmp.XXXXXX";
    size_t n = strlen(path);
    /* The temporary's name and the directory's, in one allocation made
     * before anything is written: nothing can fail for want of memory
     * after the rename. */
    char *tmp = bpi_alloc_array(2, n + sizeof suffix);
    if (!tmp)
        return bpi_fail(BP_ENOMEM, "%s: cannot allocate a file name", fn);
    char *dir = tmp + n + sizeof suffix;
    dir_name(path, dir);
    memcpy(tmp, path, n);
    memcpy(tmp + n, suffix, sizeof suffix);
    int fd = mkstemp(tmp);
    bp_status st = fd < 0 ? io_fail(fn, path, "cannot create a temporary file", errno)
                          : write_temp(fd, path, &a);
    if (st == BP_OK && rename(tmp, path) != 0)
        st = io_fail(fn, path, "cannot rename the temporary file over it", errno);
    if (st != BP_OK && fd >= 0)
        unlink(tmp);
    if (st == BP_OK)
        st = sync_dir(path, dir);
    bpi_free(tmp);
    return st;
}

/* ------------------------------------------------------------- reading */

/* A cursor over the file's bytes; `end` is the end of the current payload. */
typedef struct reader {
    const unsigned char *buf;
    size_t size, pos;
    size_t start, end; /* current section: its first byte, the end of its payload */
    const char *path;
    const char *sec; /* section name for messages */
} reader;

/* BP_EFORMAT naming the file, the section and the offset. */
static bp_status bad(const reader *r, size_t off, const char *fmt, ...) BPI_PRINTF(3, 4);
static bp_status bad(const reader *r, size_t off, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return bpi_fail(BP_EFORMAT, "bp_model_load: %s: %s at offset %zu: %s", r->path, r->sec,
                    off, msg);
}

/* Unchecked reads: callers have checked the payload's length first. */
static uint32_t r_u32(reader *r)
{
    r->pos += 4;
    return get_u32(r->buf + r->pos - 4);
}

static uint64_t r_u64(reader *r)
{
    r->pos += 8;
    return get_u64(r->buf + r->pos - 8);
}

static float r_f32(reader *r) { return bits_float(r_u32(r)); }

static void r_floats(reader *r, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = r_f32(r);
}

/* Every tensor of a parameter-shaped block, in PARM order. */
static void r_tensors(reader *r, const bp_net *net, float *block)
{
    for (size_t i = 0; i < net->n_layers; i++) {
        const bpi_layer *L = &net->layers[i];
        r_floats(r, block + L->w_off, L->n_out * L->n_in);
        r_floats(r, block + L->b_off, L->n_out);
    }
}

static bp_status r_enum(reader *r, uint32_t max, const char *name, uint32_t *v)
{
    size_t off = r->pos;
    *v = r_u32(r);
    if (*v > max)
        return bad(r, off, "%s is %u (expected 0..%u)", name, *v, max);
    return BP_OK;
}

static bp_status r_finite(reader *r, const char *name, float *x)
{
    size_t off = r->pos;
    *x = r_f32(r);
    if (!isfinite(*x))
        return bad(r, off, "%s is not finite", name);
    return BP_OK;
}

/* The payload's length must be exactly `want`, implied by what came before. */
static bp_status expect_len(const reader *r, uint64_t want, const char *why)
{
    uint64_t len = r->end - (r->start + 12);
    if (len != want)
        return bad(r, r->start + 4, "payload is %llu bytes, expected %llu (%s)",
                   (unsigned long long)len, (unsigned long long)want, why);
    return BP_OK;
}

/* What loading builds, freed together on failure. */
typedef struct model {
    bp_ctx *ctx;
    size_t max_batch;
    int want_meta;
    uint32_t library_version;
    size_t n_in, n_layers;
    bp_head head;
    bp_layer_spec *specs;
    uint64_t n_params;
    bp_net *net;
    bp_optim *opt;
    uint64_t seed, epoch;
    bp_kv *meta;
    size_t n_meta;
} model;

static void model_free(model *m)
{
    bpi_free(m->specs);
    bp_optim_destroy(m->opt);
    bp_net_destroy(m->net);
    bp_kv_free(m->meta, m->n_meta);
}

static bp_status r_layer(reader *r, model *m, size_t i)
{
    bp_layer_spec *s = &m->specs[i];
    size_t off = r->pos;
    uint64_t n_out = r_u64(r);
    if (n_out == 0 || n_out > MAX_WIDTH)
        return bad(r, off, "layer %zu: n_out is %llu (expected 1..%llu)", i,
                   (unsigned long long)n_out, (unsigned long long)MAX_WIDTH);
    uint32_t act;
    BPI_TRY(r_enum(r, BP_ACT_GELU, "activation", &act));
    off = r->pos;
    BPI_TRY(r_finite(r, "alpha", &s->alpha));
    if (act != BP_ACT_LEAKY_RELU && s->alpha != 0.0f)
        return bad(r, off, "layer %zu: alpha is %g but the activation is not leaky ReLU", i,
                   (double)s->alpha);
    s->n_out = (size_t)n_out;
    s->activation = (bp_activation)act;
    /* n_in, n_out <= 2^24 and n_layers <= 4096 keep this below 2^61. */
    size_t n_in = i == 0 ? m->n_in : m->specs[i - 1].n_out;
    m->n_params += n_out * n_in + n_out;
    return BP_OK;
}

static bp_status parse_arch(reader *r, model *m)
{
    if (r->end - r->pos < ARCH_FIXED)
        return expect_len(r, ARCH_FIXED, "n_in, n_layers, head");
    size_t off = r->pos;
    uint64_t n_in = r_u64(r);
    if (n_in == 0 || n_in > MAX_WIDTH)
        return bad(r, off, "n_in is %llu (expected 1..%llu)", (unsigned long long)n_in,
                   (unsigned long long)MAX_WIDTH);
    off = r->pos;
    uint32_t n_layers = r_u32(r), head;
    if (n_layers == 0 || n_layers > MAX_LAYERS)
        return bad(r, off, "n_layers is %u (expected 1..%u)", n_layers, MAX_LAYERS);
    BPI_TRY(r_enum(r, BP_HEAD_SIGMOID_BCE, "head", &head));
    BPI_TRY(expect_len(r, ARCH_FIXED + (uint64_t)ARCH_PER_LAYER * n_layers,
                       "16 + 16 bytes per layer"));
    m->n_in = (size_t)n_in;
    m->n_layers = n_layers;
    m->head = (bp_head)head;
    m->specs = bpi_alloc_array(n_layers, sizeof *m->specs);
    if (!m->specs)
        return bpi_fail(BP_ENOMEM, "bp_model_load: cannot allocate %u layer specs", n_layers);
    for (size_t i = 0; i < n_layers; i++)
        BPI_TRY(r_layer(r, m, i));
    return BP_OK;
}

static bp_status parse_parm(reader *r, model *m)
{
    BPI_TRY(expect_len(r, 4 * m->n_params, "4 bytes per parameter of ARCH"));
    /* The file holds every parameter, so the net's size is bounded by it. */
    BPI_TRY(bp_net_create(&m->net, m->ctx, m->n_in, m->n_layers, m->specs, m->head,
                          m->max_batch));
    r_tensors(r, m->net, m->net->params);
    bpi_net_params_written(m->net);
    return BP_OK;
}

/* The configuration's fields, in the file's order. */
static bp_status r_config(reader *r, bp_optim_config *c)
{
    uint32_t type, nesterov, schedule;
    memset(c, 0, sizeof *c);
    BPI_TRY(r_enum(r, BP_OPTIM_ADAMW, "type", &type));
    BPI_TRY(r_finite(r, "lr", &c->lr));
    BPI_TRY(r_finite(r, "momentum", &c->momentum));
    BPI_TRY(r_enum(r, 1, "nesterov", &nesterov));
    BPI_TRY(r_finite(r, "beta1", &c->beta1));
    BPI_TRY(r_finite(r, "beta2", &c->beta2));
    BPI_TRY(r_finite(r, "eps", &c->eps));
    BPI_TRY(r_finite(r, "weight_decay", &c->weight_decay));
    BPI_TRY(r_finite(r, "clip_norm", &c->clip_norm));
    BPI_TRY(r_enum(r, BP_SCHED_COSINE, "schedule", &schedule));
    c->step_size = r_u64(r);
    BPI_TRY(r_finite(r, "gamma", &c->gamma));
    c->warmup_steps = r_u64(r);
    c->total_steps = r_u64(r);
    BPI_TRY(r_finite(r, "min_lr", &c->min_lr));
    c->type = (bp_optim_type)type;
    c->nesterov = (int)nesterov;
    c->schedule = (bp_schedule)schedule;
    return BP_OK;
}

/* bp_optim_create() is the one judge of a valid configuration; its EINVAL
 * here means the file is wrong. */
static bp_status create_optim(reader *r, model *m, const bp_optim_config *c, size_t off)
{
    bp_status st = bp_optim_create(&m->opt, m->net, c);
    if (st != BP_EINVAL)
        return st;
    char why[256];
    snprintf(why, sizeof why, "%s", bp_last_error());
    return bad(r, off, "invalid optimizer configuration (%s)", why);
}

static bp_status parse_optm(reader *r, model *m)
{
    size_t start = r->pos;
    if (r->end - r->pos < OPTM_FIXED)
        return expect_len(r, OPTM_FIXED, "configuration, steps, n_slots");
    bp_optim_config c;
    BPI_TRY(r_config(r, &c));
    uint64_t steps = r_u64(r);
    size_t off = r->pos;
    uint32_t n_slots = r_u32(r);
    uint32_t want = c.type != BP_OPTIM_SGD ? 2 : c.momentum > 0.0f ? 1 : 0;
    if (n_slots != want)
        return bad(r, off, "n_slots is %u, the configuration needs %u", n_slots, want);
    /* PARM bounded n_params by the file size: no overflow. */
    BPI_TRY(expect_len(r, OPTM_FIXED + 4 * (uint64_t)n_slots * m->n_params,
                       "84 + n_slots state tensors"));
    BPI_TRY(create_optim(r, m, &c, start));
    m->opt->steps = steps;
    for (size_t k = 0; k < n_slots; k++)
        r_tensors(r, m->net, m->opt->state + k * m->net->block_floats);
    bpi_optim_state_written(m->opt);
    return BP_OK;
}

static bp_status parse_tran(reader *r, model *m)
{
    BPI_TRY(expect_len(r, TRAN_BYTES, "seed, epoch"));
    m->seed = r_u64(r);
    m->epoch = r_u64(r);
    return BP_OK;
}

/* One length-prefixed string, checked; *s points into the file. */
static bp_status r_string(reader *r, size_t i, const char *what, const unsigned char **s,
                          uint32_t *n)
{
    size_t off = r->pos;
    if (r->end - r->pos < 4)
        return bad(r, off, "pair %zu: %s length runs past the section", i, what);
    *n = r_u32(r);
    if (*n > MAX_META_STRING || *n > r->end - r->pos)
        return bad(r, off, "pair %zu: %s length %u exceeds %s", i, what, *n,
                   *n > MAX_META_STRING ? "65536 bytes" : "the section");
    *s = r->buf + r->pos;
    size_t at = bad_string_at(*s, *n);
    if (at < *n)
        return bad(r, r->pos + at, "pair %zu: %s is not NUL-free UTF-8", i, what);
    r->pos += *n;
    return BP_OK;
}

static char *copy_string(char **dst, const unsigned char *s, uint32_t n)
{
    char *out = *dst;
    memcpy(out, s, n);
    out[n] = '\0';
    *dst += (size_t)n + 1;
    return out;
}

/* Pass 1 (fill == NULL) checks the pairs and counts their bytes; pass 2
 * copies them behind the bp_kv array in one allocation. */
static bp_status r_pairs(reader *r, uint32_t count, bp_kv *fill, size_t *bytes)
{
    char *text = fill ? (char *)(fill + count) : NULL;
    for (size_t i = 0; i < count; i++) {
        const unsigned char *k = NULL, *v = NULL;
        uint32_t kn = 0, vn = 0;
        BPI_TRY(r_string(r, i, "key", &k, &kn));
        BPI_TRY(r_string(r, i, "value", &v, &vn));
        *bytes += (size_t)kn + vn + 2;
        if (fill) {
            fill[i].key = copy_string(&text, k, kn);
            fill[i].value = copy_string(&text, v, vn);
        }
    }
    if (r->pos != r->end)
        return bad(r, r->pos, "%zu bytes after the last pair", r->end - r->pos);
    return BP_OK;
}

static bp_status parse_meta(reader *r, model *m)
{
    if (r->end - r->pos < 4)
        return expect_len(r, 4, "pair count");
    size_t off = r->pos;
    uint32_t count = r_u32(r);
    if (count > MAX_META_PAIRS || (uint64_t)count * META_PER_PAIR > r->end - r->pos)
        return bad(r, off, "pair count %u exceeds %s", count,
                   count > MAX_META_PAIRS ? "4096" : "what the section holds");
    size_t first = r->pos, bytes = 0;
    BPI_TRY(r_pairs(r, count, NULL, &bytes));
    if (!m->want_meta || count == 0)
        return BP_OK;
    /* Bounded by the section's size: each pair's strings are in the file. */
    m->meta = bpi_alloc(count * sizeof *m->meta + bytes);
    if (!m->meta)
        return bpi_fail(BP_ENOMEM, "bp_model_load: cannot allocate %u metadata pairs", count);
    m->n_meta = count;
    r->pos = first;
    bytes = 0;
    return r_pairs(r, count, m->meta, &bytes);
}

static bp_status parse_header(reader *r, uint32_t *count, model *m)
{
    r->sec = "header";
    size_t n = r->size < sizeof magic ? r->size : sizeof magic;
    if (memcmp(r->buf, magic, n) != 0)
        return bad(r, 0, "not a backprop model file (magic \"BPMODEL\\0\" expected)");
    if (r->size < HEADER_BYTES)
        return bad(r, r->size, "truncated: %zu of %d header bytes", r->size, HEADER_BYTES);
    uint32_t version = get_u32(r->buf + 8);
    /* Before the CRC: a newer file should say so, not "corrupt". */
    if (version != FORMAT_VERSION)
        return bad(r, 8, "format version %u is not supported (this library reads %u)",
                   version, FORMAT_VERSION);
    if (crc_update(crc32(0L, Z_NULL, 0), r->buf, 20) != get_u32(r->buf + 20))
        return bad(r, 20, "header checksum mismatch");
    m->library_version = get_u32(r->buf + 12);
    *count = get_u32(r->buf + 16);
    r->pos = HEADER_BYTES;
    if (*count > N_SECTIONS || (uint64_t)*count * SECTION_OVERHEAD > r->size - r->pos)
        return bad(r, 16, "section count %u exceeds %s", *count,
                   *count > N_SECTIONS ? "5" : "what the file holds");
    return BP_OK;
}

/* Frame the section at r->pos: bounds, CRC and tag; on success the payload
 * is [r->pos, r->end) and *sec its kind. Messages name the tag when it is
 * a known one, even before its CRC is checked. */
static bp_status next_section(reader *r, int *sec)
{
    size_t start = r->pos;
    r->sec = "section";
    if (r->size - start < SECTION_OVERHEAD)
        return bad(r, start, "truncated: %zu bytes left, a section takes at least %d",
                   r->size - start, SECTION_OVERHEAD);
    for (*sec = 0; *sec < N_SECTIONS; (*sec)++)
        if (memcmp(r->buf + start, tags[*sec], 4) == 0)
            break;
    r->sec = *sec < N_SECTIONS ? tags[*sec] : "section with an unknown tag";
    uint64_t len = get_u64(r->buf + start + 4);
    if (len > r->size - start - SECTION_OVERHEAD)
        return bad(r, start + 4, "payload length %llu runs past the end of the file",
                   (unsigned long long)len);
    size_t crc_at = start + 12 + (size_t)len;
    if (crc_update(crc32(0L, Z_NULL, 0), r->buf + start, crc_at - start) !=
        get_u32(r->buf + crc_at))
        return bad(r, crc_at, "checksum mismatch");
    /* Version 1 has no optional unknown sections. */
    if (*sec == N_SECTIONS)
        return bad(r, start, "unknown tag");
    r->start = start;
    r->pos = start + 12;
    r->end = crc_at;
    return BP_OK;
}

/* Sections come in tag order, each at most once; required ones may not be
 * skipped. `next` is the first kind still allowed. */
static bp_status check_order(const reader *r, int sec, int *next)
{
    if (sec < *next)
        return bad(r, r->start, "section repeated or out of order");
    for (int k = *next; k < sec; k++)
        if (required[k])
            return bad(r, r->start, "section %s is missing before it", tags[k]);
    *next = sec + 1;
    return BP_OK;
}

static bp_status parse_payload(reader *r, model *m, int sec)
{
    switch (sec) {
    case SEC_ARCH: return parse_arch(r, m);
    case SEC_PARM: return parse_parm(r, m);
    case SEC_OPTM: return parse_optm(r, m);
    case SEC_TRAN: return parse_tran(r, m);
    default: return parse_meta(r, m);
    }
}

static bp_status parse_model(reader *r, model *m)
{
    uint32_t count = 0;
    BPI_TRY(parse_header(r, &count, m));
    int next = 0;
    for (uint32_t i = 0; i < count; i++) {
        int sec = 0;
        BPI_TRY(next_section(r, &sec));
        BPI_TRY(check_order(r, sec, &next));
        BPI_TRY(parse_payload(r, m, sec));
        r->pos = r->end + 4;
    }
    r->sec = "end of file";
    for (int k = next; k < N_SECTIONS; k++)
        if (required[k])
            return bad(r, r->pos, "required section %s is missing", tags[k]);
    if (r->pos != r->size)
        return bad(r, r->pos, "%zu bytes after the last section", r->size - r->pos);
    return BP_OK;
}

/* The whole file, its size taken from fstat: nothing larger is allocated. */
static bp_status read_file(const char *path, unsigned char **buf, size_t *size)
{
    const char *fn = "bp_model_load";
    FILE *f = fopen(path, "rb");
    if (!f)
        return io_fail(fn, path, "cannot open", errno);
    struct stat st;
    int e = fstat(fileno(f), &st) != 0 ? errno : !S_ISREG(st.st_mode) ? EISDIR : 0;
    if (e == 0 && (uint64_t)st.st_size > SIZE_MAX - 1)
        e = EFBIG;
    *size = e ? 0 : (size_t)st.st_size;
    *buf = e ? NULL : bpi_alloc(*size + 1);
    if (e == 0 && !*buf) {
        fclose(f);
        return bpi_fail(BP_ENOMEM, "%s: %s: cannot allocate %zu bytes", fn, path, *size);
    }
    /* A file that shrank since fstat reads short and is reported truncated. */
    if (e == 0)
        *size = fread(*buf, 1, *size, f);
    if (e == 0 && ferror(f))
        e = errno ? errno : EIO;
    fclose(f);
    if (e != 0) {
        bpi_free(*buf);
        return io_fail(fn, path, e == EISDIR ? "not a regular file" : "cannot read", e);
    }
    return BP_OK;
}

static bp_status check_load(const char *path, bp_ctx *ctx, size_t max_batch, bp_net **net,
                            bp_kv **meta, size_t *n_meta)
{
    const char *fn = "bp_model_load";
    if (!path || !ctx || !net)
        return bpi_fail(BP_EINVAL, "%s: %s is NULL", fn, !path ? "path" : !ctx ? "ctx" : "net");
    if (max_batch == 0)
        return bpi_fail(BP_EINVAL, "%s: max_batch is 0", fn);
    if (meta && !n_meta)
        return bpi_fail(BP_EINVAL, "%s: meta is given but n_meta is NULL", fn);
    return BP_OK;
}

bp_status bp_model_load(const char *path, bp_ctx *ctx, size_t max_batch, bp_net **net,
                        bp_optim **opt, bp_model_info *info, bp_kv **meta, size_t *n_meta)
{
    BPI_TRY(check_load(path, ctx, max_batch, net, meta, n_meta));
    unsigned char *buf = NULL;
    size_t size = 0;
    BPI_TRY(read_file(path, &buf, &size));
    model m;
    memset(&m, 0, sizeof m);
    m.ctx = ctx;
    m.max_batch = max_batch;
    m.want_meta = meta != NULL;
    reader r = {buf, size, 0, 0, 0, path, "header"};
    bp_status st = parse_model(&r, &m);
    bpi_free(buf);
    if (st != BP_OK) {
        model_free(&m);
        return st;
    }
    if (info) {
        info->format_version = FORMAT_VERSION;
        info->library_version = m.library_version;
        info->has_optimizer = m.opt != NULL;
        info->seed = m.seed;
        info->epoch = m.epoch;
    }
    *net = m.net;
    if (opt)
        *opt = m.opt;
    else
        bp_optim_destroy(m.opt); /* built anyway, so a file loads the same either way */
    if (meta) {
        *meta = m.meta;
        *n_meta = m.n_meta;
    }
    bpi_free(m.specs);
    return BP_OK;
}

void bp_kv_free(bp_kv *meta, size_t n_meta)
{
    /* The pairs' strings live in the same allocation as the array. */
    (void)n_meta;
    bpi_free(meta);
}
