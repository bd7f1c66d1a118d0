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
 * flag); then NUL-separated chunks, one message each: the chunk's first
 * byte picks the role (system, user, assistant; the next chunk as content
 * and this one's text as the role; a NULL role; a NULL content), the rest
 * is the content.
 *   build-fuzz/fuzz/fuzz_chat CORPUS   (loads tests/data/vocab/ggml-vocab-deepseek-r1.gguf,
 *   or the file named by $DSR1_FUZZ_VOCAB; seeds: fuzz/corpus/chat)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

static void refused(dsr1_status st)
{
    if (st != DSR1_ERR_INVALID_ARGUMENT || dsr1_last_error()[0] == '\0')
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static dsr1_model *model; /* loaded once per process; one thread */
    if (!model)
        model = load_vocab();
    if (size < 1 || size > 1 << 14)
        return 0;
    uint32_t flags = (data[0] & 1 ? DSR1_CHAT_ADD_GENERATION_PROMPT : 0) | (data[0] & 0x80 ? 0x80u : 0);

    /* the chunks as NUL-terminated strings */
    char *text = malloc(size);
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    const char *end = text + size - 1;
    dsr1_chat_message msgs[MAX_MESSAGES];
    int32_t n = 0, n_user = 0, n_assistant = 0;
    int valid = !(flags & 0x80);
    for (const char *p = text; p < end && n < MAX_MESSAGES; p += strlen(p) + 1) {
        static const char *const roles[] = {"system", "user", "assistant"};
        unsigned sel = (unsigned char)p[0] % 8;
        const char *body = p[0] ? p + 1 : p;
        dsr1_chat_message *m = &msgs[n++];
        m->content = body;
        if (sel < 5) {
            m->role = roles[sel % 3];
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
            (strcmp(m->role, "system") != 0 && strcmp(m->role, "user") != 0 && strcmp(m->role, "assistant") != 0))
            valid = 0;
        else if (strcmp(m->role, "user") == 0)
            n_user++;
        else if (strcmp(m->role, "assistant") == 0)
            n_assistant++;
        if (sel == 5 && p >= end)
            break;
    }

    size_t len = 0;
    dsr1_status st = dsr1_chat_format(model, msgs, n, flags, NULL, 0, &len);
    int32_t n_tok = 0;
    dsr1_status tst = dsr1_chat_tokenize(model, msgs, n, flags, NULL, 0, &n_tok);
    if (!valid) {
        refused(st);
        refused(tst);
        free(text);
        return 0;
    }
    refused(dsr1_chat_format(model, msgs, -1, flags, NULL, 0, &len));
    if (st != DSR1_ERR_BUFFER_TOO_SMALL || tst != DSR1_ERR_BUFFER_TOO_SMALL || n_tok < 1)
        abort();

    char *out = malloc(len + 1);
    size_t got = 0;
    if (dsr1_chat_format(model, msgs, n, flags, out, len + 1, &got) != DSR1_OK || got != len || out[len] != '\0' ||
        strlen(out) != len)
        abort();
    char *short_buf = malloc(len); /* one byte short: ASan sees any write past it */
    if (dsr1_chat_format(model, msgs, n, flags, short_buf, len, &got) != DSR1_ERR_BUFFER_TOO_SMALL || got != len)
        abort();
    free(short_buf);

    dsr1_token *tok = malloc((size_t)n_tok * sizeof *tok);
    int32_t n2 = 0;
    if (dsr1_chat_tokenize(model, msgs, n, flags, tok, n_tok, &n2) != DSR1_OK || n2 != n_tok)
        abort();
    char *back = malloc(len + 1);
    size_t back_len = 0;
    if (dsr1_detokenize(model, tok, n_tok, back, len + 1, &back_len, DSR1_PIECE_RENDER_CONTROL) != DSR1_OK ||
        back_len != len || memcmp(back, out, len) != 0)
        abort(); /* the two forms agree byte for byte */

    int gen = (flags & DSR1_CHAT_ADD_GENERATION_PROMPT) != 0;
    const struct {
        dsr1_special which;
        int32_t want;
    } markers[] = {
        {DSR1_SPECIAL_BOS, 1},
        {DSR1_SPECIAL_EOS, n_assistant},
        {DSR1_SPECIAL_USER, n_user},
        {DSR1_SPECIAL_ASSISTANT, n_assistant + gen},
        {DSR1_SPECIAL_THINK_BEGIN, gen},
        {DSR1_SPECIAL_THINK_END, 0},
    };
    for (size_t k = 0; k < sizeof markers / sizeof markers[0]; k++) {
        dsr1_token id = dsr1_token_special(model, markers[k].which);
        int32_t count = 0;
        for (int32_t i = 0; i < n_tok; i++)
            count += tok[i] == id;
        if (id < 0 || count != markers[k].want)
            abort(); /* message text became a marker, or a marker is missing */
    }
    if (tok[0] != dsr1_token_special(model, DSR1_SPECIAL_BOS))
        abort();
    free(back);
    free(tok);
    free(out);
    free(text);
    return 0;
}
