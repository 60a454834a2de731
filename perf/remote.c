/* OpenBLAS in another environment, in a child process.
 *
 * OpenBLAS reads OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE once, when it is
 * loaded, and a process can load a given library only once; changing them in
 * this process before dlopen would also change what the "as the environment
 * stands" column measures. So bench_gemm starts itself again (fork + execve
 * of /proc/self/exe, `--serve openblas`) with OPENBLAS_L2_SIZE removed and
 * OPENBLAS_CORETYPE removed or set to a given core, and drives it over two
 * pipes, one line per request:
 *
 *   child -> parent  I <available> <info>           once, after loading
 *   parent -> child  P <ta> <tb> <M> <N> <K> <threads> <reps> <min_s> <slow_s> <slow_reps>
 *   child -> parent  R <status> <calls> <reps> <err> (bench_prepare's result)
 *   parent -> child  T <calls>                      one timed repetition
 *   child -> parent  S <seconds per call>
 *   parent -> child  F                              free the shape's data
 *
 * The parent blocks while the child works, so the two never compete for
 * cores, and the child's repetitions interleave with the other libraries'
 * like any column's. EOF on its stdin ends the child.
 */
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

/* POSIX: the application declares it. */
extern char **environ;

static int is_openblas_var(const char *entry)
{
    return !strncmp(entry, "OPENBLAS_CORETYPE=", 18) || !strncmp(entry, "OPENBLAS_L2_SIZE=", 17);
}

static void mark_unavailable(gemm_lib *lib, const char *why)
{
    lib->available = 0;
    snprintf(lib->info, sizeof lib->info, "n/a: %s", why);
}

void remote_open(gemm_lib *lib, const char *self_exe, const char *name,
                 const char *coretype)
{
    memset(lib, 0, sizeof *lib);
    lib->name = name;
    lib->remote = 1;
    /* A child that dies must not kill us with SIGPIPE: writes then fail. */
    signal(SIGPIPE, SIG_IGN);

    /* Everything the child needs is built before fork: after it, a process
     * with threads (OpenMP's) may only call async-signal-safe functions. */
    size_t n = 0;
    while (environ[n])
        n++;
    char **envp = calloc(n + 2, sizeof *envp);
    char core_var[64];
    if (!envp) {
        mark_unavailable(lib, "out of memory");
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!is_openblas_var(environ[i]))
            envp[k++] = environ[i];
    if (coretype) {
        snprintf(core_var, sizeof core_var, "OPENBLAS_CORETYPE=%s", coretype);
        envp[k++] = core_var;
    }
    char *argv[] = { (char *)self_exe, (char *)"--serve", (char *)"openblas", NULL };

    int down[2], up[2]; /* parent -> child, child -> parent */
    if (pipe(down) != 0) {
        free(envp);
        mark_unavailable(lib, "pipe failed");
        return;
    }
    if (pipe(up) != 0) {
        close(down[0]); close(down[1]);
        free(envp);
        mark_unavailable(lib, "pipe failed");
        return;
    }
    /* Close-on-exec on all four ends: otherwise a second child would inherit
     * our write end to the first, which then never sees EOF and waitpid in
     * remote_close hangs. The child's dup2 copies on 0 and 1 stay open. */
    for (int i = 0; i < 2; i++) {
        fcntl(down[i], F_SETFD, FD_CLOEXEC);
        fcntl(up[i], F_SETFD, FD_CLOEXEC);
    }
    fflush(NULL); /* the child must not print our buffered output again */
    pid_t pid = fork();
    if (pid == 0) {
        dup2(down[0], 0);
        dup2(up[1], 1);
        close(down[0]); close(down[1]); close(up[0]); close(up[1]);
        execve(self_exe, argv, envp);
        _exit(127);
    }
    free(envp);
    close(down[0]);
    close(up[1]);
    if (pid < 0) {
        close(down[1]); close(up[0]);
        mark_unavailable(lib, "fork failed");
        return;
    }
    lib->pid = (int)pid;
    lib->to_child = fdopen(down[1], "w");
    lib->from_child = fdopen(up[0], "r");
    char line[512];
    int avail = 0, off = 0;
    if (!lib->to_child || !lib->from_child ||
        !fgets(line, sizeof line, lib->from_child) ||
        sscanf(line, "I %d %n", &avail, &off) != 1) {
        remote_close(lib);
        mark_unavailable(lib, "the child process did not start");
        return;
    }
    line[strcspn(line, "\n")] = '\0';
    snprintf(lib->info, sizeof lib->info, "%s (in a child process)", line + off);
    lib->available = avail;
}

void remote_close(gemm_lib *lib)
{
    if (lib->to_child)
        fclose(lib->to_child);
    if (lib->from_child)
        fclose(lib->from_child);
    lib->to_child = lib->from_child = NULL;
    if (lib->pid > 0)
        waitpid((pid_t)lib->pid, NULL, 0);
    lib->pid = 0;
    lib->available = 0;
}

#if defined(__GNUC__)
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define PRINTF_LIKE(f, a)
#endif

/* Send one request line and, unless line is NULL, read the reply into it;
 * 0 on success. */
static int request(gemm_lib *lib, char *line, size_t size, const char *fmt, ...)
    PRINTF_LIKE(4, 5);

static int request(gemm_lib *lib, char *line, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int bad = vfprintf(lib->to_child, fmt, ap) < 0;
    va_end(ap);
    if (bad || fflush(lib->to_child) != 0)
        return -1;
    if (!line)
        return 0;
    return fgets(line, (int)size, lib->from_child) ? 0 : -1;
}

prep_result remote_prepare(gemm_lib *lib, const gemm_shape *s, int n_threads,
                           const bench_opts *o)
{
    prep_result r = { PREP_FAILED, 0, 0, HUGE_VAL };
    char line[256];
    if (!lib->available)
        return r;
    if (request(lib, line, sizeof line, "P %c %c %d %d %d %d %d %.17g %.17g %d\n", s->ta,
                s->tb, s->M, s->N, s->K, n_threads, o->reps, o->min_seconds,
                o->slow_seconds, o->slow_reps) != 0 ||
        sscanf(line, "R %d %d %d %lg", &r.status, &r.calls, &r.reps, &r.err) != 4) {
        remote_close(lib);
        mark_unavailable(lib, "the child process stopped answering");
        r.status = PREP_FAILED;
    }
    return r;
}

double remote_rep(gemm_lib *lib, int calls)
{
    char line[128];
    double sec;
    if (!lib->available || request(lib, line, sizeof line, "T %d\n", calls) != 0 ||
        sscanf(line, "S %lg", &sec) != 1)
        return NAN;
    return sec;
}

void remote_finish(gemm_lib *lib)
{
    if (lib->available)
        request(lib, NULL, 0, "F\n");
}

int remote_serve(const char *lib_name)
{
    gemm_lib lib;
    lib_open(&lib, lib_name);
    printf("I %d %s\n", lib.available, lib.info);
    fflush(stdout);
    gemm_data d;
    int have_data = 0;
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        gemm_shape s = { "remote", "remote", 'N', 'N', 0, 0, 0, 0 };
        int threads;
        bench_opts o;
        if (line[0] == 'P' &&
            sscanf(line, "P %c %c %d %d %d %d %d %lg %lg %d", &s.ta, &s.tb, &s.M, &s.N, &s.K,
                   &threads, &o.reps, &o.min_seconds, &o.slow_seconds, &o.slow_reps) == 10) {
            prep_result r = { PREP_FAILED, 0, 0, HUGE_VAL };
            if (have_data)
                data_free(&d);
            have_data = data_create(&d, &s) == 0;
            if (have_data)
                r = bench_prepare(&lib, &d, threads, &o);
            printf("R %d %d %d %.17g\n", r.status, r.calls, r.reps, r.err);
        } else if (line[0] == 'T' && have_data) {
            int calls = atoi(line + 1);
            printf("S %.17g\n", bench_rep(&lib, &d, calls > 0 ? calls : 1));
        } else if (line[0] == 'F') {
            if (have_data)
                data_free(&d);
            have_data = 0;
            continue; /* no reply */
        } else {
            printf("E bad request\n");
        }
        fflush(stdout);
    }
    if (have_data)
        data_free(&d);
    lib_close(&lib);
    return 0;
}
