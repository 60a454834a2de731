/* backprop: the command-line tool. */
#include <stdio.h>

#include "cli.h"
#include "dist.h"

int main(int argc, char **argv)
{
    cli_args a;
    char err[256];
    if (cli_parse(argc, argv, &a, err, sizeof err) != 0) {
        /* One line saying what is wrong, and where to look. */
        const char *cmd = a.command == CLI_TRAIN ? " train" : a.command == CLI_EVAL ? " eval"
                        : a.command == CLI_PREDICT ? " predict" : a.command == CLI_BENCH ? " bench"
                        : a.command == CLI_PLAN ? " plan"
                        : "";
        fprintf(stderr, "backprop: %s (see 'backprop%s --help')\n", err, cmd);
        return EXIT_USAGE;
    }
    if (a.command == CLI_HELP || a.help) {
        fputs(cli_usage(a.command == CLI_HELP ? CLI_NONE : a.command), stdout);
        return 0;
    }
    switch (a.command) {
    case CLI_VERSION: printf("backprop %s\n", bp_version_string()); return 0;
    case CLI_TRAIN: return cli_dist_finish(cli_dist_init(&a) ? 1 : cli_train(&a));
    case CLI_EVAL: return cli_eval(&a);
    case CLI_PREDICT: return cli_predict(&a);
    case CLI_INFO: return cli_info(&a);
    case CLI_BENCH: return cli_bench(&a);
    case CLI_PLAN: return cli_plan(&a);
    default: break;
    }
    fputs(cli_usage(CLI_NONE), stderr);
    return EXIT_USAGE;
}
