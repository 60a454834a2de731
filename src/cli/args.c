/* Parsing the command line into cli_args: a table of options, each with the
 * commands it belongs to, its type and where its value goes. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"

enum { C_TRAIN = 1, C_EVAL = 2, C_PREDICT = 4, C_PLAN = 8, C_BENCH = 16, C_DATA = C_TRAIN | C_EVAL };

typedef enum opt_type {
    T_FLAG, T_SIZE, T_U64, T_THREADS, T_FLOAT, T_DOUBLE, T_STR, T_LONG,
    T_LAYERS, T_ACT, T_OPTIM, T_SCHED, T_INIT
} opt_type;

typedef struct opt_def {
    const char *name;
    unsigned commands;
    opt_type type;
    size_t offset;     /* into cli_args */
    double lo, hi;     /* numeric range */
} opt_def;

#define AT(field) offsetof(cli_args, field)
static const opt_def options[] = {
    {"--data", C_DATA, T_STR, AT(data.dir), 0, 0},
    {"--train-csv", C_TRAIN, T_STR, AT(data.train_csv), 0, 0},
    {"--test-csv", C_DATA, T_STR, AT(data.test_csv), 0, 0},
    {"--csv-header", C_DATA | C_PREDICT, T_FLAG, AT(data.csv_header), 0, 0},
    {"--label-column", C_DATA | C_PREDICT, T_LONG, AT(data.label_column), -1e6, 1e6},
    {"--targets", C_TRAIN, T_SIZE, AT(data.n_targets), 1, 1e6},
    {"--layers", C_TRAIN | C_PLAN | C_BENCH, T_LAYERS, AT(hidden), 1, 1 << 24},
    {"--in", C_PLAN, T_SIZE, AT(plan_in), 1, 1 << 24},
    {"--out", C_PLAN, T_SIZE, AT(plan_out), 1, 1 << 24},
    {"--topology", C_PLAN, T_STR, AT(topology), 0, 0},
    {"--topology-xml", C_PLAN, T_STR, AT(topology_xml), 0, 0},
    {"--activation", C_TRAIN, T_ACT, AT(activation), 0, 0},
    {"--alpha", C_TRAIN, T_FLOAT, AT(alpha), 0, 1},
    {"--init", C_TRAIN | C_BENCH, T_INIT, AT(init), 0, 0},
    {"--optimizer", C_TRAIN | C_BENCH, T_OPTIM, AT(optim.type), 0, 0},
    {"--lr", C_TRAIN | C_BENCH, T_FLOAT, AT(optim.lr), 0, 1e3},
    {"--momentum", C_TRAIN, T_FLOAT, AT(optim.momentum), 0, 0.999999},
    {"--weight-decay", C_TRAIN, T_FLOAT, AT(optim.weight_decay), 0, 1e3},
    {"--clip", C_TRAIN, T_FLOAT, AT(optim.clip_norm), 0, 1e9},
    {"--schedule", C_TRAIN, T_SCHED, AT(optim.schedule), 0, 0},
    {"--step-size", C_TRAIN, T_U64, AT(optim.step_size), 1, 1e15},
    {"--gamma", C_TRAIN, T_FLOAT, AT(optim.gamma), 1e-9, 1e3},
    {"--warmup", C_TRAIN, T_U64, AT(optim.warmup_steps), 0, 1e15},
    {"--min-lr", C_TRAIN, T_FLOAT, AT(optim.min_lr), 0, 1e3},
    {"--batch", C_TRAIN | C_EVAL | C_PREDICT | C_PLAN | C_BENCH, T_SIZE, AT(batch), 1, 1 << 20},
    {"--epochs", C_TRAIN, T_U64, AT(epochs), 1, 1e9},
    {"--threads", C_TRAIN | C_EVAL | C_PREDICT | C_PLAN | C_BENCH, T_THREADS, AT(threads), 0, 4096},
    {"--seed", C_TRAIN | C_BENCH, T_U64, AT(seed), 0, 1.8e19},
    {"--val-split", C_TRAIN, T_DOUBLE, AT(val_split), 0, 0.99},
    {"--standardize", C_TRAIN, T_FLAG, AT(standardize), 0, 0},
    {"--save", C_TRAIN, T_STR, AT(save), 0, 0},
    {"--resume", C_TRAIN, T_STR, AT(resume), 0, 0},
    {"--metrics", C_TRAIN, T_STR, AT(metrics), 0, 0},
    {"--mpi-exact", C_TRAIN, T_FLAG, AT(mpi_exact), 0, 0},
    {"--mpi-shards", C_TRAIN, T_SIZE, AT(mpi_shards), 1, 1 << 20},
    {"--images", C_PREDICT, T_STR, AT(images), 0, 0},
    {"--csv", C_PREDICT, T_STR, AT(input_csv), 0, 0},
    {"--no-labels", C_PREDICT, T_FLAG, AT(no_labels), 0, 0},
    {"--output", C_PREDICT, T_STR, AT(output), 0, 0},
    {"--probabilities", C_PREDICT, T_FLAG, AT(probabilities), 0, 0},
    /* bench (an option name may recur for another command: find_option) */
    {"--in", C_BENCH, T_SIZE, AT(bench_in), 1, 1 << 24},
    {"--out", C_BENCH, T_SIZE, AT(bench_out), 1, 1 << 24},
    {"--steps", C_BENCH, T_SIZE, AT(bench_steps), 1, 1e7},
    {"--warmup", C_BENCH, T_SIZE, AT(bench_warmup), 0, 1e7},
};

typedef struct named { const char *name; int value; } named;

static const named activations[] = {
    {"identity", BP_ACT_IDENTITY}, {"relu", BP_ACT_RELU}, {"leaky_relu", BP_ACT_LEAKY_RELU},
    {"sigmoid", BP_ACT_SIGMOID}, {"tanh", BP_ACT_TANH}, {"gelu", BP_ACT_GELU}, {NULL, 0}};
/* sgd, momentum (SGD + 0.9 momentum unless --momentum), nesterov, adam, adamw */
static const named optimizers[] = {
    {"sgd", 0}, {"momentum", 1}, {"nesterov", 2}, {"adam", 3}, {"adamw", 4}, {NULL, 0}};
static const named schedules[] = {
    {"constant", BP_SCHED_CONSTANT}, {"step", BP_SCHED_STEP}, {"cosine", BP_SCHED_COSINE},
    {NULL, 0}};
static const named inits[] = {
    {"xavier-uniform", BP_INIT_XAVIER_UNIFORM}, {"xavier-normal", BP_INIT_XAVIER_NORMAL},
    {"he-uniform", BP_INIT_HE_UNIFORM}, {"he-normal", BP_INIT_HE_NORMAL}, {NULL, 0}};

/* What the user gave explicitly, so the optimizer's defaults fill the rest.
 * optimizer: 0 not given, else 1 + index in `optimizers`. */
typedef struct given {
    int optimizer, lr, weight_decay, momentum;
} given;
enum { GIVEN_MOMENTUM = 2, GIVEN_NESTEROV = 3, GIVEN_ADAM = 4, GIVEN_ADAMW = 5 };

static int say(char *err, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, size, fmt, ap);
    va_end(ap);
    return -1;
}

void cli_defaults(cli_args *a)
{
    memset(a, 0, sizeof *a);
    a->data.label_column = -1;
    a->hidden[0] = 256, a->hidden[1] = 128, a->hidden[2] = 100;
    a->n_hidden = 3;
    a->activation = BP_ACT_RELU;
    a->alpha = 0.01f;
    a->init = BP_INIT_HE_UNIFORM;
    bp_optim_config_default(&a->optim, BP_OPTIM_ADAM);
    a->batch = 128;
    a->epochs = 10;
    a->seed = 1;
    a->progress = -1;
    a->bench_in = 784;
    a->bench_out = 10;
    a->bench_steps = 50;
    a->bench_warmup = 5;
    a->plan_in = 784;
    a->plan_out = 10;
}

static int parse_number(const char *text, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !isfinite(v) || v < lo || v > hi)
        return 0;
    *out = v;
    return 1;
}

static int parse_integer(const char *text, double lo, double hi, unsigned long long *out)
{
    char *end;
    if (*text == '-' || *text == '+' || *text == ' ')
        return 0;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || end == text || *end || (double)v < lo || (double)v > hi)
        return 0;
    *out = v;
    return 1;
}

static int lookup(const named *table, const char *text, int *out)
{
    for (; table->name; table++)
        if (!strcmp(table->name, text)) {
            *out = table->value;
            return 1;
        }
    return 0;
}

/* "256,128,100" -> widths; "" or "none" -> no hidden layer. */
static int parse_layers(const char *text, cli_args *a, const opt_def *o)
{
    a->n_hidden = 0;
    if (!*text || !strcmp(text, "none"))
        return 1;
    char buf[32];
    for (const char *p = text;;) {
        size_t len = strcspn(p, ",");
        if (len == 0 || len >= sizeof buf || a->n_hidden == CLI_MAX_LAYERS)
            return 0;
        memcpy(buf, p, len);
        buf[len] = '\0';
        unsigned long long w;
        if (!parse_integer(buf, o->lo, o->hi, &w))
            return 0;
        a->hidden[a->n_hidden++] = (size_t)w;
        if (!p[len])
            return 1;
        p += len + 1;
    }
}

/* Store `text` as option o's value. Returns 0 if it does not parse. */
static int set_value(const opt_def *o, const char *text, cli_args *a, given *g)
{
    char *field = (char *)a + o->offset;
    double d;
    unsigned long long u;
    int e;
    switch (o->type) {
    case T_STR: *(const char **)field = text; return 1;
    case T_FLOAT:
        if (!parse_number(text, o->lo, o->hi, &d))
            return 0;
        *(float *)field = (float)d;
        g->lr |= o->offset == AT(optim.lr);
        g->weight_decay |= o->offset == AT(optim.weight_decay);
        g->momentum |= o->offset == AT(optim.momentum);
        return 1;
    case T_DOUBLE:
        return parse_number(text, o->lo, o->hi, (double *)field);
    case T_LONG:
        if (!parse_number(text, o->lo, o->hi, &d) || d != floor(d))
            return 0;
        *(long *)field = (long)d;
        return 1;
    case T_SIZE:
    case T_U64:
    case T_THREADS:
        if (!parse_integer(text, o->lo, o->hi, &u))
            return 0;
        if (o->type == T_SIZE)
            *(size_t *)field = (size_t)u;
        else if (o->type == T_U64)
            *(uint64_t *)field = (uint64_t)u;
        else
            *(int *)field = (int)u;
        return 1;
    case T_LAYERS: return parse_layers(text, a, o);
    case T_ACT: return lookup(activations, text, &e) && (a->activation = (bp_activation)e, 1);
    case T_SCHED: return lookup(schedules, text, &e) && (a->optim.schedule = (bp_schedule)e, 1);
    case T_INIT: return lookup(inits, text, &e) && (a->init = (bp_init)e, 1);
    case T_OPTIM:
        if (!lookup(optimizers, text, &e))
            return 0;
        g->optimizer = e + 1;
        return 1;
    case T_FLAG: break;
    }
    return 0;
}

/* The entry of `name` for the command `bit`; else any entry of that name
 * (which the caller then rejects for this command), else NULL. */
static const opt_def *find_option(const char *name, unsigned bit)
{
    const opt_def *any = NULL;
    for (size_t i = 0; i < sizeof options / sizeof options[0]; i++)
        if (!strcmp(options[i].name, name)) {
            if (options[i].commands & bit)
                return &options[i];
            any = any ? any : &options[i];
        }
    return any;
}

/* The optimizer's defaults under whatever the user set explicitly. */
static void settle_optimizer(cli_args *a, const given *g)
{
    bp_optim_config user = a->optim;
    bp_optim_type type = g->optimizer == GIVEN_ADAMW ? BP_OPTIM_ADAMW
                       : g->optimizer == GIVEN_ADAM || !g->optimizer ? BP_OPTIM_ADAM
                       : BP_OPTIM_SGD;
    bp_optim_config_default(&a->optim, type);
    int wants_momentum = g->optimizer == GIVEN_MOMENTUM || g->optimizer == GIVEN_NESTEROV;
    a->optim.momentum = g->momentum ? user.momentum : wants_momentum ? 0.9f : 0.0f;
    a->optim.nesterov = g->optimizer == GIVEN_NESTEROV;
    if (g->lr)
        a->optim.lr = user.lr;
    if (g->weight_decay)
        a->optim.weight_decay = user.weight_decay;
    a->optim.clip_norm = user.clip_norm;
    a->optim.schedule = user.schedule;
    a->optim.step_size = user.step_size ? user.step_size : 1;
    a->optim.gamma = user.gamma > 0 ? user.gamma : 0.1f;
    a->optim.warmup_steps = user.warmup_steps;
    a->optim.min_lr = user.min_lr;
}

static unsigned command_bit(cli_command c)
{
    return c == CLI_TRAIN ? C_TRAIN : c == CLI_EVAL ? C_EVAL : c == CLI_PREDICT ? C_PREDICT
         : c == CLI_PLAN ? C_PLAN : c == CLI_BENCH ? C_BENCH : 0;
}

static const char *command_name(cli_command c)
{
    return c == CLI_TRAIN ? "train" : c == CLI_EVAL ? "eval" : c == CLI_PREDICT ? "predict"
         : c == CLI_BENCH ? "bench" : c == CLI_INFO ? "info" : c == CLI_PLAN ? "plan"
         : "backprop";
}

static int parse_command(const char *word, cli_args *a)
{
    static const struct { const char *name; cli_command c; } cmds[] = {
        {"train", CLI_TRAIN}, {"eval", CLI_EVAL}, {"predict", CLI_PREDICT}, {"info", CLI_INFO}, {"plan", CLI_PLAN},
        {"bench", CLI_BENCH},
        {"--help", CLI_HELP}, {"-h", CLI_HELP}, {"help", CLI_HELP}, {"--version", CLI_VERSION}};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(word, cmds[i].name)) {
            a->command = cmds[i].c;
            return 1;
        }
    return 0;
}

int cli_parse(int argc, char **argv, cli_args *a, char *err, size_t size)
{
    cli_defaults(a);
    if (argc < 2)
        return say(err, size, "no command given");
    if (!parse_command(argv[1], a))
        return say(err, size, "unknown command '%s'", argv[1]);
    given g = {0, 0, 0, 0};
    const char *cmd = command_name(a->command);
    for (int i = 2; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            a->help = 1;
            continue;
        }
        if (arg[0] != '-' && (a->command == CLI_EVAL || a->command == CLI_PREDICT) && !a->model) {
            a->model = arg;
            continue;
        }
        const opt_def *o = find_option(arg, command_bit(a->command));
        if (!o || !(o->commands & command_bit(a->command)))
            return say(err, size, "%s: unknown option '%s'", cmd, arg);
        if (o->type == T_FLAG) {
            *(int *)((char *)a + o->offset) = 1;
            continue;
        }
        if (i + 1 >= argc)
            return say(err, size, "%s: %s needs a value", cmd, arg);
        if (!set_value(o, argv[++i], a, &g))
            return say(err, size, "%s: bad value '%s' for %s", cmd, argv[i], arg);
    }
    settle_optimizer(a, &g);
    if (a->help || a->command == CLI_HELP || a->command == CLI_VERSION || a->command == CLI_INFO)
        return 0;
    if (a->command == CLI_PLAN && a->topology && a->topology_xml)
        return say(err, size, "plan: --topology and --topology-xml exclude each other");
    if ((a->command == CLI_EVAL || a->command == CLI_PREDICT) && !a->model)
        return say(err, size, "%s: the MODEL file argument is missing", cmd);
    if (a->command == CLI_PREDICT && !a->images == !a->input_csv)
        return say(err, size, "predict: give exactly one of --images FILE and --csv FILE");
    if (a->data.train_csv && a->data.dir)
        return say(err, size, "%s: --data and --train-csv exclude each other", cmd);
    if (a->command == CLI_TRAIN && !a->data.train_csv != !a->data.test_csv)
        return say(err, size, "train: --train-csv and --test-csv go together");
    if (a->data.n_targets && !a->data.train_csv)
        return say(err, size, "train: --targets needs --train-csv (IDX data has class labels)");
    return 0;
}

const char *cli_usage(cli_command command)
{
    switch (command) {
    case CLI_TRAIN:
        return "usage: backprop train [options]\n"
               "Train an MLP (default 784-256-128-100-10, ReLU, softmax cross-entropy, Adam\n"
               "lr 1e-3, batch 128, 10 epochs, seed 1) on Fashion-MNIST.\n"
               "data:\n"
               "  --data DIR            folder with the four (Fashion-)MNIST IDX files, .gz or not\n"
               "                        (default /usr/share/datasets/fashion-mnist)\n"
               "  --train-csv F --test-csv F   numeric CSV files instead\n"
               "  --csv-header          the CSV files start with a header line\n"
               "  --label-column N      column of the label (default -1: the last)\n"
               "  --targets K           regression: K float target columns (MSE head)\n"
               "  --val-split F         hold out a fraction F of the training set for validation\n"
               "  --standardize         scale features with training-split mean and deviation\n"
               "model:\n"
               "  --layers W1,W2,...    hidden widths (default 256,128,100; 'none' for none)\n"
               "  --activation A        identity|relu|leaky_relu|sigmoid|tanh|gelu (default relu)\n"
               "  --alpha F             leaky ReLU slope (default 0.01)\n"
               "  --init I              he-uniform|he-normal|xavier-uniform|xavier-normal\n"
               "optimizer:\n"
               "  --optimizer O         sgd|momentum|nesterov|adam|adamw (default adam)\n"
               "  --lr F  --momentum F  --weight-decay F  --clip NORM\n"
               "  --schedule S          constant|step|cosine, with --step-size N --gamma F,\n"
               "                        --warmup N --min-lr F (cosine spans the whole run)\n"
               "training:\n"
               "  --batch N  --epochs N  --threads N (0: one per core)  --seed N\n"
               "  --save FILE           checkpoint after every epoch (atomic) and at the end\n"
               "  --resume FILE         continue from a checkpoint up to --epochs in all\n"
               "  --metrics FILE        one JSON object per epoch, one per line\n"
               "MPI (mpirun -np N backprop train ...: --batch rows per rank, rank 0 writes):\n"
               "  --mpi-exact           fixed-order gradient sum: bitwise the same for any\n"
               "                        rank count dividing the shards\n"
               "  --mpi-shards S        shards per global batch (default: the ranks; exact\n"
               "                        mode: a multiple of them, e.g. S on one process)\n"
               "Ctrl-C finishes the current batch, saves (with --save) and exits with 130.\n";
    case CLI_EVAL:
        return "usage: backprop eval MODEL [--data DIR | --test-csv F [--csv-header]\n"
               "                     [--label-column N]] [--batch N] [--threads N]\n"
               "Loss, accuracy and confusion matrix of MODEL on a test set\n"
               "(default: the Fashion-MNIST test set).\n";
    case CLI_PREDICT:
        return "usage: backprop predict MODEL (--images IDX | --csv F [--csv-header]\n"
               "                        [--label-column N | --no-labels])\n"
               "                        [--output F] [--probabilities] [--batch N] [--threads N]\n"
               "One CSV line per input row: the predicted class (softmax head), or the\n"
               "head's outputs (--probabilities, or MSE/BCE heads).\n";
    case CLI_PLAN:
        return "usage: backprop plan [--in N] [--layers W1,W2,...] [--out N] [--batch N]\n"
               "                     [--threads N] [--topology SYNTHETIC | --topology-xml FILE]\n"
               "Print the backward plan for an MLP (default 784-256-128-100-10, batch 128):\n"
               "the groups of cores, each group's tasks as a timeline with predicted times,\n"
               "where each layer's memory goes, and the predicted gain over the sequential\n"
               "backward. For this machine, or a topology given as an hwloc synthetic string\n"
               "(e.g. \"pack:2 [numa] l3:4(size=32MiB) l2:8(size=1MiB) l1d:1(size=48KiB) core:1\n"
               "pu:2\") or XML file; hwloc also reads HWLOC_SYNTHETIC and HWLOC_XMLFILE.\n";
    case CLI_BENCH:
        return "usage: backprop bench [--in N] [--layers W1,W2,...] [--out N] [--batch N]\n"
               "                      [--threads N] [--steps S] [--warmup W]\n"
               "                      [--optimizer sgd|adam|...] [--lr F] [--init I] [--seed N]\n"
               "Time training steps (forward, backward, update) of an MLP (default\n"
               "784-256-128-100-10, ReLU, softmax cross-entropy, Adam, batch 128) on random\n"
               "data: W untimed steps (default 5), then S timed ones (default 50). Prints one\n"
               "JSON line: ms_per_step (median), p10, p90, samples_per_second, gflops\n"
               "(6 B sum n_in n_out per step), percent_of_peak (against the FMA peak of one\n"
               "core measured in the same run, times the threads), isa, threads.\n";
    case CLI_INFO:
        return "usage: backprop info\n"
               "Library version, SIMD level, threads and the machine's topology as used.\n";
    default:
        return "usage: backprop <command> [options]\n"
               "commands:\n"
               "  train     train an MLP (Fashion-MNIST by default)\n"
               "  eval      evaluate a saved model on a test set\n"
               "  predict   predict with a saved model\n"
               "  info      version, SIMD level, threads and topology\n"
               "  bench     training steps per second on random data, as JSON\n"
               "  plan      the backward plan for an MLP on this or another machine\n"
               "Run 'backprop <command> --help' for a command's options.\n"
               "Exit codes: 0 success, 1 runtime error, 2 usage error, 130 interrupted.\n";
    }
}
