/*
 * DeepSeek-R1 chat format: text and token forms. See chat.h.
 */
#include <string.h>

#include "chat/chat.h"
#include "core/alloc.h"
#include "core/error.h"
#include "model/model.h"

enum marker {
    M_BOS, M_EOS, M_USER, M_ASSISTANT, M_THINK, /* every R1 vocabulary has these */
    M_OUTPUTS_BEGIN, M_OUTPUT_BEGIN, M_OUTPUT_END, M_OUTPUTS_END, /* tool outputs: looked up when used */
    M_CALLS_BEGIN, M_CALL_BEGIN, M_TOOL_SEP, M_CALL_END, M_CALLS_END, /* tool calls: too */
    M_COUNT
};
#define M_REQUIRED (M_THINK + 1)

static const char *const marker_text[M_COUNT] = {
    "<\357\275\234begin\342\226\201of\342\226\201sentence\357\275\234>", /* <｜begin▁of▁sentence｜> */
    "<\357\275\234end\342\226\201of\342\226\201sentence\357\275\234>",   /* <｜end▁of▁sentence｜> */
    "<\357\275\234User\357\275\234>",                                      /* <｜User｜> */
    "<\357\275\234Assistant\357\275\234>",                               /* <｜Assistant｜> */
    "<think>",
    "<\357\275\234tool\342\226\201outputs\342\226\201begin\357\275\234>", /* <｜tool▁outputs▁begin｜> */
    "<\357\275\234tool\342\226\201output\342\226\201begin\357\275\234>",  /* <｜tool▁output▁begin｜> */
    "<\357\275\234tool\342\226\201output\342\226\201end\357\275\234>",    /* <｜tool▁output▁end｜> */
    "<\357\275\234tool\342\226\201outputs\342\226\201end\357\275\234>",   /* <｜tool▁outputs▁end｜> */
    "<\357\275\234tool\342\226\201calls\342\226\201begin\357\275\234>",   /* <｜tool▁calls▁begin｜> */
    "<\357\275\234tool\342\226\201call\342\226\201begin\357\275\234>",    /* <｜tool▁call▁begin｜> */
    "<\357\275\234tool\342\226\201sep\357\275\234>",                       /* <｜tool▁sep｜> */
    "<\357\275\234tool\342\226\201call\342\226\201end\357\275\234>",      /* <｜tool▁call▁end｜> */
    "<\357\275\234tool\342\226\201calls\342\226\201end\357\275\234>",     /* <｜tool▁calls▁end｜> */
};

/* An assistant content without its reasoning: what follows the last
 * "</think>" (content.split('</think>')[-1] in R1's template), whitespace
 * included. */
static void answer_of(const char *content, const char **p, size_t *n)
{
    static const char end_think[] = "</think>";
    const char *s = content, *last = NULL;
    for (const char *q; (q = strstr(s, end_think)) != NULL; s = q + 1)
        last = q;
    if (last)
        content = last + sizeof end_think - 1;
    *p = content;
    *n = strlen(content);
}

/* Where the conversation goes: text or tokens. */
typedef struct sink {
    /* text form */
    char *buf;
    size_t cap, len;
    /* token form (v != NULL) */
    const dsri_vocab *v;
    int32_t ids[M_COUNT];
    dsri_tok_sink toks;
    dsr1_status st; /* a marker the vocabulary lacks */
} sink;

static void put_bytes(sink *s, const char *p, size_t n)
{
    if (s->buf && s->len < s->cap)
        memcpy(s->buf + s->len, p, n <= s->cap - s->len ? n : s->cap - s->len);
    s->len += n;
}

static void put_marker(sink *s, enum marker m)
{
    if (!s->v) {
        put_bytes(s, marker_text[m], strlen(marker_text[m]));
        return;
    }
    if (s->ids[m] < 0)
        s->ids[m] = dsri_vocab_find(s->v, marker_text[m], strlen(marker_text[m]));
    if (s->ids[m] < 0 && s->st == DSR1_OK)
        s->st = dsri_error(DSR1_ERR_UNSUPPORTED, "dsr1_chat_tokenize: the vocabulary has no %s token", marker_text[m]);
    if (s->ids[m] >= 0)
        dsri_tok_sink_push(&s->toks, s->ids[m]);
}

static dsr1_status put_content(sink *s, const char *p, size_t n)
{
    if (!s->v) {
        put_bytes(s, p, n);
        return DSR1_OK;
    }
    return dsri_vocab_tokenize_sink(s->v, p, n, 0, &s->toks);
}

/* The contents of all system messages joined with "\n\n" (only the last
 * one's with DSRI_CHAT_LAST_SYSTEM). Tokens are made from the joined text (a
 * dsri_malloc'ed copy when there are several), as tokenizing the parts
 * separately could split differently at the joins. */
static dsr1_status put_system(sink *s, const dsri_chat_msgs *ms, int last_only)
{
    int32_t count = 0, last = -1;
    size_t total = 0;
    for (int32_t i = 0; i < ms->n; i++)
        if (dsri_chat_msg_at(ms, i).role == DSRI_ROLE_SYSTEM) {
            total += strlen(dsri_chat_msg_at(ms, i).content) + (count ? 2 : 0);
            count++;
            last = i;
        }
    if (count == 0)
        return DSR1_OK;
    if (count == 1 || last_only)
        return put_content(s, dsri_chat_msg_at(ms, last).content, strlen(dsri_chat_msg_at(ms, last).content));
    char *buf = s->v ? dsri_malloc(total + 1) : NULL;
    if (s->v && !buf)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "chat: out of memory for the system prompt");
    size_t k = 0;
    count = 0;
    for (int32_t i = 0; i < ms->n; i++) {
        const dsri_chat_msg m = dsri_chat_msg_at(ms, i);
        if (m.role != DSRI_ROLE_SYSTEM)
            continue;
        size_t l = strlen(m.content);
        if (buf) {
            if (count)
                memcpy(buf + k, "\n\n", 2);
            memcpy(buf + k + (count ? 2 : 0), m.content, l);
        } else {
            if (count)
                put_bytes(s, "\n\n", 2);
            put_bytes(s, m.content, l);
        }
        k += l + (count ? 2 : 0);
        count++;
    }
    dsr1_status st = DSR1_OK;
    if (buf) {
        st = put_content(s, buf, k);
        dsri_free(buf);
    }
    return st;
}

/* "{name}\n```json\n{arguments}\n```": the text between <｜tool▁sep｜> and
 * <｜tool▁call▁end｜>, tokenized as one piece (a dsri_malloc'ed copy), as a
 * tokenizer splits rendered text only at the markers. */
static dsr1_status put_call_body(sink *s, const dsr1_tool_call *c)
{
    static const char open[] = "\n```json\n", close[] = "\n```";
    const size_t nl = strlen(c->name), al = strlen(c->arguments), ol = sizeof open - 1, cl = sizeof close - 1;
    if (!s->v) {
        put_bytes(s, c->name, nl);
        put_bytes(s, open, ol);
        put_bytes(s, c->arguments, al);
        put_bytes(s, close, cl);
        return DSR1_OK;
    }
    char *buf = dsri_malloc(nl + ol + al + cl + 1);
    if (!buf)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "chat: out of memory for a tool call");
    memcpy(buf, c->name, nl);
    memcpy(buf + nl, open, ol);
    memcpy(buf + nl + ol, c->arguments, al);
    memcpy(buf + nl + ol + al, close, cl);
    dsr1_status st = put_content(s, buf, nl + ol + al + cl);
    dsri_free(buf);
    return st;
}

/* One tool call as the templates write it: "\n" unless it is its message's
 * first (its template's ns.is_first), then
 * <｜tool▁call▁begin｜>{type}<｜tool▁sep｜>{body}<｜tool▁call▁end｜>. */
static dsr1_status put_call(sink *s, const dsr1_tool_call *c, int after_another)
{
    dsr1_status st = after_another ? put_content(s, "\n", 1) : DSR1_OK;
    put_marker(s, M_CALL_BEGIN);
    if (st == DSR1_OK)
        st = put_content(s, c->type, strlen(c->type));
    put_marker(s, M_TOOL_SEP);
    if (st == DSR1_OK)
        st = put_call_body(s, c);
    put_marker(s, M_CALL_END);
    return st;
}

/* A tool output: the first of a group (*first_output, the template's
 * ns.is_output_first) opens <｜tool▁outputs▁begin｜>, later ones "\n". */
static dsr1_status put_tool_output(sink *s, const char *c, size_t cl, int *first_output)
{
    dsr1_status st = DSR1_OK;
    if (*first_output)
        put_marker(s, M_OUTPUTS_BEGIN);
    else
        st = put_content(s, "\n", 1);
    *first_output = 0;
    put_marker(s, M_OUTPUT_BEGIN);
    if (st == DSR1_OK) /* the "\n" may have failed (out of memory) */
        st = put_content(s, c, cl);
    put_marker(s, M_OUTPUT_END);
    return st;
}

/* An assistant message's tool calls as R1's template writes them (chat.h);
 * *first_call is the template's "not ns.is_first". */
static dsr1_status put_calls_r1(sink *s, const dsri_chat_msg *m, int *first_call)
{
    dsr1_status st = DSR1_OK;
    for (int32_t j = 0; j < m->n_calls && st == DSR1_OK; j++) {
        const dsr1_tool_call c = dsri_chat_call_at(m, j);
        if (*first_call) {
            put_marker(s, M_ASSISTANT);
            put_marker(s, M_CALLS_BEGIN);
        }
        st = put_call(s, &c, !*first_call);
        if (!*first_call) {
            put_marker(s, M_CALLS_END);
            put_marker(s, M_EOS);
        }
        *first_call = 0;
    }
    return st;
}

/* The messages as R1's templates write them (see chat.h): both families
 * share everything but the assistant content and the generation prompt. */
static dsr1_status turns_r1(sink *s, dsri_chat_family family, const dsri_chat_msgs *ms, uint32_t flags)
{
    /* first_output is set once per conversation, never reset, as R1's
     * template does (ns.is_output_first): a later group of tool outputs
     * opens with "\n<｜tool▁output▁begin｜>", not <｜tool▁outputs▁begin｜>.
     * That is what the model sees from every runtime that renders the
     * template (test_chat_template.py compares a two-group conversation
     * with jinja2), so it is kept; the same for first_call (ns.is_first). */
    int in_tool_outputs = 0, first_output = 1, first_call = 1;
    dsr1_status st = DSR1_OK;
    for (int32_t i = 0; i < ms->n && st == DSR1_OK; i++) {
        const dsri_chat_msg m = dsri_chat_msg_at(ms, i);
        const dsri_chat_role r = m.role;
        const char *c = m.content;
        size_t cl = c ? strlen(c) : 0;
        if (r == DSRI_ROLE_ASSISTANT && !c) { /* tool calls only: the template's content None */
            in_tool_outputs = 0;
            st = put_calls_r1(s, &m, &first_call);
        } else if (r == DSRI_ROLE_USER) {
            in_tool_outputs = 0;
            put_marker(s, M_USER);
            st = put_content(s, c, cl);
        } else if (r == DSRI_ROLE_ASSISTANT && in_tool_outputs) { /* the reply to tool outputs: verbatim */
            in_tool_outputs = 0;
            put_marker(s, M_OUTPUTS_END);
            st = put_content(s, c, cl);
            put_marker(s, M_EOS);
        } else if (r == DSRI_ROLE_ASSISTANT) {
            if (!(family & DSRI_CHAT_R1_ORIGINAL))
                answer_of(c, &c, &cl);
            put_marker(s, M_ASSISTANT);
            st = put_content(s, c, cl);
            put_marker(s, M_EOS);
        } else if (r == DSRI_ROLE_TOOL) {
            in_tool_outputs = 1;
            st = put_tool_output(s, c, cl, &first_output);
        }
    }
    if (st == DSR1_OK && in_tool_outputs)
        put_marker(s, M_OUTPUTS_END);
    if (st == DSR1_OK && (flags & DSR1_CHAT_ADD_GENERATION_PROMPT) && !in_tool_outputs) {
        put_marker(s, M_ASSISTANT);
        if (!(family & DSRI_CHAT_R1_ORIGINAL)) {
            put_marker(s, M_THINK);
            st = put_content(s, "\n", 1);
        }
    }
    return st;
}

/* The messages as R1-0528's template writes them (DSRI_CHAT_OPENS_REPLY,
 * see chat.h): a user turn ends with <｜Assistant｜>, so an assistant
 * message is its answer alone, every one's thoughts dropped (the template
 * splits content before choosing a branch); ns.is_first and
 * ns.is_output_first start again with each message that calls tools. */
static dsr1_status turns_opens_reply(sink *s, dsri_chat_family family, const dsri_chat_msgs *ms, uint32_t flags)
{
    int last_user = 0, in_tool_outputs = 0, first_output = 1;
    dsr1_status st = DSR1_OK;
    for (int32_t i = 0; i < ms->n && st == DSR1_OK; i++) {
        const dsri_chat_msg m = dsri_chat_msg_at(ms, i);
        const char *c = m.content ? m.content : ""; /* the template fails on None; "" is what works */
        size_t cl = strlen(c);
        if (m.role == DSRI_ROLE_ASSISTANT && !(family & DSRI_CHAT_R1_ORIGINAL))
            answer_of(c, &c, &cl);
        if (m.role == DSRI_ROLE_USER) {
            in_tool_outputs = 0;
            last_user = 1;
            put_marker(s, M_USER);
            st = put_content(s, c, cl);
            put_marker(s, M_ASSISTANT);
        } else if (m.role == DSRI_ROLE_ASSISTANT) {
            last_user = 0;
            if (in_tool_outputs)
                put_marker(s, M_OUTPUTS_END);
            in_tool_outputs = 0;
            st = put_content(s, c, cl);
            if (m.n_calls > 0)
                put_marker(s, M_CALLS_BEGIN);
            for (int32_t j = 0; j < m.n_calls && st == DSR1_OK; j++) {
                const dsr1_tool_call call = dsri_chat_call_at(&m, j);
                st = put_call(s, &call, j > 0);
            }
            if (m.n_calls > 0) {
                put_marker(s, M_CALLS_END);
                first_output = 1;
            }
            put_marker(s, M_EOS);
        } else if (m.role == DSRI_ROLE_TOOL) {
            last_user = 0;
            in_tool_outputs = 1;
            st = put_tool_output(s, c, cl, &first_output);
        }
    }
    if (st == DSR1_OK && in_tool_outputs)
        put_marker(s, M_OUTPUTS_END);
    if (st == DSR1_OK && (flags & DSR1_CHAT_ADD_GENERATION_PROMPT) && !last_user && !in_tool_outputs)
        put_marker(s, M_ASSISTANT);
    return st;
}

/* The conversation as its family's template writes it (see chat.h). */
static dsr1_status build(sink *s, dsri_chat_family family, const dsri_chat_msgs *ms, uint32_t flags)
{
    put_marker(s, M_BOS);
    dsr1_status st = put_system(s, ms, (family & DSRI_CHAT_LAST_SYSTEM) != 0);
    if (st == DSR1_OK)
        st = (family & DSRI_CHAT_OPENS_REPLY) ? turns_opens_reply(s, family, ms, flags)
                                              : turns_r1(s, family, ms, flags);
    return st != DSR1_OK ? st : s->st;
}

size_t dsri_chat_format_text(dsri_chat_family family, const dsri_chat_msgs *msgs, uint32_t flags, char *buf,
                             size_t buf_size)
{
    sink s;
    memset(&s, 0, sizeof s);
    s.buf = buf;
    s.cap = buf ? buf_size : 0;
    (void)build(&s, family, msgs, flags); /* the text form allocates nothing and cannot fail */
    return s.len;
}

dsr1_status dsri_chat_tokenize_vocab(const dsri_vocab *v, dsri_chat_family family, const dsri_chat_msgs *msgs,
                                     uint32_t flags, dsr1_token *tokens, int32_t capacity, int32_t *n_tokens)
{
    sink s;
    memset(&s, 0, sizeof s);
    s.v = v;
    for (int k = 0; k < M_COUNT; k++)
        s.ids[k] = -1;
    s.ids[M_USER] = v->special[DSR1_SPECIAL_USER];
    s.ids[M_ASSISTANT] = v->special[DSR1_SPECIAL_ASSISTANT];
    s.ids[M_THINK] = v->special[DSR1_SPECIAL_THINK_BEGIN];
    s.ids[M_BOS] = dsri_vocab_find(v, marker_text[M_BOS], strlen(marker_text[M_BOS]));
    s.ids[M_EOS] = dsri_vocab_find(v, marker_text[M_EOS], strlen(marker_text[M_EOS]));
    for (int k = 0; k < M_REQUIRED; k++)
        if (s.ids[k] < 0)
            return dsri_error(DSR1_ERR_UNSUPPORTED,
                              "dsr1_chat_tokenize: the vocabulary has no %s token (not an R1-family vocabulary)",
                              marker_text[k]);
    s.toks.tokens = tokens;
    s.toks.capacity = capacity;
    dsr1_status st = build(&s, family, msgs, flags);
    if (st != DSR1_OK)
        return st;
    if (s.toks.count > INT32_MAX)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_chat_tokenize: the conversation makes more than %d tokens",
                          INT32_MAX);
    *n_tokens = (int32_t)s.toks.count;
    if (s.toks.count > capacity)
        return dsri_error(DSR1_ERR_BUFFER_TOO_SMALL, "dsr1_chat_tokenize: %lld tokens do not fit in a capacity of %d",
                          (long long)s.toks.count, capacity);
    return DSR1_OK;
}

/* ---- public API ---- */

static dsr1_status format_msgs(const dsr1_model *model, const dsri_chat_msgs *msgs, uint32_t flags, char *buf,
                               size_t buf_size, size_t *n_bytes, const char *fn)
{
    if (!model)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: model is NULL", fn);
    if (!n_bytes)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: n_bytes is NULL", fn);
    if (!buf && buf_size)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: buf is NULL but buf_size is %zu", fn, buf_size);
    const dsri_chat_family family = dsri_chat_family_of_model(model);
    dsr1_status st = dsri_chat_validate(msgs, family, flags, fn);
    if (st != DSR1_OK)
        return st;
    size_t n = dsri_chat_format_text(family, msgs, flags, buf, buf_size);
    *n_bytes = n;
    if (n >= buf_size)
        return dsri_error(DSR1_ERR_BUFFER_TOO_SMALL, "%s: %zu bytes needed (with the NUL), buffer has %zu", fn,
                          n + 1, buf_size);
    buf[n] = '\0';
    return DSR1_OK;
}

static dsr1_status tokenize_msgs(const dsr1_model *model, const dsri_chat_msgs *msgs, uint32_t flags,
                                 dsr1_token *tokens, int32_t capacity, int32_t *n_tokens, const char *fn)
{
    if (!model)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: model is NULL", fn);
    const dsri_vocab *v = dsri_model_vocab(model);
    if (!v)
        return dsri_error(DSR1_ERR_STATE, "%s: the model has no vocabulary", fn);
    if (!n_tokens)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: n_tokens is NULL", fn);
    if (capacity < 0)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: capacity %d is negative", fn, capacity);
    if (!tokens && capacity)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: tokens is NULL but capacity is %d", fn, capacity);
    const dsri_chat_family family = dsri_chat_family_of_model(model);
    dsr1_status st = dsri_chat_validate(msgs, family, flags, fn);
    if (st != DSR1_OK)
        return st;
    return dsri_chat_tokenize_vocab(v, family, msgs, flags, tokens, capacity, n_tokens);
}

dsr1_status dsr1_chat_format(const dsr1_model *model, const dsr1_chat_message *messages, int32_t n_messages,
                             uint32_t flags, char *buf, size_t buf_size, size_t *n_bytes)
{
    const dsri_chat_msgs msgs = dsri_chat_msgs_v1(messages, n_messages);
    return format_msgs(model, &msgs, flags, buf, buf_size, n_bytes, "dsr1_chat_format");
}

dsr1_status dsr1_chat_tokenize(const dsr1_model *model, const dsr1_chat_message *messages, int32_t n_messages,
                               uint32_t flags, dsr1_token *tokens, int32_t capacity, int32_t *n_tokens)
{
    const dsri_chat_msgs msgs = dsri_chat_msgs_v1(messages, n_messages);
    return tokenize_msgs(model, &msgs, flags, tokens, capacity, n_tokens, "dsr1_chat_tokenize");
}

dsr1_status dsr1_chat_format_messages(const dsr1_model *model, const dsr1_message *messages, int32_t n_messages,
                                      uint32_t flags, char *buf, size_t buf_size, size_t *n_bytes)
{
    const dsri_chat_msgs msgs = dsri_chat_msgs_sized(messages, n_messages);
    return format_msgs(model, &msgs, flags, buf, buf_size, n_bytes, "dsr1_chat_format_messages");
}

dsr1_status dsr1_chat_tokenize_messages(const dsr1_model *model, const dsr1_message *messages, int32_t n_messages,
                                        uint32_t flags, dsr1_token *tokens, int32_t capacity, int32_t *n_tokens)
{
    const dsri_chat_msgs msgs = dsri_chat_msgs_sized(messages, n_messages);
    return tokenize_msgs(model, &msgs, flags, tokens, capacity, n_tokens, "dsr1_chat_tokenize_messages");
}

static int contains(const char *text, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; n <= len && i <= len - n; i++)
        if (memcmp(text + i, needle, n) == 0)
            return 1;
    return 0;
}

int dsri_chat_template_is_r1(const char *text, size_t len)
{
    return contains(text, len, marker_text[M_USER]) && contains(text, len, marker_text[M_ASSISTANT]);
}

dsri_chat_family dsri_chat_family_of(const char *text, size_t len)
{
    if (!text || !dsri_chat_template_is_r1(text, len))
        return DSRI_CHAT_R1;
    /* R1-0528's user turn: {{'<｜User｜>' + content + '<｜Assistant｜>'}} */
    static const char opens_reply[] = "+ '<\357\275\234Assistant\357\275\234>'";
    return (contains(text, len, "</think>") ? DSRI_CHAT_R1 : DSRI_CHAT_R1_ORIGINAL) |
           (contains(text, len, "ns.system_prompt +") ? 0u : DSRI_CHAT_LAST_SYSTEM) |
           (contains(text, len, opens_reply) ? DSRI_CHAT_OPENS_REPLY : 0u);
}

dsri_chat_family dsri_chat_family_of_model(const dsr1_model *model)
{
    dsri_str t;
    if (!model->gguf || dsri_gguf_get_str(model->gguf, "tokenizer.chat_template", &t) != 0)
        return DSRI_CHAT_R1;
    return dsri_chat_family_of(t.ptr, (size_t)t.len);
}
