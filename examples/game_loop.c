/*
 * game_loop.c: an NPC that thinks and answers while the game keeps running.
 *
 *   game_loop MODEL.gguf QUESTION [TOKENS_PER_FRAME]
 *
 * The "game" renders a frame every iteration of a fixed loop. Each frame it
 * spends at most TOKENS_PER_FRAME tokens of the NPC's generation through the
 * step API (one token per dsr1_generation_step call), so the frame rate
 * never waits for the whole answer. The NPC's reasoning shows as a
 * "thinking..." indicator; its answer appears in the speech bubble as it is
 * generated.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsr1.h"

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

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: %s MODEL.gguf QUESTION [TOKENS_PER_FRAME]\n", argv[0]);
        return 1;
    }
    int per_frame = argc > 3 ? atoi(argv[3]) : 4;
    if (per_frame < 1)
        per_frame = 1;

    dsr1_model *model = NULL;
    dsr1_context *ctx = NULL;
    dsr1_sampler *smp = NULL;
    dsr1_chat *chat = NULL;
    dsr1_generation *gen = NULL;
    int rc = 1;

    if (dsr1_model_load(argv[1], NULL, &model) != DSR1_OK || dsr1_context_new(model, NULL, &ctx) != DSR1_OK)
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
    gp.on_event = npc_event;
    gp.user_data = &n;
    if (dsr1_chat_begin(chat, argv[2], &gp, &gen) != DSR1_OK)
        goto out;

    dsr1_stop_reason reason = DSR1_STOP_NONE;
    int frame = 0;
    for (; reason == DSR1_STOP_NONE; frame++) {
        /* game update would go here */
        for (int k = 0; k < per_frame && reason == DSR1_STOP_NONE; k++)
            if (dsr1_generation_step(gen, NULL, &reason) != DSR1_OK)
                goto out;
        render_frame(frame, &n, reason != DSR1_STOP_NONE);
    }
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
