/*
 * dsr1 run: one prompt -> a streamed completion, plus the helpers that
 * dsr1 chat shares (opening, display, Ctrl-C, the report at the end).
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

/* The grammar of --grammar / --json-schema, if any (*out NULL when none). */
static dsr1_status open_grammar(const char *cmd, const dsr1_cli_opts *o, const dsr1_model *model, dsr1_grammar **out)
{
    *out = NULL;
    const char *path = o->grammar_path ? o->grammar_path : o->json_schema_path;
    if (!path)
        return DSR1_OK;
    if (o->grammar_path && o->json_schema_path) {
        fprintf(stderr, "dsr1 %s: --grammar and --json-schema exclude each other\n", cmd);
        return DSR1_ERR_INVALID_ARGUMENT;
    }
    size_t len = 0;
    char *text = dsr1_cli_read_file(cmd, path, &len);
    if (!text)
        return DSR1_ERR_IO;
    dsr1_status st = o->grammar_path ? dsr1_grammar_new(model, text, len, NULL, out)
                                     : dsr1_grammar_from_json_schema(model, text, len, out);
    free(text);
    if (st)
        fprintf(stderr, "dsr1 %s: %s: %s\n", cmd, path, dsr1_last_error());
    return st;
}

int dsr1_cli_gen_open(const char *cmd, dsr1_cli_opts *o, dsr1_grammar **grammar, dsr1_model **model,
                      dsr1_context **ctx, dsr1_sampler **smp)
{
    *grammar = NULL;
    *ctx = NULL;
    *smp = NULL;
    if (!(*model = dsr1_cli_load(cmd, o, 0)))
        return DSR1_EXIT_ERROR;
    dsr1_context_params cp;
    dsr1_cli_context_params(o, &cp);
    dsr1_status st = dsr1_context_new(*model, &cp, ctx);
    if (st == DSR1_OK) {
        o->sampler.seed = o->seed != DSR1_CLI_SEED_FROM_CLOCK ? o->seed
                                                              : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
        st = dsr1_sampler_new(dsr1_model_n_vocab(*model), &o->sampler, smp);
        if (st != DSR1_OK)
            dsr1_cli_fail(cmd, st);
    } else {
        dsr1_cli_fail(cmd, st);
    }
    if (st == DSR1_OK)
        st = open_grammar(cmd, o, *model, grammar);
    if (st != DSR1_OK) {
        dsr1_sampler_free(*smp);
        dsr1_context_free(*ctx);
        dsr1_model_free(*model);
        *smp = NULL;
        *ctx = NULL;
        *model = NULL;
        return DSR1_EXIT_ERROR;
    }
    if (o->n_ctx > dsr1_model_n_ctx_train(*model) && dsr1_model_n_ctx_train(*model) > 0)
        fprintf(stderr, "dsr1 %s: warning: -c %d is above the %d tokens the model was trained on; "
                        "quality may drop past them\n", cmd, o->n_ctx, dsr1_model_n_ctx_train(*model));
    if (o->verbose)
        fprintf(stderr, "dsr1 %s: n_ctx %d, backend %s, KV cache %.1f MiB, seed %llu\n", cmd,
                dsr1_context_n_ctx(*ctx), dsr1_context_backend(*ctx),
                (double)dsr1_context_kv_bytes_per_token(*ctx) * dsr1_context_n_ctx(*ctx) / 1048576.0,
                (unsigned long long)o->sampler.seed);
    return DSR1_EXIT_OK;
}

void dsr1_cli_generate_params(const dsr1_cli_opts *o, const dsr1_grammar *grammar, dsr1_generate_params *gp)
{
    dsr1_generate_params_default(gp, sizeof *gp);
    gp->max_new_tokens = o->n_predict > 0 ? o->n_predict : 0; /* the library's 0 is "no limit" */
    gp->think_budget = o->think_budget;
    gp->hide_reasoning = o->hide_thinking && !o->raw;
    gp->grammar = grammar;
    gp->n_logprobs = o->n_logprobs;
    gp->ctx_policy = o->ctx_policy == 1 ? DSR1_CTX_SHIFT : DSR1_CTX_STOP; /* chat: shift unless told */
}

/* --verbose-prompt, as llama-cli's: the text the model sees, then id -> piece. */
void dsr1_cli_print_prompt(const dsr1_model *model, const dsr1_chat_message *messages, int32_t n_messages)
{
    size_t n_bytes = 0;
    char *text = NULL;
    dsr1_status st = dsr1_chat_format(model, messages, n_messages, DSR1_CHAT_ADD_GENERATION_PROMPT, NULL, 0, &n_bytes);
    if (st == DSR1_ERR_BUFFER_TOO_SMALL && (text = malloc(n_bytes + 1)) != NULL)
        st = dsr1_chat_format(model, messages, n_messages, DSR1_CHAT_ADD_GENERATION_PROMPT, text, n_bytes + 1,
                              &n_bytes);
    if (st == DSR1_OK)
        fprintf(stderr, "prompt: '%s'\n", text);
    free(text);
    int32_t n = 0;
    dsr1_token *ids = NULL;
    st = dsr1_chat_tokenize(model, messages, n_messages, DSR1_CHAT_ADD_GENERATION_PROMPT, NULL, 0, &n);
    if (st == DSR1_ERR_BUFFER_TOO_SMALL && (ids = malloc((size_t)n * sizeof *ids)) != NULL)
        st = dsr1_chat_tokenize(model, messages, n_messages, DSR1_CHAT_ADD_GENERATION_PROMPT, ids, n, &n);
    if (st != DSR1_OK) {
        fprintf(stderr, "prompt tokens: %s\n", dsr1_last_error());
        free(ids);
        return;
    }
    fprintf(stderr, "number of tokens in prompt = %d\n", n);
    for (int32_t i = 0; i < n; i++) {
        char piece[128];
        size_t len = 0;
        if (dsr1_token_to_piece(model, ids[i], piece, sizeof piece, &len, DSR1_PIECE_RENDER_CONTROL) != DSR1_OK)
            len = 0;
        fprintf(stderr, "%6d -> '%.*s'\n", ids[i], (int)len, piece);
    }
    free(ids);
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
    d->color = dsr1_cli_color(stdout);
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
        } else if (d->color) {
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
        else if (d->color)
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
        if (d->color && d->in_reasoning && !d->raw)
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

static void print_stats(const dsr1_generation *gen, dsr1_stop_reason why)
{
    dsr1_generation_stats st;
    st.size = sizeof st;
    if (dsr1_generation_get_stats(gen, &st) != DSR1_OK)
        return;
    char mtp[128] = "", shifts[96] = "";
    if (st.n_ctx_shifts > 0)
        snprintf(shifts, sizeof shifts, " | context shifts: %d (%d tokens dropped)", st.n_ctx_shifts,
                 st.n_ctx_dropped);
    if (st.n_drafted + st.n_declined > 0) /* speculative decoding: how often the MTP head's draft was right */
        snprintf(mtp, sizeof mtp, " | MTP drafts accepted %d/%d (%.1f%%), %d not verified (below --draft-p-min)",
                 st.n_accepted, st.n_drafted, st.n_drafted ? 100.0 * st.n_accepted / st.n_drafted : 0.0,
                 st.n_declined);
    fprintf(stderr, "[prompt: %d tokens in %.2f s, %.1f tokens/s | generation: %d tokens (%d reasoning) in %.2f s, "
                    "%.1f tokens/s%s%s | %s]\n",
            st.n_prompt_eval, st.prompt_seconds, st.prompt_seconds > 0 ? st.n_prompt_eval / st.prompt_seconds : 0.0,
            st.n_generated, st.n_reasoning, st.generate_seconds,
            st.generate_seconds > 0 ? st.n_generated / st.generate_seconds : 0.0, mtp, shifts, reason_name(why));
}

int dsr1_cli_generation_result(const char *cmd, const dsr1_generation *gen, const dsr1_context *ctx,
                               dsr1_status st, dsr1_stop_reason why)
{
    fflush(stdout);
    if (st == DSR1_ERR_CONTEXT_FULL) {
        fprintf(stderr, "dsr1 %s: the prompt does not fit in the context of %d tokens (raise -c)\n", cmd,
                dsr1_context_n_ctx(ctx));
        return DSR1_EXIT_CONTEXT_FULL;
    }
    if (gen)
        print_stats(gen, why);
    if (dsr1_cli_interrupted(0) || why == DSR1_STOP_CANCELLED || st == DSR1_ERR_CANCELLED)
        return DSR1_EXIT_INTERRUPTED;
    if (st != DSR1_OK)
        return dsr1_cli_fail(cmd, st);
    if (why == DSR1_STOP_CONTEXT_FULL) {
        fprintf(stderr, "dsr1 %s: the reply was cut off: the context of %d tokens is full (raise -c)\n", cmd,
                dsr1_context_n_ctx(ctx));
        return DSR1_EXIT_CONTEXT_FULL;
    }
    return DSR1_EXIT_OK;
}

/* ---- dsr1 run ---- */

/* The user message: -p TEXT, -p - (stdin), -f FILE, or stdin when it is not
 * a terminal. NULL after printing why when there is none. */
static char *read_prompt(const dsr1_cli_command *cmd, const dsr1_cli_opts *o)
{
    if (o->prompt && o->prompt_file)
        dsr1_cli_usage_error(cmd, "-p and -f exclude each other");
    if (o->prompt && strcmp(o->prompt, "-"))
        return strdup(o->prompt);
    if (!o->prompt && !o->prompt_file && isatty(STDIN_FILENO))
        dsr1_cli_usage_error(cmd, "a prompt is needed: -p TEXT, -f FILE or on stdin (or -i to chat)");
    return dsr1_cli_read_message(cmd->name, o->prompt_file ? o->prompt_file : "-");
}

/* The prompt tokens: the chat turn with the generation prompt, or raw text. */
static int build_prompt(const char *cmd, dsr1_model *model, const dsr1_chat_message *msgs, int32_t n_msgs, int raw,
                        dsr1_token **out, int32_t *n)
{
    const char *text = msgs[n_msgs - 1].content;
    int32_t need = 0;
    *out = NULL;
    for (int attempt = 0; attempt < 2; attempt++) {
        dsr1_status st;
        if (raw)
            st = dsr1_tokenize(model, text, strlen(text), *out, need, &need,
                               DSR1_TOKENIZE_PARSE_SPECIAL | DSR1_TOKENIZE_ADD_BOS);
        else
            st = dsr1_chat_tokenize(model, msgs, n_msgs, DSR1_CHAT_ADD_GENERATION_PROMPT, *out, need, &need);
        if (st == DSR1_OK) {
            *n = need;
            break;
        }
        if (st != DSR1_ERR_BUFFER_TOO_SMALL || attempt == 1)
            return dsr1_cli_fail(cmd, st);
        free(*out);
        if (!(*out = malloc((size_t)need * sizeof **out + 1))) {
            fprintf(stderr, "dsr1 %s: out of memory\n", cmd);
            return DSR1_EXIT_ERROR;
        }
    }
    /* raw text that already starts with BOS must not get a second one */
    dsr1_token bos = dsr1_token_special(model, DSR1_SPECIAL_BOS);
    if (raw && *n >= 2 && (*out)[0] == bos && (*out)[1] == bos) {
        memmove(*out, *out + 1, (size_t)(*n - 1) * sizeof **out);
        (*n)--;
    }
    if (*n == 0) {
        fprintf(stderr, "dsr1 %s: the prompt is empty\n", cmd);
        return DSR1_EXIT_ERROR;
    }
    return DSR1_EXIT_OK;
}

int dsr1_cli_run(const dsr1_cli_command *cmd, dsr1_cli_opts *o)
{
    if (o->interactive)
        return dsr1_cli_chat(cmd, o);
    if (o->raw && o->system_prompt)
        dsr1_cli_usage_error(cmd, "--raw has no chat format to put -sys in");
    char *prompt = read_prompt(cmd, o);
    if (!prompt)
        return DSR1_EXIT_ERROR;
    dsr1_grammar *grammar;
    dsr1_model *model;
    dsr1_context *ctx;
    dsr1_sampler *smp;
    if (dsr1_cli_gen_open(cmd->name, o, &grammar, &model, &ctx, &smp)) {
        free(prompt);
        return DSR1_EXIT_ERROR;
    }
    if (o->load_state_path) {
        dsr1_status st = dsr1_context_state_load_file(ctx, smp, o->load_state_path);
        if (st != DSR1_OK) {
            dsr1_cli_fail(cmd->name, st);
            dsr1_grammar_free(grammar);
            dsr1_sampler_free(smp);
            dsr1_context_free(ctx);
            dsr1_model_free(model);
            free(prompt);
            return DSR1_EXIT_ERROR;
        }
    }
    dsr1_chat_message msgs[2] = {{"system", o->system_prompt}, {"user", prompt}};
    int32_t n_msgs = o->system_prompt ? 2 : 1;
    const dsr1_chat_message *conv = msgs + 2 - n_msgs;
    if (o->verbose_prompt && !o->raw)
        dsr1_cli_print_prompt(model, conv, n_msgs);
    dsr1_token *tokens = NULL;
    int32_t n_tokens = 0;
    int rc = build_prompt(cmd->name, model, conv, n_msgs, o->raw, &tokens, &n_tokens);
    if (rc == DSR1_EXIT_OK && o->verbose_prompt && o->raw) {
        fprintf(stderr, "number of tokens in prompt = %d\n", n_tokens);
        for (int32_t i = 0; i < n_tokens; i++)
            fprintf(stderr, "%6d\n", tokens[i]);
    }
    dsr1_generation *gen = NULL;
    if (rc == DSR1_EXIT_OK && o->n_predict != 0) {
        dsr1_cli_display disp;
        dsr1_cli_display_init(&disp, o->raw, o->hide_thinking);
        dsr1_generate_params gp;
        dsr1_cli_generate_params(o, grammar, &gp);
        gp.starts_in_reasoning = o->raw ? 0 : -1;
        gp.on_event = dsr1_cli_display_event;
        gp.user_data = &disp;
        gp.speculative_mtp = o->mtp;
        gp.speculative_min_p = o->draft_p_min;
        if (o->n_logprobs > 0)
            disp.model = model;
        dsr1_stop_reason why = DSR1_STOP_NONE;
        dsr1_cli_install_interrupt();
        dsr1_status st = dsr1_generation_new(ctx, smp, tokens, n_tokens, &gp, &gen);
        if (st == DSR1_OK)
            st = dsr1_generation_run(gen, &why);
        rc = dsr1_cli_generation_result(cmd->name, gen, ctx, st, why);
    }
    dsr1_generation_free(gen);
    if (o->save_state_path && (rc == DSR1_EXIT_OK || rc == DSR1_EXIT_CONTEXT_FULL)) {
        dsr1_status st = dsr1_context_state_save_file(ctx, smp, o->save_state_path);
        if (st != DSR1_OK)
            rc = dsr1_cli_fail(cmd->name, st);
    }
    free(tokens);
    free(prompt);
    dsr1_grammar_free(grammar);
    dsr1_sampler_free(smp);
    dsr1_context_free(ctx);
    dsr1_model_free(model);
    return rc;
}
