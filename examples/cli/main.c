/* dsr1: the libdsr1 command-line tool. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char run_details[] =
    "The prompt is formatted as one DeepSeek-R1 chat turn (with -sys first). On a terminal the\n"
    "reasoning is dimmed (not with NO_COLOR or TERM=dumb); otherwise it is printed between\n"
    "\"<think>\" and \"</think>\" exactly as the model wrote it, then the answer. Timing and\n"
    "messages go to stderr; loads and quantize runs that take a moment draw a progress bar\n"
    "there on a terminal (after DSR1_PROGRESS_AFTER_MS milliseconds, 200 by default).\n";

static const char chat_details[] =
    "Each line of stdin is a user message; the reply streams as in `dsr1 run`. Commands:\n"
    "/think N (thinking budget, -1 = unlimited), /reset (keeps the system prompt), /quit (or end of\n"
    "input); start a message with // to send one that begins with '/'. Ctrl-C stops the reply.\n";

static const char bench_details[] =
    "Prompt processing (one batch of N_PROMPT tokens, test ppN) and generation (N_GEN single-token\n"
    "evaluations after it, test tgN) on deterministic pseudo-random tokens, as llama-bench: each\n"
    "test runs -r times and reports the mean and standard deviation of tokens/s over the runs.\n"
    "The generation row also shows the weight bytes one token reads and the read rate they imply.\n";

static const char quantize_details[] =
    "TYPE: f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q2_k q3_k_m q4_k_m q5_k_m q6_k, iq4_nl iq4_xs, and the\n"
    "mixes iq3_s iq3_m iq3_xxs iq2_m iq2_s iq2_xs iq2_xxs iq1_m iq1_s with llama.cpp's per-tensor types\n"
    "(iq2_s is mostly IQ2_XS, iq2_m mostly IQ2_S). The types of iq1_s iq1_m iq2_xxs iq2_xs iq2_s iq2_m\n"
    "iq3_xxs need an importance matrix (--imatrix; `dsr1 imatrix` makes one).\n";

static const char imatrix_details[] =
    "The text (with BOS) is cut into chunks of -c tokens, each evaluated from an empty cache; every\n"
    "product of a layer's weight matrix with activations adds the squares of its input rows to that\n"
    "weight's entry (per expert for the expert tensors), as llama-imatrix does. The file is llama.cpp's\n"
    "GGUF imatrix (legacy .dat when FILE ends in .dat), for `dsr1 quantize --imatrix` or llama-quantize.\n"
    "Runs on the CPU.\n";

static const dsr1_cli_command commands[] = {
    {"run", DSR1_CMD_RUN, dsr1_cli_run, "-m MODEL [-p TEXT | -f FILE | < FILE] [options]",
     "generate a reply to one prompt (-i: chat)", run_details, 0},
    {"chat", DSR1_CMD_CHAT, dsr1_cli_chat, "-m MODEL [options]", "interactive multi-turn chat on stdin",
     chat_details, 0},
    {"info", DSR1_CMD_INFO, dsr1_cli_info, "-m MODEL", "metadata and tensor table", NULL, 0},
    {"eval", DSR1_CMD_EVAL, dsr1_cli_eval, "-m MODEL --tokens IDS --out FILE [options]",
     "the logits of a token sequence, to a file", NULL, 0},
    {"bench", DSR1_CMD_BENCH, dsr1_cli_bench, "-m MODEL [-p N] [-n N] [-r REPS] [-o md|json|csv] [options]",
     "prompt and generation speed (--membw: memory bandwidth)", bench_details, 0},
    {"tokenize", DSR1_CMD_TOKENIZE, dsr1_cli_tokenize, "-m MODEL [--bos] < TEXT",
     "text on stdin -> token ids (special tokens recognised)", NULL, 0},
    {"detokenize", DSR1_CMD_DETOKENIZE, dsr1_cli_detokenize, "-m MODEL [--no-control] < IDS",
     "token ids on stdin -> text", NULL, 0},
    {"devices", DSR1_CMD_DEVICES, dsr1_cli_devices, "", "the GPUs (Vulkan) a model can offload to", NULL, 0},
    {"quantize", DSR1_CMD_QUANTIZE, dsr1_cli_quantize, "IN.gguf OUT.gguf TYPE [--imatrix FILE] [-t N]",
     "re-encode weights as llama-quantize (TYPE below)", quantize_details, 3},
    {"imatrix", DSR1_CMD_IMATRIX, dsr1_cli_imatrix, "-m MODEL -f TEXT [-o FILE] [-c N] [--chunks N] [-t N]",
     "importance matrix for quantize --imatrix (llama-imatrix's file)", imatrix_details, 0},
};

static void usage(FILE *f)
{
    fprintf(f, "dsr1 %s - run DeepSeek-R1 and its distilled models\n\nusage: dsr1 COMMAND [options]\n",
            dsr1_version());
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].description);
    fprintf(f, "  dsr1 COMMAND --help      the options of one command\n"
               "  dsr1 --version           the library version\n"
               "exit status: 0 done; 1 an error (the message says which); 2 a bad command line;\n"
               "  3 the context (-c) was too small: the prompt or the reply did not fit; 130 interrupted (Ctrl-C)\n");
}

int main(int argc, char **argv)
{
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        usage(stdout);
        return DSR1_EXIT_OK;
    }
    if (argc >= 2 && !strcmp(argv[1], "--version")) {
        printf("dsr1 %s (ABI %d)\n", dsr1_version(), dsr1_abi_version());
        return DSR1_EXIT_OK;
    }
    if (argc < 2) {
        fprintf(stderr, "dsr1: a command is needed\n\n");
        usage(stderr);
        return DSR1_EXIT_USAGE;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[1], commands[i].name) == 0) {
            dsr1_cli_opts o;
            dsr1_cli_opts_init(&o);
            dsr1_cli_parse(&commands[i], argc - 1, argv + 1, &o);
            return commands[i].run(&commands[i], &o);
        }
    }
    fprintf(stderr, "dsr1: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return DSR1_EXIT_USAGE;
}
