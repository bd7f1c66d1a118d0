/*
 * The generation loop: prompt evaluation with KV prefix reuse, one sampled
 * token per step, the thinking budget, stop conditions and timing. Text
 * handling (markers, stop strings, UTF-8) is the splitter's (think_split.c).
 *
 * A sampled token is evaluated at the start of the next step, so the last
 * token (EOS, or the one that hit a limit) is never evaluated needlessly.
 *
 * Speculative decoding with the MTP head (speculative_mtp, deepseek2 files
 * that have one; see model/deepseek2.h): after sampling t the head drafts
 * the token after it, and the next step evaluates [t, draft] as one batch.
 * Its first row gives the next token exactly as plain decoding would; when
 * that token is the draft, the second row's logits (the draft is in the
 * cache) serve the step after, which then evaluates nothing. Otherwise the
 * draft is dropped from the cache. A step still returns one token.
 */
#if !defined(_POSIX_C_SOURCE) && !defined(_GNU_SOURCE)
#define _POSIX_C_SOURCE 200809L /* clock_gettime, isatty */
#endif
#include <math.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/handle.h"
#include "core/params.h"
#include "generate/generation.h"
#include "generate/think_split.h"
#include "grammar/grammar.h"
#include "model/context.h"
#include "sample/sampler.h"

#define DETECT_TAIL_TOKENS 8
#define MAX_LOGPROBS 100

/* Where the grammar stands. */
enum {
    G_NONE = 0,  /* no grammar */
    G_WAIT = 1,  /* inside the reasoning: free until </think> */
    G_FIRST = 2, /* the prompt opened no reasoning: the grammar applies, but the first token may open one */
    G_ON = 3     /* the answer follows the grammar */
};

/* Log-probabilities of the tokens pushed to the splitter and not yet
 * delivered in an event, in push order (the order events cover them). */
typedef struct lp_fifo {
    dsr1_token *tok;
    float *lp;
    dsr1_token_logprob *top; /* n_top per token */
    int32_t head, n, cap;
} lp_fifo;

struct dsr1_generation {
    dsri_handle handle; /* busy flag and last message (core/handle.h) */
    dsr1_context *ctx;
    dsr1_sampler *smp;
    const dsr1_model *model;
    dsr1_token *prompt;
    int32_t n_prompt;
    int32_t max_new_tokens;
    int32_t think_budget;
    int32_t budget_action;
    int prompt_opened;

    dsri_split *split;
    atomic_int cancel;
    int prompt_done;       /* the whole prompt is in the cache */
    int32_t max_prompt_per_step;
    int finished;
    int budget_used;
    dsr1_stop_reason reason;

    dsr1_token pending; /* sampled, not yet evaluated */
    int has_pending;
    int mtp;            /* speculative decoding with the MTP head */
    dsr1_token draft;   /* the MTP head's guess for the token after pending; -1: none */
    int ready;          /* a draft was accepted: row 1 of the last eval holds the logits
                           for the next token, and the draft is the last cached token */
    int32_t ready_past; /* n_past then */
    float min_p;        /* speculative_min_p */
    int32_t n_drafted, n_accepted, n_declined;
    dsri_draft_fn draft_override; /* tests only */
    void *draft_user;
    dsr1_token think_begin, think_end;
    dsr1_token *inject; /* "\n</think>\n\n" */
    int32_t n_inject;
    dsr1_token *batch;  /* pending + inject */

    char *piece;
    size_t piece_cap;

    int32_t n_generated;
    int32_t n_prompt_eval;
    double prompt_seconds;
    double generate_seconds;

    void *owner;
    dsri_gen_owner_fn owner_fn;
    int owner_told;

    /* grammar */
    const dsr1_grammar *grammar;
    int gmode;            /* G_* */
    dsri_gmatch *gm;
    uint64_t *allow;      /* n_vocab bits */
    dsr1_token *eog;      /* end-of-generation tokens */
    int32_t n_eog;

    /* log-probabilities and the step hook */
    int32_t n_top;        /* n_logprobs */
    lp_fifo lp;
    float cur_lp;         /* the last sampled token's */
    dsr1_token_logprob *cur_top;
    dsr1_event_fn user_on_event;
    void *user_data;
    dsr1_step_fn on_step;
    void *step_user;
    float *step_logits;   /* n_vocab */

    /* context shift (ctx_policy DSR1_CTX_SHIFT; make_room) */
    int ctx_policy;
    int32_t n_keep;       /* never dropped (the params' n_keep resolved) */
    int n_keep_auto;      /* the params' n_keep was -1: a chat sets its system prompt's end */
    int32_t protect;      /* the end of the question a chat keeps in view (n_keep: none) */
    int32_t *turns;       /* a chat's turns at or after n_keep: the positions where they start, the
                             last being the current question's */
    int32_t n_turns;
    int32_t turns_dropped;
    int32_t n_shifts, n_shift_dropped;
};

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void dsr1_generate_params_default(dsr1_generate_params *params, size_t struct_size)
{
    dsr1_generate_params d;
    memset(&d, 0, sizeof d);
    d.size = sizeof d;
    d.max_new_tokens = 0;
    d.think_budget = -1;
    d.think_budget_action = DSR1_BUDGET_CLOSE;
    d.starts_in_reasoning = -1;
    d.speculative_min_p = 0.5f;
    d.n_keep = -1;
    dsri_params_default(params, struct_size, &d, sizeof d);
}

/* The bytes of one token (flags: DSR1_PIECE_*) into gen->piece. */
static dsr1_status token_piece(dsr1_generation *gen, dsr1_token t, uint32_t flags, size_t *len)
{
    *len = 0; /* set on every path (gcc -O3 -Wmaybe-uninitialized cannot see the callers check st) */
    for (;;) {
        size_t need = 0;
        dsr1_status st = dsr1_token_to_piece(gen->model, t, gen->piece, gen->piece_cap, &need, flags);
        if (st == DSR1_OK) {
            *len = need;
            return DSR1_OK;
        }
        if (st != DSR1_ERR_BUFFER_TOO_SMALL)
            return st;
        char *p = dsri_realloc(gen->piece, need + 16);
        if (!p)
            return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "generation: out of memory");
        gen->piece = p;
        gen->piece_cap = need + 16;
    }
}

/* Does the prompt end with "<think>" (and optional whitespace)? */
static dsr1_status detect_opened(dsr1_generation *gen, int *opened)
{
    char tail[256];
    size_t n = 0;
    int32_t first = gen->n_prompt > DETECT_TAIL_TOKENS ? gen->n_prompt - DETECT_TAIL_TOKENS : 0;
    for (int32_t i = first; i < gen->n_prompt; i++) {
        size_t len;
        dsr1_status st = token_piece(gen, gen->prompt[i], DSR1_PIECE_RENDER_CONTROL, &len);
        if (st)
            return st;
        if (len > sizeof tail) { /* only the end matters */
            memcpy(tail, gen->piece + len - sizeof tail, sizeof tail);
            n = sizeof tail;
            continue;
        }
        if (n + len > sizeof tail) {
            size_t drop = n + len - sizeof tail;
            memmove(tail, tail + drop, n - drop);
            n -= drop;
        }
        memcpy(tail + n, gen->piece, len);
        n += len;
    }
    while (n > 0 && (tail[n - 1] == '\n' || tail[n - 1] == '\r' || tail[n - 1] == ' ' || tail[n - 1] == '\t'))
        n--;
    *opened = n >= 7 && memcmp(tail + n - 7, "<think>", 7) == 0;
    return DSR1_OK;
}

static dsr1_status tokenize_append(const dsr1_model *model, const char *text, dsr1_token *out, int32_t cap,
                                   int32_t *n)
{
    int32_t got = 0;
    dsr1_status st = dsr1_tokenize(model, text, strlen(text), out + *n, cap - *n, &got, 0);
    if (st)
        return st;
    *n += got;
    return DSR1_OK;
}

/* The tokens of "\n</think>\n\n" (</think> as its special token if any). */
static dsr1_status build_inject(dsr1_generation *gen)
{
    enum { CAP = 64 };
    gen->inject = dsri_malloc(CAP * sizeof *gen->inject);
    gen->batch = dsri_malloc((CAP + 1) * sizeof *gen->batch);
    if (!gen->inject || !gen->batch)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "generation: out of memory");
    int32_t n = 0;
    dsr1_status st = tokenize_append(gen->model, "\n", gen->inject, CAP, &n);
    if (!st) {
        if (gen->think_end >= 0)
            gen->inject[n++] = gen->think_end;
        else
            st = tokenize_append(gen->model, "</think>", gen->inject, CAP, &n);
    }
    if (!st)
        st = tokenize_append(gen->model, "\n\n", gen->inject, CAP, &n);
    gen->n_inject = n;
    return st;
}

/* ---- log-probabilities in events ---- */

static int lp_push(dsr1_generation *gen, dsr1_token t, float lp, const dsr1_token_logprob *top)
{
    lp_fifo *f = &gen->lp;
    if (f->head > 0 && f->head == f->n)
        f->head = f->n = 0;
    if (f->n == f->cap) {
        int32_t cap = f->cap ? f->cap * 2 : 16;
        dsr1_token *tok = dsri_realloc(f->tok, (size_t)cap * sizeof *tok);
        if (tok)
            f->tok = tok;
        float *l = dsri_realloc(f->lp, (size_t)cap * sizeof *l);
        if (l)
            f->lp = l;
        dsr1_token_logprob *tp = dsri_realloc(f->top, (size_t)cap * (size_t)gen->n_top * sizeof *tp);
        if (tp)
            f->top = tp;
        if (!tok || !l || !tp)
            return 0;
        f->cap = cap;
    }
    f->tok[f->n] = t;
    f->lp[f->n] = lp;
    for (int32_t i = 0; i < gen->n_top; i++) {
        dsr1_token_logprob none = {-1, -INFINITY};
        f->top[(size_t)f->n * (size_t)gen->n_top + (size_t)i] = top ? top[i] : none;
    }
    f->n++;
    return 1;
}

/* Record what the next pushed token's event will carry (generation with
 * n_logprobs > 0); injected tokens get NaN. */
static dsr1_status note_logprob(dsr1_generation *gen, dsr1_token t, int sampled)
{
    if (gen->n_top <= 0)
        return DSR1_OK;
    if (!lp_push(gen, t, sampled ? gen->cur_lp : NAN, sampled ? gen->cur_top : NULL))
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "generation: out of memory");
    return DSR1_OK;
}

static int deliver_with_logprobs(const dsr1_event *event, void *user_data)
{
    dsr1_generation *gen = user_data;
    dsr1_event ev = *event;
    lp_fifo *f = &gen->lp;
    int ok = f->head + event->n_tokens <= f->n;
    for (int32_t i = 0; ok && i < event->n_tokens; i++)
        ok = f->tok[f->head + i] == event->tokens[i];
    if (ok && event->n_tokens > 0) {
        ev.logprobs = f->lp + f->head;
        ev.top_logprobs = f->top + (size_t)f->head * (size_t)gen->n_top;
        ev.n_top_logprobs = gen->n_top;
        f->head += event->n_tokens;
    }
    return gen->user_on_event(&ev, gen->user_data);
}

/* Grammar, log-probability and step-hook state. */
static dsr1_status setup_extras(dsr1_generation *gen, const dsr1_generate_params *p)
{
    const int32_t n_vocab = gen->model->hp.n_vocab;
    gen->n_top = p->n_logprobs;
    gen->user_on_event = p->on_event;
    gen->user_data = p->user_data;
    gen->on_step = p->on_step;
    gen->step_user = p->step_user_data;
    gen->cur_lp = NAN;
    if (gen->n_top > 0 && !(gen->cur_top = dsri_malloc((size_t)gen->n_top * sizeof *gen->cur_top)))
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "generation: out of memory");
    if (gen->on_step && !(gen->step_logits = dsri_malloc((size_t)n_vocab * sizeof *gen->step_logits)))
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "generation: out of memory");
    if (!p->grammar)
        return DSR1_OK;
    gen->grammar = p->grammar;
    gen->gmode = gen->prompt_opened ? G_WAIT : G_FIRST;
    gen->allow = dsri_malloc(((size_t)n_vocab + 63) / 64 * sizeof *gen->allow);
    gen->eog = dsri_malloc((size_t)n_vocab * sizeof *gen->eog);
    if (!gen->allow || !gen->eog)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "generation: out of memory");
    for (int32_t t = 0; t < n_vocab; t++)
        if (dsr1_token_is_eog(gen->model, t))
            gen->eog[gen->n_eog++] = t;
    if (gen->gmode == G_FIRST)
        return dsri_gmatch_new(dsri_grammar_rules(gen->grammar), 0, &gen->gm);
    return DSR1_OK;
}

dsr1_status dsr1_generation_new(dsr1_context *ctx, dsr1_sampler *smp, const dsr1_token *prompt, int32_t n_prompt,
                                const dsr1_generate_params *params, dsr1_generation **out)
{
    if (!out)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_generation_new: out is NULL");
    *out = NULL;
    if (!ctx || !smp)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_generation_new: ctx and smp are required");
    if (!prompt || n_prompt <= 0)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_generation_new: the prompt needs at least one token");
    dsr1_generate_params p;
    dsr1_generate_params_default(&p, sizeof p);
    dsr1_status st = dsri_params_read(params, &p, sizeof p, DSRI_KNOWN_SIZE(dsr1_generate_params, n_keep),
                                      "dsr1_generate_params");
    if (st)
        return st;
    if (p.max_prompt_per_step < 0)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_generation_new: max_prompt_per_step is %d (0: no cap)",
                          p.max_prompt_per_step);
    if ((p.ctx_policy != DSR1_CTX_STOP && p.ctx_policy != DSR1_CTX_SHIFT) || p.n_keep < -1)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT,
                          "dsr1_generation_new: ctx_policy %d is not a dsr1_ctx_policy (DSR1_CTX_STOP 0, "
                          "DSR1_CTX_SHIFT 1), or n_keep %d is below -1", p.ctx_policy, p.n_keep);
    if (p.max_new_tokens < 0 || p.think_budget < -1 ||
        (p.think_budget_action != DSR1_BUDGET_CLOSE && p.think_budget_action != DSR1_BUDGET_STOP) ||
        p.starts_in_reasoning < -1 || p.starts_in_reasoning > 1 || p.n_stop_strings < 0 ||
        (p.n_stop_strings > 0 && !p.stop_strings) || p.speculative_mtp < 0 || p.speculative_mtp > 1 ||
        !(p.speculative_min_p >= 0.0f && p.speculative_min_p <= 1.0f) || p.n_logprobs < 0 ||
        p.n_logprobs > MAX_LOGPROBS)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT,
                          "dsr1_generation_new: invalid parameters (max_new_tokens %d, think_budget %d, action %d, "
                          "starts_in_reasoning %d, n_stop_strings %d, speculative_mtp %d, speculative_min_p %g, "
                          "n_logprobs %d (at most %d))",
                          p.max_new_tokens, p.think_budget, p.think_budget_action, p.starts_in_reasoning,
                          p.n_stop_strings, p.speculative_mtp, (double)p.speculative_min_p, p.n_logprobs,
                          MAX_LOGPROBS);
    st = dsri_context_check_free(ctx, "dsr1_generation_new");
    if (st)
        return st;
    const dsr1_model *model = ctx->model;
    int32_t n_vocab = model->hp.n_vocab;
    if (dsri_sampler_n_vocab(smp) != n_vocab)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT,
                          "dsr1_generation_new: the sampler was made for %d tokens, the model has %d",
                          dsri_sampler_n_vocab(smp), n_vocab);
    if (p.grammar && dsr1_model_n_vocab(dsri_grammar_model(p.grammar)) != n_vocab)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT,
                          "dsr1_generation_new: the grammar was made for a vocabulary of %d tokens, the model has %d",
                          dsr1_model_n_vocab(dsri_grammar_model(p.grammar)), n_vocab);
    for (int32_t i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= n_vocab)
            return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_generation_new: prompt token %d at index %d is outside [0, %d)",
                              prompt[i], i, n_vocab);

    dsr1_generation *gen = dsri_calloc(1, sizeof *gen);
    if (!gen)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "generation: out of memory");
    atomic_init(&gen->cancel, 0);
    dsri_handle_init(&gen->handle);
    gen->max_prompt_per_step = p.max_prompt_per_step;
    gen->ctx = ctx;
    gen->smp = smp;
    gen->model = model;
    gen->max_new_tokens = p.max_new_tokens;
    gen->ctx_policy = p.ctx_policy;
    gen->n_keep = p.n_keep < 0 ? 1 : p.n_keep < n_prompt ? p.n_keep : n_prompt;
    gen->n_keep_auto = p.n_keep < 0;
    gen->protect = gen->n_keep;
    gen->think_budget = p.think_budget;
    gen->budget_action = p.think_budget_action;
    /* (with n_batch 1 a token and its draft could not share a batch) */
    gen->mtp = p.speculative_mtp == 1 && dsri_ctx_can_draft(ctx);
    gen->draft = -1;
    gen->min_p = p.speculative_min_p;
    gen->think_begin = dsr1_token_special(model, DSR1_SPECIAL_THINK_BEGIN);
    gen->think_end = dsr1_token_special(model, DSR1_SPECIAL_THINK_END);
    gen->n_prompt = n_prompt;
    gen->prompt = dsri_malloc((size_t)n_prompt * sizeof *gen->prompt);
    gen->piece_cap = 64;
    gen->piece = dsri_malloc(gen->piece_cap);
    if (!gen->prompt || !gen->piece)
        st = dsri_error(DSR1_ERR_OUT_OF_MEMORY, "generation: out of memory");
    if (!st) {
        memcpy(gen->prompt, prompt, (size_t)n_prompt * sizeof *prompt);
        if (p.starts_in_reasoning >= 0)
            gen->prompt_opened = p.starts_in_reasoning;
        else
            st = detect_opened(gen, &gen->prompt_opened);
    }
    if (!st)
        st = build_inject(gen);
    if (!st)
        st = setup_extras(gen, &p);
    if (!st) {
        dsri_split_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.starts_in_reasoning = gen->prompt_opened;
        cfg.hide_reasoning = p.hide_reasoning;
        cfg.stop_strings = p.stop_strings;
        cfg.n_stop_strings = p.n_stop_strings;
        cfg.on_event = p.on_event;
        cfg.user_data = p.user_data;
        if (gen->n_top > 0 && p.on_event) { /* events get their log-probabilities on the way */
            cfg.on_event = deliver_with_logprobs;
            cfg.user_data = gen;
        }
        st = dsri_split_new(&cfg, &gen->split);
    }
    if (st) {
        dsr1_generation_free(gen);
        return st;
    }
    ctx->generation = gen; /* others get DSR1_ERR_STATE until it ends */
    *out = gen;
    return DSR1_OK;
}

/* Ending with an accepted draft in the cache: take it out, so the context
 * holds what plain decoding leaves (the last sampled token unevaluated). */
static void drop_ready(dsr1_generation *gen)
{
    if (gen->ready && gen->ctx->n_past == gen->ready_past)
        dsri_ctx_truncate(gen->ctx, gen->ready_past - 1);
    gen->ready = 0;
}

/* Finished or freed: leave the context as plain decoding would and let
 * others use it. */
static void release_context(dsr1_generation *gen)
{
    drop_ready(gen);
    if (gen->ctx->generation == gen)
        gen->ctx->generation = NULL;
}

void dsr1_generation_free(dsr1_generation *gen)
{
    if (!gen || dsri_handle_busy(&gen->handle, "dsr1_generation_free"))
        return;
    release_context(gen);
    if (gen->owner_fn)
        gen->owner_fn(gen->owner, gen, 1);
    dsri_split_free(gen->split);
    dsri_free(gen->prompt);
    dsri_free(gen->inject);
    dsri_free(gen->batch);
    dsri_free(gen->piece);
    dsri_gmatch_free(gen->gm);
    dsri_free(gen->allow);
    dsri_free(gen->eog);
    dsri_free(gen->lp.tok);
    dsri_free(gen->lp.lp);
    dsri_free(gen->lp.top);
    dsri_free(gen->cur_top);
    dsri_free(gen->step_logits);
    dsri_free(gen->turns);
    dsri_free(gen);
}

void dsri_generation_set_owner(dsr1_generation *gen, void *owner, dsri_gen_owner_fn fn)
{
    gen->owner = owner;
    gen->owner_fn = fn;
}

void dsri_generation_set_tap(dsr1_generation *gen, dsr1_event_fn fn, void *user_data)
{
    dsri_split_set_tap(gen->split, fn, user_data);
}

int dsri_generation_prompt_opened_reasoning(const dsr1_generation *gen) { return gen->prompt_opened; }

void dsri_generation_set_draft_override(dsr1_generation *gen, dsri_draft_fn fn, void *user_data)
{
    gen->draft_override = fn;
    gen->draft_user = user_data;
}

void dsr1_generation_cancel(dsr1_generation *gen)
{
    if (gen)
        atomic_store(&gen->cancel, 1);
}

const char *dsr1_generation_errmsg(const dsr1_generation *gen)
{
    return gen ? dsri_handle_message(&gen->handle) : "";
}

static dsr1_status finish(dsr1_generation *gen, dsr1_stop_reason reason, const dsr1_token *extra, int32_t n_extra,
                          dsr1_stop_reason *stop_reason)
{
    gen->finished = 1;
    gen->reason = reason;
    release_context(gen);
    dsr1_status st = dsri_split_finish(gen->split, reason, extra, n_extra);
    if (stop_reason)
        *stop_reason = reason;
    if (gen->owner_fn && !gen->owner_told) {
        gen->owner_told = 1;
        gen->owner_fn(gen->owner, gen, 0);
    }
    return st;
}

/* An error ends the generation without a DONE event. */
static dsr1_status fail(dsr1_generation *gen, dsr1_status st)
{
    gen->finished = 1;
    gen->reason = DSR1_STOP_NONE;
    release_context(gen);
    return st;
}

/* An evaluation of the step failed. Interrupted by dsr1_generation_cancel:
 * the generation ends as cancelled and the step says the evaluation was
 * cut short. By the context's abort callback: nothing ends, the next step
 * goes on from what the cache holds (the caller left its state so). */
static dsr1_status interrupted(dsr1_generation *gen, dsr1_status st, dsr1_stop_reason *stop_reason)
{
    if (st != DSR1_ERR_CANCELLED)
        return fail(gen, st);
    if (!atomic_load(&gen->cancel))
        return st;
    dsr1_status fst = finish(gen, DSR1_STOP_CANCELLED, NULL, 0, stop_reason);
    return fst ? fst : st;
}

/* Evaluate the prompt from the first position where it differs from what
 * the context holds (at least its last token, for fresh logits), at most
 * max_prompt_per_step tokens of it per call; *all: the prompt is complete.
 * A later call after an interrupted or capped one starts where the cache
 * ends, since the cache holds exactly the tokens evaluated completely. */
static dsr1_status eval_prompt(dsr1_generation *gen, int *all)
{
    dsr1_context *ctx = gen->ctx;
    if (gen->n_prompt > ctx->n_ctx)
        return dsri_error(DSR1_ERR_CONTEXT_FULL, "generation: the prompt of %d tokens does not fit in the context of %d",
                          gen->n_prompt, ctx->n_ctx);
    int32_t common = 0;
    while (common < ctx->n_past && common < gen->n_prompt && ctx->tokens[common] == gen->prompt[common])
        common++;
    /* The MTP head attends over its own cache layer, which a generation
     * without it (or plain dsr1_eval calls) left behind the main cache:
     * re-evaluate from its first stale entry so drafts never read stale
     * rows. Only speed is at stake (drafts are verified), but the
     * acceptance rate must not depend on what ran before. */
    if (gen->mtp && common > dsri_ctx_draft_valid(ctx))
        common = dsri_ctx_draft_valid(ctx);
    if (common >= gen->n_prompt)
        common = gen->n_prompt - 1;
    int32_t n = gen->n_prompt - common;
    if (gen->max_prompt_per_step > 0 && n > gen->max_prompt_per_step)
        n = gen->max_prompt_per_step;
    /* the chunks dsr1_eval would make; with MTP each is followed by the
     * head over its rows while their hidden states are at hand */
    dsr1_status st = DSR1_OK;
    for (int32_t done = 0; !st && done < n;) {
        int32_t c = n - done < ctx->n_batch ? n - done : ctx->n_batch;
        st = dsri_ctx_eval(ctx, gen->prompt + common + done, c, common + done, 0);
        if (ctx->n_past > common + done)
            gen->n_prompt_eval += ctx->n_past - (common + done);
        done += c;
        if (!st && gen->mtp && common + done < gen->n_prompt)
            st = dsri_ctx_draft(ctx, gen->prompt[common + done], NULL, NULL);
    }
    *all = !st && common + n == gen->n_prompt;
    return st;
}

/* The thinking budget is spent: the next step closes the reasoning. */
static int budget_due(const dsr1_generation *gen)
{
    return gen->think_budget >= 0 && !gen->budget_used && dsri_split_in_reasoning(gen->split) &&
           dsri_split_n_reasoning(gen->split) >= gen->think_budget;
}

static dsr1_status push_token(dsr1_generation *gen, dsr1_token t, int forced)
{
    if (t == gen->think_begin && t >= 0)
        return dsri_split_push(gen->split, t, DSRI_SPLIT_THINK_BEGIN, NULL, 0, forced);
    if (t == gen->think_end && t >= 0)
        return dsri_split_push(gen->split, t, DSRI_SPLIT_THINK_END, NULL, 0, forced);
    size_t len;
    dsr1_status st = token_piece(gen, t, 0, &len);
    if (st)
        return st;
    return dsri_split_push(gen->split, t, DSRI_SPLIT_TEXT, gen->piece, len, forced);
}

/* ---- the grammar ---- */

/* Where the answer starts in the piece of a text token that completed
 * "</think>": after the marker when it is whole in the piece, else after
 * the marker's end that begins the piece. */
static size_t marker_tail(const char *piece, size_t len)
{
    static const char marker[] = "</think>";
    const size_t ml = sizeof marker - 1;
    for (size_t i = 0; i + ml <= len; i++)
        if (memcmp(piece + i, marker, ml) == 0)
            return i + ml;
    for (size_t k = ml - 1; k >= 1; k--)
        if (k <= len && memcmp(piece, marker + ml - k, k) == 0)
            return k;
    return 0;
}

static dsr1_status grammar_feed(dsr1_generation *gen, const char *bytes, size_t len)
{
    dsr1_status st = dsri_gmatch_accept(gen->gm, bytes, len);
    if (st == DSR1_ERR_STATE)
        return dsri_error(DSR1_ERR_STATE, "generation: the answer's text \"%.*s\" does not follow the grammar",
                          (int)(len > 40 ? 40 : len), bytes);
    return st;
}

/* Follow a token that was pushed to the splitter (sampled or injected). */
static dsr1_status grammar_observe(dsr1_generation *gen, dsr1_token t)
{
    if (gen->gmode == G_NONE || (gen->gmode == G_WAIT && dsri_split_in_reasoning(gen->split)))
        return DSR1_OK;
    if (gen->gmode == G_FIRST) {
        if (dsri_split_in_reasoning(gen->split)) { /* the first token opened a reasoning block */
            gen->gmode = G_WAIT;
            return DSR1_OK;
        }
        gen->gmode = G_ON;
    }
    size_t len = 0;
    dsr1_status st;
    if (gen->gmode == G_WAIT) { /* t closed the reasoning: the answer starts */
        gen->gmode = G_ON;
        dsri_gmatch_free(gen->gm);
        gen->gm = NULL;
        if ((st = dsri_gmatch_new(dsri_grammar_rules(gen->grammar), 1, &gen->gm)))
            return st;
        if (t == gen->think_end)
            return DSR1_OK;
        if ((st = token_piece(gen, t, 0, &len)))
            return st;
        size_t off = marker_tail(gen->piece, len);
        return grammar_feed(gen, gen->piece + off, len - off);
    }
    if (t == gen->think_begin || t == gen->think_end)
        return DSR1_OK;
    if ((st = token_piece(gen, t, 0, &len)))
        return st;
    return grammar_feed(gen, gen->piece, len);
}

/* The tokens the grammar allows now (NULL: no constraint this step). */
static dsr1_status grammar_allow(dsr1_generation *gen, const uint64_t **allow)
{
    *allow = NULL;
    if (gen->gmode != G_ON && gen->gmode != G_FIRST)
        return DSR1_OK;
    dsr1_status st = dsri_gmatch_mask(gen->gm, dsri_grammar_trie(gen->grammar), gen->allow);
    if (st)
        return st;
    if (dsri_gmatch_complete(gen->gm))
        for (int32_t i = 0; i < gen->n_eog; i++)
            gen->allow[gen->eog[i] >> 6] |= 1ull << (gen->eog[i] & 63);
    if (gen->gmode == G_FIRST && gen->think_begin >= 0)
        gen->allow[gen->think_begin >> 6] |= 1ull << (gen->think_begin & 63);
    *allow = gen->allow;
    return DSR1_OK;
}

/* Choose the next token from logits: the grammar's mask, the host's hook,
 * the sampler (with log-probabilities when asked). *cancel: the hook
 * asked to stop. */
static dsr1_status choose_token(dsr1_generation *gen, const float *logits, dsr1_token *t, int *cancel)
{
    const int32_t n_vocab = gen->model->hp.n_vocab;
    const uint64_t *allow;
    dsr1_status st = grammar_allow(gen, &allow);
    if (st)
        return st;
    dsri_sample_opts o;
    memset(&o, 0, sizeof o);
    o.allow = allow;
    o.want_logprobs = gen->n_top > 0;
    o.logprob = &gen->cur_lp;
    o.top = gen->cur_top;
    o.n_top = gen->n_top;
    o.forced = -1;
    if (gen->on_step) {
        memcpy(gen->step_logits, logits, (size_t)n_vocab * sizeof *logits);
        if (allow)
            for (int32_t i = 0; i < n_vocab; i++)
                if (!((allow[i >> 6] >> (i & 63)) & 1u))
                    gen->step_logits[i] = -INFINITY;
        dsr1_step step;
        memset(&step, 0, sizeof step);
        step.size = sizeof step;
        step.logits = gen->step_logits;
        step.n_vocab = n_vocab;
        step.in_reasoning = dsri_split_in_reasoning(gen->split);
        step.n_generated = gen->n_generated;
        step.token = -1;
        dsri_error_saved saved;
        dsri_error_save(&saved);
        int stop = gen->on_step(&step, gen->step_user);
        dsri_error_restore(&saved);
        if (stop) {
            *cancel = 1;
            return DSR1_OK;
        }
        if (step.token < -1 || step.token >= n_vocab)
            return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "generation: the step hook chose token %d, outside [0, %d)",
                              step.token, n_vocab);
        o.forced = step.token;
        logits = gen->step_logits;
    }
    return dsri_sampler_sample_ex(gen->smp, logits, n_vocab, &o, t);
}

/* ---- context shift ---- */

/* Drop positions [at, at + n) (make_room). Turns that lay wholly in them
 * are counted (they are the oldest a chat still records); a turn whose
 * start went but not its end leaves the chat's history out of step with
 * the cache: no more whole-turn drops after it. */
static dsr1_status shift_out(dsr1_generation *gen, int32_t at, int32_t n)
{
    dsr1_status st = dsri_ctx_shift(gen->ctx, at, n);
    if (st)
        return st;
    gen->n_shifts++;
    gen->n_shift_dropped += n;
    int32_t kept = 0, lost = 0;
    for (int32_t i = 0; i < gen->n_turns; i++) {
        const int32_t start = gen->turns[i];
        if (start >= at + n)
            gen->turns[kept++] = start - n;
        else if (start < at)
            gen->turns[kept++] = start;
        else if (i + 1 < gen->n_turns && gen->turns[i + 1] <= at + n)
            gen->turns_dropped++;
        else
            lost = 1;
    }
    gen->n_turns = lost ? 0 : kept;
    if (gen->protect >= at + n)
        gen->protect -= n;
    else if (gen->protect > at)
        gen->protect = at; /* the end of the question went */
    return DSR1_OK;
}

/* Free at least `need` positions (ctx_policy DSR1_CTX_SHIFT): a chat's
 * oldest whole turns before the current one (the fewest that free half of
 * what follows n_keep, else all of them), then the oldest half of what
 * follows the question, else half of what follows n_keep. *room: 0 when
 * the kept tokens leave no room. */
static dsr1_status make_room(dsr1_generation *gen, int32_t need, int *room)
{
    dsr1_context *ctx = gen->ctx;
    const int32_t keep = gen->n_keep < ctx->n_past ? gen->n_keep : ctx->n_past;
    int32_t target = (ctx->n_past - keep) / 2, freed = 0;
    target = target > need ? target : need;
    dsr1_status st;
    if (gen->n_turns > 1) {
        int32_t k = 0;
        while (k < gen->n_turns - 1 && gen->turns[k] - keep < target)
            k++;
        const int32_t d = gen->turns[k] - keep;
        if (d > 0 && (st = shift_out(gen, keep, d)))
            return st;
        freed = d > 0 ? d : 0;
    }
    if (freed < need) {
        int32_t at = gen->protect > keep && gen->protect <= ctx->n_past ? gen->protect : keep;
        int32_t half = (ctx->n_past - at) / 2, d = half > need - freed ? half : need - freed;
        if (d > ctx->n_past - at && at > keep) { /* the question leaves no room: it goes too */
            at = keep;
            half = (ctx->n_past - at) / 2;
            d = half > need - freed ? half : need - freed;
        }
        if (d > ctx->n_past - at) {
            *room = 0;
            return DSR1_OK;
        }
        if ((st = shift_out(gen, at, d)))
            return st;
    }
    *room = 1;
    return DSR1_OK;
}

dsr1_status dsri_generation_set_turns(dsr1_generation *gen, int32_t system_end, const int32_t *starts, int32_t n,
                                      int32_t question_end)
{
    if (gen->n_keep_auto)
        gen->n_keep = system_end < gen->n_prompt ? system_end : gen->n_prompt;
    gen->protect = question_end > gen->n_keep ? question_end : gen->n_keep;
    dsri_free(gen->turns);
    gen->n_turns = 0;
    if (!(gen->turns = dsri_malloc((size_t)(n > 0 ? n : 1) * sizeof *gen->turns)))
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "generation: out of memory");
    for (int32_t i = 0; i < n; i++)
        if (starts[i] >= gen->n_keep)
            gen->turns[gen->n_turns++] = starts[i];
    return DSR1_OK;
}

int32_t dsri_generation_turns_dropped(const dsr1_generation *gen) { return gen->turns_dropped; }
int32_t dsri_generation_n_keep(const dsr1_generation *gen) { return gen->n_keep; }

/* The body of one step after the prompt is evaluated. */
static dsr1_status step_tokens(dsr1_generation *gen, dsr1_token *token, dsr1_stop_reason *stop_reason)
{
    dsr1_context *ctx = gen->ctx;
    dsr1_status st;
    int inject = 0;
    if (budget_due(gen)) {
        if (gen->budget_action == DSR1_BUDGET_STOP)
            return finish(gen, DSR1_STOP_BUDGET, NULL, 0, stop_reason);
        inject = 1;
    }
    if (inject && gen->ready) {
        /* plain decoding evaluates the last token together with the
         * injected ones: take the accepted draft back out and do the same */
        gen->ready = 0;
        gen->pending = ctx->tokens[ctx->n_past - 1];
        gen->has_pending = 1;
        dsri_ctx_truncate(ctx, ctx->n_past - 1);
    }
    /* verify the draft in the same batch as the pending token */
    int verify = gen->has_pending && gen->draft >= 0 && !inject && ctx->n_ctx - ctx->n_past >= 2;
    dsr1_token draft = gen->draft;
    gen->draft = -1;
    int32_t nb = 0;
    if (gen->has_pending)
        gen->batch[nb++] = gen->pending;
    if (verify)
        gen->batch[nb++] = draft;
    if (inject) {
        memcpy(gen->batch + nb, gen->inject, (size_t)gen->n_inject * sizeof *gen->inject);
        nb += gen->n_inject;
    }
    const float *logits;
    if (gen->ready) { /* the accepted draft's row: nothing to evaluate */
        gen->ready = 0;
        st = dsri_ctx_logits(ctx, 1, &logits);
    } else {
        if (nb > 0) {
            if (nb > ctx->n_ctx - ctx->n_past) {
                int room = 0;
                if (gen->ctx_policy == DSR1_CTX_SHIFT && (st = make_room(gen, nb - (ctx->n_ctx - ctx->n_past), &room)))
                    return fail(gen, st);
                if (!room)
                    return finish(gen, DSR1_STOP_CONTEXT_FULL, NULL, 0, stop_reason);
            }
            /* interrupted, the state is as before this step (pending kept,
             * draft and injection not done): the next step redoes it */
            if ((st = dsri_ctx_eval(ctx, gen->batch, nb, ctx->n_past, verify ? DSR1_EVAL_LOGITS_ALL : 0)))
                return interrupted(gen, st, stop_reason);
            gen->has_pending = 0;
        }
        st = dsri_ctx_logits(ctx, verify ? 0 : -1, &logits);
    }
    if (st)
        return fail(gen, st);
    if (inject) {
        gen->budget_used = 1;
        for (int32_t i = 0; i < gen->n_inject; i++)
            if ((st = note_logprob(gen, gen->inject[i], 0)) || (st = push_token(gen, gen->inject[i], 1)) ||
                (st = grammar_observe(gen, gen->inject[i])))
                return fail(gen, st);
        if (dsri_split_cancel_requested(gen->split))
            return finish(gen, DSR1_STOP_CANCELLED, NULL, 0, stop_reason);
    }

    dsr1_token t;
    int cancel = 0;
    if ((st = choose_token(gen, logits, &t, &cancel)))
        return fail(gen, st);
    if (cancel) {
        if (verify) /* the draft was evaluated for nothing: plain decoding would not hold it */
            dsri_ctx_truncate(ctx, ctx->n_past - 1);
        return finish(gen, DSR1_STOP_CANCELLED, NULL, 0, stop_reason);
    }
    if ((st = note_logprob(gen, t, 1)))
        return fail(gen, st);
    dsri_sampler_accept(gen->smp, t);
    if (verify) {
        gen->n_drafted++;
        if (t == draft) {
            gen->n_accepted++;
            gen->ready = 1; /* t is in the cache already */
            gen->ready_past = ctx->n_past;
        } else {
            dsri_ctx_truncate(ctx, ctx->n_past - 1);
        }
    }
    gen->n_generated++;
    if (token)
        *token = t;
    if (dsr1_token_is_eog(gen->model, t))
        return finish(gen, DSR1_STOP_EOS, &t, 1, stop_reason);
    if ((st = push_token(gen, t, 0)) || (st = grammar_observe(gen, t)))
        return fail(gen, st);
    if (dsri_split_stop_matched(gen->split))
        return finish(gen, DSR1_STOP_STRING, NULL, 0, stop_reason);
    if (dsri_split_cancel_requested(gen->split))
        return finish(gen, DSR1_STOP_CANCELLED, NULL, 0, stop_reason);
    if (gen->max_new_tokens > 0 && gen->n_generated >= gen->max_new_tokens)
        return finish(gen, DSR1_STOP_LENGTH, NULL, 0, stop_reason);
    if (gen->ready)
        return DSR1_OK;
    gen->pending = t;
    gen->has_pending = 1;
    /* draft the token after t, unless the next step could not use it (it
     * samples the last token, injects, or the context has no room for two) */
    if (gen->mtp && !(gen->max_new_tokens > 0 && gen->n_generated + 1 >= gen->max_new_tokens) &&
        !budget_due(gen) && ctx->n_ctx - ctx->n_past >= 2) {
        float draft_p = 1.0f; /* the head's softmax costs a pass over the vocabulary: only for a gate */
        if ((st = dsri_ctx_draft(ctx, t, &gen->draft, gen->min_p > 0.0f ? &draft_p : NULL)))
            return fail(gen, st);
        if (gen->draft >= 0 && gen->draft_override) { /* tests: the override decides */
            gen->draft = gen->draft_override(gen->draft_user, gen->draft, gen->n_generated);
        } else if (gen->draft >= 0 && !(draft_p >= gen->min_p)) {
            gen->draft = -1; /* more likely a wasted verification than a saved evaluation */
            gen->n_declined++;
        }
    }
    return DSR1_OK;
}

/* One step, with the generation's handles held (see step_held). */
static dsr1_status step_body(dsr1_generation *gen, dsr1_token *token, dsr1_stop_reason *stop_reason)
{
    if (gen->finished)
        return dsri_error(DSR1_ERR_STATE, "dsr1_generation_step: the generation has finished");
    if (atomic_load(&gen->cancel))
        return finish(gen, DSR1_STOP_CANCELLED, NULL, 0, stop_reason);
    double t0 = now_seconds();
    if (!gen->prompt_done) {
        int all = 0;
        dsr1_status st = eval_prompt(gen, &all);
        double t1 = now_seconds();
        gen->prompt_seconds += t1 - t0;
        if (st)
            return interrupted(gen, st, stop_reason);
        if (!all)
            return DSR1_OK; /* capped: the rest of the prompt in the next steps */
        gen->prompt_done = 1;
        t0 = t1;
    }
    dsr1_status st = step_tokens(gen, token, stop_reason);
    gen->generate_seconds += now_seconds() - t0;
    return st;
}

/* During a step the generation's context and sampler are held busy, so a
 * callback cannot change them under the step (core/handle.h), and the
 * context's evaluations watch the generation's cancel flag. */
static dsr1_status step_held(dsr1_generation *gen, dsr1_token *token, dsr1_stop_reason *stop_reason)
{
    dsr1_status st = dsri_borrow(&gen->ctx->handle, "dsr1_generation_step (its context)");
    if (st)
        return st;
    if ((st = dsri_borrow(dsri_sampler_handle(gen->smp), "dsr1_generation_step (its sampler)"))) {
        dsri_unborrow(&gen->ctx->handle);
        return st;
    }
    gen->ctx->cancel_flag = &gen->cancel;
    st = step_body(gen, token, stop_reason);
    gen->ctx->cancel_flag = NULL;
    dsri_unborrow(dsri_sampler_handle(gen->smp));
    dsri_unborrow(&gen->ctx->handle);
    return st;
}

dsr1_status dsr1_generation_step(dsr1_generation *gen, dsr1_token *token, dsr1_stop_reason *stop_reason)
{
    if (token)
        *token = -1;
    if (stop_reason)
        *stop_reason = DSR1_STOP_NONE;
    if (!gen)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_generation_step: gen is NULL");
    dsri_call call;
    dsr1_status st = dsri_enter(&gen->handle, &call, "dsr1_generation_step");
    if (st)
        return st;
    return dsri_leave(&gen->handle, &call, step_held(gen, token, stop_reason));
}

dsr1_status dsr1_generation_run(dsr1_generation *gen, dsr1_stop_reason *stop_reason)
{
    if (stop_reason)
        *stop_reason = DSR1_STOP_NONE;
    if (!gen)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_generation_run: gen is NULL");
    dsri_call call;
    dsr1_status st = dsri_enter(&gen->handle, &call, "dsr1_generation_run");
    if (st)
        return st;
    dsr1_stop_reason r = DSR1_STOP_NONE;
    while (!st && r == DSR1_STOP_NONE)
        st = step_held(gen, NULL, &r);
    if (stop_reason)
        *stop_reason = r;
    return dsri_leave(&gen->handle, &call, st);
}

static dsr1_status get_stats(const dsr1_generation *gen, dsr1_generation_stats *stats)
{
    dsr1_generation_stats s;
    memset(&s, 0, sizeof s);
    s.n_prompt_eval = gen->n_prompt_eval;
    s.n_generated = gen->n_generated;
    s.n_reasoning = dsri_split_n_reasoning(gen->split);
    s.prompt_seconds = gen->prompt_seconds;
    s.generate_seconds = gen->generate_seconds;
    s.n_drafted = gen->n_drafted;
    s.n_accepted = gen->n_accepted;
    s.n_declined = gen->n_declined;
    s.n_ctx_shifts = gen->n_shifts;
    s.n_ctx_dropped = gen->n_shift_dropped;
    return dsri_struct_write(stats, &s, sizeof s, "dsr1_generation_stats");
}

/* Read-only, so also allowed from the generation's own callbacks (the
 * handle is busy then: the message is left to the running step). */
dsr1_status dsr1_generation_get_stats(const dsr1_generation *gen, dsr1_generation_stats *stats)
{
    if (!gen || !stats)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_generation_get_stats: NULL argument");
    dsri_handle *h = (dsri_handle *)&gen->handle; /* the handle state is not part of the const contract */
    dsri_call call;
    if (atomic_load(&h->busy) || dsri_enter(h, &call, "dsr1_generation_get_stats"))
        return get_stats(gen, stats);
    return dsri_leave(h, &call, get_stats(gen, stats));
}

dsr1_status dsr1_generate(dsr1_context *ctx, dsr1_sampler *smp, const dsr1_token *prompt, int32_t n_prompt,
                          const dsr1_generate_params *params, dsr1_stop_reason *stop_reason)
{
    if (stop_reason)
        *stop_reason = DSR1_STOP_NONE;
    dsr1_generation *gen;
    dsr1_status st = dsr1_generation_new(ctx, smp, prompt, n_prompt, params, &gen);
    if (st)
        return st;
    st = dsr1_generation_run(gen, stop_reason);
    dsr1_generation_free(gen);
    return st;
}
