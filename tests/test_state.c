/*
 * Saved context state (dsr1_context_state_* and dsr1_chat_state_*).
 *
 *   test_state DATA_DIR    (DATA_DIR/models/{qwen2,llama,deepseek2}-q8_0.gguf, qwen3-f16.gguf)
 *
 * For each architecture, with a seeded temperature sampler and a penalty
 * window: a context that evaluated a prompt and sampled some tokens is
 * saved, then continues; a fresh context (other n_ctx and n_batch) and a
 * sampler with another seed load the blob and must continue with the same
 * tokens and bit-identical logits (also through a file, and with an f32
 * cache). The size query is exact. Hostile blobs: every truncation and
 * (on blobs small enough) every single-bit flip is DSR1_ERR_FORMAT and
 * leaves the context and sampler as they were; a blob of another model
 * (another architecture, and the same one with other weight types) is
 * DSR1_ERR_FORMAT; another kv_type, too small an n_ctx, or a sampler that
 * does not fit is DSR1_ERR_INVALID_ARGUMENT. A chat (deepseek2, whose
 * vocabulary has R1's markers) saved after a turn and loaded into a new
 * chat answers the next question with the same tokens. Saving during a
 * generation or a chat turn is DSR1_ERR_STATE. With a Vulkan device: the
 * round trip with a layer offloaded (skipped, saying so, without one).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsr1.h"
#include "model/model.h"
#include "check.h"

#define N_PROMPT 20
#define N_BEFORE 10 /* tokens sampled before the save */
#define N_AFTER 12  /* and compared after it */

static const char *data_dir;

static dsr1_model *load(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/models/%s.gguf", data_dir, name);
    dsr1_model_params mp;
    dsr1_model_params_default(&mp, sizeof mp);
    dsr1_model *m = NULL;
    if (dsr1_model_load(path, &mp, &m) != DSR1_OK)
        printf("cannot load %s: %s\n", path, dsr1_last_error());
    return m;
}

static dsr1_context *new_ctx(const dsr1_model *m, int32_t n_ctx, int32_t n_batch, dsr1_kv_type kv)
{
    dsr1_context_params cp;
    dsr1_context_params_default(&cp, sizeof cp);
    cp.n_ctx = n_ctx;
    cp.n_batch = n_batch;
    cp.n_threads = 2;
    cp.kv_type = kv;
    dsr1_context *c = NULL;
    CHECK(dsr1_context_new(m, &cp, &c) == DSR1_OK, "context: %s", dsr1_last_error());
    return c;
}

static dsr1_sampler *new_sampler(const dsr1_model *m, uint64_t seed, int32_t window)
{
    dsr1_sampler_params sp;
    dsr1_sampler_params_default(&sp, sizeof sp);
    sp.seed = seed;
    sp.temperature = 0.9f;
    sp.repeat_penalty = 1.3f;
    sp.penalty_last_n = window;
    dsr1_sampler *s = NULL;
    CHECK(dsr1_sampler_new(dsr1_model_n_vocab(m), &sp, &s) == DSR1_OK, "sampler: %s", dsr1_last_error());
    return s;
}

/* n steps of: sample from the current logits, accept, evaluate. Tokens
 * and each step's logits row (before sampling) into toks / rows. */
static int run_steps(dsr1_context *c, dsr1_sampler *s, int n, dsr1_token *toks, float *rows)
{
    const int32_t n_vocab = dsr1_model_n_vocab(dsr1_context_model(c));
    for (int i = 0; i < n; i++) {
        const float *lg = dsr1_logits(c, -1);
        if (!lg)
            return 0;
        if (rows)
            memcpy(rows + (size_t)i * (size_t)n_vocab, lg, (size_t)n_vocab * sizeof *lg);
        dsr1_token t;
        if (dsr1_sampler_sample(s, lg, n_vocab, &t) != DSR1_OK)
            return 0;
        dsr1_sampler_accept(s, t);
        if (toks)
            toks[i] = t;
        if (dsr1_eval(c, &t, 1, dsr1_context_n_past(c), 0) != DSR1_OK)
            return 0;
    }
    return 1;
}

static void *save_ctx(dsr1_context *c, const dsr1_sampler *s, size_t *n)
{
    size_t need = 0;
    CHECK(dsr1_context_state_save(c, s, NULL, 0, &need) == DSR1_ERR_BUFFER_TOO_SMALL && need > 56,
          "size query: %zu", need);
    uint8_t *buf = malloc(need + 1);
    size_t got = 0;
    CHECK(dsr1_context_state_save(c, s, buf, need - 1, &got) == DSR1_ERR_BUFFER_TOO_SMALL && got == need,
          "one byte short: %zu", got);
    CHECK(dsr1_context_state_save(c, s, buf, need + 1, &got) == DSR1_OK && got == need, "save: %s (%zu of %zu)",
          dsr1_context_errmsg(c), got, need);
    *n = need;
    return buf;
}

/* The state a refused load must leave: n_past, the last logits, the
 * sampler's blob. */
typedef struct snapshot {
    int32_t n_past;
    float *logits;
    uint8_t *smp;
    size_t smp_len;
} snapshot;

static void snap(dsr1_context *c, dsr1_sampler *s, snapshot *o)
{
    const int32_t n_vocab = dsr1_model_n_vocab(dsr1_context_model(c));
    o->n_past = dsr1_context_n_past(c);
    o->logits = malloc((size_t)n_vocab * sizeof(float));
    const float *lg = dsr1_logits(c, -1);
    if (lg)
        memcpy(o->logits, lg, (size_t)n_vocab * sizeof(float));
    dsr1_sampler_state_save(s, NULL, 0, &o->smp_len);
    o->smp = malloc(o->smp_len);
    dsr1_sampler_state_save(s, o->smp, o->smp_len, &o->smp_len);
}

static int same_as(dsr1_context *c, dsr1_sampler *s, const snapshot *o)
{
    const int32_t n_vocab = dsr1_model_n_vocab(dsr1_context_model(c));
    const float *lg = dsr1_logits(c, -1);
    size_t n = 0;
    uint8_t buf[4096];
    dsr1_sampler_state_save(s, buf, sizeof buf, &n);
    return dsr1_context_n_past(c) == o->n_past && lg && memcmp(lg, o->logits, (size_t)n_vocab * 4) == 0 &&
           n == o->smp_len && memcmp(buf, o->smp, n) == 0;
}

static void free_snap(snapshot *o)
{
    free(o->logits);
    free(o->smp);
}

/* Truncations and bit flips of blob, loaded into c / s (which hold a
 * state of their own): DSR1_ERR_FORMAT, nothing changed. */
static void hostile_blobs(const char *name, dsr1_context *c, dsr1_sampler *s, const uint8_t *blob, size_t size)
{
    snapshot before;
    snap(c, s, &before);
    uint8_t *b = malloc(size);
    int bad_trunc = 0, bad_flip = 0, changed = 0, n_flips = 0;
    for (size_t len = 0; len < size; len++) {
        dsr1_status st = dsr1_context_state_load(c, s, blob, len);
        bad_trunc += st != DSR1_ERR_FORMAT;
    }
    changed += !same_as(c, s, &before);
    /* every bit of blobs up to 16 KiB; else every bit of the first and last
     * 256 bytes and every 61st bit in between */
    memcpy(b, blob, size);
    for (size_t bit = 0; bit < size * 8; bit++) {
        size_t byte = bit / 8;
        if (size > 16384 && byte >= 256 && byte < size - 256 && bit % 61 != 0)
            continue;
        b[byte] ^= (uint8_t)(1u << (bit % 8));
        dsr1_status st = dsr1_context_state_load(c, s, b, size);
        bad_flip += st != DSR1_ERR_FORMAT;
        b[byte] ^= (uint8_t)(1u << (bit % 8));
        n_flips++;
    }
    changed += !same_as(c, s, &before);
    CHECK(bad_trunc == 0, "%s: %d of %zu truncations not refused as FORMAT", name, bad_trunc, size);
    CHECK(bad_flip == 0, "%s: %d of %d bit flips not refused as FORMAT", name, bad_flip, n_flips);
    CHECK(changed == 0, "%s: a refused load changed the context or sampler", name);
    CHECK(dsr1_context_state_load(c, s, "DSR1CTX", 8) == DSR1_ERR_FORMAT &&
              strstr(dsr1_context_errmsg(c), "not a libdsr1 context state"),
          "%s: header only: %s", name, dsr1_context_errmsg(c));
    memcpy(b, blob, size);
    b[8] = 2; /* version 2 (checksum left alone: the version is checked first) */
    CHECK(dsr1_context_state_load(c, s, b, size) == DSR1_ERR_FORMAT && strstr(dsr1_context_errmsg(c), "version"),
          "%s: version: %s", name, dsr1_context_errmsg(c));
    CHECK(dsr1_context_state_load(c, s, NULL, 0) == DSR1_ERR_FORMAT, "%s: empty", name);
    CHECK(dsr1_context_state_load(c, s, NULL, 5) == DSR1_ERR_INVALID_ARGUMENT, "%s: NULL data", name);
    printf("%s: %zu-byte blob: %zu truncations and %d bit flips refused\n", name, size, size, n_flips);
    free(b);
    free_snap(&before);
}

/* Save after prompt + N_BEFORE tokens, continue; restore into a fresh
 * context and sampler; the continuation must be the same, bit for bit. */
static void round_trip(const char *name, dsr1_kv_type kv)
{
    dsr1_model *m = load(name);
    if (!m) {
        failures++;
        return;
    }
    const int32_t n_vocab = dsr1_model_n_vocab(m);
    dsr1_context *a = new_ctx(m, 96, 8, kv);
    dsr1_sampler *sa = new_sampler(m, 1234, 16);
    dsr1_token prompt[N_PROMPT];
    for (int i = 0; i < N_PROMPT; i++)
        prompt[i] = (dsr1_token)((i * 37 + 11) % n_vocab);
    CHECK(dsr1_eval(a, prompt, N_PROMPT, 0, 0) == DSR1_OK, "%s: prompt: %s", name, dsr1_context_errmsg(a));
    for (int i = 0; i < N_PROMPT; i++)
        dsr1_sampler_accept(sa, prompt[i]);
    CHECK(run_steps(a, sa, N_BEFORE, NULL, NULL), "%s: steps before", name);

    size_t size;
    uint8_t *blob = save_ctx(a, sa, &size);
    dsr1_token want[N_AFTER], got[N_AFTER];
    float *want_rows = malloc((size_t)N_AFTER * (size_t)n_vocab * sizeof(float));
    float *got_rows = malloc((size_t)N_AFTER * (size_t)n_vocab * sizeof(float));
    CHECK(run_steps(a, sa, N_AFTER, want, want_rows), "%s: steps after", name);

    /* another n_ctx and n_batch, a sampler with another seed */
    dsr1_context *b = new_ctx(m, 64, 3, kv);
    dsr1_sampler *sb = new_sampler(m, 99, 16);
    dsr1_token other = 5;
    dsr1_eval(b, &other, 1, 0, 0); /* something to replace */
    dsr1_status st = dsr1_context_state_load(b, sb, blob, size);
    CHECK(st == DSR1_OK, "%s: load: %s", name, dsr1_context_errmsg(b));
    CHECK(dsr1_context_n_past(b) == N_PROMPT + N_BEFORE, "%s: n_past %d", name, dsr1_context_n_past(b));
    CHECK(run_steps(b, sb, N_AFTER, got, got_rows), "%s: steps after load", name);
    CHECK(memcmp(want, got, sizeof want) == 0, "%s: tokens after the load differ", name);
    CHECK(memcmp(want_rows, got_rows, (size_t)N_AFTER * (size_t)n_vocab * sizeof(float)) == 0,
          "%s: logits after the load are not bit-identical", name);

    /* a file, into a third context; a context blob without the sampler */
    char path[256];
    snprintf(path, sizeof path, "test_state_%s.bin", name);
    CHECK(dsr1_context_state_save_file(b, sb, path) == DSR1_OK, "%s: save file: %s", name, dsr1_context_errmsg(b));
    dsr1_context *c = new_ctx(m, 64, 64, kv);
    dsr1_sampler *sc = new_sampler(m, 7, 16);
    CHECK(dsr1_context_state_load_file(c, sc, path) == DSR1_OK, "%s: load file: %s", name, dsr1_context_errmsg(c));
    dsr1_token t1[4], t2[4];
    float *r1 = malloc(4 * (size_t)n_vocab * 4), *r2 = malloc(4 * (size_t)n_vocab * 4);
    CHECK(run_steps(b, sb, 4, t1, r1) && run_steps(c, sc, 4, t2, r2), "%s: steps after the file", name);
    CHECK(memcmp(t1, t2, sizeof t1) == 0 && memcmp(r1, r2, 4 * (size_t)n_vocab * 4) == 0,
          "%s: the file round trip continues differently", name);
    remove(path);
    CHECK(dsr1_context_state_load_file(c, sc, path) == DSR1_ERR_IO && strstr(dsr1_context_errmsg(c), path),
          "%s: missing file: %s", name, dsr1_context_errmsg(c));

    hostile_blobs(name, c, sc, blob, size);

    /* fits-this-context checks */
    dsr1_context *f32 = new_ctx(m, 96, 8, kv == DSR1_KV_F32 ? DSR1_KV_F16 : DSR1_KV_F32);
    CHECK(dsr1_context_state_load(f32, NULL, blob, size) == DSR1_ERR_INVALID_ARGUMENT &&
              strstr(dsr1_context_errmsg(f32), "kv_type"),
          "%s: other kv_type: %s", name, dsr1_context_errmsg(f32));
    dsr1_context *small = new_ctx(m, N_PROMPT, 8, kv);
    CHECK(dsr1_context_state_load(small, NULL, blob, size) == DSR1_ERR_INVALID_ARGUMENT,
          "%s: n_ctx too small: %s", name, dsr1_context_errmsg(small));
    dsr1_sampler *wide = new_sampler(m, 1, 32);
    snapshot before;
    snap(c, wide, &before);
    CHECK(dsr1_context_state_load(c, wide, blob, size) == DSR1_ERR_INVALID_ARGUMENT && same_as(c, wide, &before),
          "%s: other penalty window: %s", name, dsr1_context_errmsg(c));
    free_snap(&before);
    /* without a sampler: the sampler part is skipped; asking for one of a
     * blob without it is refused */
    CHECK(dsr1_context_state_load(c, NULL, blob, size) == DSR1_OK && dsr1_context_n_past(c) == N_PROMPT + N_BEFORE,
          "%s: load without sampler: %s", name, dsr1_context_errmsg(c));
    size_t n_plain = 0;
    dsr1_context_state_save(c, NULL, NULL, 0, &n_plain);
    uint8_t *plain = malloc(n_plain);
    CHECK(dsr1_context_state_save(c, NULL, plain, n_plain, &n_plain) == DSR1_OK, "%s: save without sampler", name);
    CHECK(dsr1_context_state_load(b, sb, plain, n_plain) == DSR1_ERR_INVALID_ARGUMENT,
          "%s: sampler asked of a blob without one: %s", name, dsr1_context_errmsg(b));
    /* an empty context round trip: no logits afterwards */
    dsr1_context_reset(c);
    size_t n_empty = 0;
    uint8_t empty[4096];
    CHECK(dsr1_context_state_save(c, NULL, empty, sizeof empty, &n_empty) == DSR1_OK, "%s: empty save", name);
    CHECK(dsr1_context_state_load(b, NULL, empty, n_empty) == DSR1_OK && dsr1_context_n_past(b) == 0 &&
              dsr1_logits(b, -1) == NULL,
          "%s: empty load", name);

    free(plain);
    free(r1);
    free(r2);
    free(blob);
    free(want_rows);
    free(got_rows);
    dsr1_sampler_free(wide);
    dsr1_context_free(small);
    dsr1_context_free(f32);
    dsr1_sampler_free(sc);
    dsr1_context_free(c);
    dsr1_sampler_free(sb);
    dsr1_context_free(b);
    dsr1_sampler_free(sa);
    dsr1_context_free(a);
    dsr1_model_free(m);
}

/* A blob of model `from` into a context of model `into`. */
static void foreign(const char *from, const char *into)
{
    dsr1_model *mf = load(from), *mi = load(into);
    if (!mf || !mi) {
        failures++;
        dsr1_model_free(mf);
        dsr1_model_free(mi);
        return;
    }
    dsr1_context *cf = new_ctx(mf, 64, 8, DSR1_KV_F16), *ci = new_ctx(mi, 64, 8, DSR1_KV_F16);
    dsr1_token t[3] = {1, 2, 3};
    dsr1_eval(cf, t, 3, 0, 0);
    size_t n;
    uint8_t *blob = save_ctx(cf, NULL, &n);
    CHECK(dsr1_context_state_load(ci, NULL, blob, n) == DSR1_ERR_FORMAT &&
              strstr(dsr1_context_errmsg(ci), "another model"),
          "%s into %s: %s", from, into, dsr1_context_errmsg(ci));
    free(blob);
    dsr1_context_free(cf);
    dsr1_context_free(ci);
    dsr1_model_free(mf);
    dsr1_model_free(mi);
}

typedef struct collect {
    dsr1_token toks[256];
    int n;
} collect;

static int on_event(const dsr1_event *ev, void *ud)
{
    collect *c = ud;
    for (int32_t i = 0; i < ev->n_tokens && c->n < 256; i++)
        c->toks[c->n++] = ev->tokens[i];
    return 0;
}

static void chat_round_trip(const char *name)
{
    dsr1_model *m = load(name);
    if (!m) {
        failures++;
        return;
    }
    dsr1_context *ca = new_ctx(m, 256, 32, DSR1_KV_F16), *cb = new_ctx(m, 256, 16, DSR1_KV_F16);
    dsr1_sampler *sa = new_sampler(m, 42, 8), *sb = new_sampler(m, 43, 8);
    dsr1_chat *a = NULL, *b = NULL;
    CHECK(dsr1_chat_new(ca, sa, "Be brief.", &a) == DSR1_OK, "chat a");
    CHECK(dsr1_chat_new(cb, sb, NULL, &b) == DSR1_OK, "chat b");
    dsr1_generate_params gp;
    dsr1_generate_params_default(&gp, sizeof gp);
    gp.max_new_tokens = 12;
    collect first = {{0}, 0}, want = {{0}, 0}, got = {{0}, 0};
    gp.on_event = on_event;
    gp.user_data = &first;
    CHECK(dsr1_chat_ask(a, "Hello there", &gp, NULL) == DSR1_OK, "%s: first turn: %s", name, dsr1_chat_errmsg(a));

    /* during a turn: refused */
    dsr1_generation *gen = NULL;
    size_t n = 0;
    CHECK(dsr1_chat_begin(a, "x", &gp, &gen) == DSR1_OK, "begin");
    CHECK(dsr1_chat_state_save(a, NULL, 0, &n) == DSR1_ERR_STATE, "%s: chat save during a turn", name);
    CHECK(dsr1_context_state_save(ca, NULL, NULL, 0, &n) == DSR1_ERR_STATE, "%s: context save during a generation",
          name);
    dsr1_generation_free(gen); /* nothing generated: the turn is dropped */
    CHECK(dsr1_chat_n_messages(a) == 3, "%s: %d messages", name, dsr1_chat_n_messages(a));

    CHECK(dsr1_chat_state_save(a, NULL, 0, &n) == DSR1_ERR_BUFFER_TOO_SMALL, "chat size query");
    uint8_t *blob = malloc(n);
    CHECK(dsr1_chat_state_save(a, blob, n, &n) == DSR1_OK, "%s: chat save: %s", name, dsr1_chat_errmsg(a));
    gp.user_data = &want;
    dsr1_generation_stats stats_a, stats;
    stats_a.size = stats.size = sizeof stats;
    CHECK(dsr1_chat_begin(a, "And then?", &gp, &gen) == DSR1_OK, "%s: second turn", name);
    dsr1_generation_run(gen, NULL);
    dsr1_generation_get_stats(gen, &stats_a);
    dsr1_generation_free(gen);

    CHECK(dsr1_chat_state_load(b, blob, n) == DSR1_OK, "%s: chat load: %s", name, dsr1_chat_errmsg(b));
    CHECK(dsr1_chat_n_messages(b) == 3, "%s: loaded %d messages", name, dsr1_chat_n_messages(b));
    for (int32_t i = 0; i < 3 && dsr1_chat_n_messages(b) == 3; i++) {
        dsr1_chat_message ma, mb;
        dsr1_chat_message_at(a, i, &ma);
        dsr1_chat_message_at(b, i, &mb);
        CHECK(strcmp(ma.role, mb.role) == 0 && strcmp(ma.content, mb.content) == 0, "%s: message %d", name, i);
    }
    gp.user_data = &got;
    CHECK(dsr1_chat_begin(b, "And then?", &gp, &gen) == DSR1_OK, "%s: second turn after the load", name);
    dsr1_generation_run(gen, NULL);
    dsr1_generation_get_stats(gen, &stats);
    dsr1_generation_free(gen);
    CHECK(want.n > 0 && want.n == got.n && memcmp(want.toks, got.toks, (size_t)want.n * sizeof(dsr1_token)) == 0,
          "%s: the restored chat answers differently (%d and %d tokens)", name, want.n, got.n);
    /* the restored cache was reused as the uninterrupted chat reused its own */
    CHECK(stats.n_prompt_eval == stats_a.n_prompt_eval, "%s: %d prompt tokens evaluated after the load, %d without",
          name, stats.n_prompt_eval, stats_a.n_prompt_eval);
    /* a context blob has no messages; a chat blob loads into a context */
    size_t nc = 0;
    dsr1_context_state_save(cb, NULL, NULL, 0, &nc);
    uint8_t *cblob = malloc(nc);
    dsr1_context_state_save(cb, NULL, cblob, nc, &nc);
    CHECK(dsr1_chat_state_load(b, cblob, nc) == DSR1_ERR_INVALID_ARGUMENT, "%s: context blob into a chat: %s", name,
          dsr1_chat_errmsg(b));
    CHECK(dsr1_context_state_load(cb, sb, blob, n) == DSR1_OK, "%s: chat blob into a context: %s", name,
          dsr1_context_errmsg(cb));
    /* files */
    CHECK(dsr1_chat_state_save_file(a, "test_state_chat.bin") == DSR1_OK, "chat save file: %s", dsr1_chat_errmsg(a));
    CHECK(dsr1_chat_state_load_file(b, "test_state_chat.bin") == DSR1_OK &&
              dsr1_chat_n_messages(b) == dsr1_chat_n_messages(a),
          "chat load file: %s", dsr1_chat_errmsg(b));
    remove("test_state_chat.bin");
    free(cblob);
    free(blob);
    dsr1_chat_free(a);
    dsr1_chat_free(b);
    dsr1_sampler_free(sa);
    dsr1_sampler_free(sb);
    dsr1_context_free(ca);
    dsr1_context_free(cb);
    dsr1_model_free(m);
}

/* The same round trip with layers on a Vulkan device (the last layer and
 * the output head there, the others on the host: the cache is read and
 * written through both backends). Skipped, saying so, without a device. */
static void device_round_trip(const char *name)
{
    if (dsr1_device_count() <= 0) {
        printf("SKIP %s on a device: no Vulkan device (%s)\n", name, dsr1_last_error());
        return;
    }
    /* placed after the load, as dsr1_model_params.n_gpu_layers = 1 places it */
    dsr1_model *m = load(name);
    dsr1_status st = m ? dsri_model_place_from_params(m, 1, NULL, 0) : DSR1_ERR_IO;
    if (st != DSR1_OK) {
        CHECK(0, "%s with a layer on the device: %s", name, dsr1_last_error());
        dsr1_model_free(m);
        return;
    }
    const int32_t n_vocab = dsr1_model_n_vocab(m);
    dsr1_context *a = new_ctx(m, 64, 8, DSR1_KV_F16), *b = new_ctx(m, 64, 4, DSR1_KV_F16);
    dsr1_sampler *sa = new_sampler(m, 5, 16), *sb = new_sampler(m, 6, 16);
    dsr1_token prompt[N_PROMPT];
    for (int i = 0; i < N_PROMPT; i++)
        prompt[i] = (dsr1_token)((i * 53 + 3) % n_vocab);
    CHECK(dsr1_eval(a, prompt, N_PROMPT, 0, 0) == DSR1_OK, "%s device: prompt: %s", name, dsr1_context_errmsg(a));
    CHECK(run_steps(a, sa, 4, NULL, NULL), "%s device: steps before", name);
    size_t size;
    uint8_t *blob = save_ctx(a, sa, &size);
    dsr1_token want[N_AFTER], got[N_AFTER];
    float *want_rows = malloc((size_t)N_AFTER * (size_t)n_vocab * sizeof(float));
    float *got_rows = malloc((size_t)N_AFTER * (size_t)n_vocab * sizeof(float));
    CHECK(run_steps(a, sa, N_AFTER, want, want_rows), "%s device: steps after", name);
    CHECK(dsr1_context_state_load(b, sb, blob, size) == DSR1_OK, "%s device: load: %s", name, dsr1_context_errmsg(b));
    CHECK(run_steps(b, sb, N_AFTER, got, got_rows), "%s device: steps after the load", name);
    CHECK(memcmp(want, got, sizeof want) == 0 &&
              memcmp(want_rows, got_rows, (size_t)N_AFTER * (size_t)n_vocab * sizeof(float)) == 0,
          "%s device: the continuation after the load is not bit-identical", name);
    printf("%s with its last layer and output on the Vulkan device: %zu-byte state, continuation bit-identical\n",
           name, size);
    free(blob);
    free(want_rows);
    free(got_rows);
    dsr1_sampler_free(sa);
    dsr1_sampler_free(sb);
    dsr1_context_free(a);
    dsr1_context_free(b);
    dsr1_model_free(m);
}

int main(int argc, char **argv)
{
    data_dir = argc > 1 ? argv[1] : "tests/data";
    round_trip("qwen2-q8_0", DSR1_KV_F16);
    round_trip("llama-q8_0", DSR1_KV_F16);
    round_trip("qwen3-f16", DSR1_KV_F16);
    round_trip("deepseek2-q8_0", DSR1_KV_F16);
    round_trip("qwen2-q8_0", DSR1_KV_F32);
    foreign("qwen2-q8_0", "llama-q8_0");
    foreign("qwen2-q8_0", "qwen2-q4_0");
    foreign("deepseek2-q8_0", "deepseek2-f16");
    chat_round_trip("deepseek2-q8_0");
    device_round_trip("qwen2-q8_0");
    return check_summary("test_state");
}
