/* Numeric CSV reader. Two passes over the file with one parser: the first
 * validates every line and counts the rows, the second fills a dataset
 * allocated to exactly that size. Memory is the dataset plus the longest
 * line (its buffer grows geometrically).
 *
 * Fields are parsed with strtod, so the decimal point is the one of the
 * caller's LC_NUMERIC locale ("." unless the program called setlocale). */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "alloc.h"
#include "dataset.h"
#include "error.h"

#define FN "bp_dataset_load_csv"
/* Characters of a bad field quoted in a message. */
#define SHOW 40

typedef struct csv_reader {
    const char *path;
    const bp_csv_options *opt;
    FILE *f;
    char *line;
    size_t line_cap;
    size_t line_no;       /* 1-based, counting the header */
    size_t width;         /* fields per row, from the first data row; 0 before */
    size_t width_line;    /* the line that set width */
    size_t label_col;     /* 0-based first label / target column */
    size_t n_label_cols;  /* 1 for class labels, n_targets for targets */
    size_t n_rows;
    bp_dataset *ds;       /* NULL in the counting pass */
} csv_reader;

bp_status bp_csv_options_default(bp_csv_options *opt)
{
    if (!opt)
        return bpi_fail(BP_EINVAL, "bp_csv_options_default: opt is NULL");
    memset(opt, 0, sizeof *opt);
    opt->header = 0;
    opt->delimiter = ',';
    opt->label_column = -1;
    opt->n_targets = 0;
    return BP_OK;
}

/* A delimiter that can appear inside a number (or ends lines) would make
 * the split ambiguous. */
static bp_status check_options(const bp_csv_options *opt)
{
    char d = opt->delimiter;
    if (d == '\0' || strchr("0123456789.+-eE\r\n", d))
        return bpi_fail(BP_EINVAL, FN ": delimiter 0x%02x cannot separate numbers",
                        (unsigned)(unsigned char)d);
    return BP_OK;
}

static bp_status io_fail(const csv_reader *r, const char *what, int err)
{
    char msg[128];
    if (strerror_r(err, msg, sizeof msg) != 0)
        snprintf(msg, sizeof msg, "error %d", err);
    return bpi_fail(BP_EIO, FN ": %s: %s: %s", r->path, what, msg);
}

/* Resolve label_column and n_targets against the first row's width. */
static bp_status set_width(csv_reader *r, size_t fields)
{
    if (r->opt->no_labels) {
        /* Every column is a feature: the label range is empty, past the end. */
        r->width = fields;
        r->width_line = r->line_no;
        r->label_col = fields;
        r->n_label_cols = 0;
        return BP_OK;
    }
    long lc = r->opt->label_column;
    size_t k = r->opt->n_targets ? r->opt->n_targets : 1;
    /* -(lc + 1) + 1 is |lc| without overflow at LONG_MIN. */
    size_t back = lc < 0 ? (size_t)(unsigned long)(-(lc + 1)) + 1 : 0;
    if (lc >= 0 ? (unsigned long)lc >= fields : back > fields)
        return bpi_fail(BP_EINVAL, FN ": %s: line %zu: label_column %ld is out of range for "
                        "%zu columns", r->path, r->line_no, lc, fields);
    size_t col = lc >= 0 ? (size_t)lc : fields - back;
    if (k >= fields)
        return bpi_fail(BP_EINVAL, FN ": %s: line %zu: %s leaves no feature column among %zu",
                        r->path, r->line_no, r->opt->n_targets ? "n_targets" : "the label",
                        fields);
    if (col > fields - k)
        return bpi_fail(BP_EINVAL, FN ": %s: line %zu: n_targets %zu from column %zu run past "
                        "the last column (%zu)", r->path, r->line_no, k, col + 1, fields);
    r->width = fields;
    r->width_line = r->line_no;
    r->label_col = col;
    r->n_label_cols = k;
    return BP_OK;
}

/* The whole field (blanks around it allowed) as a finite number. len, not
 * strlen: a NUL byte inside the field must not end it early. */
static bp_status parse_number(const csv_reader *r, size_t col, char *text, size_t len,
                              double *v)
{
    char *end = text + len;
    while (*text == ' ' || *text == '\t')
        text++;
    while (end > text && (end[-1] == ' ' || end[-1] == '\t'))
        *--end = '\0';
    if (text == end)
        return bpi_fail(BP_EFORMAT, FN ": %s: line %zu, column %zu: empty field, expected a "
                        "number", r->path, r->line_no, col + 1);
    char *stop;
    *v = strtod(text, &stop);
    if (stop != end)
        return bpi_fail(BP_EFORMAT, FN ": %s: line %zu, column %zu: \"%.*s\" is not a number",
                        r->path, r->line_no, col + 1, SHOW, text);
    if (!isfinite(*v))
        return bpi_fail(BP_EFORMAT, FN ": %s: line %zu, column %zu: \"%.*s\" is not a finite "
                        "number", r->path, r->line_no, col + 1, SHOW, text);
    return BP_OK;
}

/* Parse field `col` of the current row; store it in the second pass. */
static bp_status parse_field(csv_reader *r, size_t col, char *text, size_t len,
                             size_t *feature)
{
    double v = 0.0;
    BPI_TRY(parse_number(r, col, text, len, &v));
    int is_label = col >= r->label_col && col - r->label_col < r->n_label_cols;
    bp_dataset *ds = r->ds;
    if (is_label && r->opt->n_targets == 0) {
        if (!(v >= 0.0 && v <= (double)INT32_MAX && v == floor(v)))
            return bpi_fail(BP_EFORMAT, FN ": %s: line %zu, column %zu: label %.*s is not an "
                            "integer in [0, %ld]", r->path, r->line_no, col + 1, SHOW, text,
                            (long)INT32_MAX);
        if (ds)
            ds->labels[r->n_rows] = (int32_t)v;
        return BP_OK;
    }
    if (fabs(v) > FLT_MAX)
        return bpi_fail(BP_EFORMAT, FN ": %s: line %zu, column %zu: %.*s is out of float "
                        "range", r->path, r->line_no, col + 1, SHOW, text);
    if (ds && is_label)
        ds->targets[r->n_rows * ds->n_targets + (col - r->label_col)] = (float)v;
    else if (ds)
        ds->X[r->n_rows * ds->n_features + *feature] = (float)v;
    *feature += !is_label;
    return BP_OK;
}

static bp_status parse_row(csv_reader *r, size_t len)
{
    char d = r->opt->delimiter, *p = r->line, *end = r->line + len;
    size_t fields = 1;
    for (char *q = p; (q = memchr(q, d, (size_t)(end - q))) != NULL; q++)
        fields++;
    if (r->width == 0)
        BPI_TRY(set_width(r, fields));
    else if (fields != r->width)
        return bpi_fail(BP_EFORMAT, FN ": %s: line %zu: found %zu fields, expected %zu "
                        "(as on line %zu)", r->path, r->line_no, fields, r->width,
                        r->width_line);
    /* A file that grew between the passes must not write past the rows. */
    if (r->ds && r->n_rows >= r->ds->n)
        return bpi_fail(BP_EFORMAT, FN ": %s: line %zu: the file changed while being read",
                        r->path, r->line_no);
    size_t feature = 0;
    for (size_t col = 0; col < fields; col++) {
        char *q = memchr(p, d, (size_t)(end - p));
        q = q ? q : end; /* *end is read_line's terminator or a stripped line end */
        *q = '\0';
        BPI_TRY(parse_field(r, col, p, (size_t)(q - p), &feature));
        p = q + 1;
    }
    return BP_OK;
}

/* Length without the line end ("\n", "\r\n" or none at the end of file). */
static size_t strip_eol(const char *s, size_t len)
{
    if (len > 0 && s[len - 1] == '\n')
        len--;
    if (len > 0 && s[len - 1] == '\r')
        len--;
    return len;
}

static int is_blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t')
            return 0;
    return 1;
}

static bp_status no_rows(const csv_reader *r)
{
    if (r->line_no == 0)
        return bpi_fail(BP_EFORMAT, FN ": %s: no data rows (the file is empty)", r->path);
    const char *why = r->opt->header && r->line_no == 1 ? "only a header line"
                                                        : "only empty lines";
    return bpi_fail(BP_EFORMAT, FN ": %s: line %zu: no data rows (%s)", r->path, r->line_no,
                    why);
}

/* Double the line buffer (keeping its first `len` bytes). 0 on failure. */
static int grow_line(csv_reader *r, size_t len)
{
    size_t cap = r->line_cap ? r->line_cap : 64;
    if (!bpi_mul(cap, 2, &cap))
        return 0;
    char *p = bpi_alloc(cap);
    if (!p)
        return 0;
    if (len)
        memcpy(p, r->line, len);
    bpi_free(r->line);
    r->line = p;
    r->line_cap = cap;
    return 1;
}

/* getline() on the library's allocator, so that its allocations fail under
 * bp_debug_fail_alloc like every other: the next line, '\n' included, into
 * r->line, NUL-terminated (it may hold NUL bytes: the length tells). -1 at
 * the end of the file, on a read error (ferror) and, with errno ENOMEM,
 * when the buffer cannot grow. */
static ssize_t read_line(csv_reader *r)
{
    size_t len = 0;
    for (;;) {
        int c = getc_unlocked(r->f);
        if (c == EOF && (len == 0 || ferror(r->f)))
            return -1;
        if (c == EOF)
            break;
        if (len + 2 > r->line_cap && !grow_line(r, len)) {
            errno = ENOMEM;
            return -1;
        }
        r->line[len++] = (char)c;
        if (c == '\n')
            break;
    }
    r->line[len] = '\0';
    return (ssize_t)len;
}

/* One pass over the file: every line validated, rows counted (and stored
 * when r->ds is set). Empty lines may only end the file. */
static bp_status scan(csv_reader *r)
{
    size_t blank_line = 0;
    r->line_no = 0;
    r->n_rows = 0;
    for (;;) {
        errno = 0;
        ssize_t n = read_line(r);
        if (n < 0 && errno == ENOMEM)
            return bpi_fail(BP_ENOMEM, FN ": %s: line %zu: cannot allocate the line buffer",
                            r->path, r->line_no + 1);
        if (n < 0 && ferror(r->f))
            return io_fail(r, "cannot read", errno);
        if (n < 0)
            break;
        r->line_no++;
        if (r->opt->header && r->line_no == 1)
            continue;
        size_t len = strip_eol(r->line, (size_t)n);
        if (is_blank(r->line, len)) {
            blank_line = blank_line ? blank_line : r->line_no;
            continue;
        }
        if (blank_line)
            return bpi_fail(BP_EFORMAT, FN ": %s: line %zu: empty line before more data "
                            "(line %zu)", r->path, blank_line, r->line_no);
        BPI_TRY(parse_row(r, len));
        r->n_rows++;
    }
    return r->n_rows ? BP_OK : no_rows(r);
}

static bp_status load(csv_reader *r, bp_dataset **out)
{
    BPI_TRY(scan(r));
    size_t n = r->n_rows;
    if (r->opt->no_labels)
        BPI_TRY(bpi_dataset_alloc_unlabelled(&r->ds, n, r->width, FN));
    else
        BPI_TRY(bpi_dataset_alloc(&r->ds, n, r->width - r->n_label_cols, r->opt->n_targets,
                                  FN));
    if (fseek(r->f, 0, SEEK_SET) != 0)
        return io_fail(r, "cannot rewind for the second pass", errno);
    BPI_TRY(scan(r));
    if (r->n_rows != n)
        return bpi_fail(BP_EFORMAT, FN ": %s: the file changed while being read (%zu rows, "
                        "then %zu)", r->path, n, r->n_rows);
    *out = r->ds;
    r->ds = NULL;
    return BP_OK;
}

/* opt NULL means bp_csv_options_default(). */
bp_status bp_dataset_load_csv(bp_dataset **ds, const char *path, const bp_csv_options *opt)
{
    if (!ds || !path)
        return bpi_fail(BP_EINVAL, FN ": %s is NULL", !ds ? "ds" : "path");
    bp_csv_options defaults;
    if (!opt) {
        bp_csv_options_default(&defaults);
        opt = &defaults;
    }
    BPI_TRY(check_options(opt));
    csv_reader r = {.path = path, .opt = opt};
    r.f = fopen(path, "rb");
    if (!r.f)
        return io_fail(&r, "cannot open", errno);
    bp_status s = load(&r, ds);
    bp_dataset_destroy(r.ds);
    bpi_free(r.line);
    fclose(r.f);
    return s;
}
