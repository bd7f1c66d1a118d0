/*
 * libFuzzer target: tokenize arbitrary bytes with the R1 vocabulary (with
 * and without special parsing), detokenize the result and require the
 * round trip to be exact, and feed the ids through the streaming decoder.
 *   build-fuzz/fuzz/fuzz_tokenize   (loads tests/data/vocab/ggml-vocab-deepseek-r1.gguf,
 *   or the file named by $DSR1_FUZZ_VOCAB)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dsr1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* loaded once per process; libFuzzer runs inputs on one thread */
    static dsr1_model *model;
    if (!model)
        model = load_vocab();
    if (size > 1 << 16)
        return 0;
    int32_t cap = (int32_t)size + 8, n = 0;
    dsr1_token *tok = malloc((size_t)cap * sizeof *tok);
    char *text = malloc(size * 4 + 64);
    for (int special = 0; special < 2; special++) {
        uint32_t flags = special ? DSR1_TOKENIZE_PARSE_SPECIAL : 0;
        if (dsr1_tokenize(model, (const char *)data, size, tok, cap, &n, flags) != DSR1_OK)
            abort();
        size_t len = 0;
        if (dsr1_detokenize(model, tok, n, text, size * 4 + 64, &len, DSR1_PIECE_RENDER_CONTROL) != DSR1_OK)
            abort();
        if (len != size || memcmp(text, data, size) != 0)
            abort(); /* byte-level BPE must round-trip every input exactly */
    }
    dsr1_decoder *dec;
    if (dsr1_decoder_new(model, 0, &dec) == DSR1_OK) {
        char buf[256];
        size_t got;
        for (int32_t i = 0; i < n; i++)
            dsr1_decoder_push(dec, tok[i], buf, sizeof buf, &got);
        dsr1_decoder_flush(dec, buf, sizeof buf, &got);
        dsr1_decoder_free(dec);
    }
    free(tok);
    free(text);
    return 0;
}
