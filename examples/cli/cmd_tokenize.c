/*
 * dsr1 tokenize -m MODEL [--bos]
 *     UTF-8 text on stdin -> token ids on one line, space-separated. Special
 *     token spellings in the text are recognised; --bos prepends BOS.
 * dsr1 detokenize -m MODEL [--no-control]
 *     ids (whitespace-separated) on stdin -> the text on stdout. Control
 *     tokens are printed as their spelling (so detokenize inverts tokenize)
 *     unless --no-control.
 * Both load the vocabulary only, so vocabulary-only GGUF files work.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int dsr1_cli_tokenize(const dsr1_cli_command *cmdd, dsr1_cli_opts *o)
{
    const char *cmd = cmdd->name;
    if (!o->model_path)
        dsr1_cli_usage_error(cmdd, "-m MODEL is required");
    size_t len;
    char *text = dsr1_cli_read_file(cmd, "-", &len);
    if (!text)
        return DSR1_EXIT_ERROR;
    dsr1_model *model = dsr1_cli_load(cmd, o, 1);
    if (!model) {
        free(text);
        return 1;
    }
    uint32_t flags = DSR1_TOKENIZE_PARSE_SPECIAL | (o->add_bos ? DSR1_TOKENIZE_ADD_BOS : 0u);
    int32_t n = 0;
    dsr1_status st = dsr1_tokenize(model, text, len, NULL, 0, &n, flags);
    dsr1_token *tokens = NULL;
    if (st == DSR1_ERR_BUFFER_TOO_SMALL) {
        tokens = malloc((size_t)n * sizeof *tokens);
        st = tokens ? dsr1_tokenize(model, text, len, tokens, n, &n, flags) : DSR1_ERR_OUT_OF_MEMORY;
    }
    int rc = 0;
    if (st != DSR1_OK) {
        rc = dsr1_cli_fail(cmd, st);
    } else {
        for (int32_t i = 0; i < n; i++)
            printf(i ? " %d" : "%d", tokens[i]);
        printf("\n");
    }
    free(tokens);
    free(text);
    dsr1_model_free(model);
    return rc;
}

int dsr1_cli_detokenize(const dsr1_cli_command *cmdd, dsr1_cli_opts *o)
{
    const char *cmd = cmdd->name;
    uint32_t flags = o->no_control ? 0u : DSR1_PIECE_RENDER_CONTROL;
    if (!o->model_path)
        dsr1_cli_usage_error(cmdd, "-m MODEL is required");
    size_t len;
    char *in = dsr1_cli_read_file(cmd, "-", &len);
    if (!in)
        return DSR1_EXIT_ERROR;
    /* parse the ids */
    size_t cap = 256, n = 0;
    dsr1_token *ids = malloc(cap * sizeof *ids);
    int rc = 0;
    for (char *p = in; ids;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\v' || *p == '\f')
            p++;
        if (!*p)
            break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX ||
            (*end && *end != ' ' && *end != '\t' && *end != '\n' && *end != '\r' && *end != '\v' && *end != '\f')) {
            fprintf(stderr, "dsr1 %s: '%.20s' is not a token id\n", cmd, p);
            rc = 1;
            break;
        }
        if (n == cap) {
            dsr1_token *b = realloc(ids, 2 * cap * sizeof *ids);
            if (!b) {
                free(ids);
                ids = NULL;
                break;
            }
            ids = b;
            cap *= 2;
        }
        ids[n++] = (dsr1_token)v;
        p = end;
    }
    free(in);
    if (!ids) {
        fprintf(stderr, "dsr1 %s: out of memory\n", cmd);
        return 1;
    }
    if (rc || n > INT32_MAX) {
        free(ids);
        return 1;
    }
    dsr1_model *model = dsr1_cli_load(cmd, o, 1);
    if (!model) {
        free(ids);
        return 1;
    }
    size_t need = 0;
    char *text = NULL;
    dsr1_status st = dsr1_detokenize(model, ids, (int32_t)n, NULL, 0, &need, flags);
    if (st == DSR1_ERR_BUFFER_TOO_SMALL) {
        text = malloc(need + 1);
        st = text ? dsr1_detokenize(model, ids, (int32_t)n, text, need + 1, &need, flags) : DSR1_ERR_OUT_OF_MEMORY;
    }
    if (st != DSR1_OK)
        rc = dsr1_cli_fail(cmd, st);
    else if (need && fwrite(text, 1, need, stdout) != need)
        rc = 1;
    free(text);
    free(ids);
    dsr1_model_free(model);
    return rc;
}
