/* The JSON reader (json.h): recursive descent with a depth limit. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "grammar/json.h"

typedef struct reader {
    const char *begin, *s, *end;
    dsr1_status st;
} reader;

static dsri_json *fail(reader *r, const char *what)
{
    if (!r->st)
        r->st = dsri_error(DSR1_ERR_FORMAT, "JSON: %s at byte %zu", what, (size_t)(r->s - r->begin));
    return NULL;
}

static dsri_json *nomem(reader *r)
{
    if (!r->st)
        r->st = dsri_error(DSR1_ERR_OUT_OF_MEMORY, "JSON: out of memory");
    return NULL;
}

static void skip_ws(reader *r)
{
    while (r->s < r->end && (*r->s == ' ' || *r->s == '\t' || *r->s == '\n' || *r->s == '\r'))
        r->s++;
}

static int put_utf8(char *out, size_t *n, uint32_t cp)
{
    if (cp < 0x80) {
        out[(*n)++] = (char)cp;
    } else if (cp < 0x800) {
        out[(*n)++] = (char)(0xC0 | (cp >> 6));
        out[(*n)++] = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out[(*n)++] = (char)(0xE0 | (cp >> 12));
        out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[(*n)++] = (char)(0x80 | (cp & 0x3F));
    } else {
        out[(*n)++] = (char)(0xF0 | (cp >> 18));
        out[(*n)++] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[(*n)++] = (char)(0x80 | (cp & 0x3F));
    }
    return 1;
}

static int hex4(reader *r, uint32_t *v)
{
    *v = 0;
    if (r->end - r->s < 4)
        return 0;
    for (int i = 0; i < 4; i++) {
        char c = *r->s++;
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return 0;
        *v = *v * 16 + (uint32_t)d;
    }
    return 1;
}

/* A string after its opening quote; the decoded text is never longer than
 * the source. */
static char *read_string(reader *r, size_t *len)
{
    const char *start = r->s;
    char *out = dsri_malloc((size_t)(r->end - start) + 1);
    if (!out)
        return nomem(r), NULL;
    size_t n = 0;
    while (r->s < r->end && *r->s != '"') {
        uint8_t c = (uint8_t)*r->s;
        if (c < 0x20) {
            dsri_free(out);
            return fail(r, "control character in a string"), NULL;
        }
        if (c != '\\') {
            out[n++] = (char)c;
            r->s++;
            continue;
        }
        r->s++;
        if (r->s >= r->end)
            break;
        char e = *r->s++;
        uint32_t cp;
        switch (e) {
        case '"': case '\\': case '/': out[n++] = e; break;
        case 'b': out[n++] = '\b'; break;
        case 'f': out[n++] = '\f'; break;
        case 'n': out[n++] = '\n'; break;
        case 'r': out[n++] = '\r'; break;
        case 't': out[n++] = '\t'; break;
        case 'u':
            if (!hex4(r, &cp)) {
                dsri_free(out);
                return fail(r, "bad \\u escape"), NULL;
            }
            if (cp >= 0xD800 && cp <= 0xDBFF) { /* a surrogate pair: 12 source bytes, 4 out */
                uint32_t lo;
                if (r->end - r->s < 6 || r->s[0] != '\\' || r->s[1] != 'u' || (r->s += 2, !hex4(r, &lo)) ||
                    lo < 0xDC00 || lo > 0xDFFF) {
                    dsri_free(out);
                    return fail(r, "unpaired surrogate"), NULL;
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                dsri_free(out);
                return fail(r, "unpaired surrogate"), NULL;
            }
            put_utf8(out, &n, cp);
            break;
        default:
            dsri_free(out);
            return fail(r, "unknown escape"), NULL;
        }
    }
    if (r->s >= r->end) {
        dsri_free(out);
        return fail(r, "unterminated string"), NULL;
    }
    r->s++;
    out[n] = '\0';
    *len = n;
    return out;
}

static dsri_json *read_value(reader *r, int depth);

static int append_item(reader *r, dsri_json *v, int32_t *cap, dsri_json *item, char *key)
{
    if (v->n == *cap) {
        int32_t c = *cap ? *cap * 2 : 4;
        dsri_json **items = dsri_realloc(v->items, (size_t)c * sizeof *items);
        if (items)
            v->items = items;
        char **keys = v->type == DSRI_JSON_OBJECT ? dsri_realloc(v->keys, (size_t)c * sizeof *keys) : NULL;
        if (keys)
            v->keys = keys;
        if (!items || (v->type == DSRI_JSON_OBJECT && !keys)) {
            dsri_json_free(item);
            dsri_free(key);
            nomem(r);
            return 0;
        }
        *cap = c;
    }
    v->items[v->n] = item;
    if (v->type == DSRI_JSON_OBJECT)
        v->keys[v->n] = key;
    v->n++;
    return 1;
}

static dsri_json *read_container(reader *r, dsri_json *v, int depth)
{
    int object = v->type == DSRI_JSON_OBJECT;
    char close = object ? '}' : ']';
    int32_t cap = 0;
    r->s++;
    skip_ws(r);
    if (r->s < r->end && *r->s == close) {
        r->s++;
        return v;
    }
    for (;;) {
        char *key = NULL;
        if (object) {
            skip_ws(r);
            size_t kl;
            if (r->s >= r->end || *r->s != '"')
                return dsri_json_free(v), fail(r, "a key was expected");
            r->s++;
            if (!(key = read_string(r, &kl)))
                return dsri_json_free(v), NULL;
            skip_ws(r);
            if (r->s >= r->end || *r->s != ':') {
                dsri_free(key);
                return dsri_json_free(v), fail(r, "':' was expected");
            }
            r->s++;
        }
        dsri_json *item = read_value(r, depth + 1);
        if (!item) {
            dsri_free(key);
            return dsri_json_free(v), NULL;
        }
        if (!append_item(r, v, &cap, item, key))
            return dsri_json_free(v), NULL;
        skip_ws(r);
        if (r->s < r->end && *r->s == ',') {
            r->s++;
            continue;
        }
        if (r->s < r->end && *r->s == close) {
            r->s++;
            return v;
        }
        return dsri_json_free(v), fail(r, object ? "',' or '}' was expected" : "',' or ']' was expected");
    }
}

static dsri_json *read_number(reader *r, dsri_json *v)
{
    const char *start = r->s;
    if (r->s < r->end && *r->s == '-')
        r->s++;
    if (r->s < r->end && *r->s == '0') {
        r->s++;
    } else if (r->s < r->end && *r->s >= '1' && *r->s <= '9') {
        while (r->s < r->end && *r->s >= '0' && *r->s <= '9')
            r->s++;
    } else {
        return dsri_json_free(v), fail(r, "bad number");
    }
    if (r->s < r->end && *r->s == '.') {
        r->s++;
        if (r->s >= r->end || *r->s < '0' || *r->s > '9')
            return dsri_json_free(v), fail(r, "bad number");
        while (r->s < r->end && *r->s >= '0' && *r->s <= '9')
            r->s++;
    }
    if (r->s < r->end && (*r->s == 'e' || *r->s == 'E')) {
        r->s++;
        if (r->s < r->end && (*r->s == '+' || *r->s == '-'))
            r->s++;
        if (r->s >= r->end || *r->s < '0' || *r->s > '9')
            return dsri_json_free(v), fail(r, "bad number");
        while (r->s < r->end && *r->s >= '0' && *r->s <= '9')
            r->s++;
    }
    v->text_len = (size_t)(r->s - start);
    v->text = dsri_strndup(start, v->text_len);
    if (!v->text)
        return dsri_json_free(v), nomem(r);
    v->number = strtod(v->text, NULL);
    return v;
}

static dsri_json *read_value(reader *r, int depth)
{
    if (depth > DSRI_JSON_MAX_DEPTH)
        return fail(r, "nested too deeply");
    skip_ws(r);
    if (r->s >= r->end)
        return fail(r, "unexpected end");
    dsri_json *v = dsri_calloc(1, sizeof *v);
    if (!v)
        return nomem(r);
    char c = *r->s;
    static const struct { const char *word; dsri_json_type type; int b; } words[] = {
        {"null", DSRI_JSON_NULL, 0}, {"true", DSRI_JSON_BOOL, 1}, {"false", DSRI_JSON_BOOL, 0}};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        size_t wl = strlen(words[i].word);
        if ((size_t)(r->end - r->s) >= wl && memcmp(r->s, words[i].word, wl) == 0) {
            r->s += wl;
            v->type = words[i].type;
            v->boolean = words[i].b;
            return v;
        }
    }
    if (c == '{' || c == '[') {
        v->type = c == '{' ? DSRI_JSON_OBJECT : DSRI_JSON_ARRAY;
        return read_container(r, v, depth);
    }
    if (c == '"') {
        r->s++;
        v->type = DSRI_JSON_STRING;
        if (!(v->text = read_string(r, &v->text_len)))
            return dsri_json_free(v), NULL;
        return v;
    }
    v->type = DSRI_JSON_NUMBER;
    return read_number(r, v);
}

dsr1_status dsri_json_parse(const char *text, size_t len, dsri_json **out)
{
    *out = NULL;
    if (!text)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "JSON: text is NULL");
    reader r = {text, text, text + len, DSR1_OK};
    dsri_json *v = read_value(&r, 0);
    if (!v)
        return r.st;
    skip_ws(&r);
    if (r.s != r.end) {
        dsri_json_free(v);
        fail(&r, "text after the value");
        return r.st;
    }
    *out = v;
    return DSR1_OK;
}

void dsri_json_free(dsri_json *v)
{
    if (!v)
        return;
    for (int32_t i = 0; i < v->n; i++) {
        dsri_json_free(v->items[i]);
        if (v->keys)
            dsri_free(v->keys[i]);
    }
    dsri_free(v->items);
    dsri_free(v->keys);
    dsri_free(v->text);
    dsri_free(v);
}

const dsri_json *dsri_json_get(const dsri_json *obj, const char *key)
{
    if (!obj || obj->type != DSRI_JSON_OBJECT)
        return NULL;
    for (int32_t i = 0; i < obj->n; i++)
        if (strcmp(obj->keys[i], key) == 0)
            return obj->items[i];
    return NULL;
}
