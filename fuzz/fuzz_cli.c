/* cli_parse (src/cli/args.c), the tool's pure option parser, on argument
 * vectors made from arbitrary bytes: words are separated by NUL or newline
 * bytes; argv[0] is "backprop". */
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "fuzz.h"

#define MAX_WORDS 128

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    char *argv[MAX_WORDS + 2];
    int argc = 0;
    argv[argc++] = "backprop";
    char *word = text;
    for (size_t i = 0; i <= size && argc < MAX_WORDS + 1; i++)
        if (text[i] == '\0' || text[i] == '\n') {
            text[i] = '\0';
            argv[argc++] = word;
            word = text + i + 1;
        }
    argv[argc] = NULL;
    cli_args a;
    char err[256];
    memset(err, 'x', sizeof err);
    int r = cli_parse(argc, argv, &a, err, sizeof err);
    if (r != 0 && (r != -1 || memchr(err, '\0', sizeof err) == NULL || err[0] == '\0'))
        abort();
    if (r == 0) {
        if (a.n_hidden > CLI_MAX_LAYERS || a.command == CLI_NONE)
            abort();
        /* String options point into argv, never elsewhere. */
        const char *strs[] = {a.data.dir, a.data.train_csv, a.data.test_csv, a.save, a.resume,
                              a.metrics, a.model, a.images, a.input_csv, a.output};
        for (size_t k = 0; k < sizeof strs / sizeof strs[0]; k++)
            if (strs[k] && (strs[k] < text || strs[k] > text + size))
                abort();
        if (strlen(cli_usage(a.command)) == 0)
            abort();
    }
    free(text);
    return 0;
}
