/*
 * Chat sessions: the messages of a conversation, formatted with the R1 chat
 * format for each turn; the generation reuses the KV cache for the prefix
 * that did not change (dsr1_generation_new compares with the tokens the
 * context holds).
 *
 * Message 0 is the system prompt when one was given. An assistant reply is
 * recorded as "<think>\n{reasoning}</think>{answer}" when it reasoned (the
 * block is closed even when the model did not close it, so the chat format
 * can drop it from later prompts), else as its answer.
 */
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/handle.h"
#include "core/params.h"
#include "generate/generation.h"
#include "model/context.h"
#include "model/state.h"
#include "sample/sampler.h"

typedef struct chat_msg {
    const char *role; /* a string literal */
    char *content;
} chat_msg;

typedef struct text_buf {
    char *p;
    size_t len, cap;
} text_buf;

struct dsr1_chat {
    dsri_handle handle; /* busy flag and last message (core/handle.h) */
    dsr1_context *ctx;
    dsr1_sampler *smp;
    const dsr1_model *model;
    int has_system;
    chat_msg *msgs;
    int32_t n_msgs, cap_msgs;

    dsr1_token *tokens; /* the formatted prompt */
    int32_t cap_tokens;
    int32_t *starts;    /* where each user message starts in it (its <｜User｜> marker) */
    int32_t n_starts;
    int32_t turn_base;  /* the user message of the generation's first turn (the first after n_keep) */

    /* the turn in progress */
    dsr1_generation *active;
    int reasoned;
    int oom;
    int recorded;
    text_buf reasoning, answer;
};

static int buf_append(text_buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = dsri_realloc(b->p, cap);
        if (!p)
            return 0;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 1;
}

static dsr1_status push_msg(dsr1_chat *chat, const char *role, const char *content, size_t len)
{
    if (chat->n_msgs == chat->cap_msgs) {
        int32_t cap = chat->cap_msgs ? chat->cap_msgs * 2 : 8;
        chat_msg *m = dsri_realloc(chat->msgs, (size_t)cap * sizeof *m);
        if (!m)
            return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "chat: out of memory");
        chat->msgs = m;
        chat->cap_msgs = cap;
    }
    char *copy = dsri_strndup(content, len);
    if (!copy)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "chat: out of memory");
    chat->msgs[chat->n_msgs].role = role;
    chat->msgs[chat->n_msgs].content = copy;
    chat->n_msgs++;
    return DSR1_OK;
}

static void pop_msg(dsr1_chat *chat)
{
    chat->n_msgs--;
    dsri_free(chat->msgs[chat->n_msgs].content);
}

dsr1_status dsr1_chat_new(dsr1_context *ctx, dsr1_sampler *smp, const char *system_prompt, dsr1_chat **out)
{
    if (!out)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_chat_new: out is NULL");
    *out = NULL;
    if (!ctx || !smp)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_chat_new: ctx and smp are required");
    dsr1_chat *chat = dsri_calloc(1, sizeof *chat);
    if (!chat)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "chat: out of memory");
    dsri_handle_init(&chat->handle);
    chat->ctx = ctx;
    chat->smp = smp;
    chat->model = dsr1_context_model(ctx);
    if (system_prompt && *system_prompt) {
        dsr1_status st = push_msg(chat, "system", system_prompt, strlen(system_prompt));
        if (st) {
            dsr1_chat_free(chat);
            return st;
        }
        chat->has_system = 1;
    }
    *out = chat;
    return DSR1_OK;
}

static void detach_active(dsr1_chat *chat)
{
    if (chat->active) { /* it goes on alone, reporting to the host directly */
        dsri_generation_set_owner(chat->active, NULL, NULL);
        dsri_generation_set_tap(chat->active, NULL, NULL);
        chat->active = NULL;
    }
}

void dsr1_chat_free(dsr1_chat *chat)
{
    if (!chat || dsri_handle_busy(&chat->handle, "dsr1_chat_free"))
        return;
    detach_active(chat);
    for (int32_t i = 0; i < chat->n_msgs; i++)
        dsri_free(chat->msgs[i].content);
    dsri_free(chat->msgs);
    dsri_free(chat->tokens);
    dsri_free(chat->starts);
    dsri_free(chat->reasoning.p);
    dsri_free(chat->answer.p);
    dsri_free(chat);
}

void dsr1_chat_reset(dsr1_chat *chat)
{
    if (!chat || dsri_handle_busy(&chat->handle, "dsr1_chat_reset"))
        return;
    detach_active(chat); /* a turn in progress is not recorded */
    while (chat->n_msgs > chat->has_system)
        pop_msg(chat);
}

int32_t dsr1_chat_n_messages(const dsr1_chat *chat) { return chat ? chat->n_msgs : 0; }

const char *dsr1_chat_errmsg(const dsr1_chat *chat)
{
    return chat ? dsri_handle_message(&chat->handle) : "";
}

dsr1_status dsr1_chat_message_at(const dsr1_chat *chat, int32_t index, dsr1_chat_message *out)
{
    if (!chat || !out)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_chat_message_at: NULL argument");
    dsri_handle *h = (dsri_handle *)&chat->handle; /* the handle state is not part of the const contract */
    dsri_call call;
    dsr1_status st = dsri_enter(h, &call, "dsr1_chat_message_at");
    if (st)
        return st;
    if (index < 0 || index >= chat->n_msgs) {
        st = dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_chat_message_at: index %d outside [0, %d)", index,
                        chat->n_msgs);
    } else {
        out->role = chat->msgs[index].role;
        out->content = chat->msgs[index].content;
    }
    return dsri_leave(h, &call, st);
}

/* Collect the reply (the host's callback gets the events directly). */
static int record_event(const dsr1_event *ev, void *user_data)
{
    dsr1_chat *chat = user_data;
    switch (ev->type) {
    case DSR1_EVENT_REASONING_BEGIN:
        chat->reasoned = 1;
        break;
    case DSR1_EVENT_REASONING_TEXT:
        if (!buf_append(&chat->reasoning, ev->text, ev->text_len))
            chat->oom = 1;
        break;
    case DSR1_EVENT_ANSWER_TEXT:
        if (!buf_append(&chat->answer, ev->text, ev->text_len))
            chat->oom = 1;
        break;
    default:
        break;
    }
    return 0;
}

/* The index in msgs of user message number k (n_msgs when there is none). */
static int32_t user_msg_index(const dsr1_chat *chat, int32_t k)
{
    for (int32_t i = 0; i < chat->n_msgs; i++)
        if (strcmp(chat->msgs[i].role, "user") == 0 && k-- == 0)
            return i;
    return chat->n_msgs;
}

/* Forget n whole turns from user message number first on (their messages
 * up to the next user message): a context shift dropped them. */
static void drop_turns(dsr1_chat *chat, int32_t first, int32_t n)
{
    const int32_t a = user_msg_index(chat, first), b = user_msg_index(chat, first + n);
    if (n <= 0 || b <= a || b >= chat->n_msgs)
        return; /* (the question is never part of a dropped turn) */
    for (int32_t i = a; i < b; i++)
        dsri_free(chat->msgs[i].content);
    memmove(chat->msgs + a, chat->msgs + b, (size_t)(chat->n_msgs - b) * sizeof *chat->msgs);
    chat->n_msgs -= b - a;
}

/* Record the reply (once), and forget the generation when it is freed. */
static void on_generation_end(void *owner, dsr1_generation *gen, int freeing)
{
    dsr1_chat *chat = owner;
    if (!chat)
        return;
    if (chat->active != gen)
        return;
    if (!chat->recorded) {
        chat->recorded = 1;
        drop_turns(chat, chat->turn_base, dsri_generation_turns_dropped(gen));
        dsr1_generation_stats stats;
        stats.size = sizeof stats;
        dsr1_generation_get_stats(gen, &stats);
        if (stats.n_generated == 0) {
            pop_msg(chat); /* nothing was answered: as if not asked */
        } else {
            text_buf content = {NULL, 0, 0};
            int ok = 1;
            if (chat->reasoned) {
                int opened = dsri_generation_prompt_opened_reasoning(gen);
                ok = buf_append(&content, opened ? "<think>\n" : "<think>", opened ? 8 : 7) &&
                     buf_append(&content, chat->reasoning.p ? chat->reasoning.p : "", chat->reasoning.len) &&
                     buf_append(&content, "</think>", 8);
            }
            ok = ok && buf_append(&content, chat->answer.p ? chat->answer.p : "", chat->answer.len);
            if (!ok || chat->oom || push_msg(chat, "assistant", content.p ? content.p : "", content.len) != DSR1_OK)
                pop_msg(chat); /* out of memory: drop the whole turn */
            dsri_free(content.p);
        }
        chat->reasoning.len = chat->answer.len = 0;
        chat->reasoned = 0;
    }
    if (freeing)
        chat->active = NULL;
}

/* Format the conversation (with the generation prompt) into chat->tokens
 * (*n of them), and find where its user messages start. */
static dsr1_status format_prompt(dsr1_chat *chat, int32_t *n)
{
    dsr1_chat_message *view = dsri_malloc((size_t)chat->n_msgs * sizeof *view);
    if (!view)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "chat: out of memory");
    for (int32_t i = 0; i < chat->n_msgs; i++) {
        view[i].role = chat->msgs[i].role;
        view[i].content = chat->msgs[i].content;
    }
    dsr1_status st;
    for (;;) {
        st = dsr1_chat_tokenize(chat->model, view, chat->n_msgs, DSR1_CHAT_ADD_GENERATION_PROMPT, chat->tokens,
                                chat->cap_tokens, n);
        if (st != DSR1_ERR_BUFFER_TOO_SMALL)
            break;
        dsr1_token *t = dsri_realloc(chat->tokens, (size_t)*n * sizeof *t);
        int32_t *w = dsri_realloc(chat->starts, (size_t)*n * sizeof *w);
        if (t)
            chat->tokens = t;
        if (w)
            chat->starts = w;
        if (!t || !w) {
            st = dsri_error(DSR1_ERR_OUT_OF_MEMORY, "chat: cannot hold a prompt of %d tokens", *n);
            break;
        }
        chat->cap_tokens = *n;
    }
    dsri_free(view);
    if (st)
        return st;
    /* user contents are tokenized as plain text: the marker appears only
     * where a user message starts */
    const dsr1_token user = dsr1_token_special(chat->model, DSR1_SPECIAL_USER);
    chat->n_starts = 0;
    for (int32_t i = 0; i < *n; i++)
        if (chat->tokens[i] == user)
            chat->starts[chat->n_starts++] = i;
    return DSR1_OK;
}

/* ctx_policy DSR1_CTX_SHIFT and a prompt longer than the context: forget
 * the oldest whole turns (after n_keep), the fewest that leave a quarter of
 * the context for the reply, else all before the question. When the cache
 * holds them, it is shifted the same way (dsr1_context_shift), so what
 * follows is not evaluated again. */
static dsr1_status fit_turns(dsr1_chat *chat, int32_t n_keep, int32_t *n)
{
    const int32_t n_ctx = dsr1_context_n_ctx(chat->ctx);
    if (*n <= n_ctx || chat->n_starts < 2)
        return DSR1_OK;
    const int32_t keep = n_keep >= 0 ? n_keep : chat->starts[0];
    int32_t f = 0;
    while (f < chat->n_starts - 1 && chat->starts[f] < keep)
        f++;
    int32_t j = f + 1;
    while (j < chat->n_starts - 1 && *n - (chat->starts[j] - chat->starts[f]) > n_ctx - n_ctx / 4)
        j++;
    if (j >= chat->n_starts)
        return DSR1_OK; /* nothing whole to drop: the generation says the prompt does not fit */
    const int32_t at = chat->starts[f], drop = chat->starts[j] - at;
    const dsr1_context *ctx = chat->ctx;
    int32_t common = 0;
    while (common < ctx->n_past && common < *n && ctx->tokens[common] == chat->tokens[common])
        common++;
    /* the cache keeps what it holds of the rest (a failure only costs its
     * evaluation: the generation compares the tokens) */
    if (common > at + drop && dsr1_context_truncate(chat->ctx, common) == DSR1_OK)
        dsr1_context_shift(chat->ctx, at, drop);
    drop_turns(chat, f, j - f);
    return format_prompt(chat, n);
}

/* dsr1_chat_begin with the chat held; params are checked by
 * dsr1_generation_new. */
static dsr1_status begin(dsr1_chat *chat, const char *user_message, const dsr1_generate_params *params,
                         dsr1_generation **out)
{
    if (!user_message)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_chat_begin: user_message is NULL");
    if (chat->active)
        return dsri_error(DSR1_ERR_STATE, "dsr1_chat_begin: a turn is in progress (free its generation first)");
    dsr1_status st = push_msg(chat, "user", user_message, strlen(user_message));
    if (st)
        return st;

    dsr1_generate_params p;
    dsr1_generate_params_default(&p, sizeof p);
    int32_t n = 0;
    if ((st = dsri_params_read(params, &p, sizeof p, DSRI_KNOWN_SIZE(dsr1_generate_params, n_keep),
                               "dsr1_generate_params")) ||
        (st = format_prompt(chat, &n)) || (p.ctx_policy == DSR1_CTX_SHIFT && (st = fit_turns(chat, p.n_keep, &n)))) {
        pop_msg(chat);
        return st;
    }

    chat->reasoned = 0;
    chat->oom = 0;
    chat->recorded = 0;
    chat->reasoning.len = chat->answer.len = 0;
    dsr1_generation *gen;
    st = dsr1_generation_new(chat->ctx, chat->smp, chat->tokens, n, params, &gen);
    if (st) {
        pop_msg(chat);
        return st;
    }
    const int32_t system_end = chat->n_starts > 0 ? chat->starts[0] : n;
    if ((st = dsri_generation_set_turns(gen, system_end, chat->starts, chat->n_starts, n))) {
        dsr1_generation_free(gen);
        pop_msg(chat);
        return st;
    }
    chat->turn_base = 0;
    while (chat->turn_base < chat->n_starts && chat->starts[chat->turn_base] < dsri_generation_n_keep(gen))
        chat->turn_base++;
    dsri_generation_set_owner(gen, chat, on_generation_end);
    dsri_generation_set_tap(gen, record_event, chat);
    chat->active = gen;
    *out = gen;
    return DSR1_OK;
}

dsr1_status dsr1_chat_begin(dsr1_chat *chat, const char *user_message, const dsr1_generate_params *params,
                            dsr1_generation **out)
{
    if (!out)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_chat_begin: out is NULL");
    *out = NULL;
    if (!chat)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_chat_begin: chat is NULL");
    dsri_call call;
    dsr1_status st = dsri_enter(&chat->handle, &call, "dsr1_chat_begin");
    if (st)
        return st;
    return dsri_leave(&chat->handle, &call, begin(chat, user_message, params, out));
}

dsr1_status dsr1_chat_ask(dsr1_chat *chat, const char *user_message, const dsr1_generate_params *params,
                          dsr1_stop_reason *stop_reason)
{
    if (stop_reason)
        *stop_reason = DSR1_STOP_NONE;
    if (!chat)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_chat_ask: chat is NULL");
    dsri_call call;
    dsr1_status st = dsri_enter(&chat->handle, &call, "dsr1_chat_ask");
    if (st)
        return st;
    dsr1_generation *gen;
    st = begin(chat, user_message, params, &gen);
    if (!st) {
        st = dsr1_generation_run(gen, stop_reason);
        dsr1_generation_free(gen);
    }
    return dsri_leave(&chat->handle, &call, st);
}

/* ---- saved state (model/state.h: the blob and its checks) ---- */

/* Hold chat (entered), its context and sampler (borrowed), with no turn
 * in progress. */
static dsr1_status hold_all(dsr1_chat *chat, dsri_call *call, const char *fn)
{
    dsr1_status st = dsri_enter(&chat->handle, call, fn);
    if (st)
        return st;
    if (chat->active) {
        st = dsri_error(DSR1_ERR_STATE, "%s: a turn is in progress (free its generation first)", fn);
    } else if (!(st = dsri_borrow(&chat->ctx->handle, fn))) {
        if (!(st = dsri_context_check_free(chat->ctx, fn)))
            st = dsri_borrow(dsri_sampler_handle(chat->smp), fn);
        if (st)
            dsri_unborrow(&chat->ctx->handle);
    }
    return st ? dsri_leave(&chat->handle, call, st) : DSR1_OK;
}

static dsr1_status release_all(dsr1_chat *chat, const dsri_call *call, dsr1_status st)
{
    dsri_unborrow(dsri_sampler_handle(chat->smp));
    dsri_unborrow(&chat->ctx->handle);
    return dsri_leave(&chat->handle, call, st);
}

static dsr1_status save_held(dsr1_chat *chat, void *buf, size_t buf_size, size_t *n_bytes, const char *fn)
{
    dsri_state_msg *view = dsri_malloc((size_t)(chat->n_msgs > 0 ? chat->n_msgs : 1) * sizeof *view);
    if (!view)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    for (int32_t i = 0; i < chat->n_msgs; i++) {
        view[i].role = chat->msgs[i].role;
        view[i].content = chat->msgs[i].content;
        view[i].len = strlen(chat->msgs[i].content);
    }
    dsr1_status st = dsri_state_save(chat->ctx, chat->smp, view, chat->n_msgs, buf, buf_size, n_bytes, fn);
    dsri_free(view);
    return st;
}

/* Parse, copy the messages, load the context and sampler, then swap the
 * messages in: all or nothing (but a failed device copy, which empties the
 * context, keeps the old messages: the next turn evaluates them again). */
static dsr1_status load_held(dsr1_chat *chat, const void *data, size_t size, const char *fn)
{
    dsri_state_view v;
    dsr1_status st = dsri_state_parse(chat->ctx, chat->smp, data, size, &v, fn);
    if (st)
        return st;
    if (!(v.flags & DSRI_STATE_HAS_CHAT))
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: the state has no chat messages (saved with "
                          "dsr1_context_state_save; load it with dsr1_context_state_load)", fn);
    chat_msg *msgs = dsri_calloc((size_t)(v.n_msgs > 0 ? v.n_msgs : 1), sizeof *msgs);
    if (!msgs)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    size_t off = v.off_msgs;
    int32_t made = 0;
    for (; made < v.n_msgs; made++) {
        dsri_state_msg m;
        dsri_state_next_msg(&v, &off, &m);
        msgs[made].role = m.role;
        if (!(msgs[made].content = dsri_strndup(m.content, m.len)))
            break;
    }
    if (made < v.n_msgs)
        st = dsri_error(DSR1_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    else
        st = dsri_state_apply(chat->ctx, chat->smp, &v, fn);
    if (st) {
        for (int32_t i = 0; i < made; i++)
            dsri_free(msgs[i].content);
        dsri_free(msgs);
        return st;
    }
    for (int32_t i = 0; i < chat->n_msgs; i++)
        dsri_free(chat->msgs[i].content);
    dsri_free(chat->msgs);
    chat->msgs = msgs;
    chat->n_msgs = chat->cap_msgs = v.n_msgs;
    if (chat->cap_msgs == 0)
        chat->cap_msgs = 1;
    chat->has_system = v.n_msgs > 0 && strcmp(msgs[0].role, "system") == 0;
    return DSR1_OK;
}

dsr1_status dsr1_chat_state_save(dsr1_chat *chat, void *buf, size_t buf_size, size_t *n_bytes)
{
    const char *fn = "dsr1_chat_state_save";
    if (!chat || !n_bytes || (!buf && buf_size))
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: chat and n_bytes are required (buf only with buf_size)",
                          fn);
    dsri_call call;
    dsr1_status st = hold_all(chat, &call, fn);
    if (st)
        return st;
    return release_all(chat, &call, save_held(chat, buf, buf_size, n_bytes, fn));
}

dsr1_status dsr1_chat_state_load(dsr1_chat *chat, const void *data, size_t size)
{
    const char *fn = "dsr1_chat_state_load";
    if (!chat || (!data && size))
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: chat is required (data only with size)", fn);
    dsri_call call;
    dsr1_status st = hold_all(chat, &call, fn);
    if (st)
        return st;
    return release_all(chat, &call, load_held(chat, data, size, fn));
}

dsr1_status dsr1_chat_state_save_file(dsr1_chat *chat, const char *path)
{
    const char *fn = "dsr1_chat_state_save_file";
    if (!chat || !path)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: chat and path are required", fn);
    dsri_call call;
    dsr1_status st = hold_all(chat, &call, fn);
    if (st)
        return st;
    size_t need = 0;
    void *buf = NULL;
    st = save_held(chat, NULL, 0, &need, fn);
    if (st == DSR1_ERR_BUFFER_TOO_SMALL) {
        st = (buf = dsri_malloc(need)) ? save_held(chat, buf, need, &need, fn)
                                       : dsri_error(DSR1_ERR_OUT_OF_MEMORY, "%s: %zu bytes: out of memory", fn, need);
        if (!st)
            st = dsri_file_write_all(path, buf, need, fn);
    }
    dsri_free(buf);
    return release_all(chat, &call, st);
}

dsr1_status dsr1_chat_state_load_file(dsr1_chat *chat, const char *path)
{
    const char *fn = "dsr1_chat_state_load_file";
    if (!chat || !path)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: chat and path are required", fn);
    dsri_call call;
    dsr1_status st = hold_all(chat, &call, fn);
    if (st)
        return st;
    void *data;
    size_t size;
    if (!(st = dsri_file_read_all(path, &data, &size, fn))) {
        st = load_held(chat, data, size, fn);
        dsri_free(data);
    }
    return release_all(chat, &call, st);
}
