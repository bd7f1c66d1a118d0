/*
 * reasoning_stream.c: both streams through callbacks, a thinking budget, and
 * cancellation from another thread.
 *
 *   reasoning_stream MODEL.gguf QUESTION [THINK_BUDGET] [STOP_AFTER_N]
 *
 * The reasoning goes to stderr prefixed with "think| ", the answer to stdout.
 * With STOP_AFTER_N a second thread plays the host's UI: once the model has
 * reasoned for N tokens it "presses stop", i.e. calls dsr1_generation_cancel(),
 * which is safe from any thread and takes effect before the next token.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsr1.h"

/* The UI thread in miniature: it waits until the generation reports enough
 * reasoning, then presses stop. */
typedef struct stop_button {
    dsr1_generation *gen;
    int press_after; /* reasoning tokens; 0: never */
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int reached; /* the generation saw press_after tokens (or ended) */
    int pressed; /* the UI thread called dsr1_generation_cancel */
} stop_button;

static void *ui_thread_main(void *arg)
{
    stop_button *b = arg;
    pthread_mutex_lock(&b->lock);
    while (!b->reached)
        pthread_cond_wait(&b->changed, &b->lock);
    pthread_mutex_unlock(&b->lock);
    dsr1_generation_cancel(b->gen); /* safe from any thread */
    pthread_mutex_lock(&b->lock);
    b->pressed = 1;
    pthread_cond_signal(&b->changed);
    pthread_mutex_unlock(&b->lock);
    return NULL;
}

/* Called from the event callback. It waits for the UI thread's reply only so
 * that this demo stops at the same token on every run; a real host never
 * blocks its generation thread on the UI. */
static void tell_ui_thread(stop_button *b)
{
    pthread_mutex_lock(&b->lock);
    b->reached = 1;
    pthread_cond_signal(&b->changed);
    while (!b->pressed)
        pthread_cond_wait(&b->changed, &b->lock);
    pthread_mutex_unlock(&b->lock);
}

typedef struct stream_state {
    int at_line_start; /* for the "think| " prefix */
    int in_reasoning;
    int n_reasoning_tokens;
    int n_answer_tokens;
    stop_button *button; /* NULL: no stop button */
} stream_state;

static int on_event(const dsr1_event *ev, void *user_data)
{
    stream_state *s = user_data;
    switch (ev->type) {
    case DSR1_EVENT_REASONING_BEGIN:
        fputs("think| ", stderr);
        s->at_line_start = 0;
        s->in_reasoning = 1;
        break;
    case DSR1_EVENT_REASONING_TEXT:
        for (size_t i = 0; i < ev->text_len; i++) {
            if (s->at_line_start)
                fputs("think| ", stderr);
            fputc(ev->text[i], stderr);
            s->at_line_start = ev->text[i] == '\n';
        }
        s->n_reasoning_tokens += ev->n_tokens;
        if (s->button && s->n_reasoning_tokens >= s->button->press_after && !s->button->reached)
            tell_ui_thread(s->button);
        break;
    case DSR1_EVENT_REASONING_END:
        fputs("\n(end of reasoning)\n", stderr);
        s->in_reasoning = 0;
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

static const char *reason_name(dsr1_stop_reason r)
{
    static const char *const names[] = {"none", "end of sequence", "length", "stop string",
                                        "cancelled", "thinking budget", "context full"};
    return (unsigned)r < sizeof names / sizeof names[0] ? names[r] : "?";
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 5) {
        fprintf(stderr, "usage: %s MODEL.gguf QUESTION [THINK_BUDGET] [STOP_AFTER_N]\n", argv[0]);
        return 1;
    }
    int budget = argc > 3 ? atoi(argv[3]) : -1;
    int stop_after = argc > 4 ? atoi(argv[4]) : 0;

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

    stop_button button = {NULL, stop_after, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    stream_state state = {1, 0, 0, 0, stop_after > 0 ? &button : NULL};
    dsr1_generate_params gp;
    dsr1_generate_params_default(&gp, sizeof gp);
    gp.max_new_tokens = 2048;
    gp.think_budget = budget; /* -1: unlimited; else "\n</think>\n\n" is injected after N tokens */
    gp.on_event = on_event;
    gp.user_data = &state;
    if (dsr1_generation_new(ctx, smp, prompt, n_prompt, &gp, &gen) != DSR1_OK)
        goto out;

    pthread_t ui_thread;
    button.gen = gen;
    if (state.button && pthread_create(&ui_thread, NULL, ui_thread_main, &button) != 0)
        state.button = NULL;
    dsr1_stop_reason reason = DSR1_STOP_NONE;
    dsr1_status st = dsr1_generation_run(gen, &reason);
    if (state.button) { /* the answer may have come before N reasoning tokens */
        pthread_mutex_lock(&button.lock);
        button.reached = 1;
        pthread_cond_signal(&button.changed);
        pthread_mutex_unlock(&button.lock);
        pthread_join(ui_thread, NULL);
    }
    if (st != DSR1_OK)
        goto out;
    printf("\n");
    if (state.in_reasoning) /* stopped while reasoning */
        fputs("\n", stderr);
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
