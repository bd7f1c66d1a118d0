/* minimal.c: load a model, ask one question, print the answer (thoughts hidden).
 *   minimal MODEL.gguf "What is 345 + 78?" */
#include <stdio.h>

#include "dsr1.h"

static int print_answer(const dsr1_event *ev, void *user_data)
{
    int *started = user_data; /* skip the blank line R1 writes after </think> */
    for (size_t i = 0; ev->type == DSR1_EVENT_ANSWER_TEXT && i < ev->text_len; i++)
        if ((*started |= ev->text[i] != '\n'))
            putchar(ev->text[i]);
    return 0; /* non-zero would cancel */
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL.gguf QUESTION\n", argv[0]);
        return 1;
    }
    dsr1_model *model = NULL;
    dsr1_context *ctx = NULL;
    dsr1_sampler *smp = NULL;
    dsr1_chat *chat = NULL;
    int rc = 1;

    if (dsr1_model_load(argv[1], NULL, &model) != DSR1_OK ||
        dsr1_context_new(model, NULL, &ctx) != DSR1_OK)
        goto out;

    dsr1_sampler_params sp;
    dsr1_sampler_params_default(&sp, sizeof sp);
    sp.temperature = 0; /* greedy: the same answer every run */
    if (dsr1_sampler_new(dsr1_model_n_vocab(model), &sp, &smp) != DSR1_OK ||
        dsr1_chat_new(ctx, smp, NULL, &chat) != DSR1_OK)
        goto out;

    dsr1_generate_params gp;
    dsr1_generate_params_default(&gp, sizeof gp);
    gp.hide_reasoning = 1;
    gp.max_new_tokens = 1024;
    int started = 0;
    gp.on_event = print_answer;
    gp.user_data = &started;
    if (dsr1_chat_ask(chat, argv[2], &gp, NULL) != DSR1_OK)
        goto out;
    putchar('\n');
    rc = 0;
out:
    if (rc)
        fprintf(stderr, "error: %s\n", dsr1_last_error());
    dsr1_chat_free(chat);
    dsr1_sampler_free(smp);
    dsr1_context_free(ctx);
    dsr1_model_free(model);
    return rc;
}
