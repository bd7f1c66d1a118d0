/*
 * reasoning_stream.c: both streams through callbacks, a thinking budget, and
 * cancellation from another thread.
 *
 *   reasoning_stream MODEL.gguf QUESTION [THINK_BUDGET] [CANCEL_AFTER_MS]
 *
 * The reasoning goes to stderr prefixed with "think| ", the answer to stdout.
 * With CANCEL_AFTER_MS a watchdog thread calls dsr1_generation_cancel() after
 * that many milliseconds, the way a host's "stop" button would.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dsr1.h"

typedef struct stream_state {
    int at_line_start; /* for the "think| " prefix */
    int n_reasoning_tokens;
    int n_answer_tokens;
} stream_state;

static int on_event(const dsr1_event *ev, void *user_data)
{
    stream_state *s = user_data;
    switch (ev->type) {
    case DSR1_EVENT_REASONING_BEGIN:
        fputs("think| ", stderr);
        s->at_line_start = 0;
        break;
    case DSR1_EVENT_REASONING_TEXT:
        for (size_t i = 0; i < ev->text_len; i++) {
            if (s->at_line_start)
                fputs("think| ", stderr);
            fputc(ev->text[i], stderr);
            s->at_line_start = ev->text[i] == '\n';
        }
        s->n_reasoning_tokens += ev->n_tokens;
        break;
    case DSR1_EVENT_REASONING_END:
        fputs("\n(end of reasoning)\n", stderr);
        break;
    case DSR1_EVENT_ANSWER_TEXT:
        fwrite(ev->text, 1, ev->text_len, stdout);
        fflush(stdout);
        s->n_answer_tokens += ev->n_tokens;
        break;
    case DSR1_EVENT_DONE:
        break;
    }
    return 0;
}

typedef struct watchdog {
    dsr1_generation *gen;
    long ms;
} watchdog;

static void *watchdog_main(void *arg)
{
    watchdog *w = arg;
    struct timespec ts = {w->ms / 1000, (w->ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    dsr1_generation_cancel(w->gen); /* safe from any thread */
    return NULL;
}

static const char *reason_name(dsr1_stop_reason r)
{
    static const char *const names[] = {"none", "end of sequence", "length", "stop string",
                                        "cancelled", "thinking budget", "context full"};
    return (unsigned)r < sizeof names / sizeof names[0] ? names[r] : "?";
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 5) {
        fprintf(stderr, "usage: %s MODEL.gguf QUESTION [THINK_BUDGET] [CANCEL_AFTER_MS]\n", argv[0]);
        return 1;
    }
    int budget = argc > 3 ? atoi(argv[3]) : -1;
    long cancel_ms = argc > 4 ? atol(argv[4]) : 0;

    dsr1_model *model = NULL;
    dsr1_context *ctx = NULL;
    dsr1_sampler *smp = NULL;
    dsr1_generation *gen = NULL;
    dsr1_token prompt[4096];
    int32_t n_prompt = 0;
    int rc = 1;

    if (dsr1_model_load(argv[1], NULL, &model) != DSR1_OK || dsr1_context_new(model, NULL, &ctx) != DSR1_OK)
        goto out;
    dsr1_sampler_params sp;
    dsr1_sampler_params_default(&sp, sizeof sp); /* R1's defaults: temperature 0.6, top-p 0.95 */
    sp.seed = 42;
    if (dsr1_sampler_new(dsr1_model_n_vocab(model), &sp, &smp) != DSR1_OK)
        goto out;

    /* The chat format, built by the library; the user's text cannot inject markers. */
    dsr1_chat_message msg = {"user", argv[2]};
    if (dsr1_chat_tokenize(model, &msg, 1, DSR1_CHAT_ADD_GENERATION_PROMPT, prompt, 4096, &n_prompt) != DSR1_OK)
        goto out;

    stream_state state = {1, 0, 0};
    dsr1_generate_params gp;
    dsr1_generate_params_default(&gp, sizeof gp);
    gp.max_new_tokens = 2048;
    gp.think_budget = budget; /* -1: unlimited; else "\n</think>\n\n" is injected after N tokens */
    gp.on_event = on_event;
    gp.user_data = &state;
    if (dsr1_generation_new(ctx, smp, prompt, n_prompt, &gp, &gen) != DSR1_OK)
        goto out;

    pthread_t th;
    watchdog w = {gen, cancel_ms};
    if (cancel_ms > 0)
        pthread_create(&th, NULL, watchdog_main, &w);
    dsr1_stop_reason reason = DSR1_STOP_NONE;
    dsr1_status st = dsr1_generation_run(gen, &reason);
    if (cancel_ms > 0)
        pthread_join(th, NULL);
    if (st != DSR1_OK)
        goto out;
    printf("\n");
    fprintf(stderr, "[%d reasoning tokens, %d answer tokens, stopped by %s]\n", state.n_reasoning_tokens,
            state.n_answer_tokens, reason_name(reason));
    rc = 0;
out:
    if (rc)
        fprintf(stderr, "error: %s\n", dsr1_last_error());
    dsr1_generation_free(gen);
    dsr1_sampler_free(smp);
    dsr1_context_free(ctx);
    dsr1_model_free(model);
    return rc;
}
