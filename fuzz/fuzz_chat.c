/*
 * libFuzzer target: the chat formatter (dsr1_chat_format and
 * dsr1_chat_tokenize) with hostile messages and roles, on the R1
 * vocabulary. Checks: a NULL or unknown role, a NULL content or an unknown
 * flag is DSR1_ERR_INVALID_ARGUMENT with a message, in both forms; the text
 * form obeys the buffer rules (size query, exact fit, one byte short); the
 * token form rendered back (control tokens spelled) is exactly the text
 * form; and message text never becomes a marker: the marker tokens are
 * exactly those the roles call for.
 *
 * Input: byte 0: flags (bit 0 the generation prompt, bit 7 an unknown
 * flag, bit 6 the size-prefixed form: dsr1_message and
 * dsr1_chat_*_messages); then NUL-separated chunks, one message each: the
 * chunk's first byte picks the role (system, user, assistant, tool; the
 * next chunk as content and this one's text as the role; a NULL role; a
 * NULL content), the rest is the content. In the size-prefixed form an
 * assistant content "@a|b|..." is a message of tool calls (no content),
 * up to 4, each part the name and the arguments of one: the call markers
 * must be exactly those the calls call for, whatever their text.
 *   build-fuzz/fuzz/fuzz_chat CORPUS   (loads tests/data/vocab/ggml-vocab-deepseek-r1.gguf,
 *   or the file named by $DSR1_FUZZ_VOCAB; seeds: fuzz/corpus/chat)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat/chat.h"
#include "dsr1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_MESSAGES 64

static dsr1_model *load_vocab(void)
{
    const char *path = getenv("DSR1_FUZZ_VOCAB");
    if (!path)
        path = DSR1_SOURCE_DIR "/tests/data/vocab/ggml-vocab-deepseek-r1.gguf";
    dsr1_model_params mp;
    dsr1_model_params_default(&mp, sizeof mp);
    mp.vocab_only = 1;
    dsr1_model *m = NULL;
    if (dsr1_model_load(path, &mp, &m) != DSR1_OK)
        abort();
    return m;
}

/* The id of a marker spelled as text (-1: not one token). */
static dsr1_token marker_id(const dsr1_model *model, const char *text)
{
    dsr1_token t[2];
    int32_t n = 0;
    if (dsr1_tokenize(model, text, strlen(text), t, 2, &n, DSR1_TOKENIZE_PARSE_SPECIAL) != DSR1_OK || n != 1)
        return -1;
    return t[0];
}

static int32_t count_of(const dsr1_token *tok, int32_t n, dsr1_token id)
{
    int32_t c = 0;
    for (int32_t i = 0; i < n; i++)
        c += tok[i] == id;
    return c;
}

static void refused(dsr1_status st)
{
    if (st != DSR1_ERR_INVALID_ARGUMENT || dsr1_last_error()[0] == '\0')
        abort();
}

static dsr1_model *model; /* loaded once per process; one thread */

/* The conversation in the frozen (sized == 0: dsr1_chat_message) or the
 * size-prefixed form (dsr1_message). */
static dsr1_status format(int sized, const void *msgs, int32_t n, uint32_t flags, char *buf, size_t cap, size_t *len)
{
    return sized ? dsr1_chat_format_messages(model, msgs, n, flags, buf, cap, len)
                 : dsr1_chat_format(model, msgs, n, flags, buf, cap, len);
}

static dsr1_status tokenize(int sized, const void *msgs, int32_t n, uint32_t flags, dsr1_token *t, int32_t cap,
                            int32_t *n_tok)
{
    return sized ? dsr1_chat_tokenize_messages(model, msgs, n, flags, t, cap, n_tok)
                 : dsr1_chat_tokenize(model, msgs, n, flags, t, cap, n_tok);
}

#define MAX_CALLS 4

/* msgs as dsr1_message; assistant contents "@..." become tool calls (the
 * text is split in place). n_calls[i]: message i's calls. */
static void sized_form(const dsr1_chat_message *msgs, int32_t n, dsr1_message *out,
                       dsr1_tool_call (*calls)[MAX_CALLS], int32_t *n_calls)
{
    for (int32_t i = 0; i < n; i++) {
        memset(&out[i], 0, sizeof out[i]);
        out[i].size = sizeof out[i];
        out[i].role = msgs[i].role;
        out[i].content = msgs[i].content;
        n_calls[i] = 0;
        if (!msgs[i].role || !msgs[i].content || strcmp(msgs[i].role, "assistant") != 0 || msgs[i].content[0] != '@')
            continue;
        char *part = (char *)msgs[i].content + 1;
        for (int32_t k = 0; k < MAX_CALLS && part; k++) {
            char *bar = strchr(part, '|');
            if (bar)
                *bar = '\0';
            dsr1_tool_call c = {sizeof c, k % 2 ? "function" : NULL, part, part};
            calls[i][k] = c;
            n_calls[i]++;
            part = bar ? bar + 1 : NULL;
        }
        out[i].content = NULL;
        out[i].tool_calls = calls[i];
        out[i].n_tool_calls = n_calls[i];
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!model)
        model = load_vocab();
    if (size < 1 || size > 1 << 14)
        return 0;
    uint32_t flags = (data[0] & 1 ? DSR1_CHAT_ADD_GENERATION_PROMPT : 0) | (data[0] & 0x80 ? 0x80u : 0);
    const int sized = (data[0] & 0x40) != 0;

    /* the chunks as NUL-terminated strings */
    char *text = malloc(size);
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    const char *end = text + size - 1;
    dsr1_chat_message msgs[MAX_MESSAGES];
    int32_t n = 0;
    int valid = !(flags & 0x80);
    for (const char *p = text; p < end && n < MAX_MESSAGES; p += strlen(p) + 1) {
        static const char *const roles[] = {"system", "user", "assistant", "tool"};
        unsigned sel = (unsigned char)p[0] % 8;
        const char *body = p[0] ? p + 1 : p;
        dsr1_chat_message *m = &msgs[n++];
        m->content = body;
        if (sel < 5) {
            m->role = roles[sel % 4];
        } else if (sel == 5) { /* the role is text from the input, the next chunk the content */
            m->role = body;
            p += strlen(p) + 1;
            m->content = p < end ? p : "";
        } else if (sel == 6) {
            m->role = NULL;
        } else {
            m->role = "user";
            m->content = NULL;
        }
        if (!m->role || !m->content ||
            (strcmp(m->role, "system") != 0 && strcmp(m->role, "user") != 0 && strcmp(m->role, "assistant") != 0 &&
             strcmp(m->role, "tool") != 0))
            valid = 0;
        if (sel == 5 && p >= end)
            break;
    }

    static dsr1_message smsgs[MAX_MESSAGES];
    static dsr1_tool_call calls[MAX_MESSAGES][MAX_CALLS];
    int32_t n_calls[MAX_MESSAGES] = {0};
    if (sized)
        sized_form(msgs, n, smsgs, calls, n_calls);
    const void *in = sized ? (const void *)smsgs : (const void *)msgs;
    size_t len = 0;
    dsr1_status st = format(sized, in, n, flags, NULL, 0, &len);
    int32_t n_tok = 0;
    dsr1_status tst = tokenize(sized, in, n, flags, NULL, 0, &n_tok);
    if (!valid) {
        refused(st);
        refused(tst);
        free(text);
        return 0;
    }
    refused(format(sized, in, -1, flags, NULL, 0, &len));
    if (st != DSR1_ERR_BUFFER_TOO_SMALL || tst != DSR1_ERR_BUFFER_TOO_SMALL || n_tok < 1)
        abort();

    char *out = malloc(len + 1);
    size_t got = 0;
    if (format(sized, in, n, flags, out, len + 1, &got) != DSR1_OK || got != len || out[len] != '\0' ||
        strlen(out) != len)
        abort();
    char *short_buf = malloc(len); /* one byte short: ASan sees any write past it */
    if (format(sized, in, n, flags, short_buf, len, &got) != DSR1_ERR_BUFFER_TOO_SMALL || got != len)
        abort();
    free(short_buf);

    dsr1_token *tok = malloc((size_t)n_tok * sizeof *tok);
    int32_t n2 = 0;
    if (tokenize(sized, in, n, flags, tok, n_tok, &n2) != DSR1_OK || n2 != n_tok)
        abort();
    char *back = malloc(len + 1);
    size_t back_len = 0;
    if (dsr1_detokenize(model, tok, n_tok, back, len + 1, &back_len, DSR1_PIECE_RENDER_CONTROL) != DSR1_OK ||
        back_len != len || memcmp(back, out, len) != 0)
        abort(); /* the two forms agree byte for byte */

    /* the markers the roles call for (chat/chat.h): tool outputs open a
     * group once per conversation, an assistant message right after them
     * is their reply (no <｜Assistant｜>), a user message leaves them open;
     * tool calls open a block once per conversation, and every later call
     * closes one (<｜tool▁calls▁end｜><｜end▁of▁sentence｜>), as R1's
     * template writes them; a message of calls leaves tool outputs unclosed */
    int32_t n_user = 0, n_plain = 0, n_reply = 0, n_tool = 0, n_groups_closed = 0, n_call = 0;
    int in_tool = 0;
    for (int32_t i = 0; i < n; i++) {
        if (sized && smsgs[i].n_tool_calls > 0) {
            n_call += smsgs[i].n_tool_calls;
            in_tool = 0;
        } else if (strcmp(msgs[i].role, "user") == 0) {
            n_user++;
            in_tool = 0;
        } else if (strcmp(msgs[i].role, "assistant") == 0) {
            n_reply += in_tool;
            n_groups_closed += in_tool;
            n_plain += !in_tool;
            in_tool = 0;
        } else if (strcmp(msgs[i].role, "tool") == 0) {
            n_tool++;
            in_tool = 1;
        }
    }
    n_groups_closed += in_tool;
    int gen = (flags & DSR1_CHAT_ADD_GENERATION_PROMPT) && !in_tool;
    int think = gen && !(dsri_chat_family_of_model(model) & DSRI_CHAT_R1_ORIGINAL);
    const struct {
        dsr1_token id;
        int32_t want;
    } markers[] = {
        {dsr1_token_special(model, DSR1_SPECIAL_BOS), 1},
        {dsr1_token_special(model, DSR1_SPECIAL_EOS), n_plain + n_reply + (n_call > 0 ? n_call - 1 : 0)},
        {dsr1_token_special(model, DSR1_SPECIAL_USER), n_user},
        {dsr1_token_special(model, DSR1_SPECIAL_ASSISTANT), n_plain + gen + (n_call > 0)},
        {dsr1_token_special(model, DSR1_SPECIAL_THINK_BEGIN), think},
        {dsr1_token_special(model, DSR1_SPECIAL_THINK_END), 0},
        {marker_id(model, "<\357\275\234tool\342\226\201outputs\342\226\201begin\357\275\234>"), n_tool > 0},
        {marker_id(model, "<\357\275\234tool\342\226\201outputs\342\226\201end\357\275\234>"), n_groups_closed},
        {marker_id(model, "<\357\275\234tool\342\226\201output\342\226\201begin\357\275\234>"), n_tool},
        {marker_id(model, "<\357\275\234tool\342\226\201output\342\226\201end\357\275\234>"), n_tool},
        {marker_id(model, "<\357\275\234tool\342\226\201calls\342\226\201begin\357\275\234>"), n_call > 0},
        {marker_id(model, "<\357\275\234tool\342\226\201calls\342\226\201end\357\275\234>"), n_call > 0 ? n_call - 1 : 0},
        {marker_id(model, "<\357\275\234tool\342\226\201call\342\226\201begin\357\275\234>"), n_call},
        {marker_id(model, "<\357\275\234tool\342\226\201call\342\226\201end\357\275\234>"), n_call},
        {marker_id(model, "<\357\275\234tool\342\226\201sep\357\275\234>"), n_call},
    };
    for (size_t k = 0; k < sizeof markers / sizeof markers[0]; k++)
        if (markers[k].id < 0 || count_of(tok, n_tok, markers[k].id) != markers[k].want)
            abort(); /* message text became a marker, or a marker is missing */
    if (tok[0] != dsr1_token_special(model, DSR1_SPECIAL_BOS))
        abort();
    free(back);
    free(tok);
    free(out);
    free(text);
    return 0;
}
