/* No hidden shared state: two nets trained at the same time from two
 * caller threads (pthreads), each on its own context with 2 OpenMP
 * threads, end with the same bits as when trained one after the other; and
 * bp_last_error() is per thread. */
#include <backprop.h>
#include <check.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "tu_suite.h"

#define N 512
#define F 32
#define EPOCHS 3

typedef struct job {
    uint64_t seed;
    bp_optim_type type;
    bp_activation act;
    float *params;     /* out: every parameter after training */
    size_t n_params;
    bp_status status;
    float loss;
} job;

static float g_X[N * F];
static int32_t g_labels[N];

static void *train(void *arg)
{
    job *j = arg;
    const bp_layer_spec layers[3] = {{64, j->act, 0.0f}, {48, j->act, 0.0f},
                                     {5, BP_ACT_IDENTITY, 0.0f}};
    bp_ctx *ctx = NULL;
    bp_net *net = NULL;
    bp_optim *opt = NULL;
    bp_dataset *ds = NULL;
    bp_optim_config cfg;
    bp_status s = bp_ctx_create(&ctx, 2);
    if (s == BP_OK)
        s = bp_net_create(&net, ctx, F, 3, layers, BP_HEAD_SOFTMAX_CE, 64);
    if (s == BP_OK)
        s = bp_net_init(net, BP_INIT_HE_NORMAL, j->seed);
    if (s == BP_OK)
        s = bp_optim_config_default(&cfg, j->type);
    if (s == BP_OK)
        s = bp_optim_create(&opt, net, &cfg);
    if (s == BP_OK)
        s = bp_dataset_create(&ds, N, F, g_X, g_labels, NULL, 0);
    for (uint64_t e = 0; s == BP_OK && e < EPOCHS; e++)
        s = bp_train_epoch(net, opt, ds, 64, j->seed, e, &j->loss);
    size_t at = 0;
    for (size_t l = 0; s == BP_OK && l < 3; l++)
        for (int w = 0; s == BP_OK && w < 2; w++) {
            const float *v;
            size_t rows, cols;
            s = bp_net_param_view(net, l, (bp_tensor)w, &v, &rows, &cols);
            if (s == BP_OK && at + rows * cols <= j->n_params)
                memcpy(j->params + at, v, rows * cols * sizeof(float));
            at += rows * cols;
        }
    j->status = s;
    bp_dataset_destroy(ds);
    bp_optim_destroy(opt);
    bp_net_destroy(net);
    bp_ctx_destroy(ctx);
    return NULL;
}

#define N_PARAMS (F * 64 + 64 + 64 * 48 + 48 + 48 * 5 + 5)

START_TEST(test_two_nets_at_once)
{
    tu_rng r;
    tu_seed(&r, 1);
    tu_fill(&r, g_X, N * F, -1, 1);
    for (int i = 0; i < N; i++)
        g_labels[i] = (int32_t)(tu_next(&r) % 5);
    static float alone[2][N_PARAMS], together[2][N_PARAMS];
    job jobs[2] = {{7, BP_OPTIM_ADAM, BP_ACT_RELU, NULL, N_PARAMS, BP_EINVAL, 0},
                   {8, BP_OPTIM_SGD, BP_ACT_TANH, NULL, N_PARAMS, BP_EINVAL, 0}};
    float loss_alone[2];
    for (int k = 0; k < 2; k++) {
        jobs[k].params = alone[k];
        train(&jobs[k]);
        ck_assert_int_eq(jobs[k].status, BP_OK);
        loss_alone[k] = jobs[k].loss;
    }
    /* Several rounds: a race would show in some of them. */
    for (int round = 0; round < 4; round++) {
        pthread_t t[2];
        for (int k = 0; k < 2; k++) {
            jobs[k].params = together[k];
            jobs[k].status = BP_EINVAL;
            memset(together[k], 0, sizeof together[k]);
            ck_assert_int_eq(pthread_create(&t[k], NULL, train, &jobs[k]), 0);
        }
        for (int k = 0; k < 2; k++) {
            ck_assert_int_eq(pthread_join(t[k], NULL), 0);
            ck_assert_int_eq(jobs[k].status, BP_OK);
            ck_assert_msg(memcmp(alone[k], together[k], sizeof alone[k]) == 0,
                          "round %d: net %d trained concurrently differs", round, k);
            ck_assert_msg(memcmp(&loss_alone[k], &jobs[k].loss, sizeof(float)) == 0,
                          "round %d: net %d loss differs", round, k);
        }
    }
    /* The two nets really differ (else the comparison proves little). */
    ck_assert(memcmp(alone[0], alone[1], sizeof alone[0]) != 0);
}
END_TEST

typedef struct err_job {
    int n_threads;          /* an invalid count: the message names it */
    char message[512];
    pthread_barrier_t *barrier;
} err_job;

static void *fail_and_read(void *arg)
{
    err_job *j = arg;
    bp_ctx *ctx = NULL;
    bp_status s = bp_ctx_create(&ctx, j->n_threads);
    /* Both threads have failed before either reads its message. */
    pthread_barrier_wait(j->barrier);
    strncpy(j->message, s == BP_EINVAL ? bp_last_error() : "", sizeof j->message - 1);
    return NULL;
}

START_TEST(test_last_error_per_thread)
{
    pthread_barrier_t b;
    ck_assert_int_eq(pthread_barrier_init(&b, NULL, 2), 0);
    err_job jobs[2] = {{-5, {0}, &b}, {-7, {0}, &b}};
    pthread_t t[2];
    for (int k = 0; k < 2; k++)
        ck_assert_int_eq(pthread_create(&t[k], NULL, fail_and_read, &jobs[k]), 0);
    for (int k = 0; k < 2; k++)
        ck_assert_int_eq(pthread_join(t[k], NULL), 0);
    pthread_barrier_destroy(&b);
    ck_assert_msg(strstr(jobs[0].message, "-5") != NULL, "%s", jobs[0].message);
    ck_assert_msg(strstr(jobs[1].message, "-7") != NULL, "%s", jobs[1].message);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("concurrency");
    TCase *tc = tcase_create("threads");
    tcase_add_test(tc, test_two_nets_at_once);
    tcase_add_test(tc, test_last_error_per_thread);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
