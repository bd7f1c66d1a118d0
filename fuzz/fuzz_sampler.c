/*
 * libFuzzer target: the sampler chain with hostile parameters and logits
 * (NaN, infinities, subnormals, huge and mismatched vocabulary counts,
 * adversarial orders such as organ pipes). Checks, for every input:
 * - a refused parameter set or sample is a status with a message;
 * - a chosen token is in range, never a token the logits or the bias ban
 *   (-inf), and the argmax (lowest id) when greedy without bias or history;
 * - dsr1_sampler_sample and _sample_logprobs choose the same token, the
 *   log-probabilities are numbers <= 0 and the top list is best first;
 * - a saved and reloaded state chooses what the original chooses;
 * - top-k and top-p visit at most 10 n_vocab candidates (the sampler's work
 *   counter), so super-linear selection is caught on any machine; run with
 *   -timeout as a second net.
 * Sizes that only decide how much the caller asks to allocate (n_vocab,
 * penalty_last_n) are bounded here: a sampler for 2^31 tokens is a valid
 * request that fails only for lack of memory.
 *   build-fuzz/fuzz/fuzz_sampler -timeout=5 CORPUS   (seeds: fuzz/corpus/sampler)
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dsr1.h"
#include "sample/sampler.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_VOCAB (1 << 18) /* above every real vocabulary (152064 for Qwen2) */
#define MAX_TOP 8

typedef struct reader {
    const uint8_t *p;
    size_t n;
} reader;

static uint8_t u8(reader *r)
{
    if (!r->n)
        return 0;
    r->n--;
    return *r->p++;
}

static uint32_t u32(reader *r)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)u8(r) << (8 * i);
    return v;
}

/* A float: one of the values that break arithmetic, or raw bits. */
static float num(reader *r)
{
    static const float special[] = {0.0f, -0.0f, 1.0f, -1.0f, 0.5f, 0.6f, 0.95f, 2.0f, 1e-45f, -1e-45f,
                                    1e-38f, 3.4e38f, -3.4e38f, NAN, INFINITY, -INFINITY, 1e10f, -1e10f, 100.0f};
    uint8_t sel = u8(r);
    if (sel < sizeof special / sizeof special[0])
        return special[sel];
    uint32_t bits = u32(r);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* An int32: edge values, or raw bits. */
static int32_t int32(reader *r)
{
    static const int32_t special[] = {0, 1, 2, -1, INT32_MIN, INT32_MAX, 40, 64, 303, 1000};
    uint8_t sel = u8(r);
    if (sel < sizeof special / sizeof special[0])
        return special[sel];
    return (int32_t)u32(r);
}

static int32_t vocab_size(reader *r)
{
    static const int32_t special[] = {1, 2, 3, 7, 64, 303, 65536, 129280, 152064, MAX_VOCAB, 0, -1, INT32_MIN};
    uint8_t sel = u8(r);
    if (sel < sizeof special / sizeof special[0])
        return special[sel];
    return (int32_t)(u32(r) % 4096) + 1;
}

/* The logits: a shape over the ids, then sparse overrides. */
static void make_logits(reader *r, float *z, int32_t n)
{
    uint8_t mode = u8(r) % 5;
    float a = num(r), b = num(r);
    float pattern[16];
    int32_t n_pat = 1 + u8(r) % 16;
    for (int32_t i = 0; i < n_pat; i++)
        pattern[i] = num(r);
    int32_t period = 1 + (int32_t)(u32(r) % 1024);
    for (int32_t i = 0; i < n; i++) {
        float pat = pattern[i % n_pat];
        switch (mode) {
        case 0: z[i] = pat; break;
        case 1: z[i] = (float)(i < n - 1 - i ? i : n - 1 - i) * a + pat; break; /* organ pipe */
        case 2: z[i] = (float)i * a + b; break;                                  /* ramp */
        case 3: z[i] = (float)(i % period) * a + pat; break;                     /* sawtooth */
        default: z[i] = (i & 1) ? a : b * (float)(i % period); break;            /* interleaved */
        }
    }
    for (int k = u8(r) % 16; k > 0; k--) {
        uint32_t at = u32(r) % (uint32_t)n;
        z[at] = num(r);
    }
}

static void check_logprobs(int32_t n_vocab, float lp, const dsr1_token_logprob *top, int32_t n_top)
{
    if (isnan(lp) || lp > 1e-4f)
        abort();
    int ended = 0;
    for (int32_t i = 0; i < n_top; i++) {
        if (top[i].token < 0) {
            if (top[i].token != -1 || top[i].logprob != -INFINITY)
                abort();
            ended = 1;
            continue;
        }
        if (ended || top[i].token >= n_vocab || isnan(top[i].logprob) || top[i].logprob > 1e-4f)
            abort();
        if (i > 0 && (top[i].logprob > top[i - 1].logprob ||
                      (top[i].logprob == top[i - 1].logprob && top[i].token < top[i - 1].token)))
            abort(); /* best first, ties by id */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static float logits[MAX_VOCAB];
    reader r = {data, size};

    dsr1_sampler_params p;
    dsr1_sampler_params_default(&p, sizeof p);
    p.temperature = num(&r);
    p.top_k = int32(&r);
    p.top_p = num(&r);
    p.min_p = num(&r);
    p.repeat_penalty = num(&r);
    p.frequency_penalty = num(&r);
    p.presence_penalty = num(&r);
    int32_t window = int32(&r);
    p.penalty_last_n = window > 0 ? window % (1 << 16) : window; /* allocation size: bounded */
    p.seed = (uint64_t)u32(&r) << 32 | u32(&r);
    int32_t n_vocab = vocab_size(&r);
    dsr1_logit_bias bias[8];
    p.n_logit_bias = u8(&r) % 9;
    for (int32_t i = 0; i < p.n_logit_bias; i++) {
        uint8_t sel = u8(&r);
        bias[i].token = sel == 0   ? n_vocab
                        : sel == 1 ? -1
                        : sel == 2 ? (n_vocab > 0 ? n_vocab - 1 : 0)
                                   : (int32_t)(u32(&r) % 4096);
        bias[i].bias = num(&r);
    }
    p.logit_bias = bias;

    dsr1_sampler *a = NULL, *b = NULL;
    dsr1_status st = dsr1_sampler_new(n_vocab, &p, &a);
    if (st != DSR1_OK) {
        if (a || dsr1_last_error()[0] == '\0' || st != DSR1_ERR_INVALID_ARGUMENT)
            abort();
        return 0;
    }
    if (dsr1_sampler_new(n_vocab, &p, &b) != DSR1_OK)
        abort();
    make_logits(&r, logits, n_vocab);

    /* a count that does not match the sampler's is refused before reading */
    dsr1_token t = 0;
    if (dsr1_sampler_sample(a, logits, n_vocab == 1 ? INT32_MAX : n_vocab - 1, &t) != DSR1_ERR_INVALID_ARGUMENT ||
        t != -1)
        abort();

    int has_nan = 0;
    int32_t argmax = -1;
    for (int32_t i = 0; i < n_vocab; i++) {
        has_nan |= isnan(logits[i]);
        if (!isnan(logits[i]) && logits[i] != -INFINITY && (argmax < 0 || logits[i] > logits[argmax]))
            argmax = i;
    }
    int history = 0;
    for (int step = 0; step < 3; step++) {
        for (int k = u8(&r) % 4; k > 0; k--) { /* prompt tokens, in range or not */
            dsr1_token h = int32(&r);
            dsr1_sampler_accept(a, h);
            dsr1_sampler_accept(b, h);
            history |= h >= 0 && h < n_vocab && p.penalty_last_n > 0;
        }
        dsr1_token ta = -2, tb = -2;
        float lp = 0.0f;
        dsr1_token_logprob top[MAX_TOP];
        int32_t n_top = u8(&r) % (MAX_TOP + 1);
        dsr1_status sa = dsr1_sampler_sample(a, logits, n_vocab, &ta);
        int64_t work = dsri_sampler_last_work(a);
        dsr1_status sb = dsr1_sampler_sample_logprobs(b, logits, n_vocab, &tb, &lp, top, n_top);
        if (sa != sb || ta != tb)
            abort(); /* with and without log-probabilities: the same choice */
        if (work > 10 * (int64_t)n_vocab)
            abort(); /* top-k + top-p stay linear: each selection visits a candidate at most 5 times */
        if (sa != DSR1_OK) {
            if (ta != -1 || dsr1_sampler_errmsg(a)[0] == '\0' || (has_nan && sa != DSR1_ERR_NUMERIC))
                abort();
            break;
        }
        if (has_nan || ta < 0 || ta >= n_vocab || logits[ta] == -INFINITY)
            abort();
        for (int32_t i = 0; i < p.n_logit_bias; i++)
            if (bias[i].token == ta && bias[i].bias == -INFINITY)
                abort(); /* a banned token */
        if (!(p.temperature > 0.0f) && p.n_logit_bias == 0 && !history && ta != argmax)
            abort(); /* greedy is the argmax, lowest id first */
        check_logprobs(n_vocab, lp, top, n_top);

        /* the state continues exactly */
        size_t need = 0;
        if (dsr1_sampler_state_save(a, NULL, 0, &need) != DSR1_ERR_BUFFER_TOO_SMALL)
            abort();
        uint8_t *blob = malloc(need);
        dsr1_sampler *c = NULL;
        if (!blob || dsr1_sampler_state_save(a, blob, need, &need) != DSR1_OK ||
            dsr1_sampler_new(n_vocab, &p, &c) != DSR1_OK || dsr1_sampler_state_load(c, blob, need) != DSR1_OK)
            abort();
        blob[need / 2] ^= 1; /* a damaged blob is refused */
        if (dsr1_sampler_state_load(c, blob, need) == DSR1_OK)
            abort();
        free(blob);
        dsr1_token tc = -2, ta2 = -2;
        if (dsr1_sampler_sample(c, logits, n_vocab, &tc) != DSR1_OK ||
            dsr1_sampler_sample(b, logits, n_vocab, &ta2) != DSR1_OK || tc != ta2)
            abort(); /* b is in a's state: both sampled the same tokens */
        dsr1_sampler_free(c);
        dsr1_sampler_reset(b, p.seed); /* b drew once more: back in step with a */
        dsr1_sampler_reset(a, p.seed);
        history = 0;
        dsr1_sampler_accept(a, ta);
        dsr1_sampler_accept(b, ta);
        history |= p.penalty_last_n > 0;
    }
    dsr1_sampler_free(a);
    dsr1_sampler_free(b);
    return 0;
}
