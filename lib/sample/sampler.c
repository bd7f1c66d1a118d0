/*
 * Token sampling: logit bias -> penalties -> temperature -> top-k -> top-p ->
 * min-p -> seeded random choice (or the argmax when temperature <= 0).
 *
 * Determinism. The same seed and logits give the same token on every
 * platform and compiler:
 * - the PRNG is our own (xoshiro256** seeded through splitmix64) and a
 *   uniform double is made from its top 53 bits;
 * - candidates are ordered by a strict total order (logit descending, then
 *   token id ascending), so every selection below has one exact answer;
 * - exp() is our own polynomial in double precision using only +, *, and
 *   exact scaling by powers of two (the build disables FMA contraction), so
 *   it does not depend on the platform's libm;
 * - sums run in a fixed order over a deterministic candidate order.
 *
 * - the candidates kept by top-k and top-p stay in token id order, so the
 *   cumulative sum of the final choice does not depend on how they were
 *   selected.
 *
 * Cost. Nothing is allocated per call: the candidate array (n_vocab entries)
 * and the penalty history are allocated by dsr1_sampler_new. top-k and top-p
 * are one radix selection each (keep_best: a fixed number of passes over the
 * candidates, O(n) for every input); min-p needs no ordering at all.
 */
#include <math.h>
#include <string.h>

#include "sample/sampler.h"
#include "core/alloc.h"
#include "core/crc32.h"
#include "core/error.h"
#include "core/handle.h"
#include "core/params.h"
#include "dsr1.h"

typedef struct cand {
    float logit; /* after bias, penalties and temperature */
    int32_t id;
    double p;    /* exp(logit - max), unnormalised */
} cand;

struct dsr1_sampler {
    dsri_handle handle; /* busy flag and last message (core/handle.h) */
    int32_t n_vocab;
    dsr1_sampler_params params;
    dsr1_logit_bias *bias;
    int32_t n_bias;

    cand *cand;     /* n_vocab */
    int32_t *idx;   /* n_vocab: keep_best's list of candidates in range */
    int32_t *count; /* n_vocab occurrence counters, kept zero between calls */
    float *chain;   /* n_vocab logits after bias, penalties and the mask (for log-probabilities) */

    dsr1_token *hist; /* ring of the last penalty_last_n accepted tokens */
    int32_t hist_len;
    int32_t hist_next;

    uint64_t rng[4];
    int64_t last_work; /* candidate visits of the last top-k / top-p (tests) */
};

int32_t dsri_sampler_n_vocab(const dsr1_sampler *smp)
{
    return smp->n_vocab;
}

int64_t dsri_sampler_last_work(const dsr1_sampler *smp)
{
    return smp->last_work;
}

/* ---- PRNG: xoshiro256** seeded with splitmix64 ---- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t xoshiro_next(uint64_t s[4])
{
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

static void seed_rng(uint64_t s[4], uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        s[i] = splitmix64(&x);
}

/* Uniform in [0, 1) from the top 53 bits. */
static double uniform01(uint64_t s[4]) { return (double)(xoshiro_next(s) >> 11) * 0x1.0p-53; }

/* ---- exp for x <= 0 without libm: exp(x) = 2^k * exp(r), |r| <= ln2/2 ---- */

static double det_exp(double x)
{
    if (!(x > -708.0)) /* below 2^-1021: negligible next to the maximum's 1 */
        return 0.0;
    if (x >= 0.0)
        return 1.0; /* only called with x <= 0 */
    const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    const double inv_ln2 = 1.44269504088896338700e+00;
    double kf = x * inv_ln2;
    int k = (int)(kf - 0.5); /* round to nearest for negative kf */
    double r = (x - (double)k * ln2_hi) - (double)k * ln2_lo;
    /* Taylor series to degree 12: error below 1e-16 for |r| <= 0.35 */
    double p = 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    /* times 2^k, k in [-1022, 0]: build the power of two from its bits */
    uint64_t bits = (uint64_t)(k + 1023) << 52;
    double scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* ---- the candidate order: higher logit first, then lower id ---- */

/* The logit as an unsigned key in the same order (-0 counts as +0, as the
 * comparison does): the radix passes below bucket on its bytes. */
static uint32_t order_key(float f)
{
    if (f == 0.0f)
        f = 0.0f;
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u & 0x80000000u ? ~u : u | 0x80000000u;
}

/* Keep the best candidates of c[0..n) (which is in id order) up to the first
 * whose running weight reaches target: weight p (by_mass, top-p) or 1 each
 * (top-k, target k). They are compacted to c[0..m) in id order, m >= 1 is
 * returned and *kept_mass is their mass (summed in id order).
 * Radix selection on order_key: three passes of up to 2048 buckets (11, 11
 * and 10 bits) narrow to the key of the boundary candidate, whose ties are
 * then taken by id. The first two passes scan every candidate, the second
 * also lists those still in range (idx, n entries) for the last; so the
 * cost is O(n) whatever the logits (a pivot-based quickselect has inputs
 * that make it quadratic).
 * *work counts the candidate visits. */
#define RADIX 2048

static int32_t keep_best(cand *c, int32_t *idx, int32_t n, double target, int by_mass, double *kept_mass,
                         int64_t *work)
{
    /* three digits of the 32-bit key: bits 31..21, 20..10, 9..0 */
    static const int shift_of[3] = {21, 10, 0};
    uint32_t prefix = 0;
    double above = 0.0; /* weight of the candidates above the range narrowed to */
    int32_t n_listed = 0;
    for (int pass = 0; pass < 3; pass++) {
        const int shift = shift_of[pass];
        const uint32_t digit = pass ? (1u << (shift_of[pass - 1] - shift)) - 1 : RADIX - 1;
        const uint32_t fixed = pass ? ~0u << shift_of[pass - 1] : 0; /* the key bits already chosen */
        double w[RADIX];
        int32_t cnt[RADIX];
        memset(cnt, 0, sizeof cnt);
        if (by_mass)
            memset(w, 0, sizeof w);
        int32_t m = 0;
        const int32_t n_scan = pass < 2 ? n : n_listed;
        for (int32_t j = 0; j < n_scan; j++) {
            const int32_t i = pass < 2 ? j : idx[j];
            const uint32_t k = order_key(c[i].logit);
            if ((k & fixed) != prefix)
                continue;
            if (pass > 0)
                idx[m++] = i;
            const uint32_t b = (k >> shift) & digit;
            cnt[b]++;
            if (by_mass)
                w[b] += c[i].p;
        }
        n_listed = m;
        *work += n_scan;
        int chosen = -1, lowest = -1;
        for (int b = RADIX - 1; b >= 0 && chosen < 0; b--) {
            if (cnt[b] == 0)
                continue;
            lowest = b;
            const double wb = by_mass ? w[b] : (double)cnt[b];
            if (above + wb >= target)
                chosen = b;
            else
                above += wb;
        }
        if (chosen < 0) { /* rounding kept the sum short of target: keep the whole range */
            chosen = lowest;
            above -= by_mass ? w[lowest] : (double)cnt[lowest];
        }
        prefix |= (uint32_t)chosen << shift;
    }
    /* the boundary key's candidates (listed in id order), lower ids first,
     * until target */
    int32_t last_id = -1;
    double acc = above;
    for (int32_t j = 0; j < n_listed && !(last_id >= 0 && acc >= target); j++)
        if (order_key(c[idx[j]].logit) == prefix) {
            acc += by_mass ? c[idx[j]].p : 1.0;
            last_id = c[idx[j]].id;
        }
    int32_t m = 0;
    double mass = 0.0;
    for (int32_t i = 0; i < n; i++) {
        uint32_t k = order_key(c[i].logit);
        if (k > prefix || (k == prefix && c[i].id <= last_id)) {
            mass += c[i].p;
            c[m++] = c[i];
        }
    }
    *work += n_listed + (int64_t)n;
    *kept_mass = mass;
    return m;
}

/* ---- parameters ---- */

void dsr1_sampler_params_default(dsr1_sampler_params *params, size_t struct_size)
{
    dsr1_sampler_params d;
    memset(&d, 0, sizeof d);
    d.size = sizeof d;
    d.temperature = 0.6f;
    d.top_k = 0;
    d.top_p = 0.95f;
    d.min_p = 0.0f;
    d.repeat_penalty = 1.0f;
    d.frequency_penalty = 0.0f;
    d.presence_penalty = 0.0f;
    d.penalty_last_n = 64;
    d.seed = 0;
    dsri_params_default(params, struct_size, &d, sizeof d);
}

dsr1_status dsr1_sampler_new(int32_t n_vocab, const dsr1_sampler_params *params, dsr1_sampler **out)
{
    if (!out)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_sampler_new: out is NULL");
    *out = NULL;
    if (n_vocab <= 0)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_sampler_new: n_vocab is %d", n_vocab);
    dsr1_sampler_params p;
    dsr1_sampler_params_default(&p, sizeof p);
    dsr1_status st = dsri_params_read(params, &p, sizeof p, DSRI_KNOWN_SIZE(dsr1_sampler_params, n_logit_bias),
                                      "dsr1_sampler_params");
    if (st)
        return st;
    /* each parameter named: an infinite penalty would turn a logit into
     * -inf - -inf = NaN at the first repeated token */
    const struct {
        const char *name;
        float value;
        int finite; /* must be finite, not only a number */
    } num[] = {
        {"temperature", p.temperature, 0},
        {"top_p", p.top_p, 0},
        {"min_p", p.min_p, 0},
        {"repeat_penalty", p.repeat_penalty, 1},
        {"frequency_penalty", p.frequency_penalty, 1},
        {"presence_penalty", p.presence_penalty, 1},
    };
    for (size_t i = 0; i < sizeof num / sizeof num[0]; i++)
        if (isnan(num[i].value) || (num[i].finite && !isfinite(num[i].value)))
            return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_sampler_new: %s is %g; it must be a %s number",
                              num[i].name, (double)num[i].value, num[i].finite ? "finite" : "");
    if (p.repeat_penalty <= 0.0f)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_sampler_new: repeat_penalty must be > 0 (got %g)",
                          (double)p.repeat_penalty);
    if (p.top_k < 0 || p.penalty_last_n < 0 || p.n_logit_bias < 0 || (p.n_logit_bias > 0 && !p.logit_bias))
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT,
                          "dsr1_sampler_new: top_k, penalty_last_n and n_logit_bias must not be negative "
                          "(and logit_bias must be set when n_logit_bias > 0)");
    /* the window is allocated whole: a hostile value must not become a
     * multi-GiB allocation */
    if (p.penalty_last_n > DSR1_PENALTY_LAST_N_MAX)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT,
                          "dsr1_sampler_new: penalty_last_n %d is above the maximum of %d tokens "
                          "(DSR1_PENALTY_LAST_N_MAX)", p.penalty_last_n, DSR1_PENALTY_LAST_N_MAX);
    for (int32_t i = 0; i < p.n_logit_bias; i++) {
        if (p.logit_bias[i].token < 0 || p.logit_bias[i].token >= n_vocab)
            return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_sampler_new: logit_bias[%d] names token %d outside [0, %d)",
                              i, p.logit_bias[i].token, n_vocab);
        if (isnan(p.logit_bias[i].bias))
            return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_sampler_new: logit_bias[%d] is NaN", i);
    }

    dsr1_sampler *s = dsri_calloc(1, sizeof *s);
    if (!s)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "dsr1_sampler_new: out of memory");
    dsri_handle_init(&s->handle);
    s->n_vocab = n_vocab;
    s->params = p;
    s->cand = dsri_malloc((size_t)n_vocab * sizeof *s->cand);
    s->idx = dsri_malloc((size_t)n_vocab * sizeof *s->idx);
    s->count = dsri_calloc((size_t)n_vocab, sizeof *s->count);
    s->chain = dsri_malloc((size_t)n_vocab * sizeof *s->chain);
    if (p.n_logit_bias > 0)
        s->bias = dsri_malloc((size_t)p.n_logit_bias * sizeof *s->bias);
    if (p.penalty_last_n > 0)
        s->hist = dsri_malloc((size_t)p.penalty_last_n * sizeof *s->hist);
    if (!s->cand || !s->idx || !s->count || !s->chain || (p.n_logit_bias > 0 && !s->bias) ||
        (p.penalty_last_n > 0 && !s->hist)) {
        dsr1_sampler_free(s);
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "dsr1_sampler_new: cannot allocate %d candidates", n_vocab);
    }
    if (p.n_logit_bias > 0)
        memcpy(s->bias, p.logit_bias, (size_t)p.n_logit_bias * sizeof *s->bias);
    s->n_bias = p.n_logit_bias;
    s->params.logit_bias = NULL; /* the caller's array is not kept */
    seed_rng(s->rng, p.seed);
    *out = s;
    return DSR1_OK;
}

void dsr1_sampler_free(dsr1_sampler *smp)
{
    if (!smp || dsri_handle_busy(&smp->handle, "dsr1_sampler_free"))
        return;
    dsri_free(smp->cand);
    dsri_free(smp->idx);
    dsri_free(smp->count);
    dsri_free(smp->chain);
    dsri_free(smp->bias);
    dsri_free(smp->hist);
    dsri_free(smp);
}

const char *dsr1_sampler_errmsg(const dsr1_sampler *smp)
{
    return smp ? dsri_handle_message(&smp->handle) : "";
}

void dsr1_sampler_accept(dsr1_sampler *smp, dsr1_token token)
{
    if (smp && !dsri_handle_busy(&smp->handle, "dsr1_sampler_accept"))
        dsri_sampler_accept(smp, token);
}

void dsri_sampler_accept(dsr1_sampler *smp, dsr1_token token)
{
    if (smp->params.penalty_last_n <= 0 || token < 0 || token >= smp->n_vocab)
        return;
    smp->hist[smp->hist_next] = token;
    smp->hist_next = (smp->hist_next + 1) % smp->params.penalty_last_n;
    if (smp->hist_len < smp->params.penalty_last_n)
        smp->hist_len++;
}

void dsr1_sampler_reset(dsr1_sampler *smp, uint64_t seed)
{
    if (!smp || dsri_handle_busy(&smp->handle, "dsr1_sampler_reset"))
        return;
    smp->hist_len = 0;
    smp->hist_next = 0;
    smp->params.seed = seed;
    seed_rng(smp->rng, seed);
}

/* Repetition / frequency / presence penalties over the history, applied once
 * per distinct token (counts are cleared again as they are used). */
static void apply_penalties(dsr1_sampler *s)
{
    const dsr1_sampler_params *p = &s->params;
    if (s->hist_len == 0 ||
        (p->repeat_penalty == 1.0f && p->frequency_penalty == 0.0f && p->presence_penalty == 0.0f))
        return;
    for (int32_t i = 0; i < s->hist_len; i++)
        s->count[s->hist[i]]++;
    for (int32_t i = 0; i < s->hist_len; i++) {
        dsr1_token t = s->hist[i];
        int32_t c = s->count[t];
        if (c == 0)
            continue; /* already applied */
        s->count[t] = 0;
        float l = s->cand[t].logit;
        if (l == -INFINITY)
            continue;
        l = l > 0.0f ? l / p->repeat_penalty : l * p->repeat_penalty;
        l -= (float)c * p->frequency_penalty + p->presence_penalty;
        s->cand[t].logit = l;
    }
}

/* ---- log-probabilities ---- */

/* Heap where the root is the WORST of the kept (top-n selection by the
 * candidate order on the chain's logits). */
static void sift_down_lp(dsr1_token_logprob *h, int32_t n, int32_t i)
{
    for (;;) {
        int32_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && (h[w].logprob > h[l].logprob || (h[w].logprob == h[l].logprob && h[w].token < h[l].token)))
            w = l;
        if (r < n && (h[w].logprob > h[r].logprob || (h[w].logprob == h[r].logprob && h[w].token < h[r].token)))
            w = r;
        if (w == i)
            return;
        dsr1_token_logprob t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

/* log-softmax of chain/T over the tokens not at -inf, for the chosen
 * token and the n_top best (best first). */
static void fill_logprobs(const dsr1_sampler *s, const dsri_sample_opts *o, dsr1_token chosen)
{
    const float *z = s->chain;
    const int32_t n = s->n_vocab;
    double t = s->params.temperature > 0.0f ? (double)s->params.temperature : 1.0;
    double zmax = -INFINITY;
    int32_t n_inf = 0;
    for (int32_t i = 0; i < n; i++) {
        if (z[i] == INFINITY)
            n_inf++;
        if (z[i] != -INFINITY && (double)z[i] / t > zmax)
            zmax = (double)z[i] / t;
    }
    double sum = 0.0;
    if (!n_inf)
        for (int32_t i = 0; i < n; i++)
            if (z[i] != -INFINITY)
                sum += det_exp((double)z[i] / t - zmax);
    double lse = zmax + log(sum);
#define LOGPROB_OF(i)                                                                                        \
    (n_inf ? (z[i] == INFINITY ? -log((double)n_inf) : -INFINITY)                                            \
           : z[i] == -INFINITY ? -INFINITY : (double)z[i] / t - lse)
    if (o->logprob)
        *o->logprob = chosen >= 0 ? (float)LOGPROB_OF(chosen) : NAN;
    if (o->n_top <= 0 || !o->top)
        return;
    int32_t k = o->n_top < n ? o->n_top : n, m = 0;
    dsr1_token_logprob *h = o->top;
    for (int32_t i = 0; i < n; i++) {
        dsr1_token_logprob e = {i, (float)LOGPROB_OF(i)};
        if (e.logprob == -INFINITY) /* not a candidate */
            continue;
        if (m < k) {
            h[m++] = e;
            if (m == k)
                for (int32_t j = k / 2 - 1; j >= 0; j--)
                    sift_down_lp(h, k, j);
        } else if (e.logprob > h[0].logprob) { /* equal: the lower id (seen first) stays */
            h[0] = e;
            sift_down_lp(h, k, 0);
        }
    }
#undef LOGPROB_OF
    if (m < k) /* fewer candidates than asked: not a heap yet */
        for (int32_t j = m / 2 - 1; j >= 0; j--)
            sift_down_lp(h, m, j);
    for (int32_t end = m - 1; end > 0; end--) { /* heap sort: the worst goes last */
        dsr1_token_logprob t0 = h[0];
        h[0] = h[end];
        h[end] = t0;
        sift_down_lp(h, end, 0);
    }
    for (int32_t i = m; i < o->n_top; i++) {
        o->top[i].token = -1;
        o->top[i].logprob = -INFINITY;
    }
}

/* The public sampling calls: arguments checked, the sampler held. */
static dsr1_status sample_guarded(dsr1_sampler *smp, const float *logits, int32_t n_vocab, const dsri_sample_opts *o,
                                  dsr1_token *out)
{
    if (out)
        *out = -1;
    if (!smp || !logits || !out)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_sampler_sample: NULL argument");
    dsri_call call;
    dsr1_status st = dsri_enter(&smp->handle, &call, "dsr1_sampler_sample");
    if (st)
        return st;
    return dsri_leave(&smp->handle, &call, dsri_sampler_sample_ex(smp, logits, n_vocab, o, out));
}

dsr1_status dsr1_sampler_sample(dsr1_sampler *smp, const float *logits, int32_t n_vocab, dsr1_token *out)
{
    return sample_guarded(smp, logits, n_vocab, NULL, out);
}

dsr1_status dsr1_sampler_sample_logprobs(dsr1_sampler *smp, const float *logits, int32_t n_vocab, dsr1_token *out,
                                         float *logprob, dsr1_token_logprob *top, int32_t n_top)
{
    if (n_top < 0 || (n_top > 0 && !top))
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_sampler_sample_logprobs: n_top is %d and top is %s", n_top,
                          top ? "set" : "NULL");
    dsri_sample_opts o;
    memset(&o, 0, sizeof o);
    o.logprob = logprob;
    o.top = top;
    o.n_top = n_top;
    o.want_logprobs = 1;
    o.forced = -1;
    return sample_guarded(smp, logits, n_vocab, &o, out);
}

static dsr1_status choose(dsr1_sampler *smp, const float *logits, int32_t n_vocab, const dsri_sample_opts *o,
                          dsr1_token *out);

dsr1_status dsri_sampler_sample_ex(dsr1_sampler *smp, const float *logits, int32_t n_vocab, const dsri_sample_opts *o,
                                   dsr1_token *out)
{
    *out = -1;
    if (n_vocab != smp->n_vocab)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_sampler_sample: %d logits given, the sampler was made for %d",
                          n_vocab, smp->n_vocab);
    dsr1_status st = choose(smp, logits, n_vocab, o, out);
    if (!st && o && o->want_logprobs)
        fill_logprobs(smp, o, *out);
    return st;
}

/* The chain itself; with o->forced >= 0 it stops after the logits are
 * ready (for log-probabilities) and returns that token. */
static dsr1_status choose(dsr1_sampler *smp, const float *logits, int32_t n_vocab, const dsri_sample_opts *o,
                          dsr1_token *out)
{
    const dsr1_sampler_params *p = &smp->params;
    cand *c = smp->cand;
    const uint64_t *allow = o ? o->allow : NULL;

    /* 1. logit bias, 2. penalties (both on the raw logits, in id order) */
    for (int32_t i = 0; i < n_vocab; i++) {
        if (isnan(logits[i]))
            return dsri_error(DSR1_ERR_NUMERIC, "dsr1_sampler_sample: logit of token %d is NaN", i);
        c[i].logit = logits[i];
        c[i].id = i;
    }
    for (int32_t i = 0; i < smp->n_bias; i++)
        c[smp->bias[i].token].logit += smp->bias[i].bias;
    apply_penalties(smp);
    if (allow) /* a grammar: what it does not allow is banned */
        for (int32_t i = 0; i < n_vocab; i++)
            if (!((allow[i >> 6] >> (i & 63)) & 1u))
                c[i].logit = -INFINITY;
    if (o && o->want_logprobs)
        for (int32_t i = 0; i < n_vocab; i++)
            smp->chain[i] = c[i].logit;
    if (o && o->forced >= 0) {
        if (o->forced >= n_vocab)
            return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "sampler: token %d is outside [0, %d)", o->forced, n_vocab);
        if (allow && !((allow[o->forced >> 6] >> (o->forced & 63)) & 1u))
            return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "sampler: token %d is not allowed by the grammar here",
                              o->forced);
        *out = o->forced;
        return DSR1_OK;
    }

    int32_t best = -1;
    for (int32_t i = 0; i < n_vocab; i++) {
        if (isnan(c[i].logit))
            return dsri_error(DSR1_ERR_NUMERIC,
                              "dsr1_sampler_sample: token %d is NaN after the logit bias and penalties (a +inf "
                              "logit biased by -inf?)", i);
        if (c[i].logit != -INFINITY && (best < 0 || c[i].logit > c[best].logit))
            best = i; /* strict '>' keeps the lowest id among ties */
    }
    if (best < 0)
        return allow ? dsri_error(DSR1_ERR_STATE, "dsr1_sampler_sample: the grammar allows no token the logits allow")
                     : dsri_error(DSR1_ERR_NUMERIC, "dsr1_sampler_sample: every logit is -inf (nothing can be chosen)");
    /* greedy; +inf dominates everything (the lowest such id is taken) */
    if (!(p->temperature > 0.0f) || c[best].logit == INFINITY) {
        *out = best;
        return DSR1_OK;
    }

    /* 3. temperature; tokens at -inf (banned) leave the candidate list */
    int32_t n = 0;
    for (int32_t i = 0; i < n_vocab; i++) {
        if (c[i].logit == -INFINITY)
            continue;
        float z = c[i].logit / p->temperature;
        if (z == -INFINITY)
            continue;
        c[n].logit = z;
        c[n].id = c[i].id;
        n++;
    }
    if (n == 0) { /* every finite logit underflowed to -inf at this temperature */
        *out = best;
        return DSR1_OK;
    }
    float zmax = -INFINITY;
    for (int32_t i = 0; i < n; i++)
        if (c[i].logit > zmax)
            zmax = c[i].logit;
    if (zmax == INFINITY) { /* a tiny temperature overflowed: the argmax */
        *out = best;
        return DSR1_OK;
    }

    /* 4. top-k: the k best (by count; p is not needed for it yet) */
    smp->last_work = 0;
    double unused;
    if (p->top_k > 0 && p->top_k < n)
        n = keep_best(c, smp->idx, n, (double)p->top_k, 0, &unused, &smp->last_work);

    /* unnormalised probabilities and their sum, in candidate (id) order */
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        c[i].p = det_exp((double)c[i].logit - (double)zmax);
        sum += c[i].p;
    }

    /* 5. top-p: the fewest best candidates reaching top_p of the mass
     * (top_p <= 0: the best one alone) */
    cand *kept = c;
    int32_t n_kept = n;
    double kept_sum = sum;
    if (p->top_p < 1.0f && n > 1) {
        double target = (double)p->top_p * sum;
        if (target > 0.0)
            n_kept = keep_best(c, smp->idx, n, target, 1, &kept_sum, &smp->last_work);
        else
            n_kept = keep_best(c, smp->idx, n, 1.0, 0, &kept_sum, &smp->last_work);
    }

    /* 6. min-p: keep p_i >= min_p * p_max (p_max is exp(0) = 1 unnormalised) */
    if (p->min_p > 0.0f) {
        double thr = (double)p->min_p;
        int32_t m = 0;
        kept_sum = 0.0;
        for (int32_t i = 0; i < n_kept; i++) {
            if (kept[i].p >= thr) {
                kept[m++] = kept[i];
                kept_sum += kept[i].p;
            }
        }
        n_kept = m; /* the maximum (p = 1) always survives when min_p <= 1 */
        if (n_kept == 0) {
            *out = best;
            return DSR1_OK;
        }
    }

    /* 7. the seeded choice */
    double u = uniform01(smp->rng) * kept_sum;
    double cum = 0.0;
    int32_t pick = -1;
    for (int32_t i = 0; i < n_kept; i++) {
        if (kept[i].p <= 0.0)
            continue;
        pick = i;
        cum += kept[i].p;
        if (cum > u)
            break;
    }
    *out = pick >= 0 ? kept[pick].id : best;
    return DSR1_OK;
}

/* ---- state blobs ----
 *
 * "DSR1SMP" 0x01 | u32 n_vocab | u32 penalty_last_n | u64 rng[4] | u64 seed |
 * u32 hist_len | u32 hist_next | u32 hist[penalty_last_n] | u32 CRC-32 of
 * everything before it. All little-endian. */

static const uint8_t STATE_MAGIC[8] = {'D', 'S', 'R', '1', 'S', 'M', 'P', 1};

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p) { return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32; }

static size_t state_size(int32_t window) { return 8 + 4 + 4 + 32 + 8 + 4 + 4 + 4 * (size_t)window + 4; }

size_t dsri_sampler_state_size(const dsr1_sampler *smp) { return state_size(smp->params.penalty_last_n); }

dsr1_status dsr1_sampler_state_save(const dsr1_sampler *smp, void *buf, size_t buf_size, size_t *n_bytes)
{
    if (!smp || !n_bytes || (!buf && buf_size))
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_sampler_state_save: NULL argument");
    const int32_t w = smp->params.penalty_last_n;
    size_t need = state_size(w);
    *n_bytes = need;
    if (buf_size < need)
        return dsri_error(DSR1_ERR_BUFFER_TOO_SMALL, "dsr1_sampler_state_save: %zu bytes needed, buffer has %zu",
                          need, buf_size);
    uint8_t *p = buf;
    memcpy(p, STATE_MAGIC, 8);
    put_u32(p + 8, (uint32_t)smp->n_vocab);
    put_u32(p + 12, (uint32_t)w);
    for (int i = 0; i < 4; i++)
        put_u64(p + 16 + 8 * i, smp->rng[i]);
    put_u64(p + 48, smp->params.seed);
    put_u32(p + 56, (uint32_t)smp->hist_len);
    put_u32(p + 60, (uint32_t)smp->hist_next);
    for (int32_t i = 0; i < w; i++)
        put_u32(p + 64 + 4 * (size_t)i, i < smp->hist_len ? (uint32_t)smp->hist[i] : 0u);
    put_u32(p + need - 4, dsri_crc32(0, p, need - 4));
    return DSR1_OK;
}

dsr1_status dsr1_sampler_state_load(dsr1_sampler *smp, const void *data, size_t size)
{
    const char *fn = "dsr1_sampler_state_load";
    if (!smp || (!data && size))
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: NULL argument", fn);
    const uint8_t *p = data;
    if (size < state_size(0) || memcmp(p, STATE_MAGIC, 8) != 0)
        return dsri_error(DSR1_ERR_FORMAT, "%s: not a sampler state (%zu bytes)", fn, size);
    uint32_t n_vocab = get_u32(p + 8), w = get_u32(p + 12);
    if (w > (uint32_t)INT32_MAX / 4 || size != state_size((int32_t)w))
        return dsri_error(DSR1_ERR_FORMAT, "%s: %zu bytes, a state with a window of %u has %zu", fn, size, w,
                          w > (uint32_t)INT32_MAX / 4 ? (size_t)0 : state_size((int32_t)w));
    if (dsri_crc32(0, p, size - 4) != get_u32(p + size - 4))
        return dsri_error(DSR1_ERR_FORMAT, "%s: the checksum does not match (damaged state)", fn);
    if (n_vocab != (uint32_t)smp->n_vocab || w != (uint32_t)smp->params.penalty_last_n)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT,
                          "%s: the state is of a sampler for %u tokens with a penalty window of %u; this one has "
                          "%d and %d", fn, n_vocab, w, smp->n_vocab, smp->params.penalty_last_n);
    uint32_t len = get_u32(p + 56), next = get_u32(p + 60);
    uint64_t rng[4];
    for (int i = 0; i < 4; i++)
        rng[i] = get_u64(p + 16 + 8 * i);
    if (len > w || (w > 0 && next >= w) || (w == 0 && next != 0) || (len < w && next != len) ||
        (rng[0] | rng[1] | rng[2] | rng[3]) == 0)
        return dsri_error(DSR1_ERR_FORMAT, "%s: inconsistent history (length %u, next %u, window %u) or generator",
                          fn, len, next, w);
    for (uint32_t i = 0; i < len; i++)
        if (get_u32(p + 64 + 4 * (size_t)i) >= n_vocab)
            return dsri_error(DSR1_ERR_FORMAT, "%s: history token %u is outside the vocabulary", fn,
                              get_u32(p + 64 + 4 * (size_t)i));
    for (uint32_t i = len; i < w; i++) /* saved as zeros: a blob has one spelling */
        if (get_u32(p + 64 + 4 * (size_t)i) != 0)
            return dsri_error(DSR1_ERR_FORMAT, "%s: unused history slot %u is not zero", fn, i);
    memcpy(smp->rng, rng, sizeof rng);
    smp->params.seed = get_u64(p + 48);
    smp->hist_len = (int32_t)len;
    smp->hist_next = (int32_t)next;
    for (uint32_t i = 0; i < len; i++)
        smp->hist[i] = (dsr1_token)get_u32(p + 64 + 4 * (size_t)i);
    return DSR1_OK;
}

struct dsri_handle *dsri_sampler_handle(dsr1_sampler *smp)
{
    return &smp->handle;
}
