/*
 * dsr1 chat: interactive multi-turn conversation on stdin.
 *
 * Each line is a user message (-p / -f: the first one); the reply streams as
 * in `dsr1 run`. Also `dsr1 run -i` / `-cnv`. Commands:
 *   /think N   set the thinking budget (-1: unlimited)
 *   /reset     forget the conversation (keeps the system prompt)
 *   /quit      leave (so does end of input)
 * Ctrl-C stops the reply in progress.
 */
#if !defined(_POSIX_C_SOURCE) && !defined(_GNU_SOURCE)
#define _POSIX_C_SOURCE 200809L /* clock_gettime, isatty */
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* One line of stdin without its newline; NULL at end of input. */
static char *read_line(char **buf, size_t *cap)
{
    size_t n = 0;
    for (;;) {
        if (n + 2 > *cap) {
            size_t c = *cap ? *cap * 2 : 256;
            char *p = realloc(*buf, c);
            if (!p)
                return NULL;
            *buf = p;
            *cap = c;
        }
        int ch = getchar();
        if (ch == EOF) {
            if (n == 0)
                return NULL;
            break;
        }
        if (ch == '\n')
            break;
        (*buf)[n++] = (char)ch;
    }
    if (n > 0 && (*buf)[n - 1] == '\r')
        n--;
    (*buf)[n] = '\0';
    return *buf;
}

/* --verbose-prompt: the conversation so far plus the new message, as the model sees it. */
static void print_turn_prompt(const dsr1_model *model, const dsr1_chat *chat, const char *message)
{
    int32_t n = dsr1_chat_n_messages(chat);
    dsr1_chat_message *msgs = malloc(((size_t)n + 1) * sizeof *msgs);
    if (!msgs)
        return;
    for (int32_t i = 0; i < n; i++)
        if (dsr1_chat_message_at(chat, i, &msgs[i]) != DSR1_OK) {
            free(msgs);
            return;
        }
    msgs[n].role = "user";
    msgs[n].content = message;
    dsr1_cli_print_prompt(model, msgs, n + 1);
    free(msgs);
}

/* One reply to message; returns the exit code of the turn. */
static int answer(const char *cmd, const dsr1_cli_opts *o, int32_t budget, const dsr1_grammar *grammar,
                  dsr1_model *model, dsr1_context *ctx, dsr1_chat *chat, const char *message)
{
    if (o->verbose_prompt)
        print_turn_prompt(model, chat, message);
    dsr1_cli_display disp;
    dsr1_cli_display_init(&disp, 0, o->hide_thinking);
    dsr1_generate_params gp;
    dsr1_cli_generate_params(o, grammar, &gp);
    gp.think_budget = budget;
    if (o->ctx_policy == 0) /* a conversation goes on past a full context */
        gp.ctx_policy = DSR1_CTX_SHIFT;
    gp.on_event = dsr1_cli_display_event;
    gp.user_data = &disp;
    if (o->n_logprobs > 0)
        disp.model = model;
    dsr1_generation *gen = NULL;
    dsr1_stop_reason why = DSR1_STOP_NONE;
    dsr1_status st = dsr1_chat_begin(chat, message, &gp, &gen);
    if (st == DSR1_OK)
        st = dsr1_generation_run(gen, &why);
    int rc = dsr1_cli_generation_result(cmd, gen, ctx, st, why);
    dsr1_generation_free(gen);
    if (rc == DSR1_EXIT_CONTEXT_FULL)
        fprintf(stderr, gp.ctx_policy == DSR1_CTX_SHIFT ? "[the question does not fit in the context (raise -c)]\n"
                                                        : "[the context is full: /reset to continue]\n");
    return rc;
}

int dsr1_cli_chat(const dsr1_cli_command *cmd, dsr1_cli_opts *o)
{
    const char *name = cmd->name;
    if (o->prompt && o->prompt_file)
        dsr1_cli_usage_error(cmd, "-p and -f exclude each other");
    if (o->prompt && !strcmp(o->prompt, "-"))
        dsr1_cli_usage_error(cmd, "-p - would read the first message from stdin, which is the chat's input");
    if (o->n_predict == 0)
        dsr1_cli_usage_error(cmd, "-n 0 generates no reply: nothing to chat about");
    char *first = NULL;
    if (o->prompt_file && !(first = dsr1_cli_read_message(name, o->prompt_file)))
        return DSR1_EXIT_ERROR;
    dsr1_grammar *grammar;
    dsr1_model *model;
    dsr1_context *ctx;
    dsr1_sampler *smp;
    if (dsr1_cli_gen_open(name, o, &grammar, &model, &ctx, &smp)) {
        free(first);
        return DSR1_EXIT_ERROR;
    }
    dsr1_chat *chat = NULL;
    dsr1_status st = dsr1_chat_new(ctx, smp, o->system_prompt, &chat);
    int rc = DSR1_EXIT_OK;
    if (st != DSR1_OK) {
        rc = dsr1_cli_fail(name, st);
        goto done;
    }
    if (o->load_state_path && (st = dsr1_chat_state_load_file(chat, o->load_state_path)) != DSR1_OK) {
        rc = dsr1_cli_fail(name, st);
        goto done;
    }
    int interactive = isatty(STDIN_FILENO);
    if (interactive)
        fprintf(stderr, "dsr1 %s: type a message; /think N, /reset, /quit\n", name);
    dsr1_cli_install_interrupt();
    int32_t budget = o->think_budget;
    if (first || o->prompt) {
        rc = answer(name, o, budget, grammar, model, ctx, chat, first ? first : o->prompt);
        if (rc == DSR1_EXIT_INTERRUPTED)
            rc = DSR1_EXIT_OK; /* Ctrl-C stops the reply, not the chat */
    }
    char *line = NULL;
    size_t cap = 0;
    for (;;) {
        if (interactive) {
            fputs("> ", stdout);
            fflush(stdout);
        }
        dsr1_cli_interrupted(1);
        if (!read_line(&line, &cap))
            break;
        if (line[0] == '\0')
            continue;
        if (!strcmp(line, "/quit") || !strcmp(line, "/exit"))
            break;
        if (!strcmp(line, "/reset")) {
            dsr1_chat_reset(chat);
            fprintf(stderr, "[conversation reset]\n");
            continue;
        }
        if (!strncmp(line, "/think", 6) && (line[6] == ' ' || line[6] == '\0')) {
            char *end;
            long v = strtol(line + 6, &end, 10);
            if (end == line + 6 || *end || v < -1 || v > (1L << 30)) {
                fprintf(stderr, "usage: /think N   (N reasoning tokens, -1 = unlimited; now %d)\n", budget);
            } else {
                budget = (int32_t)v;
                fprintf(stderr, "[thinking budget: %d]\n", budget);
            }
            continue;
        }
        if (line[0] == '/' && line[1] != '/') {
            fprintf(stderr, "unknown command '%s' (/think N, /reset, /quit; start with // to send a '/')\n", line);
            continue;
        }
        int turn = answer(name, o, budget, grammar, model, ctx, chat, line[0] == '/' ? line + 1 : line);
        if (turn == DSR1_EXIT_ERROR || (turn == DSR1_EXIT_CONTEXT_FULL && rc == DSR1_EXIT_OK))
            rc = turn;
    }
    free(line);
    if (o->save_state_path && rc != DSR1_EXIT_ERROR && (st = dsr1_chat_state_save_file(chat, o->save_state_path)))
        rc = dsr1_cli_fail(name, st);
done:
    free(first);
    dsr1_chat_free(chat);
    dsr1_grammar_free(grammar);
    dsr1_sampler_free(smp);
    dsr1_context_free(ctx);
    dsr1_model_free(model);
    return rc;
}
