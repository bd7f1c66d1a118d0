/*
 * libFuzzer target: the GGUF container parser, then the whole model loader
 * (architecture checks, vocabulary) on arbitrary bytes. Must never crash,
 * leak or hang; every rejection must carry a message.
 *   meson setup build-fuzz -Dfuzz=true && ninja -C build-fuzz
 *   build-fuzz/fuzz/fuzz_gguf tests/data/models   (seed corpus)
 */
#include <stdint.h>
#include <stdlib.h>

#include "dsr1.h"
#include "gguf/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dsri_gguf *g = NULL;
    if (dsri_gguf_parse(data, size, &g) == DSR1_OK) {
        /* walk everything the parser handed out */
        for (uint64_t i = 0; i < dsri_gguf_kv_count(g); i++) {
            const dsri_gguf_kv *kv = dsri_gguf_kv_at(g, i);
            dsri_str s;
            for (uint64_t k = 0; kv->type == DSRI_GGUF_ARRAY && k < kv->arr_n && k < 64; k++)
                if (dsri_gguf_arr_str(g, kv, k, &s) == 0 && s.len)
                    (void)s.ptr[s.len - 1];
        }
        dsri_gguf_free(g);
    } else if (dsr1_last_error()[0] == '\0') {
        abort();
    }
    if (size == 0)
        return 0;
    dsr1_model *m = NULL;
    if (dsr1_model_load_from_memory(data, size, NULL, &m) == DSR1_OK)
        dsr1_model_free(m);
    else if (m != NULL || dsr1_last_error()[0] == '\0')
        abort();
    return 0;
}
