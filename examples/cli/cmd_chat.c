/*
 * dsr1 chat: interactive multi-turn conversation on stdin.
 *
 * Each line is a user message; the reply streams as in `dsr1 run`. Commands:
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

static void usage(FILE *f)
{
    fprintf(f,
            "usage: dsr1 chat -m MODEL [options]\n"
            "  -sys, --system-prompt TEXT   system prompt\n"
            "  -n, --n-predict N            most tokens per reply (default: until the end of the turn)\n"
            "  and the sampling, thinking and context options of `dsr1 run`\n"
            "  (--temp --top-p --top-k --min-p --seed --think-budget --hide-thinking -c -t --backend\n"
            "  --kv-type -v --grammar --json-schema --logprobs)\n"
            "Type a message and press enter. Commands: /think N, /reset, /quit (or end of input).\n");
}

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

int dsr1_cli_chat(int argc, char **argv)
{
    dsr1_cli_gen_opts o;
    dsr1_cli_gen_opts_init(&o);
    const char *system_prompt = NULL;
    long n_predict = 0;
    for (int i = 1; i < argc; i++) {
        if (dsr1_cli_gen_option("chat", &o, argc, argv, &i))
            continue;
        if (!strcmp(argv[i], "-sys") || !strcmp(argv[i], "--system-prompt")) {
            system_prompt = i + 1 < argc ? argv[++i] : NULL;
        } else if (!strcmp(argv[i], "-n") || !strcmp(argv[i], "--n-predict")) {
            n_predict = dsr1_cli_parse_long("chat", argv[i], i + 1 < argc ? argv[i + 1] : NULL, -1, 1L << 30);
            i++;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "dsr1 chat: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 1;
        }
    }
    if (!o.model_path) {
        fprintf(stderr, "dsr1 chat: -m MODEL is required\n");
        usage(stderr);
        return 1;
    }
    dsr1_model *model;
    dsr1_context *ctx;
    dsr1_sampler *smp;
    if (dsr1_cli_gen_open("chat", &o, &model, &ctx, &smp))
        return 1;
    dsr1_chat *chat = NULL;
    dsr1_status st = dsr1_chat_new(ctx, smp, system_prompt, &chat);
    if (st != DSR1_OK) {
        dsr1_cli_fail("chat", st);
        dsr1_grammar_free(o.grammar);
        dsr1_sampler_free(smp);
        dsr1_context_free(ctx);
        dsr1_model_free(model);
        return 1;
    }
    int interactive = isatty(STDIN_FILENO);
    if (interactive)
        fprintf(stderr, "dsr1 chat: type a message; /think N, /reset, /quit\n");
    dsr1_cli_install_interrupt();
    int32_t budget = o.think_budget;
    int rc = 0;
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
        const char *message = line[0] == '/' ? line + 1 : line;

        dsr1_cli_display disp;
        dsr1_cli_display_init(&disp, 0, o.hide_thinking);
        dsr1_generate_params gp;
        dsr1_generate_params_default(&gp, sizeof gp);
        gp.max_new_tokens = n_predict > 0 ? (int32_t)n_predict : 0;
        gp.think_budget = budget;
        gp.hide_reasoning = o.hide_thinking;
        gp.on_event = dsr1_cli_display_event;
        gp.user_data = &disp;
        gp.grammar = o.grammar;
        gp.n_logprobs = o.n_logprobs;
        if (o.n_logprobs > 0)
            disp.model = model;
        dsr1_generation *gen = NULL;
        dsr1_stop_reason why = DSR1_STOP_NONE;
        st = dsr1_chat_begin(chat, message, &gp, &gen);
        if (st == DSR1_OK)
            st = dsr1_generation_run(gen, &why);
        if (st != DSR1_OK) {
            fflush(stdout);
            dsr1_cli_fail("chat", st);
            rc = 1;
        }
        if (gen) {
            dsr1_cli_print_stats(gen, why);
            dsr1_generation_free(gen);
        }
        if (why == DSR1_STOP_CONTEXT_FULL)
            fprintf(stderr, "[the context is full: /reset to continue]\n");
    }
    free(line);
    dsr1_chat_free(chat);
    dsr1_grammar_free(o.grammar);
    dsr1_sampler_free(smp);
    dsr1_context_free(ctx);
    dsr1_model_free(model);
    return rc;
}
