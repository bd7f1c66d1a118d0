/*
 * game_loop.c: an NPC that thinks and answers while the game keeps running.
 *
 *   game_loop MODEL.gguf QUESTION [TOKENS_PER_FRAME [FRAME_MS [PROMPT_PER_STEP]]]
 *
 * The "game" renders a frame every iteration of a fixed loop. Each frame it
 * spends at most TOKENS_PER_FRAME tokens (4) and FRAME_MS milliseconds (16)
 * of the NPC's generation through the step API, so the frame rate never
 * waits for the whole answer:
 * - dsr1_generate_params.max_prompt_per_step (PROMPT_PER_STEP, 64) splits
 *   the prompt's evaluation over several steps, so no step is longer than
 *   evaluating that many tokens, however long the question;
 * - the context's abort callback stops an evaluation at the frame's
 *   deadline (the step returns DSR1_ERR_CANCELLED and the generation goes on
 *   next frame from what was evaluated completely). The first step of each
 *   frame always runs to its end, so the NPC makes progress even when a
 *   frame's budget is smaller than one step.
 * The NPC's reasoning shows as a "thinking..." indicator; its answer appears
 * in the speech bubble as it is generated.
 */
#if !defined(_POSIX_C_SOURCE) && !defined(_GNU_SOURCE)
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dsr1.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* The frame's deadline, as the context's abort callback sees it. */
typedef struct frame_clock {
    double deadline_ms;
    int armed;     /* 0 during the frame's first step: it always finishes */
    int n_stopped; /* evaluations the deadline stopped */
} frame_clock;

static int past_deadline(void *user_data)
{
    frame_clock *c = user_data;
    if (c->armed && now_ms() > c->deadline_ms) {
        c->n_stopped++;
        return 1;
    }
    return 0;
}

typedef struct npc {
    char bubble[4096]; /* the answer so far */
    size_t bubble_len;
    int thinking;
    int reasoning_tokens;
} npc;

static int npc_event(const dsr1_event *ev, void *user_data)
{
    npc *n = user_data;
    if (ev->type == DSR1_EVENT_REASONING_BEGIN)
        n->thinking = 1;
    else if (ev->type == DSR1_EVENT_REASONING_TEXT)
        n->reasoning_tokens += ev->n_tokens;
    else if (ev->type == DSR1_EVENT_REASONING_END)
        n->thinking = 0;
    else if (ev->type == DSR1_EVENT_ANSWER_TEXT) {
        /* the answer stream starts with the blank line R1 writes after
         * </think>; a speech bubble does not want it */
        const char *text = ev->text;
        size_t len = ev->text_len;
        while (n->bubble_len == 0 && len > 0 && (*text == '\n' || *text == ' ')) {
            text++;
            len--;
        }
        size_t room = sizeof n->bubble - 1 - n->bubble_len;
        size_t k = len < room ? len : room;
        memcpy(n->bubble + n->bubble_len, text, k);
        n->bubble_len += k;
        n->bubble[n->bubble_len] = '\0';
    }
    return 0;
}

static void render_frame(int frame, const npc *n, int done)
{
    /* A real game draws here; we print one status line per 10 frames. */
    if (frame % 10 == 0 || done)
        printf("frame %4d | NPC %s | reasoning tokens %4d | says: \"%s\"\n", frame,
               done ? "done       " : n->thinking ? "thinking..." : "talking    ", n->reasoning_tokens,
               n->bubble);
}

static int positive_arg(int argc, char **argv, int i, int fallback)
{
    return argc > i && atoi(argv[i]) >= 0 ? atoi(argv[i]) : fallback;
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 6) {
        fprintf(stderr, "usage: %s MODEL.gguf QUESTION [TOKENS_PER_FRAME [FRAME_MS [PROMPT_PER_STEP]]]\n", argv[0]);
        return 1;
    }
    int per_frame = positive_arg(argc, argv, 3, 4);
    double frame_ms = positive_arg(argc, argv, 4, 16);
    int prompt_per_step = positive_arg(argc, argv, 5, 64);
    if (per_frame < 1)
        per_frame = 1;
    if (prompt_per_step < 1)
        prompt_per_step = 1;

    dsr1_model *model = NULL;
    dsr1_context *ctx = NULL;
    dsr1_sampler *smp = NULL;
    dsr1_chat *chat = NULL;
    dsr1_generation *gen = NULL;
    int rc = 1;

    frame_clock clock = {0, 0, 0};
    dsr1_context_params cp;
    dsr1_context_params_default(&cp, sizeof cp);
    cp.abort_callback = past_deadline;
    cp.abort_user_data = &clock;
    if (dsr1_model_load(argv[1], NULL, &model) != DSR1_OK || dsr1_context_new(model, &cp, &ctx) != DSR1_OK)
        goto out;
    dsr1_sampler_params sp;
    dsr1_sampler_params_default(&sp, sizeof sp);
    sp.temperature = 0;
    if (dsr1_sampler_new(dsr1_model_n_vocab(model), &sp, &smp) != DSR1_OK ||
        dsr1_chat_new(ctx, smp, NULL, &chat) != DSR1_OK)
        goto out;

    npc n;
    memset(&n, 0, sizeof n);
    dsr1_generate_params gp;
    dsr1_generate_params_default(&gp, sizeof gp);
    gp.max_new_tokens = 1024;
    gp.max_prompt_per_step = prompt_per_step;
    gp.on_event = npc_event;
    gp.user_data = &n;
    if (dsr1_chat_begin(chat, argv[2], &gp, &gen) != DSR1_OK)
        goto out;

    dsr1_stop_reason reason = DSR1_STOP_NONE;
    int frame = 0, steps_to_first_token = 0, most_in_step = 0, prompt_tokens = 0;
    double longest_step_ms = 0;
    for (; reason == DSR1_STOP_NONE; frame++) {
        /* game update would go here */
        double start = now_ms();
        clock.deadline_ms = start + frame_ms;
        clock.armed = 0;
        /* no check of the clock here: a step begun past the deadline stops at its first layer */
        for (int k = 0; k < per_frame && reason == DSR1_STOP_NONE;) {
            int32_t before = dsr1_context_n_past(ctx);
            double t0 = now_ms();
            dsr1_token token = -1;
            dsr1_status st = dsr1_generation_step(gen, &token, &reason);
            double step_ms = now_ms() - t0;
            clock.armed = 1;
            if (step_ms > longest_step_ms)
                longest_step_ms = step_ms;
            if (st == DSR1_ERR_CANCELLED && reason == DSR1_STOP_NONE)
                break; /* the deadline stopped it: the rest next frame */
            if (st != DSR1_OK)
                goto out;
            int evaluated = dsr1_context_n_past(ctx) - before;
            if (evaluated > most_in_step)
                most_in_step = evaluated;
            if (prompt_tokens == 0)
                steps_to_first_token++;
            if (token >= 0) {
                if (prompt_tokens == 0)
                    prompt_tokens = dsr1_context_n_past(ctx);
                k++;
            }
        }
        render_frame(frame, &n, reason != DSR1_STOP_NONE);
    }
    printf("prompt: %d tokens, first token after %d steps; at most %d tokens evaluated in one step (cap %d)\n",
           prompt_tokens, steps_to_first_token, most_in_step, prompt_per_step);
    printf("frame budget %.0f ms: %d evaluations stopped at the deadline, longest step %.2f ms\n", frame_ms,
           clock.n_stopped, longest_step_ms);
    printf("%d frames, at most %d tokens each; answer: %s\n", frame, per_frame, n.bubble);
    rc = 0;
out:
    if (rc)
        fprintf(stderr, "error: %s\n", dsr1_last_error());
    dsr1_generation_free(gen);
    dsr1_chat_free(chat);
    dsr1_sampler_free(smp);
    dsr1_context_free(ctx);
    dsr1_model_free(model);
    return rc;
}
