/* bp_model_load on arbitrary bytes. Every section carries a CRC32, so
 * almost every mutation would stop at the first checksum: when bit 0 of
 * the first byte is set, the harness recomputes the header's and each
 * section's CRC (doc/model-format.md) before writing, and the structural
 * checks behind them get fuzzed. A model that loads is run once (predict)
 * and its metadata read. */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <backprop.h>

#include "fuzz.h"

static uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void put_le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* Header: 20 bytes then their CRC; sections: tag, u64 length, payload,
 * CRC of tag + length + payload. */
static void fix_crcs(unsigned char *b, size_t n)
{
    if (n < 24)
        return;
    put_le32(b + 20, (uint32_t)crc32(0L, b, 20));
    size_t pos = 24;
    while (n - pos >= 16) {
        uint64_t len = le64(b + pos + 4);
        if (len > n - pos - 16)
            return;
        size_t end = pos + 12 + (size_t)len;
        put_le32(b + end, (uint32_t)crc32(0L, b + pos, (uInt)(end - pos)));
        pos = end + 4;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[256];
    static bp_ctx *ctx;
    if (!path[0]) {
        fuzz_path("model.bpm", path, sizeof path);
        if (bp_ctx_create(&ctx, 1) != BP_OK)
            abort();
    }
    if (size < 1)
        return 0;
    int fix = data[0] & 1;
    unsigned char *buf = malloc(size);
    if (!buf)
        return 0;
    memcpy(buf, data + 1, size - 1);
    if (fix)
        fix_crcs(buf, size - 1);
    int ok = fuzz_write(path, buf, size - 1);
    free(buf);
    if (!ok)
        return 0;
    bp_net *net = NULL;
    bp_optim *opt = NULL;
    bp_model_info info;
    bp_kv *meta = NULL;
    size_t n_meta = 0;
    bp_status s = bp_model_load(path, ctx, 2, &net, &opt, &info, &meta, &n_meta);
    if (s != BP_OK) {
        if (net || bp_last_error()[0] == '\0')
            abort();
        return 0;
    }
    /* The loaded net must run: one zero row through it. */
    size_t n_in = bp_net_n_in(net), n_out = bp_net_n_out(net);
    float *x = calloc(n_in, sizeof(float)), *y = calloc(n_out, sizeof(float));
    if (x && y && bp_net_predict(net, x, 1, y) != BP_OK)
        abort();
    free(x);
    free(y);
    size_t total = 0;
    for (size_t i = 0; i < n_meta; i++)
        total += strlen(meta[i].key) + strlen(meta[i].value);
    if (n_meta > 4096 || total > size || (opt && bp_optim_n_slots(opt) > 2))
        abort();
    bp_kv_free(meta, n_meta);
    bp_optim_destroy(opt);
    bp_net_destroy(net);
    return 0;
}
