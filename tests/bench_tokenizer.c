/*
 * Tokenizer benchmark: prints numbers, asserts nothing about time.
 *
 * Usage: bench_tokenizer DATA_DIR [MB]   (default 4 MB of mixed text)
 *
 * For each vocabulary (R1 first): load time, throughput on a deterministic
 * mix of English prose, C/Python code, CJK/kana and numbers, decode
 * throughput, and the adversarial single-word cases (1 MB without a break:
 * random letters, one repeated letter, one CJK run, spaces).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dsr1.h"

static double now(void)
{
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static const char *const english[] = {
    "The quick brown fox jumps over the lazy dog. ", "It's a truth universally acknowledged, ",
    "that a single model in possession of good weights ", "must be in want of a tokenizer. ",
    "We'll see what they've done; ", "I'd say it's fine.\n\n", "However, ", "in 2025 the results were 3.14159 and 42. ",
    "Reasoning models think step by step before answering. ", "Let me compute 17 * 23 = 391.\n",
};
static const char *const code[] = {
    "int main(void) {\n", "    for (int i = 0; i < n; i++) {\n", "        sum += a[i] * b[i];\n", "    }\n",
    "    return 0;\n}\n", "def is_prime(n):\n", "    if n < 2:\n        return False\n",
    "    return all(n % d for d in range(2, int(n**0.5) + 1))\n", "#include <stdio.h>\n",
    "const x = arr.map((v) => v * 2).filter(Boolean);\n", "\t\tif (!ptr) { errno = ENOMEM; return NULL; }\n",
};
static const char *const cjk[] = {
    "深度求索（DeepSeek）是一家人工智能公司。", "我们先思考一下这个问题。", "日本語のテキストとカタカナ、ひらがなを混ぜる。",
    "漢字も使う。", "今天天气很好，我们去公园散步吧！", "東京は日本の首都です。", "2025年1月20日发布了模型。",
    "한국어 텍스트도 조금 있습니다. ", "Привет, мир! ", "🚀 emoji 😁 ",
};

static char *make_mixed(size_t target, size_t *len)
{
    char *buf = malloc(target + 256);
    uint64_t s = 0x243f6a8885a308d3ull;
    size_t n = 0;
    while (n < target) {
        uint64_t r = rng(&s) % 10;
        const char *p = r < 5 ? english[rng(&s) % (sizeof english / sizeof *english)]
                        : r < 8 ? code[rng(&s) % (sizeof code / sizeof *code)]
                                : cjk[rng(&s) % (sizeof cjk / sizeof *cjk)];
        size_t k = strlen(p);
        memcpy(buf + n, p, k);
        n += k;
    }
    *len = n;
    return buf;
}

static void bench_text(const dsr1_model *m, const char *label, const char *text, size_t len, dsr1_token *tokens,
                       int32_t cap, int reps)
{
    int32_t n = 0;
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        dsr1_status st = dsr1_tokenize(m, text, len, tokens, cap, &n, 0);
        double dt = now() - t0;
        if (st != DSR1_OK) {
            printf("  %s: tokenize failed: %s\n", label, dsr1_last_error());
            return;
        }
        if (dt < best)
            best = dt;
    }
    printf("  %-28s %8.2f MB  %9d tokens  %8.1f ms  %7.1f MB/s  (%.2f bytes/token)\n", label, (double)len / 1e6, n,
           best * 1e3, (double)len / 1e6 / best, n ? (double)len / n : 0.0);
}

/* The whole file, or NULL when it cannot be read. */
static char *read_text_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            char *b = realloc(buf, cap = cap ? 2 * cap : 1 << 20);
            if (!b) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = b;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    fclose(f);
    *len = n;
    return buf;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s DATA_DIR [MB | TEXT_FILE]\n"
                        "  TEXT_FILE: benchmark on that text instead of the generated mix\n"
                        "  (to compare with another tokenizer on the same bytes)\n", argv[0]);
        return 2;
    }
    size_t len;
    char *text = argc > 2 ? read_text_file(argv[2], &len) : NULL;
    if (!text) {
        double mb = argc > 2 ? atof(argv[2]) : 4.0;
        if (!(mb > 0 && mb < 1024))
            mb = 4.0;
        text = make_mixed((size_t)(mb * 1e6), &len);
    }
    const size_t word = 1000000;
    char *w = malloc(word + 4);
    int32_t cap = (int32_t)(len + word + 16);
    dsr1_token *tokens = malloc((size_t)cap * sizeof *tokens);
    char *out = malloc(len + 1);
    if (!text || !w || !tokens || !out)
        return 1;

    static const char *const names[] = {"deepseek-r1", "qwen2", "llama-bpe"};
    for (int v = 0; v < 3; v++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/vocab/ggml-vocab-%s.gguf", argv[1], names[v]);
        dsr1_model_params mp;
        dsr1_model_params_default(&mp, sizeof mp);
        mp.vocab_only = 1;
        dsr1_model *m = NULL;
        double t0 = now();
        if (dsr1_model_load(path, &mp, &m) != DSR1_OK) {
            fprintf(stderr, "cannot load %s: %s\n", path, dsr1_last_error());
            return 1;
        }
        double t_load = now() - t0;
        printf("%s: %d tokens, vocabulary load %.1f ms\n", names[v], dsr1_model_n_vocab(m), t_load * 1e3);

        bench_text(m, "mixed English/code/CJK", text, len, tokens, cap, 3);

        int32_t n = 0;
        dsr1_tokenize(m, text, len, tokens, cap, &n, 0);
        size_t nb = 0;
        t0 = now();
        dsr1_detokenize(m, tokens, n, out, len + 1, &nb, 0);
        double dt = now() - t0;
        printf("  %-28s %8.2f MB  %9d tokens  %8.1f ms  %7.1f MB/s  (round trip %s)\n", "detokenize", (double)nb / 1e6, n,
               dt * 1e3, (double)nb / 1e6 / dt, nb == len && memcmp(out, text, len) == 0 ? "ok" : "DIFFERS");

        uint64_t s = 12345;
        for (size_t i = 0; i < word; i++)
            w[i] = (char)('a' + rng(&s) % 26);
        bench_text(m, "1 MB word, random letters", w, word, tokens, cap, 1);
        memset(w, 'a', word);
        bench_text(m, "1 MB word, 'aaaa...'", w, word, tokens, cap, 1);
        memset(w, ' ', word);
        bench_text(m, "1 MB of spaces", w, word, tokens, cap, 1);
        for (size_t i = 0; i + 3 <= word; i += 3)
            memcpy(w + i, (rng(&s) & 1) ? "\xe4\xb8\xad" : "\xe6\x96\x87", 3); /* 中 / 文 */
        bench_text(m, "1 MB CJK run", w, word - word % 3, tokens, cap, 1);
        dsr1_model_free(m);
    }
    free(text);
    free(w);
    free(tokens);
    free(out);
    return 0;
}
