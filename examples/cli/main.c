/* dsr1: the libdsr1 command-line tool. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *usage;
} command;

static const command commands[] = {
    {"run", dsr1_cli_run, "run -m MODEL -p PROMPT [-n N] [--temp T] [--top-p P] [--top-k K] [--min-p P] [--seed S] [--think-budget N] [--hide-thinking] [--raw]"},
    {"chat", dsr1_cli_chat, "chat -m MODEL              interactive multi-turn chat"},
    {"info", dsr1_cli_info, "info -m MODEL              metadata and tensor table"},
    {"eval", dsr1_cli_eval, "eval -m MODEL --tokens IDS --out FILE [--step] [--backend NAME] [-t N] [-c N_CTX] [--kv-type f16|f32]"},
    {"bench", dsr1_cli_bench, "bench -m MODEL [-p N] [-n N] [-r REPS] [-t N] [--backend NAME] [--kv-type f16|f32] [--membw]  prompt/generation speed; --membw: memory bandwidth"},
    {"tokenize", dsr1_cli_tokenize, "tokenize -m MODEL [--bos]   text on stdin -> ids"},
    {"detokenize", dsr1_cli_detokenize, "detokenize -m MODEL        ids on stdin -> text"},
    {"devices", dsr1_cli_devices, "devices                    the GPUs (Vulkan) a model can offload to"},
    {"quantize", dsr1_cli_quantize, "quantize IN.gguf OUT.gguf TYPE [--threads N]  re-encode weights (q8_0, q4_k_m, ...)"},
};

static void usage(FILE *f)
{
    fprintf(f, "dsr1 %s - run DeepSeek-R1 and its distilled models\n\nusage:\n", dsr1_version());
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  dsr1 %s\n", commands[i].usage);
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("dsr1 %s (ABI %d)\n", dsr1_version(), dsr1_abi_version());
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "dsr1: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 1;
}
