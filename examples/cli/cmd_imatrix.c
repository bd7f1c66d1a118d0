/*
 * dsr1 imatrix -m MODEL -f TEXT [-o FILE] [-c N] [--chunks N] [-t N]
 *
 * An importance matrix as llama-imatrix computes it: the text is tokenized
 * (with BOS), cut into chunks of -c tokens (each starting with BOS), and each
 * chunk is evaluated from an empty cache; every product of a weight matrix
 * of a layer (blk.*) with activations adds the squares of its input rows to
 * that weight's entry, per expert for the 3-D expert tensors, and counts the
 * rows. The file (llama.cpp's GGUF imatrix format, or the legacy format when
 * FILE ends in .dat) is what llama-quantize and `dsr1 quantize --imatrix`
 * read. The products are watched through the host backends' matmul
 * observer (lib/model/imatrix_collect.h), so everything runs on the CPU.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/alloc.h"
#include "model/imatrix_collect.h"
#include "quant/imatrix.h"

#define CMD "imatrix"

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

int dsr1_cli_imatrix(const dsr1_cli_command *cmd, dsr1_cli_opts *o)
{
    if (!o->model_path || !o->prompt_file)
        dsr1_cli_usage_error(cmd, "-m MODEL and -f TEXT are required");
    if (o->n_gpu_layers != 0 || (o->backend && strcmp(o->backend, "vulkan") == 0))
        dsr1_cli_usage_error(cmd, "the products are watched on the CPU: no -ngl, no device backend");
    const char *out_path = o->out_path ? o->out_path : "imatrix.gguf";
    const int32_t n_ctx = o->n_ctx > 0 ? o->n_ctx : 512;
    if (n_ctx < 2)
        dsr1_cli_usage_error(cmd, "-c must be at least 2 tokens");
    int rc = DSR1_EXIT_ERROR;
    size_t text_len = 0;
    char *text = dsr1_cli_read_file(CMD, o->prompt_file, &text_len);
    dsr1_model *model = NULL;
    dsr1_context *ctx = NULL;
    dsr1_token *tokens = NULL, bos = -1;
    dsri_imatrix *m = NULL;
    dsri_imatrix_collector *col = NULL;
    if (!text)
        goto done;
    if (!(model = dsr1_cli_load(CMD, o, 0)))
        goto done;

    int32_t n_tokens = 0, n_bos = 0;
    dsr1_status st = dsr1_tokenize(model, text, text_len, NULL, 0, &n_tokens, DSR1_TOKENIZE_ADD_BOS);
    if (st && st != DSR1_ERR_BUFFER_TOO_SMALL) {
        rc = dsr1_cli_fail(CMD, st);
        goto done;
    }
    if (!(tokens = malloc(((size_t)n_tokens + 1) * sizeof *tokens)))
        goto oom;
    if ((st = dsr1_tokenize(model, text, text_len, tokens, n_tokens, &n_tokens, DSR1_TOKENIZE_ADD_BOS))) {
        rc = dsr1_cli_fail(CMD, st);
        goto done;
    }
    /* the BOS each chunk starts with (llama-imatrix), when the vocabulary has one */
    if (dsr1_tokenize(model, "", 0, &bos, 1, &n_bos, DSR1_TOKENIZE_ADD_BOS) != DSR1_OK || n_bos != 1)
        bos = -1;
    int32_t n_chunks = n_tokens / n_ctx;
    if (o->n_chunks > 0 && o->n_chunks < n_chunks)
        n_chunks = o->n_chunks;
    if (n_chunks < 1) {
        fprintf(stderr, "dsr1 " CMD ": '%s' has %d tokens, fewer than one chunk of %d (-c)\n", o->prompt_file,
                (int)n_tokens, (int)n_ctx);
        goto done;
    }

    /* split MLA: the first token alone, then batches of n_ctx - 2 rows, so
     * no batch both has more than two rows and holds all its keys */
    const int split_mla = dsri_imatrix_split_mla(model) && n_ctx >= 4;
    dsr1_context_params cp;
    dsr1_cli_context_params(o, &cp);
    cp.n_ctx = n_ctx;
    cp.n_batch = split_mla ? n_ctx - 2 : n_ctx;
    if ((st = dsr1_context_new(model, &cp, &ctx))) {
        rc = dsr1_cli_fail(CMD, st);
        goto done;
    }
    if (!(m = dsri_imatrix_new()) || !(m->dataset = dsri_strndup(o->prompt_file, strlen(o->prompt_file))))
        goto oom;
    m->chunk_size = n_ctx;
    if ((st = dsri_imatrix_collect_start(ctx, m, &col))) {
        rc = dsr1_cli_fail(CMD, st);
        goto done;
    }
    fprintf(stderr, "dsr1 " CMD ": %d tokens, %d chunks of %d\n", (int)n_tokens, (int)n_chunks, (int)n_ctx);
    dsr1_cli_progress bar;
    dsr1_cli_progress_init(&bar, "computing");
    for (int32_t k = 0; k < n_chunks; k++) {
        dsr1_token *chunk = tokens + (size_t)k * (size_t)n_ctx;
        if (bos >= 0)
            chunk[0] = bos;
        dsr1_context_reset(ctx);
        const int32_t first = split_mla ? 1 : n_ctx;
        if ((st = dsr1_eval(ctx, chunk, first, 0, 0)) ||
            (first < n_ctx && (st = dsr1_eval(ctx, chunk + first, n_ctx - first, first, 0)))) {
            dsr1_cli_progress_end(&bar);
            rc = dsr1_cli_fail(CMD, st);
            goto done;
        }
        if ((st = dsri_imatrix_collect_status(col))) {
            dsr1_cli_progress_end(&bar);
            rc = dsr1_cli_fail(CMD, st);
            goto done;
        }
        m->chunk_count = k + 1;
        dsr1_cli_progress_draw(&bar, (uint64_t)k + 1, (uint64_t)n_chunks, 0);
    }
    if ((st = dsri_imatrix_save(m, out_path, ends_with(out_path, ".dat")))) {
        rc = dsr1_cli_fail(CMD, st);
        goto done;
    }
    int64_t partial = 0;
    for (int64_t i = 0; i < m->n_entries; i++)
        for (int64_t k = 0; k < m->entries[i].n_counts; k++)
            if (m->entries[i].counts[k] == 0) {
                partial++;
                break;
            }
    printf("%s: %lld entries (%lld with experts that saw no token), %d chunks of %d tokens\n", out_path,
           (long long)m->n_entries, (long long)partial, (int)m->chunk_count, (int)n_ctx);
    rc = DSR1_EXIT_OK;
    goto done;
oom:
    fprintf(stderr, "dsr1 " CMD ": out of memory\n");
done:
    dsri_imatrix_collect_stop(col);
    dsri_imatrix_free(m);
    dsr1_context_free(ctx);
    dsr1_model_free(model);
    free(tokens);
    free(text);
    return rc;
}
