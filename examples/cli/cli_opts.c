/*
 * The options of every dsr1 subcommand, in one table: the parser and the
 * help both read it. An option shared by several subcommands is one row
 * whose `commands` names them all (DSR1_CMD_CONTEXT: every subcommand that
 * makes a context), so adding one is a row here and a field in
 * dsr1_cli_opts. The same spelling may appear in two rows for disjoint
 * subcommands (bench -p N_PROMPT, run -p TEXT).
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef enum kind {
    K_FLAG,   /* int32_t set to 1 */
    K_STRING, /* const char * */
    K_INT,    /* int32_t in [lo, hi] */
    K_FLOAT,  /* float in [lo, hi] */
    K_U64,    /* uint64_t, 0 .. 2^64 - 2 */
    K_CHOICE  /* int32_t: 1-based index of the value in `choices` ("a|b|c") */
} kind;

typedef struct option {
    const char *names; /* spellings, "|"-separated */
    const char *arg;   /* the value's name in the help (NULL: a flag) */
    kind kind;
    size_t offset; /* of the field in dsr1_cli_opts */
    double lo, hi;
    const char *choices;
    unsigned commands;
    const char *help; /* may hold "\n" for more lines */
} option;

#define F(field) offsetof(dsr1_cli_opts, field)
#define ANY_INT 0, 0, NULL

static const option options[] = {
    /* model, context, threads */
    {"-m|--model", "FILE", K_STRING, F(model_path), ANY_INT, DSR1_CMD_MODEL, "the GGUF model"},
    {"-c|--ctx-size", "N", K_INT, F(n_ctx), 0, 1 << 24, NULL, DSR1_CMD_GENERATE | DSR1_CMD_EVAL,
     "context size in tokens (0 = min(4096, the trained context))"},
    {"-c|--ctx-size", "N", K_INT, F(n_ctx), 0, 1 << 24, NULL, DSR1_CMD_IMATRIX,
     "tokens per chunk, each evaluated from an empty cache (512)"},
    {"-t|--threads", "N", K_INT, F(n_threads), 0, 1024, NULL, DSR1_CMD_CONTEXT | DSR1_CMD_QUANTIZE,
     "threads (0 = all cores)"},
    {"--backend", "NAME", K_STRING, F(backend), ANY_INT, DSR1_CMD_CONTEXT,
     "compute backend (default: $DSR1_BACKEND, else the best available;\n"
     "a device backend (vulkan) offloads every layer unless -ngl says)"},
    {"-ngl|--n-gpu-layers|--gpu-layers", "N", K_INT, F(n_gpu_layers), -1, 1 << 20, NULL, DSR1_CMD_CONTEXT,
     "offload the last N layers and the output head to a GPU\n"
     "(the Vulkan backend; -1: every layer; `dsr1 devices` lists them)"},
    {"-cmoe|--cpu-moe", NULL, K_FLAG, F(cpu_moe), ANY_INT, DSR1_CMD_CONTEXT,
     "with -ngl: keep a mixture of experts' routed experts (R1's\n"
     "ffn_*_exps, most of its bytes) on the CPU, the rest on the device"},
    {"--device", "NAME", K_STRING, F(device), ANY_INT, DSR1_CMD_CONTEXT,
     "the device for -ngl: an index from `dsr1 devices` or part of\n"
     "its name (default: $DSR1_DEVICE, else the first GPU)"},
    {"--kv-type", "f16|f32", K_CHOICE, F(kv_type), 0, 0, "f16|f32", DSR1_CMD_CONTEXT,
     "KV cache element type (f16: the default, half the memory;\n"
     "f32: the exact reference, as llama.cpp's --cache-type-k/v)"},
    {"-v|--verbose", NULL, K_FLAG, F(verbose), ANY_INT, DSR1_CMD_GENERATE, "log loading details (stderr)"},
    /* the prompt */
    {"-p|--prompt", "TEXT", K_STRING, F(prompt), ANY_INT, DSR1_CMD_GENERATE,
     "the user message (\"-\": read it from stdin; without -p or -f,\n"
     "`run` reads stdin when it is not a terminal)"},
    {"-f|--file", "FILE", K_STRING, F(prompt_file), ANY_INT, DSR1_CMD_GENERATE,
     "read the user message from FILE (from a file or stdin, one\n"
     "trailing newline is dropped)"},
    {"-sys|--system|--system-prompt", "TEXT", K_STRING, F(system_prompt), ANY_INT, DSR1_CMD_GENERATE,
     "system prompt"},
    {"-n|--n-predict", "N", K_INT, F(n_predict), -1, 1 << 30, NULL, DSR1_CMD_GENERATE,
     "most tokens to generate per reply (-1, the default: until the end\n"
     "of the turn or a full context; 0: none)"},
    {"-i|-cnv|--interactive|--conversation", NULL, K_FLAG, F(interactive), ANY_INT, DSR1_CMD_RUN,
     "interactive chat (as `dsr1 chat`); -p/-f is the first message"},
    {"--verbose-prompt", NULL, K_FLAG, F(verbose_prompt), ANY_INT, DSR1_CMD_GENERATE,
     "print the formatted prompt and its token ids (stderr)"},
    {"--raw", NULL, K_FLAG, F(raw), ANY_INT, DSR1_CMD_RUN,
     "no chat formatting: the prompt is tokenized as is (special tokens\n"
     "recognised) and the output is the generated text exactly"},
    /* sampling */
    {"--temp", "T", K_FLOAT, F(sampler.temperature), 0.0, 100.0, NULL, DSR1_CMD_GENERATE,
     "temperature (0.6; 0 = greedy)"},
    {"--top-p", "P", K_FLOAT, F(sampler.top_p), 0.0, 1.0, NULL, DSR1_CMD_GENERATE, "nucleus sampling (0.95; 1 = off)"},
    {"--top-k", "K", K_INT, F(sampler.top_k), 0, 1 << 30, NULL, DSR1_CMD_GENERATE, "top-k sampling (0 = off)"},
    {"--min-p", "P", K_FLOAT, F(sampler.min_p), 0.0, 1.0, NULL, DSR1_CMD_GENERATE, "min-p sampling (0 = off)"},
    {"--repeat-penalty", "F", K_FLOAT, F(sampler.repeat_penalty), 1e-3, 100.0, NULL, DSR1_CMD_GENERATE,
     "penalty of repeated tokens (1 = off)"},
    {"--repeat-last-n", "N", K_INT, F(sampler.penalty_last_n), 0, 1 << 20, NULL, DSR1_CMD_GENERATE,
     "tokens the penalties look back over"},
    {"--frequency-penalty", "F", K_FLOAT, F(sampler.frequency_penalty), -100.0, 100.0, NULL, DSR1_CMD_GENERATE,
     "(0 = off)"},
    {"--presence-penalty", "F", K_FLOAT, F(sampler.presence_penalty), -100.0, 100.0, NULL, DSR1_CMD_GENERATE,
     "(0 = off)"},
    {"-s|--seed", "S", K_U64, F(seed), ANY_INT, DSR1_CMD_GENERATE, "sampling seed (default: from the clock)"},
    /* thinking and structured output */
    {"--think-budget", "N", K_INT, F(think_budget), -1, 1 << 30, NULL, DSR1_CMD_GENERATE,
     "reasoning tokens before \"</think>\" is forced (-1 = unlimited)"},
    {"--hide-thinking", NULL, K_FLAG, F(hide_thinking), ANY_INT, DSR1_CMD_GENERATE,
     "generate the reasoning but do not print it"},
    {"--grammar", "FILE", K_STRING, F(grammar_path), ANY_INT, DSR1_CMD_GENERATE,
     "the answer follows this GBNF grammar (llama.cpp syntax); the\n"
     "reasoning stays free, the grammar applies from </think> on"},
    {"--json-schema", "FILE", K_STRING, F(json_schema_path), ANY_INT, DSR1_CMD_GENERATE,
     "the answer is JSON that follows this JSON schema"},
    {"--ctx-policy", "shift|stop", K_CHOICE, F(ctx_policy), 0, 0, "shift|stop", DSR1_CMD_GENERATE,
     "when the context is full: shift (drop the oldest exchanges, then\n"
     "the oldest half of the reply; the default of `chat`) or stop (the\n"
     "default of `run`)"},
    {"--logprobs", "N", K_INT, F(n_logprobs), 0, 100, NULL, DSR1_CMD_GENERATE,
     "print each token's log-probability and the N most likely (stderr)"},
    /* saved state */
    {"--load-state", "FILE", K_STRING, F(load_state_path), ANY_INT, DSR1_CMD_GENERATE,
     "continue from a state saved by --save-state (KV cache, sampler;\n"
     "`chat`: the conversation too): only new tokens are evaluated"},
    {"--save-state", "FILE", K_STRING, F(save_state_path), ANY_INT, DSR1_CMD_GENERATE,
     "save the state at the end (`run`: after the reply; `chat`: on\n"
     "/quit or end of input); FILE may be the --load-state file"},
    {"--mtp", NULL, K_FLAG, F(mtp), ANY_INT, DSR1_CMD_RUN,
     "speculative decoding with the model's multi-token-prediction head\n"
     "(DeepSeek-R1/V3 files that have one; same tokens, other speed)"},
    {"--draft-p-min", "P", K_FLOAT, F(draft_p_min), 0.0, 1.0, NULL, DSR1_CMD_RUN,
     "verify only drafts the MTP head gives at least this probability\n(0.5; 0 = every draft)"},
    /* eval */
    {"--tokens", "ID,ID,...", K_STRING, F(eval_tokens), ANY_INT, DSR1_CMD_EVAL, "the token ids to evaluate"},
    {"-o|--out", "FILE", K_STRING, F(out_path), ANY_INT, DSR1_CMD_EVAL,
     "where the logits go (little-endian float32, one row of n_vocab per token)"},
    {"--step", NULL, K_FLAG, F(eval_step), ANY_INT, DSR1_CMD_EVAL, "one token per call, through the KV cache"},
    /* bench */
    {"-p|--n-prompt", "N", K_INT, F(bench_n_prompt), 0, 1 << 20, NULL, DSR1_CMD_BENCH,
     "prompt tokens evaluated in one batch (512; 0 = no pp test)"},
    {"-n|--n-gen", "N", K_INT, F(bench_n_gen), 0, 1 << 20, NULL, DSR1_CMD_BENCH,
     "tokens generated one at a time after it (128; 0 = no tg test)"},
    {"-r|--repetitions", "N", K_INT, F(bench_reps), 1, 1000, NULL, DSR1_CMD_BENCH, "runs of each test (5)"},
    {"-o|--output", "md|json|csv", K_CHOICE, F(bench_output), 0, 0, "md|json|csv", DSR1_CMD_BENCH,
     "output format (md)"},
    {"--membw", NULL, K_FLAG, F(membw), ANY_INT, DSR1_CMD_BENCH,
     "measure the memory read bandwidth (1 and N threads) and show\n"
     "generation speed as a percentage of that ceiling (works without -m)"},
    /* imatrix */
    {"-f|--file", "FILE", K_STRING, F(prompt_file), ANY_INT, DSR1_CMD_IMATRIX, "the text to evaluate"},
    {"-o|--out", "FILE", K_STRING, F(out_path), ANY_INT, DSR1_CMD_IMATRIX,
     "where the importance matrix goes (imatrix.gguf; a name ending in\n"
     ".dat gets llama.cpp's legacy format)"},
    {"--chunks", "N", K_INT, F(n_chunks), 0, 1 << 30, NULL, DSR1_CMD_IMATRIX,
     "evaluate at most N chunks (0 = all the text has)"},
    /* quantize */
    {"--imatrix", "FILE", K_STRING, F(imatrix_path), ANY_INT, DSR1_CMD_QUANTIZE,
     "importance matrix (`dsr1 imatrix` or llama-imatrix, GGUF or .dat):\n"
     "each tensor's error is weighted by its columns' mean squared\n"
     "activation; needed by iq1_s iq1_m iq2_xxs iq2_xs iq2_s iq2_m iq3_xxs"},
    /* tokenize, detokenize */
    {"--bos", NULL, K_FLAG, F(add_bos), ANY_INT, DSR1_CMD_TOKENIZE, "prepend BOS"},
    {"--no-control", NULL, K_FLAG, F(no_control), ANY_INT, DSR1_CMD_DETOKENIZE,
     "print control tokens as nothing (default: their spelling)"},
};

#undef F
#undef ANY_INT

void dsr1_cli_opts_init(dsr1_cli_opts *o)
{
    memset(o, 0, sizeof *o);
    dsr1_sampler_params_default(&o->sampler, sizeof o->sampler);
    o->seed = DSR1_CLI_SEED_FROM_CLOCK;
    o->think_budget = -1;
    o->n_predict = -1;
    o->draft_p_min = 0.5f;
    o->bench_n_prompt = 512;
    o->bench_n_gen = 128;
    o->bench_reps = 5;
}

dsr1_kv_type dsr1_cli_kv_type(const dsr1_cli_opts *o)
{
    return o->kv_type == 1 ? DSR1_KV_F16 : o->kv_type == 2 ? DSR1_KV_F32 : DSR1_KV_DEFAULT;
}

/* Whether `name` is one of the "|"-separated spellings. */
static int spelled(const char *names, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = names;;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && !memcmp(p, name, n))
            return 1;
        if (!bar)
            return 0;
        p = bar + 1;
    }
}

void dsr1_cli_usage_error(const dsr1_cli_command *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "dsr1 %s: ", cmd->name);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(dsr1 %s --help lists the options)\n", cmd->name);
    va_end(ap);
    exit(DSR1_EXIT_USAGE);
}

/* Store value into the option's field, or exit with a usage error. */
static void set(const dsr1_cli_command *cmd, const option *op, const char *flag, const char *value, dsr1_cli_opts *o)
{
    char *field = (char *)o + op->offset, *end = NULL;
    errno = 0;
    switch (op->kind) {
    case K_FLAG: *(int32_t *)(void *)field = 1; return;
    case K_STRING: *(const char **)(void *)field = value; return;
    case K_INT: {
        long v = strtol(value, &end, 10);
        if (errno || end == value || *end || v < (long)op->lo || v > (long)op->hi)
            dsr1_cli_usage_error(cmd, "%s needs an integer in [%ld, %ld], got '%s'", flag, (long)op->lo, (long)op->hi,
                                 value);
        *(int32_t *)(void *)field = (int32_t)v;
        return;
    }
    case K_FLOAT: {
        double v = strtod(value, &end);
        if (errno || end == value || *end || !(v >= op->lo && v <= op->hi))
            dsr1_cli_usage_error(cmd, "%s needs a number in [%g, %g], got '%s'", flag, op->lo, op->hi, value);
        *(float *)(void *)field = (float)v;
        return;
    }
    case K_U64: {
        unsigned long long v = strtoull(value, &end, 10);
        if (errno || end == value || *end || value[0] == '-' || v >= DSR1_CLI_SEED_FROM_CLOCK)
            dsr1_cli_usage_error(cmd, "%s needs an integer in [0, %llu], got '%s'", flag,
                                 (unsigned long long)DSR1_CLI_SEED_FROM_CLOCK - 1, value);
        *(uint64_t *)(void *)field = (uint64_t)v;
        return;
    }
    case K_CHOICE: {
        int32_t index = 1;
        for (const char *p = op->choices;; index++) {
            const char *bar = strchr(p, '|');
            size_t len = bar ? (size_t)(bar - p) : strlen(p);
            if (strlen(value) == len && !memcmp(p, value, len)) {
                *(int32_t *)(void *)field = index;
                return;
            }
            if (!bar)
                break;
            p = bar + 1;
        }
        dsr1_cli_usage_error(cmd, "%s needs one of %s, got '%s'", flag, op->choices, value);
    }
    }
}

void dsr1_cli_parse(const dsr1_cli_command *cmd, int argc, char **argv, dsr1_cli_opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            dsr1_cli_print_help(cmd, stdout);
            exit(DSR1_EXIT_OK);
        }
        if (a[0] != '-' || a[1] == '\0') { /* "-" alone is a positional argument (stdin) */
            if (o->n_positional >= cmd->n_positional)
                dsr1_cli_usage_error(cmd, "unexpected argument '%s'", a);
            o->positional[o->n_positional++] = a;
            continue;
        }
        const option *op = NULL;
        for (size_t k = 0; k < sizeof options / sizeof options[0] && !op; k++)
            if ((options[k].commands & cmd->id) && spelled(options[k].names, a))
                op = &options[k];
        if (!op)
            dsr1_cli_usage_error(cmd, "unknown option '%s'", a);
        const char *value = NULL;
        if (op->kind != K_FLAG) {
            if (i + 1 >= argc)
                dsr1_cli_usage_error(cmd, "%s needs a value (%s)", a, op->arg);
            value = argv[++i];
        }
        set(cmd, op, a, value, o);
    }
    if (o->n_positional != cmd->n_positional)
        dsr1_cli_usage_error(cmd, "needs %d argument%s (%s)", cmd->n_positional, cmd->n_positional == 1 ? "" : "s",
                             cmd->synopsis);
}

void dsr1_cli_print_help(const dsr1_cli_command *cmd, FILE *f)
{
    fprintf(f, "usage: dsr1 %s %s\n%s\n", cmd->name, cmd->synopsis, cmd->description);
    int any = 0;
    for (size_t k = 0; k < sizeof options / sizeof options[0]; k++) {
        const option *op = &options[k];
        if (!(op->commands & cmd->id))
            continue;
        if (!any++)
            fputs("options:\n", f);
        char head[128] = "  "; /* "-a|--bb" -> "-a, --bb", the names are short literals */
        size_t n = 2;
        for (const char *p = op->names; *p && n < 64; p++) {
            if (*p == '|')
                head[n++] = ',', head[n++] = ' ';
            else
                head[n++] = *p;
        }
        head[n] = '\0';
        if (op->arg)
            snprintf(head + n, sizeof head - n, " %s", op->arg);
        fprintf(f, "%-30s", head);
        if (strlen(head) >= 30)
            fprintf(f, "\n%-30s", "");
        for (const char *p = op->help; *p; p++) {
            fputc(*p, f);
            if (*p == '\n')
                fprintf(f, "%-30s", "");
        }
        fputc('\n', f);
    }
    fprintf(f, "  %-28s%s\n", "-h, --help", "this help");
    if (cmd->details)
        fprintf(f, "%s", cmd->details);
    fprintf(f, "exit status: 0 done; 1 an error (the message says which); 2 a bad command line;\n"
               "  3 the context (-c) was too small: the prompt or the reply did not fit; 130 interrupted (Ctrl-C)\n");
}
