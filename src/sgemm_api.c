/* bp_sgemm: cblas_sgemm's contract on top of the row-major engine.
 *
 * Column-major is the row-major engine on transposes: a column-major M x N
 * matrix with leading dimension ld is, byte for byte, the row-major N x M
 * matrix of its transpose. So column-major C = op(A) op(B) is row-major
 *   C^T (N, M) = op(B)^T (N, K) op(A)^T (K, M),
 * the engine called with A and B swapped, M and N swapped, and the same
 * transpose flags (op(B)^T of a column-major B is op(B) of the row-major
 * reading of its storage).
 */
#include <stddef.h>

#include "alloc.h"
#include "ctx.h"
#include "error.h"
#include "gemm.h"

/* How one argument matrix sits in memory: `lines` runs of `line_len`
 * floats, ld floats apart (rows if the storage is row-major, columns if it
 * is column-major). */
typedef struct stored_matrix {
    const char *name, *ld_name; /* "A", "lda" */
    const void *data;
    size_t ld, lines, line_len;
    const char *len_name;       /* which of M, N, K line_len is, for messages */
    int read;                   /* the call dereferences data */
} stored_matrix;

/* op(X) is rows x cols; X is stored transposed iff trans. In row-major
 * storage a line is a row of X, in column-major a column of X. */
static stored_matrix describe(const char *name, const char *ld_name, const void *data,
                              size_t ld, int row_major, int trans,
                              size_t rows, size_t cols,
                              const char *rows_name, const char *cols_name, int read)
{
    /* X (not op(X)) is rows x cols when !trans, cols x rows when trans; its
     * lines are along its columns (row-major) or rows (column-major). */
    int line_is_op_row = row_major != trans;
    stored_matrix s = {
        .name = name, .ld_name = ld_name, .data = data, .ld = ld, .read = read,
        .lines = line_is_op_row ? rows : cols,
        .line_len = line_is_op_row ? cols : rows,
        .len_name = line_is_op_row ? cols_name : rows_name,
    };
    return s;
}

/* The BLAS rule ld >= max(1, line_len), data non-NULL when read, and the
 * extent (lines - 1) ld + line_len floats addressable in size_t bytes. */
static bp_status check_matrix(const stored_matrix *s)
{
    size_t min_ld = s->line_len > 1 ? s->line_len : 1;
    if (s->ld < min_ld)
        return bpi_fail(BP_EINVAL, "bp_sgemm: %s is %zu, below max(1, %s) = %zu",
                        s->ld_name, s->ld, s->len_name, min_ld);
    if (!s->read || s->lines == 0)
        return BP_OK;
    if (!s->data)
        return bpi_fail(BP_EINVAL, "bp_sgemm: %s is NULL", s->name);
    size_t extent, bytes;
    if (!bpi_mul(s->lines - 1, s->ld, &extent) ||
        !bpi_add(extent, s->line_len, &extent) ||
        !bpi_mul(extent, sizeof(float), &bytes))
        return bpi_fail(BP_EINVAL, "bp_sgemm: %s overflows: %zu lines with %s = %zu",
                        s->name, s->lines, s->ld_name, s->ld);
    return BP_OK;
}

static bp_status check_enums(bp_layout layout, bp_transpose transA, bp_transpose transB)
{
    if (layout != BP_ROW_MAJOR && layout != BP_COL_MAJOR)
        return bpi_fail(BP_EINVAL, "bp_sgemm: layout is %d (expected BP_ROW_MAJOR or "
                        "BP_COL_MAJOR)", (int)layout);
    if (transA != BP_NO_TRANS && transA != BP_TRANS)
        return bpi_fail(BP_EINVAL, "bp_sgemm: transA is %d (expected BP_NO_TRANS or "
                        "BP_TRANS)", (int)transA);
    if (transB != BP_NO_TRANS && transB != BP_TRANS)
        return bpi_fail(BP_EINVAL, "bp_sgemm: transB is %d (expected BP_NO_TRANS or "
                        "BP_TRANS)", (int)transB);
    return BP_OK;
}

/* Every argument, in the order the signature lists them. op(A) is M x K,
 * op(B) K x N, C M x N. A and B are read only when M, N, K > 0 and
 * alpha != 0; C only when M, N > 0. */
static bp_status check_args(bp_layout layout, bp_transpose transA, bp_transpose transB,
                            size_t M, size_t N, size_t K, float alpha,
                            const float *A, size_t lda, const float *B, size_t ldb,
                            const float *C, size_t ldc)
{
    BPI_TRY(check_enums(layout, transA, transB));
    int row_major = layout == BP_ROW_MAJOR;
    int writes_c = M > 0 && N > 0;
    int reads_ab = writes_c && K > 0 && alpha != 0.0f;
    stored_matrix a = describe("A", "lda", A, lda, row_major, transA == BP_TRANS,
                               M, K, "M", "K", reads_ab);
    stored_matrix b = describe("B", "ldb", B, ldb, row_major, transB == BP_TRANS,
                               K, N, "K", "N", reads_ab);
    stored_matrix c = describe("C", "ldc", C, ldc, row_major, 0, M, N, "M", "N", writes_c);
    BPI_TRY(check_matrix(&a));
    BPI_TRY(check_matrix(&b));
    return check_matrix(&c);
}

/* The engine on ctx's env: row-major as is, column-major transposed. */
static void run(const bp_ctx *ctx, bp_layout layout, int trans_a, int trans_b,
                size_t M, size_t N, size_t K, float alpha, const float *A, size_t lda,
                const float *B, size_t ldb, float beta, float *C, size_t ldc)
{
    if (layout == BP_ROW_MAJOR)
        bpi_sgemm(&ctx->gemm, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb,
                  beta, C, ldc);
    else
        bpi_sgemm(&ctx->gemm, trans_b, trans_a, N, M, K, alpha, B, ldb, A, lda,
                  beta, C, ldc);
}

/* C = alpha op(A) op(B) + beta C (cblas_sgemm). ctx == NULL creates a
 * context for this call alone (one thread per core) and destroys it after:
 * that allocates its workspace every call, so pass a ctx in loops. */
bp_status bp_sgemm(bp_ctx *ctx, bp_layout layout, bp_transpose transA,
                   bp_transpose transB, size_t M, size_t N, size_t K,
                   float alpha, const float *A, size_t lda, const float *B,
                   size_t ldb, float beta, float *C, size_t ldc)
{
    BPI_TRY(check_args(layout, transA, transB, M, N, K, alpha, A, lda, B, ldb, C, ldc));
    if (M == 0 || N == 0)
        return BP_OK;

    bp_ctx *tmp = NULL;
    if (!ctx) {
        BPI_TRY(bp_ctx_create(&tmp, 0));
        ctx = tmp;
    }
    run(ctx, layout, transA == BP_TRANS, transB == BP_TRANS, M, N, K, alpha,
        A, lda, B, ldb, beta, C, ldc);
    bp_ctx_destroy(tmp);
    return BP_OK;
}
