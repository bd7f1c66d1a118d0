/* Public grammar API (dsr1.h "Grammars"): the compiled grammar and its
 * vocabulary trie in one shareable, immutable handle. */
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "grammar/grammar.h"
#include "grammar/json_schema.h"

struct dsr1_grammar {
    const dsr1_model *model;
    dsri_gbnf *rules;
    dsri_vtrie *trie;
};

dsr1_status dsr1_grammar_new(const dsr1_model *model, const char *gbnf, size_t len, const char *root,
                             dsr1_grammar **out)
{
    if (!out)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_grammar_new: out is NULL");
    *out = NULL;
    if (!model || !gbnf)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_grammar_new: model and gbnf are required");
    dsr1_grammar *g = dsri_calloc(1, sizeof *g);
    if (!g)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "dsr1_grammar_new: out of memory");
    g->model = model;
    dsr1_status st = dsri_gbnf_parse(gbnf, len, root, DSRI_GRAMMAR_LEAD_WS, &g->rules);
    if (!st)
        st = dsri_vtrie_new(model, &g->trie);
    if (st) {
        dsr1_grammar_free(g);
        return st;
    }
    *out = g;
    return DSR1_OK;
}

dsr1_status dsr1_grammar_from_json_schema(const dsr1_model *model, const char *schema, size_t len,
                                          dsr1_grammar **out)
{
    if (!out)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_grammar_from_json_schema: out is NULL");
    *out = NULL;
    if (!model || !schema)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_grammar_from_json_schema: model and schema are required");
    char *text;
    size_t n;
    dsr1_status st = dsri_json_schema_to_gbnf(schema, len, &text, &n);
    if (st)
        return st;
    st = dsr1_grammar_new(model, text, n, "root", out);
    dsri_free(text);
    return st;
}

void dsr1_grammar_free(dsr1_grammar *g)
{
    if (!g)
        return;
    dsri_gbnf_free(g->rules);
    dsri_vtrie_free(g->trie);
    dsri_free(g);
}

dsr1_status dsr1_json_schema_to_grammar(const char *schema, size_t len, char *buf, size_t buf_size, size_t *n_bytes)
{
    if (!schema || !n_bytes || (!buf && buf_size))
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_json_schema_to_grammar: NULL argument");
    char *text;
    size_t n;
    dsr1_status st = dsri_json_schema_to_gbnf(schema, len, &text, &n);
    if (st)
        return st;
    *n_bytes = n;
    if (n >= buf_size) {
        dsri_free(text);
        return dsri_error(DSR1_ERR_BUFFER_TOO_SMALL, "dsr1_json_schema_to_grammar: %zu bytes needed (with the NUL)",
                          n + 1);
    }
    memcpy(buf, text, n + 1);
    dsri_free(text);
    return DSR1_OK;
}

const dsri_gbnf *dsri_grammar_rules(const dsr1_grammar *g) { return g->rules; }
const dsri_vtrie *dsri_grammar_trie(const dsr1_grammar *g) { return g->trie; }
const dsr1_model *dsri_grammar_model(const dsr1_grammar *g) { return g->model; }
