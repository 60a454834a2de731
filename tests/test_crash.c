/* Crash safety of bp_model_save: a child process saves two different
 * models to the same path in a loop, and is SIGKILLed at random moments,
 * many times. After every kill the file at the path must load and be,
 * byte for byte, one of the two models (the save is atomic: temporary
 * file, fsync, rename). A kill can leave the save's temporary file
 * ("PATH.tmp.XXXXXX") behind: at most one per kill, which the test counts
 * and then removes; the library cannot tell a stale temporary from another
 * process's save in progress, so cleaning them is the application's job.
 * (Failing writes -- file size limit, missing directory, a directory in
 * the way -- are tested in test_model.c.) */
#include <backprop.h>
#include <check.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"
#include "tu_suite.h"

#define KILLS 100

static char g_dir[64];


/* Remove the temporaries left in g_dir; returns how many there were. */
static int remove_temporaries(void)
{
    DIR *d = opendir(g_dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".tmp.")) {
            snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
            ck_assert_int_eq(unlink(p), 0);
            n++;
        }
    closedir(d);
    return n;
}

static bp_net *make_net(bp_ctx *ctx, size_t width, uint64_t seed)
{
    const bp_layer_spec layers[2] = {{width, BP_ACT_RELU, 0.0f}, {10, BP_ACT_IDENTITY, 0.0f}};
    bp_net *net = NULL;
    ck_assert_int_eq(bp_net_create(&net, ctx, 784, 2, layers, BP_HEAD_SOFTMAX_CE, 1), BP_OK);
    ck_assert_int_eq(bp_net_init(net, BP_INIT_HE_UNIFORM, seed), BP_OK);
    return net;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

START_TEST(test_sigkill_during_save)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/bp_crash_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
    char path[256], ref[2][256];
    snprintf(path, sizeof path, "%s/model.bpm", g_dir);
    bp_ctx *ctx = NULL;
    ck_assert_int_eq(bp_ctx_create(&ctx, 1), BP_OK);
    /* About 400 KB and 200 KB: a save takes long enough to be hit inside. */
    bp_net *nets[2] = {make_net(ctx, 128, 1), make_net(ctx, 64, 2)};
    unsigned char *want[2];
    size_t want_size[2];
    for (int k = 0; k < 2; k++) {
        snprintf(ref[k], sizeof ref[k], "%s/ref%d", g_dir, k);
        ck_assert_int_eq(bp_model_save(ref[k], nets[k], NULL, 0, (uint64_t)k, NULL, 0), BP_OK);
        want[k] = tu_read_file(ref[k], &want_size[k]);
        ck_assert_ptr_nonnull(want[k]);
    }
    ck_assert_int_eq(bp_model_save(path, nets[0], NULL, 0, 0, NULL, 0), BP_OK);

    /* How long one save takes, to spread the kills over a few of them. */
    double t0 = now();
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(bp_model_save(path, nets[i % 2], NULL, 0, (uint64_t)(i % 2), NULL, 0),
                         BP_OK);
    double per_save = (now() - t0) / 4;
    tu_rng r;
    tu_seed(&r, (uint64_t)getpid());
    int seen[2] = {0, 0}, left = 0;
    for (int kill_no = 0; kill_no < KILLS; kill_no++) {
        /* The child reports each finished save on a pipe. The kill waits
         * for one or two of them, then up to one more save's time: a slow
         * child (TSan, valgrind) is caught at the same points of its own
         * progress, and the file held model A or B before the kill. */
        int done[2];
        ck_assert_int_eq(pipe(done), 0);
        pid_t child = fork();
        ck_assert_int_ge(child, 0);
        if (child == 0) {
            close(done[0]);
            for (unsigned i = 0;; i++) {
                if (bp_model_save(path, nets[i % 2], NULL, 0, i % 2, NULL, 0) != BP_OK)
                    _exit(3);
                if (write(done[1], "s", 1) != 1)
                    _exit(4);
            }
        }
        close(done[1]);
        int saves = 1 + (tu_uniform(&r, 0.0, 1.0) < 0.5);
        char byte;
        for (int s = 0; s < saves; s++)
            ck_assert_int_eq(read(done[0], &byte, 1), 1);
        double wait = tu_uniform(&r, 0.0, per_save);
        struct timespec ts = {0, (long)(wait * 1e9)};
        nanosleep(&ts, NULL);
        ck_assert_int_eq(kill(child, SIGKILL), 0);
        int status = 0;
        ck_assert_int_eq(waitpid(child, &status, 0), child);
        ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                      "the saving child ended by itself (status %d)", status);
        close(done[0]);

        size_t size = 0;
        unsigned char *got = tu_read_file(path, &size);
        ck_assert_msg(got != NULL, "kill %d: the model file is gone", kill_no);
        int which = -1;
        for (int k = 0; k < 2; k++)
            if (size == want_size[k] && memcmp(got, want[k], size) == 0)
                which = k;
        ck_assert_msg(which >= 0, "kill %d: the file (%zu bytes) is neither model", kill_no,
                      size);
        seen[which]++;
        free(got);
        bp_net *loaded = NULL;
        ck_assert_int_eq(bp_model_load(path, ctx, 1, &loaded, NULL, NULL, NULL, NULL), BP_OK);
        ck_assert_uint_eq(bp_net_n_params(loaded), bp_net_n_params(nets[which]));
        bp_net_destroy(loaded);
        int tmp = remove_temporaries();
        ck_assert_int_le(tmp, 1); /* at most the one save the kill interrupted */
        left += tmp;
    }
    /* The kills landed at different points: both models were caught. */
    ck_assert_msg(seen[0] > 0 && seen[1] > 0, "seen %d / %d", seen[0], seen[1]);
    fprintf(stderr, "test_sigkill_during_save: %d kills (%.1f ms per save): model A %d, "
            "model B %d times; %d kills left a temporary file\n", KILLS, per_save * 1e3,
            seen[0], seen[1], left);
    for (int k = 0; k < 2; k++) {
        free(want[k]);
        unlink(ref[k]);
        bp_net_destroy(nets[k]);
    }
    unlink(path);
    rmdir(g_dir);
    bp_ctx_destroy(ctx);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("crash");
    TCase *tc = tcase_create("sigkill");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_sigkill_during_save);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
