/* The dsr1 command-line tool: one file per subcommand, one option table (cli_opts.c). */
#ifndef DSR1_CLI_H
#define DSR1_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "dsr1.h"

/* Exit codes, the same for every subcommand (listed in every --help). */
enum {
    DSR1_EXIT_OK = 0,
    DSR1_EXIT_ERROR = 1,        /* a failed load, evaluation, file... (the message says which) */
    DSR1_EXIT_USAGE = 2,        /* a bad command line */
    DSR1_EXIT_CONTEXT_FULL = 3, /* the context (-c) was too small: the prompt or the reply did not fit */
    DSR1_EXIT_INTERRUPTED = 130 /* Ctrl-C */
};

/* Subcommands, as bits: an option names the subcommands that accept it. */
enum {
    DSR1_CMD_RUN = 1u << 0,
    DSR1_CMD_CHAT = 1u << 1,
    DSR1_CMD_INFO = 1u << 2,
    DSR1_CMD_EVAL = 1u << 3,
    DSR1_CMD_BENCH = 1u << 4,
    DSR1_CMD_TOKENIZE = 1u << 5,
    DSR1_CMD_DETOKENIZE = 1u << 6,
    DSR1_CMD_DEVICES = 1u << 7,
    DSR1_CMD_QUANTIZE = 1u << 8,
    DSR1_CMD_IMATRIX = 1u << 9,
};
#define DSR1_CMD_GENERATE (DSR1_CMD_RUN | DSR1_CMD_CHAT)                     /* generate text */
#define DSR1_CMD_CONTEXT (DSR1_CMD_GENERATE | DSR1_CMD_EVAL | DSR1_CMD_BENCH | DSR1_CMD_IMATRIX) /* make a context */
#define DSR1_CMD_MODEL (DSR1_CMD_CONTEXT | DSR1_CMD_INFO | DSR1_CMD_TOKENIZE | DSR1_CMD_DETOKENIZE)

#define DSR1_CLI_MAX_POSITIONAL 3
#define DSR1_CLI_SEED_FROM_CLOCK UINT64_MAX

/* Every option of every subcommand; the option table (cli_opts.c) says
 * which field each one sets. Choices are 1-based indices, 0 when not given. */
typedef struct dsr1_cli_opts {
    /* model and context */
    const char *model_path;
    int32_t n_ctx;
    int32_t n_threads;
    const char *backend;
    int32_t n_gpu_layers; /* -ngl: layers offloaded to a device (-1: all) */
    const char *device;   /* --device */
    int32_t cpu_moe;      /* --cpu-moe */
    int32_t kv_type; /* choice: 1 f16, 2 f32 (dsr1_cli_kv_type) */
    int32_t verbose;
    /* sampling, thinking, structured output */
    dsr1_sampler_params sampler;
    uint64_t seed; /* DSR1_CLI_SEED_FROM_CLOCK unless -s */
    int32_t think_budget;
    int32_t hide_thinking;
    const char *grammar_path;
    const char *json_schema_path;
    int32_t n_logprobs;
    int32_t ctx_policy; /* choice: 1 shift, 2 stop; 0: the command's default (chat shift, run stop) */
    const char *load_state_path; /* --load-state FILE */
    const char *save_state_path; /* --save-state FILE */
    /* the prompt and the generation */
    const char *prompt;      /* -p TEXT; "-" reads stdin */
    const char *prompt_file; /* -f FILE */
    const char *system_prompt;
    int32_t n_predict; /* -1: until the end of the turn or a full context; 0: none */
    int32_t interactive;
    int32_t raw;
    int32_t mtp;
    float draft_p_min;
    int32_t verbose_prompt;
    /* eval */
    const char *eval_tokens;
    const char *out_path;
    int32_t eval_step;
    /* bench */
    int32_t bench_n_prompt;
    int32_t bench_n_gen;
    int32_t bench_reps;
    int32_t bench_output; /* choice: 1 md, 2 json, 3 csv */
    int32_t membw;
    /* tokenize / detokenize */
    int32_t add_bos;
    int32_t no_control;
    /* quantize, imatrix */
    const char *imatrix_path; /* --imatrix FILE */
    int32_t n_chunks;         /* imatrix --chunks N (0: all) */
    /* positional arguments (quantize) */
    const char *positional[DSR1_CLI_MAX_POSITIONAL];
    int n_positional;
} dsr1_cli_opts;

typedef struct dsr1_cli_command dsr1_cli_command;
struct dsr1_cli_command {
    const char *name;
    unsigned id; /* DSR1_CMD_* */
    int (*run)(const dsr1_cli_command *cmd, dsr1_cli_opts *o);
    const char *synopsis;    /* after "dsr1 NAME" */
    const char *description; /* one line, for `dsr1 --help` */
    const char *details;     /* printed after the options in `dsr1 NAME --help`; may be NULL */
    int n_positional;        /* exactly this many positional arguments */
};

/* Defaults of every option. */
void dsr1_cli_opts_init(dsr1_cli_opts *o);
/* Parse argv[1..argc-1] for cmd into o (after dsr1_cli_opts_init). --help
 * prints the command's help and exits 0; a usage error prints one line that
 * names the problem and exits DSR1_EXIT_USAGE. */
void dsr1_cli_parse(const dsr1_cli_command *cmd, int argc, char **argv, dsr1_cli_opts *o);
/* The command's help: synopsis, its options from the table, details, exit codes. */
void dsr1_cli_print_help(const dsr1_cli_command *cmd, FILE *f);
/* Report a usage problem found after parsing ("dsr1 CMD: MESSAGE") and exit 2. */
#if defined(__GNUC__)
__attribute__((noreturn, format(printf, 2, 3)))
#endif
void dsr1_cli_usage_error(const dsr1_cli_command *cmd, const char *fmt, ...);
dsr1_kv_type dsr1_cli_kv_type(const dsr1_cli_opts *o);

/* The subcommands (cmd_*.c). */
int dsr1_cli_info(const dsr1_cli_command *cmd, dsr1_cli_opts *o);
int dsr1_cli_eval(const dsr1_cli_command *cmd, dsr1_cli_opts *o);
int dsr1_cli_tokenize(const dsr1_cli_command *cmd, dsr1_cli_opts *o);
int dsr1_cli_detokenize(const dsr1_cli_command *cmd, dsr1_cli_opts *o);
int dsr1_cli_run(const dsr1_cli_command *cmd, dsr1_cli_opts *o);
int dsr1_cli_chat(const dsr1_cli_command *cmd, dsr1_cli_opts *o);
int dsr1_cli_bench(const dsr1_cli_command *cmd, dsr1_cli_opts *o);
int dsr1_cli_quantize(const dsr1_cli_command *cmd, dsr1_cli_opts *o);
int dsr1_cli_imatrix(const dsr1_cli_command *cmd, dsr1_cli_opts *o);
int dsr1_cli_devices(const dsr1_cli_command *cmd, dsr1_cli_opts *o);

/* Shared helpers (cli_util.c). */
/* A progress bar on stderr, drawn only when stderr is a terminal and only
 * once the work has taken a moment ($DSR1_PROGRESS_AFTER_MS, default 200):
 * "LABEL [####......]  40%  12.0/30.0 MiB". It ends its line when done
 * reaches total. */
typedef struct dsr1_cli_progress {
    const char *label;
    double start, after; /* seconds */
    int enabled, drawn;  /* drawn: a bar is on the line now */
    int width;           /* of the bar last drawn, in characters */
} dsr1_cli_progress;
void dsr1_cli_progress_init(dsr1_cli_progress *bar, const char *label);
/* bytes: the counts are bytes (shown in MiB), else items. */
void dsr1_cli_progress_draw(dsr1_cli_progress *bar, uint64_t done, uint64_t total, int bytes);
/* Blank the bar's line, before other output goes to the same terminal (the
 * next draw puts it back). */
void dsr1_cli_progress_clear(dsr1_cli_progress *bar);
/* End the bar's line when a bar is drawn and unfinished (a failure). */
void dsr1_cli_progress_end(dsr1_cli_progress *bar);

/* Load o->model_path (a progress bar on a terminal, the log with -v);
 * prints the library's message and returns NULL on failure. */
dsr1_model *dsr1_cli_load(const char *cmd, const dsr1_cli_opts *o, int vocab_only);
/* Context parameters from the options (every subcommand that makes a context). */
void dsr1_cli_context_params(const dsr1_cli_opts *o, dsr1_context_params *cp);
/* Print "dsr1 <cmd>: <message> (<status>)" for a failed call and return DSR1_EXIT_ERROR. */
int dsr1_cli_fail(const char *cmd, dsr1_status st);
/* A whole file ("-": stdin), NUL-terminated; NULL with a message when unreadable. */
char *dsr1_cli_read_file(const char *cmd, const char *path, size_t *len);
/* A message from a file ("-": stdin) without the one newline that ends it. */
char *dsr1_cli_read_message(const char *cmd, const char *path);
/* Whether ANSI colours may be written to this stream: a terminal, NO_COLOR
 * unset or empty, TERM not "dumb". */
int dsr1_cli_color(FILE *f);

/* Shared by run and chat (cmd_run.c). */
/* Load the model and make the context, sampler and grammar (prints errors). */
int dsr1_cli_gen_open(const char *cmd, dsr1_cli_opts *o, dsr1_grammar **grammar, dsr1_model **model,
                      dsr1_context **ctx, dsr1_sampler **smp);
/* Generation parameters from the options (budget, hiding, grammar, logprobs, -n). */
void dsr1_cli_generate_params(const dsr1_cli_opts *o, const dsr1_grammar *grammar, dsr1_generate_params *gp);
/* --verbose-prompt: the formatted conversation and its token ids, on stderr. */
void dsr1_cli_print_prompt(const dsr1_model *model, const dsr1_chat_message *messages, int32_t n_messages);
/* Streams events to stdout: reasoning dimmed when colours are allowed, between
 * "<think>" / "</think>" lines otherwise; raw: the text exactly as generated. */
typedef struct dsr1_cli_display {
    int color;
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
/* The report of a finished (or failed) generation on stderr: the stats line,
 * or one message when the prompt did not fit; returns the exit code. */
int dsr1_cli_generation_result(const char *cmd, const dsr1_generation *gen, const dsr1_context *ctx,
                               dsr1_status st, dsr1_stop_reason why);

#endif
