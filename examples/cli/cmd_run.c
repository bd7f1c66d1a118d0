/*
 * dsr1 run: one prompt -> a streamed completion, plus the helpers that
 * dsr1 chat shares (options, display, Ctrl-C, timing).
 */
#if !defined(_POSIX_C_SOURCE) && !defined(_GNU_SOURCE)
#define _POSIX_C_SOURCE 200809L /* clock_gettime, isatty */
#endif
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define DIM "\033[2m"
#define RESET "\033[0m"

/* ---- options ---- */

void dsr1_cli_gen_opts_init(dsr1_cli_gen_opts *o)
{
    memset(o, 0, sizeof *o);
    dsr1_sampler_params_default(&o->sampler, sizeof o->sampler);
    o->think_budget = -1;
}

int dsr1_cli_gen_option(const char *cmd, dsr1_cli_gen_opts *o, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
#define VALUE() (*i + 1 < argc ? argv[++*i] : NULL)
    if (!strcmp(a, "-m") || !strcmp(a, "--model"))
        o->model_path = VALUE();
    else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size"))
        o->n_ctx = (int32_t)dsr1_cli_parse_long(cmd, a, VALUE(), 0, 1 << 24);
    else if (!strcmp(a, "-t") || !strcmp(a, "--threads"))
        o->n_threads = (int32_t)dsr1_cli_parse_long(cmd, a, VALUE(), 0, 1024);
    else if (!strcmp(a, "--backend"))
        o->backend = VALUE();
    else if (!strcmp(a, "--kv-type"))
        o->kv_type = dsr1_cli_parse_kv_type(cmd, a, VALUE());
    else if (!strcmp(a, "-v") || !strcmp(a, "--verbose"))
        o->verbose = 1;
    else if (!strcmp(a, "--temp"))
        o->sampler.temperature = (float)dsr1_cli_parse_double(cmd, a, VALUE(), 0.0, 100.0);
    else if (!strcmp(a, "--top-p"))
        o->sampler.top_p = (float)dsr1_cli_parse_double(cmd, a, VALUE(), 0.0, 1.0);
    else if (!strcmp(a, "--top-k"))
        o->sampler.top_k = (int32_t)dsr1_cli_parse_long(cmd, a, VALUE(), 0, 1 << 30);
    else if (!strcmp(a, "--min-p"))
        o->sampler.min_p = (float)dsr1_cli_parse_double(cmd, a, VALUE(), 0.0, 1.0);
    else if (!strcmp(a, "--repeat-penalty"))
        o->sampler.repeat_penalty = (float)dsr1_cli_parse_double(cmd, a, VALUE(), 1e-3, 100.0);
    else if (!strcmp(a, "--repeat-last-n"))
        o->sampler.penalty_last_n = (int32_t)dsr1_cli_parse_long(cmd, a, VALUE(), 0, 1 << 20);
    else if (!strcmp(a, "--frequency-penalty"))
        o->sampler.frequency_penalty = (float)dsr1_cli_parse_double(cmd, a, VALUE(), -100.0, 100.0);
    else if (!strcmp(a, "--presence-penalty"))
        o->sampler.presence_penalty = (float)dsr1_cli_parse_double(cmd, a, VALUE(), -100.0, 100.0);
    else if (!strcmp(a, "-s") || !strcmp(a, "--seed")) {
        o->sampler.seed = (uint64_t)dsr1_cli_parse_double(cmd, a, VALUE(), 0.0, 18446744073709549568.0);
        o->seed_given = 1;
    } else if (!strcmp(a, "--think-budget"))
        o->think_budget = (int32_t)dsr1_cli_parse_long(cmd, a, VALUE(), -1, 1 << 30);
    else if (!strcmp(a, "--hide-thinking"))
        o->hide_thinking = 1;
    else if (!strcmp(a, "--grammar"))
        o->grammar_path = VALUE();
    else if (!strcmp(a, "--json-schema"))
        o->json_schema_path = VALUE();
    else if (!strcmp(a, "--logprobs"))
        o->n_logprobs = (int32_t)dsr1_cli_parse_long(cmd, a, VALUE(), 0, 100);
    else
        return 0;
#undef VALUE
    return 1;
}

/* A whole file, NUL-terminated (NULL with a message when unreadable). */
static char *read_text(const char *cmd, const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *text = NULL;
    if (f && fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (text = malloc((size_t)n + 1)) != NULL) {
            *len = fread(text, 1, (size_t)n, f);
            text[*len] = '\0';
        }
    }
    if (f)
        fclose(f);
    if (!text)
        fprintf(stderr, "dsr1 %s: cannot read %s\n", cmd, path);
    return text;
}

/* The grammar of --grammar / --json-schema, if any. */
static dsr1_status open_grammar(const char *cmd, dsr1_cli_gen_opts *o, const dsr1_model *model)
{
    o->grammar = NULL;
    const char *path = o->grammar_path ? o->grammar_path : o->json_schema_path;
    if (!path)
        return DSR1_OK;
    if (o->grammar_path && o->json_schema_path) {
        fprintf(stderr, "dsr1 %s: --grammar and --json-schema exclude each other\n", cmd);
        return DSR1_ERR_INVALID_ARGUMENT;
    }
    size_t len = 0;
    char *text = read_text(cmd, path, &len);
    if (!text)
        return DSR1_ERR_IO;
    dsr1_status st = o->grammar_path ? dsr1_grammar_new(model, text, len, NULL, &o->grammar)
                                     : dsr1_grammar_from_json_schema(model, text, len, &o->grammar);
    free(text);
    if (st)
        fprintf(stderr, "dsr1 %s: %s: %s\n", cmd, path, dsr1_last_error());
    return st;
}

int dsr1_cli_gen_open(const char *cmd, dsr1_cli_gen_opts *o, dsr1_model **model, dsr1_context **ctx,
                      dsr1_sampler **smp)
{
    *model = NULL;
    *ctx = NULL;
    *smp = NULL;
    if (!(*model = dsr1_cli_load(o->model_path, 0, o->verbose)))
        return 1;
    dsr1_context_params cp;
    dsr1_context_params_default(&cp, sizeof cp);
    cp.n_ctx = o->n_ctx;
    cp.n_threads = o->n_threads;
    cp.backend = o->backend;
    cp.kv_type = o->kv_type;
    dsr1_status st = dsr1_context_new(*model, &cp, ctx);
    if (st == DSR1_OK) {
        if (!o->seed_given)
            o->sampler.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
        st = dsr1_sampler_new(dsr1_model_n_vocab(*model), &o->sampler, smp);
    }
    if (st == DSR1_OK && (st = open_grammar(cmd, o, *model)) != DSR1_OK) {
        dsr1_sampler_free(*smp);
        *smp = NULL;
        dsr1_context_free(*ctx);
        dsr1_model_free(*model);
        *ctx = NULL;
        *model = NULL;
        return 1;
    }
    if (st != DSR1_OK) {
        dsr1_cli_fail(cmd, st);
        dsr1_context_free(*ctx);
        dsr1_model_free(*model);
        *ctx = NULL;
        *model = NULL;
        return 1;
    }
    if (o->verbose)
        fprintf(stderr, "dsr1 %s: n_ctx %d, backend %s, KV cache %.1f MiB, seed %llu\n", cmd,
                dsr1_context_n_ctx(*ctx), dsr1_context_backend(*ctx),
                (double)dsr1_context_kv_bytes_per_token(*ctx) * dsr1_context_n_ctx(*ctx) / 1048576.0,
                (unsigned long long)o->sampler.seed);
    return 0;
}

/* ---- Ctrl-C ---- */

static volatile sig_atomic_t g_interrupted; /* the tool's own state, not the library's */

static void on_sigint(int sig)
{
    (void)sig;
    if (g_interrupted)
        _exit(130); /* a second Ctrl-C while the first is pending */
    g_interrupted = 1;
}

void dsr1_cli_install_interrupt(void) { signal(SIGINT, on_sigint); }

int dsr1_cli_interrupted(int clear)
{
    int v = g_interrupted != 0;
    if (clear)
        g_interrupted = 0;
    return v;
}

/* ---- display ---- */

void dsr1_cli_display_init(dsr1_cli_display *d, int raw, int hide_thinking)
{
    memset(d, 0, sizeof *d);
    d->tty = isatty(STDOUT_FILENO);
    d->raw = raw;
    d->hide_thinking = hide_thinking;
    d->last_newline = 1;
}

static void put(dsr1_cli_display *d, const char *s, size_t n)
{
    if (n == 0)
        return;
    fwrite(s, 1, n, stdout);
    d->last_newline = s[n - 1] == '\n';
}

int dsr1_cli_display_event(const dsr1_event *ev, void *user_data)
{
    dsr1_cli_display *d = user_data;
    for (int32_t i = 0; d->model && ev->logprobs && i < ev->n_tokens; i++) {
        char piece[64];
        size_t n = 0;
        if (dsr1_token_to_piece(d->model, ev->tokens[i], piece, sizeof piece, &n, DSR1_PIECE_RENDER_CONTROL))
            snprintf(piece, sizeof piece, "?");
        fprintf(stderr, "[logprob] %6d %-16.*s %9.4f |", ev->tokens[i], (int)(n < 16 ? n : 16), piece,
                (double)ev->logprobs[i]);
        for (int32_t k = 0; k < ev->n_top_logprobs; k++) {
            const dsr1_token_logprob *t = &ev->top_logprobs[(size_t)i * (size_t)ev->n_top_logprobs + (size_t)k];
            if (t->token >= 0)
                fprintf(stderr, " %d:%.4f", t->token, (double)t->logprob);
        }
        fputc('\n', stderr);
    }
    switch (ev->type) {
    case DSR1_EVENT_REASONING_BEGIN:
        d->in_reasoning = 1;
        if (d->raw) {
            put(d, "<think>", 7);
        } else if (d->tty) {
            fputs(DIM, stdout);
            if (d->hide_thinking)
                fputs("(thinking...)", stdout);
        } else if (!d->hide_thinking) {
            /* a BEGIN without tokens: the prompt opened the block, with its "\n" */
            put(d, ev->n_tokens == 0 ? "<think>\n" : "<think>", ev->n_tokens == 0 ? 8 : 7);
        }
        break;
    case DSR1_EVENT_REASONING_TEXT:
        put(d, ev->text, ev->text_len);
        break;
    case DSR1_EVENT_REASONING_END:
        d->in_reasoning = 0;
        if (d->raw)
            put(d, "</think>", 8);
        else if (d->tty)
            fputs(d->hide_thinking ? RESET "\n" : RESET, stdout);
        else if (!d->hide_thinking)
            put(d, "</think>", 8);
        break;
    case DSR1_EVENT_ANSWER_TEXT: {
        const char *s = ev->text;
        size_t n = ev->text_len;
        if (d->hide_thinking && !d->raw && !d->answer_started) {
            while (n > 0 && (*s == '\n' || *s == ' ')) /* the "\n\n" after </think> */
                s++, n--;
        }
        if (n > 0)
            d->answer_started = 1;
        put(d, s, n);
        break;
    }
    case DSR1_EVENT_DONE:
        if (d->tty && d->in_reasoning && !d->raw)
            fputs(RESET, stdout);
        d->in_reasoning = 0;
        if (!d->last_newline)
            put(d, "\n", 1);
        break;
    }
    fflush(stdout);
    return dsr1_cli_interrupted(0);
}

static const char *reason_name(dsr1_stop_reason r)
{
    switch (r) {
    case DSR1_STOP_EOS: return "end of turn";
    case DSR1_STOP_LENGTH: return "token limit";
    case DSR1_STOP_STRING: return "stop string";
    case DSR1_STOP_CANCELLED: return "cancelled";
    case DSR1_STOP_BUDGET: return "thinking budget";
    case DSR1_STOP_CONTEXT_FULL: return "context full";
    default: return "running";
    }
}

void dsr1_cli_print_stats(const dsr1_generation *gen, dsr1_stop_reason why)
{
    dsr1_generation_stats st;
    st.size = sizeof st;
    if (dsr1_generation_get_stats(gen, &st) != DSR1_OK)
        return;
    char mtp[128] = "";
    if (st.n_drafted + st.n_declined > 0) /* speculative decoding: how often the MTP head's draft was right */
        snprintf(mtp, sizeof mtp, " | MTP drafts accepted %d/%d (%.1f%%), %d not verified (below --draft-p-min)",
                 st.n_accepted, st.n_drafted, st.n_drafted ? 100.0 * st.n_accepted / st.n_drafted : 0.0,
                 st.n_declined);
    fprintf(stderr, "[prompt: %d tokens in %.2f s, %.1f tokens/s | generation: %d tokens (%d reasoning) in %.2f s, "
                    "%.1f tokens/s%s | %s]\n",
            st.n_prompt_eval, st.prompt_seconds, st.prompt_seconds > 0 ? st.n_prompt_eval / st.prompt_seconds : 0.0,
            st.n_generated, st.n_reasoning, st.generate_seconds,
            st.generate_seconds > 0 ? st.n_generated / st.generate_seconds : 0.0, mtp, reason_name(why));
}

/* ---- dsr1 run ---- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: dsr1 run -m MODEL -p PROMPT [options]\n"
            "  -p, --prompt TEXT       the user message (formatted as one R1 chat turn)\n"
            "  -n, --n-predict N       most tokens to generate (default: until the end of the turn)\n"
            "  --temp T                temperature (0.6; 0 = greedy)\n"
            "  --top-p P               nucleus sampling (0.95; 1 = off)\n"
            "  --top-k K               (0 = off)\n"
            "  --min-p P               (0 = off)\n"
            "  --repeat-penalty F, --repeat-last-n N, --frequency-penalty F, --presence-penalty F\n"
            "  -s, --seed S            sampling seed (default: from the clock)\n"
            "  --think-budget N        reasoning tokens before \"</think>\" is forced (-1 = unlimited)\n"
            "  --hide-thinking         generate the reasoning but do not print it\n"
            DSR1_CLI_STRUCTURED_HELP
            "  --mtp                   speculative decoding with the model's multi-token-prediction head\n"
            "                          (DeepSeek-R1/V3 files that have one; same tokens, other speed)\n"
            "  --draft-p-min P         verify only drafts the MTP head gives at least this probability\n"
            "                          (0.5; 0 = every draft)\n"
            "  --raw                   no chat formatting: the prompt is tokenized as is (special tokens\n"
            "                          recognised) and the output is the generated text exactly\n"
            "  -c, --ctx-size N        context size (0 = min(4096, trained))\n"
            "  -t, --threads N         (0 = all cores)\n"
            "  --backend NAME          compute backend\n"
            DSR1_CLI_KV_TYPE_HELP
            "  -v, --verbose           log loading details\n"
            "Output: on a terminal the reasoning is dimmed; otherwise it is printed between \"<think>\"\n"
            "and \"</think>\" exactly as the model wrote it, followed by the answer. Timing goes to stderr.\n");
}

/* The prompt tokens: a user turn with the generation prompt, or raw text. */
static int build_prompt(dsr1_model *model, const char *text, int raw, dsr1_token **out, int32_t *n)
{
    dsr1_status st;
    int32_t need = 0;
    *out = NULL;
    dsr1_chat_message msg = {"user", text};
    for (int attempt = 0; attempt < 2; attempt++) {
        int32_t cap = need;
        if (raw)
            st = dsr1_tokenize(model, text, strlen(text), *out, cap, &need,
                               DSR1_TOKENIZE_PARSE_SPECIAL | DSR1_TOKENIZE_ADD_BOS);
        else
            st = dsr1_chat_tokenize(model, &msg, 1, DSR1_CHAT_ADD_GENERATION_PROMPT, *out, cap, &need);
        if (st == DSR1_OK) {
            *n = need;
            break;
        }
        if (st != DSR1_ERR_BUFFER_TOO_SMALL || attempt == 1)
            return dsr1_cli_fail("run", st);
        free(*out);
        *out = malloc((size_t)need * sizeof **out + 1);
        if (!*out) {
            fprintf(stderr, "dsr1 run: out of memory\n");
            return 1;
        }
    }
    /* raw text that already starts with BOS must not get a second one */
    dsr1_token bos = dsr1_token_special(model, DSR1_SPECIAL_BOS);
    if (raw && *n >= 2 && (*out)[0] == bos && (*out)[1] == bos) {
        memmove(*out, *out + 1, (size_t)(*n - 1) * sizeof **out);
        (*n)--;
    }
    if (*n == 0) {
        fprintf(stderr, "dsr1 run: the prompt is empty\n");
        return 1;
    }
    return 0;
}

int dsr1_cli_run(int argc, char **argv)
{
    dsr1_cli_gen_opts o;
    dsr1_cli_gen_opts_init(&o);
    const char *prompt = NULL;
    long n_predict = 0;
    int raw = 0, mtp = 0;
    double draft_p_min = 0.5;
    for (int i = 1; i < argc; i++) {
        if (dsr1_cli_gen_option("run", &o, argc, argv, &i))
            continue;
        if (!strcmp(argv[i], "-p") || !strcmp(argv[i], "--prompt")) {
            prompt = i + 1 < argc ? argv[++i] : NULL;
        } else if (!strcmp(argv[i], "-n") || !strcmp(argv[i], "--n-predict")) {
            n_predict = dsr1_cli_parse_long("run", argv[i], i + 1 < argc ? argv[i + 1] : NULL, -1, 1L << 30);
            i++;
        } else if (!strcmp(argv[i], "--raw")) {
            raw = 1;
        } else if (!strcmp(argv[i], "--mtp")) {
            mtp = 1;
        } else if (!strcmp(argv[i], "--draft-p-min")) {
            draft_p_min = dsr1_cli_parse_double("run", argv[i], i + 1 < argc ? argv[i + 1] : NULL, 0.0, 1.0);
            i++;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "dsr1 run: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 1;
        }
    }
    if (!o.model_path || !prompt) {
        fprintf(stderr, "dsr1 run: -m MODEL and -p PROMPT are required\n");
        usage(stderr);
        return 1;
    }
    dsr1_model *model;
    dsr1_context *ctx;
    dsr1_sampler *smp;
    if (dsr1_cli_gen_open("run", &o, &model, &ctx, &smp))
        return 1;
    dsr1_token *tokens = NULL;
    int32_t n_tokens = 0;
    int rc = build_prompt(model, prompt, raw, &tokens, &n_tokens);
    dsr1_generation *gen = NULL;
    if (rc == 0) {
        dsr1_cli_display disp;
        dsr1_cli_display_init(&disp, raw, o.hide_thinking);
        dsr1_generate_params gp;
        dsr1_generate_params_default(&gp, sizeof gp);
        gp.max_new_tokens = n_predict > 0 ? (int32_t)n_predict : 0;
        gp.think_budget = o.think_budget;
        gp.hide_reasoning = o.hide_thinking && !raw;
        gp.starts_in_reasoning = raw ? 0 : -1;
        gp.on_event = dsr1_cli_display_event;
        gp.user_data = &disp;
        gp.speculative_mtp = mtp;
        gp.speculative_min_p = (float)draft_p_min;
        gp.grammar = o.grammar;
        gp.n_logprobs = o.n_logprobs;
        if (o.n_logprobs > 0)
            disp.model = model;
        dsr1_stop_reason why = DSR1_STOP_NONE;
        dsr1_cli_install_interrupt();
        dsr1_status st = dsr1_generation_new(ctx, smp, tokens, n_tokens, &gp, &gen);
        if (st == DSR1_OK)
            st = dsr1_generation_run(gen, &why);
        if (st != DSR1_OK) {
            fflush(stdout);
            rc = dsr1_cli_fail("run", st);
        }
        if (gen)
            dsr1_cli_print_stats(gen, why);
    }
    dsr1_generation_free(gen);
    free(tokens);
    dsr1_grammar_free(o.grammar);
    dsr1_sampler_free(smp);
    dsr1_context_free(ctx);
    dsr1_model_free(model);
    return rc;
}
