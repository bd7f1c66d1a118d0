/*
 * The shipped tiny reasoning model (examples/tiny/dsr1-tiny.gguf), run
 * through the public API exactly as an application would: every held-out
 * question is formatted with the R1 chat format, answered greedily, and the
 * answer stream is compared with the expected answer. The reasoning must
 * arrive as reasoning (non-empty, no markers in either stream).
 *   test_tiny DATA_DIR MODEL HELDOUT_TSV
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsr1.h"

#define MIN_ACCURACY 0.95

typedef struct streams {
    char reasoning[8192];
    size_t n_reasoning;
    char answer[1024];
    size_t n_answer;
    int begin, end;
} streams;

static void append(char *dst, size_t cap, size_t *n, const char *s, size_t len)
{
    size_t k = len < cap - 1 - *n ? len : cap - 1 - *n;
    memcpy(dst + *n, s, k);
    *n += k;
    dst[*n] = '\0';
}

static int on_event(const dsr1_event *ev, void *user_data)
{
    streams *s = user_data;
    if (ev->type == DSR1_EVENT_REASONING_BEGIN)
        s->begin++;
    else if (ev->type == DSR1_EVENT_REASONING_END)
        s->end++;
    else if (ev->type == DSR1_EVENT_REASONING_TEXT)
        append(s->reasoning, sizeof s->reasoning, &s->n_reasoning, ev->text, ev->text_len);
    else if (ev->type == DSR1_EVENT_ANSWER_TEXT)
        append(s->answer, sizeof s->answer, &s->n_answer, ev->text, ev->text_len);
    return 0;
}

/* The answer without surrounding whitespace. */
static char *trim(char *s)
{
    while (*s == ' ' || *s == '\n')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s DATA_DIR MODEL HELDOUT_TSV\n", argv[0]);
        return 1;
    }
    dsr1_model *model;
    if (dsr1_model_load(argv[2], NULL, &model) != DSR1_OK) {
        printf("FAIL load: %s\n", dsr1_last_error());
        return 1;
    }
    dsr1_context *ctx;
    dsr1_context_params cp;
    dsr1_context_params_default(&cp, sizeof cp);
    dsr1_sampler *smp;
    dsr1_sampler_params sp;
    dsr1_sampler_params_default(&sp, sizeof sp);
    sp.temperature = 0;
    if (dsr1_context_new(model, &cp, &ctx) != DSR1_OK ||
        dsr1_sampler_new(dsr1_model_n_vocab(model), &sp, &smp) != DSR1_OK) {
        printf("FAIL setup: %s\n", dsr1_last_error());
        return 1;
    }
    FILE *f = fopen(argv[3], "r");
    if (!f) {
        printf("FAIL cannot open %s\n", argv[3]);
        return 1;
    }
    char line[1024];
    int total = 0, correct = 0, badly_split = 0, shown = 0;
    long tokens = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        char *tab = strchr(line, '\t');
        if (!tab)
            continue;
        *tab = '\0';
        const char *question = line, *expected = tab + 1;
        dsr1_chat_message msg = {"user", question};
        dsr1_token prompt[512];
        int32_t n_prompt;
        if (dsr1_chat_tokenize(model, &msg, 1, DSR1_CHAT_ADD_GENERATION_PROMPT, prompt, 512, &n_prompt) != DSR1_OK) {
            printf("FAIL tokenize '%s': %s\n", question, dsr1_last_error());
            return 1;
        }
        streams s;
        memset(&s, 0, sizeof s);
        dsr1_generate_params gp;
        dsr1_generate_params_default(&gp, sizeof gp);
        gp.max_new_tokens = 400;
        gp.on_event = on_event;
        gp.user_data = &s;
        dsr1_generation *gen;
        dsr1_stop_reason reason;
        if (dsr1_generation_new(ctx, smp, prompt, n_prompt, &gp, &gen) != DSR1_OK ||
            dsr1_generation_run(gen, &reason) != DSR1_OK) {
            printf("FAIL generate '%s': %s\n", question, dsr1_last_error());
            return 1;
        }
        dsr1_generation_stats st;
        st.size = sizeof st;
        dsr1_generation_get_stats(gen, &st);
        tokens += st.n_generated;
        dsr1_generation_free(gen);
        total++;
        int split_ok = s.begin == 1 && s.end == 1 && s.n_reasoning > 0 && !strstr(s.answer, "think>") &&
                       !strstr(s.reasoning, "think>");
        badly_split += !split_ok;
        char *answer = trim(s.answer);
        if (strcmp(answer, expected) == 0 && split_ok) {
            correct++;
        } else if (shown++ < 10) {
            printf("miss: %s -> '%s' (expected '%s')%s\n", question, answer, expected,
                   split_ok ? "" : " [reasoning/answer split wrong]");
        }
    }
    fclose(f);
    double acc = total ? (double)correct / total : 0;
    printf("%d/%d correct (%.1f%%), %d badly split, %ld tokens generated\n", correct, total, 100 * acc,
           badly_split, tokens);
    dsr1_sampler_free(smp);
    dsr1_context_free(ctx);
    dsr1_model_free(model);
    return total >= 500 && acc >= MIN_ACCURACY && badly_split == 0 ? 0 : 1;
}
