/* IDX reader (the MNIST / Fashion-MNIST format): a big-endian header (two
 * zero bytes, a type byte, a dimension count, one 32-bit size per
 * dimension), then the data, plain or gzip-compressed.
 *
 * Every header field is checked against what the file can really hold before
 * anything is allocated from it: a plain file's size is known, and a gzip
 * file of c bytes cannot inflate to more than 1032 c (deflate's limit). The
 * data buffer of a gzip file then grows only as decompressed bytes arrive,
 * so a lying header costs at most one bounded chunk.
 *
 * zlib's inflate is the slow part of loading: 0.4 s of Fashion-MNIST's
 * 26 MB training images, against 0.13 s for libdeflate (Zen 1, page cache).
 * So when libdeflate is built in, a gzip file whose header and gzip trailer
 * agree on the size, and whose size is plausible (at most FAST_MAX_RATIO
 * times the compressed bytes), is inflated whole by libdeflate. Anything
 * else, and any file libdeflate does not take entirely (corrupt data, more
 * than one member, trailing bytes), goes through zlib's streaming path,
 * whose messages say what is wrong and where. */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "alloc.h"
#include "bp_config.h"
#include "dataset.h"
#include "error.h"

#define FN "bp_dataset_load_idx"
#define IDX_UBYTE 0x08
/* zlib FAQ: deflate's best compression is 1032:1 (258-byte matches at
 * about 2 bits each); gzip's own framing only lowers the ratio further. */
#define GZ_MAX_RATIO 1032u
#define GZ_IN_CHUNK 16384
/* First allocation for gzip data; doubled up to the declared size. */
#define GZ_FIRST_CHUNK ((size_t)1 << 20)
/* inflate counts in uInt: feed it at most this much output per call. */
#define GZ_MAX_OUT ((size_t)1 << 30)
/* The fast path allocates the declared size up front: only for sizes a
 * real IDX file reaches (Fashion-MNIST 1.8, MNIST 5), so that a lying but
 * self-consistent file costs at most this many times its own size. */
#define FAST_MAX_RATIO 64u

#if BP_HAVE_LIBDEFLATE
#include <libdeflate.h>
#endif

typedef struct idx_file {
    const char *path;
    FILE *f;
    uintmax_t file_bytes; /* on disk */
    int gz;               /* read through inflate */
    int z_live;           /* inflateInit2 succeeded: inflateEnd owed */
    int z_end;            /* the last gzip member ended and nothing follows */
    unsigned z_members;   /* gzip members completed */
    uintmax_t z_read;     /* compressed bytes read from f so far */
    z_stream z;
    size_t pos;           /* offset in the (decompressed) IDX byte stream */
    size_t n, n_features, data_bytes;
    unsigned char *data;  /* data_bytes, filled by read_data() */
    unsigned char *whole; /* the fast path's buffer: header, then data */
    int whole_borrowed;   /* whole lies in scratch: not ours to free */
    unsigned char *scratch; /* NULL, or memory the fast path may use (images) */
    size_t scratch_bytes;
    unsigned char in[GZ_IN_CHUNK];
} idx_file;

/* " (uncompressed)" after a byte offset that counts decompressed bytes. */
static const char *unit(const idx_file *s) { return s->gz ? " (uncompressed)" : ""; }

static bp_status io_fail(const idx_file *s, const char *what, int err)
{
    char msg[128];
    if (strerror_r(err, msg, sizeof msg) != 0)
        snprintf(msg, sizeof msg, "error %d", err);
    return bpi_fail(BP_EIO, FN ": %s: %s: %s", s->path, what, msg);
}

/* zlib's memory comes from the library's allocator too. */
static voidpf z_alloc(voidpf opaque, uInt items, uInt size)
{
    (void)opaque;
    return bpi_alloc_array(items, size);
}

static void z_free(voidpf opaque, voidpf p)
{
    (void)opaque;
    bpi_free(p);
}

static bp_status file_open(idx_file *s)
{
    s->f = fopen(s->path, "rb");
    if (!s->f)
        return io_fail(s, "cannot open", errno);
    struct stat st;
    if (fstat(fileno(s->f), &st) != 0)
        return io_fail(s, "cannot stat", errno);
    /* The size checks need a real size: no pipes or directories. */
    if (!S_ISREG(st.st_mode))
        return bpi_fail(BP_EIO, FN ": %s: not a regular file", s->path);
    s->file_bytes = (uintmax_t)st.st_size;
    unsigned char magic[2];
    size_t k = fread(magic, 1, 2, s->f);
    if (k < 2 && ferror(s->f))
        return io_fail(s, "cannot read", errno);
    if (fseek(s->f, 0, SEEK_SET) != 0)
        return io_fail(s, "cannot seek", errno);
    s->gz = k == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    if (s->gz) {
        s->z.zalloc = z_alloc;
        s->z.zfree = z_free;
        /* 16 + MAX_WBITS: a gzip wrapper only, its CRC32 and ISIZE checked. */
        if (inflateInit2(&s->z, 16 + MAX_WBITS) != Z_OK)
            return bpi_fail(BP_ENOMEM, FN ": %s: cannot start zlib", s->path);
        s->z_live = 1;
    }
    return BP_OK;
}

static void file_close(idx_file *s)
{
    if (s->z_live)
        inflateEnd(&s->z);
    if (s->f)
        fclose(s->f);
    if (s->whole)
        s->data = NULL; /* it points into whole */
    bpi_free(s->data);
    if (!s->whole_borrowed)
        bpi_free(s->whole);
}

/* Refill zlib's input. *eof is set when the file has no more bytes. */
static bp_status gz_fill(idx_file *s, int *eof)
{
    size_t k = fread(s->in, 1, sizeof s->in, s->f);
    if (k == 0 && ferror(s->f))
        return io_fail(s, "cannot read", errno);
    s->z.next_in = s->in;
    s->z.avail_in = (uInt)k;
    s->z_read += k;
    *eof = k == 0;
    return BP_OK;
}

/* A gzip member ended: another may follow (RFC 1952 allows concatenated
 * members); anything else after it is caught by inflate as a bad header. */
static bp_status gz_member_end(idx_file *s)
{
    int eof = 0;
    if (s->z.avail_in == 0)
        BPI_TRY(gz_fill(s, &eof));
    s->z_members++;
    if (eof)
        s->z_end = 1;
    else if (inflateReset(&s->z) != Z_OK)
        return bpi_fail(BP_EFORMAT, FN ": %s: cannot restart zlib", s->path);
    return BP_OK;
}

static bp_status gz_corrupt(const idx_file *s)
{
    uintmax_t at = s->z_read - s->z.avail_in;
    /* Failing inside a gzip header after a complete member: not a member. */
    if (s->z_members > 0 && s->z.total_out == 0)
        return bpi_fail(BP_EFORMAT, FN ": %s: compressed byte %ju: trailing bytes after the "
                        "gzip stream (%s)", s->path, at, s->z.msg ? s->z.msg : "bad header");
    return bpi_fail(BP_EFORMAT, FN ": %s: compressed byte %ju: corrupt gzip stream (%s)",
                    s->path, at, s->z.msg ? s->z.msg : "bad data");
}

static bp_status gz_read(idx_file *s, unsigned char *dst, size_t n, size_t *got)
{
    while (*got < n && !s->z_end) {
        int eof = 0;
        if (s->z.avail_in == 0)
            BPI_TRY(gz_fill(s, &eof));
        if (eof)
            return bpi_fail(BP_EFORMAT,
                            FN ": %s: byte %zu (uncompressed): the gzip stream is truncated "
                            "(file ends after %ju compressed bytes, expected more)",
                            s->path, s->pos + *got, s->z_read);
        size_t want = n - *got < GZ_MAX_OUT ? n - *got : GZ_MAX_OUT;
        s->z.next_out = dst + *got;
        s->z.avail_out = (uInt)want;
        int r = inflate(&s->z, Z_NO_FLUSH);
        *got += want - s->z.avail_out;
        if (r == Z_STREAM_END)
            BPI_TRY(gz_member_end(s));
        else if (r == Z_MEM_ERROR)
            return bpi_fail(BP_ENOMEM, FN ": %s: zlib is out of memory", s->path);
        else if (r != Z_OK && !(r == Z_BUF_ERROR && s->z.avail_in == 0))
            return gz_corrupt(s);
    }
    return BP_OK;
}

/* Up to n bytes of the IDX stream; *got < n only at its end. */
static bp_status file_read(idx_file *s, unsigned char *dst, size_t n, size_t *got)
{
    *got = 0;
    if (s->gz) {
        BPI_TRY(gz_read(s, dst, n, got));
    } else {
        *got = fread(dst, 1, n, s->f);
        if (*got < n && ferror(s->f))
            return io_fail(s, "cannot read", errno);
    }
    s->pos += *got;
    return BP_OK;
}

static bp_status read_exact(idx_file *s, unsigned char *dst, size_t n, const char *what)
{
    size_t got;
    BPI_TRY(file_read(s, dst, n, &got));
    if (got < n)
        return bpi_fail(BP_EFORMAT, FN ": %s: byte %zu%s: file ends inside the %s "
                        "(expected %zu bytes, found %zu)",
                        s->path, s->pos, unit(s), what, n, got);
    return BP_OK;
}

static uint32_t be32(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* Bytes 0..3: magic, type, dimension count. Returns the count. */
static bp_status read_magic(idx_file *s, int images, unsigned *n_dims)
{
    if (!s->gz && s->file_bytes == 0)
        return bpi_fail(BP_EFORMAT, FN ": %s: byte 0: file is empty, expected an IDX header",
                        s->path);
    unsigned char h[4];
    BPI_TRY(read_exact(s, h, 4, "header"));
    if (h[0] != 0 || h[1] != 0)
        return bpi_fail(BP_EFORMAT, FN ": %s: byte 0: magic is 0x%02x%02x, expected 0x0000",
                        s->path, h[0], h[1]);
    if (h[2] != IDX_UBYTE)
        return bpi_fail(BP_EFORMAT, FN ": %s: byte 2: type is 0x%02x, expected 0x08 "
                        "(unsigned byte)", s->path, h[2]);
    if (images ? h[3] != 3 && h[3] != 2 : h[3] != 1)
        return bpi_fail(BP_EFORMAT, FN ": %s: byte 3: dimension count is %u, expected %s",
                        s->path, h[3], images ? "3 or 2 for images" : "1 for labels");
    *n_dims = h[3];
    return BP_OK;
}

/* Declared sizes against what the file can hold, before any allocation. */
static bp_status check_size(const idx_file *s, size_t header_bytes)
{
    if (s->gz) {
        if (s->data_bytes / GZ_MAX_RATIO > s->file_bytes)
            return bpi_fail(BP_EFORMAT, FN ": %s: byte %zu (uncompressed): the header declares "
                            "%zu data bytes, more than a %ju-byte gzip file can hold",
                            s->path, header_bytes, s->data_bytes, s->file_bytes);
        return BP_OK;
    }
    size_t total;
    if (!bpi_add(header_bytes, s->data_bytes, &total) || s->file_bytes < total)
        return bpi_fail(BP_EFORMAT, FN ": %s: byte %ju: file ends after %ju bytes, expected "
                        "%zu data bytes after the %zu-byte header",
                        s->path, s->file_bytes, s->file_bytes, s->data_bytes, header_bytes);
    if (s->file_bytes > total)
        return bpi_fail(BP_EFORMAT, FN ": %s: byte %zu: %ju trailing bytes after the %zu "
                        "declared data bytes", s->path, total, s->file_bytes - total,
                        s->data_bytes);
    return BP_OK;
}

/* The header: images are (n, rows, cols) or (n, features), labels (n). */
static bp_status read_header(idx_file *s, int images)
{
    unsigned n_dims = 0;
    BPI_TRY(read_magic(s, images, &n_dims));
    size_t dim[3] = {1, 1, 1};
    for (unsigned i = 0; i < n_dims; i++) {
        unsigned char b[4];
        BPI_TRY(read_exact(s, b, 4, "dimension sizes"));
        dim[i] = be32(b);
        if (dim[i] == 0)
            return bpi_fail(BP_EFORMAT, FN ": %s: byte %u: dimension %u is 0, expected >= 1",
                            s->path, 4 + 4 * i, i);
    }
    s->n = dim[0];
    if (!bpi_mul(dim[1], dim[2], &s->n_features) ||
        !bpi_mul(s->n, s->n_features, &s->data_bytes))
        return bpi_fail(BP_EFORMAT, FN ": %s: byte 4: dimensions %zu x %zu x %zu: their "
                        "product overflows size_t", s->path, dim[0], dim[1], dim[2]);
    return check_size(s, 4 + 4 * (size_t)n_dims);
}

/* Double the buffer, never past the declared size. */
static bp_status grow(idx_file *s, size_t have, size_t *cap)
{
    size_t next = *cap <= s->data_bytes / 2 ? *cap * 2 : s->data_bytes;
    unsigned char *p = bpi_alloc(next);
    if (!p)
        return bpi_fail(BP_ENOMEM, FN ": %s: cannot allocate %zu bytes", s->path, next);
    memcpy(p, s->data, have);
    bpi_free(s->data);
    s->data = p;
    *cap = next;
    return BP_OK;
}

/* ------------------------------------------------- the libdeflate path */

static atomic_ulong fast_loads, inplace_loads;

unsigned long bpi_idx_fast_loads(void)
{
    return atomic_load(&fast_loads);
}

unsigned long bpi_idx_inplace_loads(void)
{
    return atomic_load(&inplace_loads);
}

#if BP_HAVE_LIBDEFLATE
/* All n bytes at offset 0 of the file, without moving its stdio position;
 * 0 if they could not all be read (the streaming path then says why). */
static int read_whole(const idx_file *s, unsigned char *dst, size_t n)
{
    size_t have = 0;
    while (have < n) {
        ssize_t k = pread(fileno(s->f), dst + have, n - have, (off_t)have);
        if (k <= 0)
            return 0;
        have += (size_t)k;
    }
    return 1;
}

/* The gzip trailer's ISIZE: the uncompressed size mod 2^32, little-endian. */
static uint32_t le32(const unsigned char *b)
{
    return (uint32_t)b[3] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[1] << 8 | b[0];
}

/* The whole file through libdeflate. *done = 1 when s->data holds the data;
 * 0 (with BP_OK) sends the caller down the streaming path, which has only
 * read the header so far. Only our own allocations fail the load. */
static bp_status fast_read(idx_file *s, int *done)
{
    *done = 0;
    size_t header = s->pos, total, in_bytes = (size_t)s->file_bytes;
    if (s->z_members > 0 || s->file_bytes < 18 || s->file_bytes > SIZE_MAX ||
        !bpi_add(header, s->data_bytes, &total) ||
        total / FAST_MAX_RATIO > s->file_bytes)
        return BP_OK;
    /* Both buffers inside the scratch (the dataset's float features, four
     * times the data) when they fit: the compressed file at its start, the
     * decompressed bytes at its end, which load_pair then widens in place.
     * Fresh memory costs its first touch (alloc.c); Fashion-MNIST's
     * training images then touch 188 MB instead of 261. */
    int borrow = s->scratch && in_bytes <= s->scratch_bytes &&
                 total <= s->scratch_bytes - in_bytes;
    unsigned char *in_own = NULL, *whole_own = NULL; /* what this function frees */
    unsigned char *in = borrow ? s->scratch : (in_own = bpi_alloc(in_bytes));
    if (!in)
        return bpi_fail(BP_ENOMEM, FN ": %s: cannot allocate %zu bytes", s->path, in_bytes);
    if (!read_whole(s, in, in_bytes) || le32(in + in_bytes - 4) != (uint32_t)total) {
        bpi_free(in_own);
        return BP_OK;
    }
    unsigned char *whole =
        borrow ? s->scratch + s->scratch_bytes - total : (whole_own = bpi_alloc(total));
    if (!whole) {
        bpi_free(in_own);
        return bpi_fail(BP_ENOMEM, FN ": %s: cannot allocate %zu bytes", s->path, total);
    }
    struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
    size_t used = 0, got = 0;
    int ok = d && libdeflate_gzip_decompress_ex(d, in, in_bytes, whole, total, &used,
                                                &got) == LIBDEFLATE_SUCCESS &&
             used == in_bytes && got == total;
    if (d)
        libdeflate_free_decompressor(d);
    bpi_free(in_own);
    if (!ok) {
        bpi_free(whole_own);
        return BP_OK;
    }
    s->whole = whole;
    s->whole_borrowed = borrow;
    s->data = s->whole + header;
    s->pos = total;
    atomic_fetch_add(&fast_loads, 1);
    if (borrow)
        atomic_fetch_add(&inplace_loads, 1);
    *done = 1;
    return BP_OK;
}
#endif

/* Exactly data_bytes bytes, then the end of the stream. */
static bp_status read_data(idx_file *s)
{
#if BP_HAVE_LIBDEFLATE
    if (s->gz) {
        int done = 0;
        BPI_TRY(fast_read(s, &done));
        if (done)
            return BP_OK;
    }
#endif
    size_t cap = s->data_bytes, have = 0, got;
    if (s->gz && cap > GZ_FIRST_CHUNK)
        cap = GZ_FIRST_CHUNK;
    s->data = bpi_alloc(cap);
    if (!s->data)
        return bpi_fail(BP_ENOMEM, FN ": %s: cannot allocate %zu bytes", s->path, cap);
    while (have < s->data_bytes) {
        if (have == cap)
            BPI_TRY(grow(s, have, &cap));
        BPI_TRY(file_read(s, s->data + have, cap - have, &got));
        have += got;
        if (have < cap)
            return bpi_fail(BP_EFORMAT, FN ": %s: byte %zu%s: file ends inside the data "
                            "(expected %zu data bytes, found %zu)",
                            s->path, s->pos, unit(s), s->data_bytes, have);
    }
    /* Reading past the end also makes zlib check the gzip CRC and length. */
    unsigned char extra;
    BPI_TRY(file_read(s, &extra, 1, &got));
    if (got != 0)
        return bpi_fail(BP_EFORMAT, FN ": %s: byte %zu%s: trailing bytes after the %zu "
                        "declared data bytes", s->path, s->pos - 1, unit(s), s->data_bytes);
    return BP_OK;
}

/* Pixels to [0, 1] (255 / 255.0f is exactly 1), from img->data, which
 * may lie in the last quarter of X itself (fast_read's scratch): then the
 * bytes go through a small buffer a chunk at a time, front to back, and
 * the floats written so far, 4 (i + c) bytes, never reach the bytes not
 * yet read, which start at 3 n + i + c (n bytes in all, i done, c in the
 * chunk just copied), since i + c <= n. */
static void widen_pixels(float *X, const unsigned char *data, size_t n)
{
    unsigned char chunk[4096];
    for (size_t i = 0; i < n; i += sizeof chunk) {
        size_t c = n - i < sizeof chunk ? n - i : sizeof chunk;
        memcpy(chunk, data + i, c);
        for (size_t k = 0; k < c; k++)
            X[i + k] = (float)chunk[k] / 255.0f;
    }
}

/* The images, and the labels when lab->path is set. The dataset comes
 * first, so that the images' fast path can decompress inside it. */
static bp_status load_pair(idx_file *img, idx_file *lab, bp_dataset **out)
{
    BPI_TRY(file_open(img));
    BPI_TRY(read_header(img, 1));
    if (lab->path) {
        BPI_TRY(file_open(lab));
        BPI_TRY(read_header(lab, 0));
        if (img->n != lab->n)
            return bpi_fail(BP_EFORMAT,
                            FN ": byte 4: %s holds %zu images but %s holds %zu labels",
                            img->path, img->n, lab->path, lab->n);
    }
    bp_dataset *ds;
    BPI_TRY(lab->path ? bpi_dataset_alloc(&ds, img->n, img->n_features, 0, FN)
                      : bpi_dataset_alloc_unlabelled(&ds, img->n, img->n_features, FN));
    img->scratch = (unsigned char *)ds->X;
    img->scratch_bytes = img->data_bytes * sizeof(float);
    bp_status s = read_data(img);
    if (s == BP_OK && lab->path)
        s = read_data(lab);
    if (s != BP_OK) {
        bp_dataset_destroy(ds);
        return s;
    }
    widen_pixels(ds->X, img->data, img->data_bytes);
    for (size_t i = 0; lab->path && i < lab->n; i++)
        ds->labels[i] = lab->data[i];
    *out = ds;
    return BP_OK;
}

bp_status bp_dataset_load_idx(bp_dataset **ds, const char *images, const char *labels)
{
    if (!ds || !images)
        return bpi_fail(BP_EINVAL, FN ": %s is NULL", !ds ? "ds" : "images");
    /* Two files of about 17 KiB each: on the heap, not the caller's stack. */
    idx_file *img = bpi_alloc(2 * sizeof *img);
    if (!img)
        return bpi_fail(BP_ENOMEM, FN ": cannot allocate the readers");
    idx_file *lab = img + 1;
    img->path = images;
    lab->path = labels;
    bp_status s = load_pair(img, lab, ds);
    file_close(img);
    file_close(lab);
    bpi_free(img);
    return s;
}
