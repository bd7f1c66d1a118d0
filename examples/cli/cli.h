/* The dsr1 command-line tool: one file per subcommand. */
#ifndef DSR1_CLI_H
#define DSR1_CLI_H

#include "dsr1.h"

/* Each subcommand gets argv[0] = its own name and returns the exit code. */
int dsr1_cli_info(int argc, char **argv);
int dsr1_cli_eval(int argc, char **argv);
int dsr1_cli_tokenize(int argc, char **argv);
int dsr1_cli_detokenize(int argc, char **argv);
int dsr1_cli_run(int argc, char **argv);
int dsr1_cli_chat(int argc, char **argv);
int dsr1_cli_bench(int argc, char **argv);
int dsr1_cli_quantize(int argc, char **argv);
int dsr1_cli_devices(int argc, char **argv);

/* Shared helpers (cli_util.c). */
/* Load a model, printing the library's message on failure (NULL then). */
dsr1_model *dsr1_cli_load(const char *path, int vocab_only, int verbose);
/* Print "dsr1 <cmd>: <message>" for a failed call and return 1. */
int dsr1_cli_fail(const char *cmd, dsr1_status st);
/* Parse a decimal integer argument; exits with a message when invalid. */
long dsr1_cli_parse_long(const char *cmd, const char *flag, const char *value, long lo, long hi);
double dsr1_cli_parse_double(const char *cmd, const char *flag, const char *value, double lo, double hi);
/* --kv-type f16|f32; exits with a message otherwise. */
dsr1_kv_type dsr1_cli_parse_kv_type(const char *cmd, const char *flag, const char *value);
/* The help line of --kv-type, shared by the subcommands. */
#define DSR1_CLI_KV_TYPE_HELP "  --kv-type f16|f32       KV cache element type (f16: the default, half the memory;\n" \
                              "                          f32: the exact reference, as llama.cpp's --cache-type-k/v)\n"

/* Shared by run and chat (defined in cmd_run.c). */
typedef struct dsr1_cli_gen_opts {
    const char *model_path;
    int32_t n_ctx;
    int32_t n_threads;
    const char *backend;
    dsr1_kv_type kv_type; /* DSR1_KV_DEFAULT unless --kv-type */
    int verbose;
    dsr1_sampler_params sampler;
    int seed_given;
    int32_t think_budget; /* -1: unlimited */
    int hide_thinking;
    const char *grammar_path;     /* --grammar FILE (GBNF) */
    const char *json_schema_path; /* --json-schema FILE */
    int32_t n_logprobs;           /* --logprobs N */
    dsr1_grammar *grammar;        /* made by dsr1_cli_gen_open from either file; free before the model */
} dsr1_cli_gen_opts;
void dsr1_cli_gen_opts_init(dsr1_cli_gen_opts *o);
/* Consume the option at argv[*i] (and its value) when it is one of the
 * model / context / sampling / thinking options; 0 when it is not. */
int dsr1_cli_gen_option(const char *cmd, dsr1_cli_gen_opts *o, int argc, char **argv, int *i);
/* The help lines of the options above that run and chat share. */
#define DSR1_CLI_STRUCTURED_HELP                                                                          \
    "  --grammar FILE          the answer follows this GBNF grammar (llama.cpp syntax); the reasoning\n" \
    "                          stays free, the grammar applies from </think> on\n"                     \
    "  --json-schema FILE      the answer is JSON that follows this JSON schema\n"                     \
    "  --logprobs N            print each token's log-probability and the N most likely (stderr)\n"
/* Load the model and make the context, sampler and grammar (prints errors). */
int dsr1_cli_gen_open(const char *cmd, dsr1_cli_gen_opts *o, dsr1_model **model, dsr1_context **ctx,
                      dsr1_sampler **smp);
/* Streams events to stdout: reasoning dimmed on a terminal, between
 * "<think>" / "</think>" lines otherwise; raw: the text exactly as generated. */
typedef struct dsr1_cli_display {
    int tty;
    int raw;
    int hide_thinking;
    int in_reasoning;
    int answer_started;
    int last_newline;
    const dsr1_model *model; /* set to print log-probabilities (events that carry them) to stderr */
} dsr1_cli_display;
void dsr1_cli_display_init(dsr1_cli_display *d, int raw, int hide_thinking);
int dsr1_cli_display_event(const dsr1_event *ev, void *user_data);
/* Ctrl-C handling: the first interrupt cancels the generation in progress. */
void dsr1_cli_install_interrupt(void);
int dsr1_cli_interrupted(int clear);
void dsr1_cli_print_stats(const dsr1_generation *gen, dsr1_stop_reason why);

#endif
