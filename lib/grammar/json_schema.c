/*
 * JSON schema -> GBNF, for the common subset: type (one or a list),
 * object (properties in the order given, required; no other keys),
 * string (minLength, maxLength), number, integer, boolean, null, enum,
 * const, array (items, minItems, maxItems), anyOf / oneOf, and {} or true
 * for any JSON value. Annotations (title, description, default, format,
 * examples, $schema, additionalProperties: false) are ignored;
 * constraints the grammar could not enforce ($ref, pattern, allOf, not,
 * ...) are DSR1_ERR_UNSUPPORTED rather than silently dropped.
 *
 * Numbers follow llama.cpp's bounds (at most 16 integral and 16 fraction
 * digits) and whitespace between tokens is bounded too, so a schema
 * without unbounded strings or arrays always lets the model finish.
 */
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "grammar/json.h"
#include "grammar/json_schema.h"

typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

typedef struct conv {
    sbuf rules; /* the generated rules, one per line */
    int32_t next_id;
    dsr1_status st;
} conv;

static const char PRIMITIVES[] =
    "ws ::= | \" \" | \"\\n\" [ \\t]{0,20}\n"
    "char ::= [^\"\\\\\\x7F\\x00-\\x1F] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4})\n"
    "string ::= \"\\\"\" char* \"\\\"\"\n"
    "integral ::= \"0\" | [1-9] [0-9]{0,15}\n"
    "integer ::= \"-\"? integral\n"
    "number ::= \"-\"? integral (\".\" [0-9]{1,16})? ([eE] [-+]? [0-9]{1,3})?\n"
    "boolean ::= \"true\" | \"false\"\n"
    "null ::= \"null\"\n"
    "value ::= object | array | string | number | boolean | null\n"
    "object ::= \"{\" ws (string ws \":\" ws value ws (\",\" ws string ws \":\" ws value ws)*)? \"}\"\n"
    "array ::= \"[\" ws (value ws (\",\" ws value ws)*)? \"]\"\n";

static int put(conv *c, sbuf *b, const char *s, size_t n)
{
    if (c->st)
        return 0;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = dsri_realloc(b->p, cap);
        if (!p) {
            c->st = dsri_error(DSR1_ERR_OUT_OF_MEMORY, "JSON schema: out of memory");
            return 0;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return 1;
}

static int puts_(conv *c, sbuf *b, const char *s) { return put(c, b, s, strlen(s)); }

static int putf_int(conv *c, sbuf *b, const char *fmt, long v)
{
    char tmp[64];
    snprintf(tmp, sizeof tmp, fmt, v);
    return puts_(c, b, tmp);
}

static int unsupported(conv *c, const char *what)
{
    if (!c->st)
        c->st = dsri_error(DSR1_ERR_UNSUPPORTED, "JSON schema: %s is not supported", what);
    return 0;
}

static int invalid(conv *c, const char *what)
{
    if (!c->st)
        c->st = dsri_error(DSR1_ERR_FORMAT, "JSON schema: %s", what);
    return 0;
}

/* Bytes as a GBNF literal body (between the quotes). */
static int put_literal_bytes(conv *c, sbuf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        char tmp[8];
        if (ch == '"' || ch == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)ch;
            tmp[2] = 0;
        } else if (ch < 0x20 || ch == 0x7F) {
            snprintf(tmp, sizeof tmp, "\\x%02X", ch);
        } else {
            tmp[0] = (char)ch;
            tmp[1] = 0;
        }
        if (!puts_(c, b, tmp))
            return 0;
    }
    return 1;
}

/* A JSON value written canonically (as the model must write it). */
static int put_json(conv *c, sbuf *b, const dsri_json *v, int depth)
{
    if (depth > DSRI_JSON_MAX_DEPTH)
        return invalid(c, "enum value nested too deeply");
    switch (v->type) {
    case DSRI_JSON_NULL: return puts_(c, b, "null");
    case DSRI_JSON_BOOL: return puts_(c, b, v->boolean ? "true" : "false");
    case DSRI_JSON_NUMBER: return put(c, b, v->text, v->text_len);
    case DSRI_JSON_STRING:
        if (!puts_(c, b, "\""))
            return 0;
        for (size_t i = 0; i < v->text_len; i++) {
            unsigned char ch = (unsigned char)v->text[i];
            char tmp[8];
            if (ch == '"' || ch == '\\')
                snprintf(tmp, sizeof tmp, "\\%c", ch);
            else if (ch == '\n')
                snprintf(tmp, sizeof tmp, "\\n");
            else if (ch < 0x20)
                snprintf(tmp, sizeof tmp, "\\u%04x", ch);
            else
                snprintf(tmp, sizeof tmp, "%c", ch);
            if (!puts_(c, b, tmp))
                return 0;
        }
        return puts_(c, b, "\"");
    case DSRI_JSON_ARRAY:
    case DSRI_JSON_OBJECT: {
        int obj = v->type == DSRI_JSON_OBJECT;
        if (!puts_(c, b, obj ? "{" : "["))
            return 0;
        for (int32_t i = 0; i < v->n; i++) {
            if (i && !puts_(c, b, ","))
                return 0;
            if (obj) {
                dsri_json key = {DSRI_JSON_STRING, 0, 0, v->keys[i], strlen(v->keys[i]), NULL, NULL, 0};
                if (!put_json(c, b, &key, depth + 1) || !puts_(c, b, ":"))
                    return 0;
            }
            if (!put_json(c, b, v->items[i], depth + 1))
                return 0;
        }
        return puts_(c, b, obj ? "}" : "]");
    }
    }
    return 0;
}

/* " json-text " as a GBNF literal */
static int put_value_literal(conv *c, sbuf *b, const dsri_json *v)
{
    sbuf tmp = {0};
    int ok = put_json(c, &tmp, v, 0) && puts_(c, b, "\"") && put_literal_bytes(c, b, tmp.p, tmp.n) &&
             puts_(c, b, "\"");
    dsri_free(tmp.p);
    return ok;
}

/* A new rule name "sN" into name (>= 16 bytes). */
static void new_name(conv *c, char *name) { snprintf(name, 16, "s%d", (int)c->next_id++); }

static int add_rule(conv *c, const char *name, const sbuf *body)
{
    return puts_(c, &c->rules, name) && puts_(c, &c->rules, " ::= ") &&
           put(c, &c->rules, body->p ? body->p : "", body->n) && puts_(c, &c->rules, "\n");
}

static int expr(conv *c, sbuf *out, const dsri_json *s, int depth);

static int get_count(conv *c, const dsri_json *s, const char *key, long *v)
{
    const dsri_json *x = dsri_json_get(s, key);
    if (!x)
        return 1;
    if (x->type != DSRI_JSON_NUMBER || x->number < 0 || x->number > 10000 || x->number != (double)(long)x->number)
        return invalid(c, "minLength, maxLength, minItems and maxItems must be whole numbers in [0, 10000]");
    *v = (long)x->number;
    return 1;
}

static int object_expr(conv *c, sbuf *out, const dsri_json *s, int depth)
{
    const dsri_json *props = dsri_json_get(s, "properties");
    const dsri_json *req = dsri_json_get(s, "required");
    if (props && props->type != DSRI_JSON_OBJECT)
        return invalid(c, "properties must be an object");
    if (req && req->type != DSRI_JSON_ARRAY)
        return invalid(c, "required must be an array");
    if (!props) /* no properties named: any object */
        return puts_(c, out, "object");
    int32_t n = props->n;
    if (req)
        for (int32_t j = 0; j < req->n; j++) {
            int found = req->items[j]->type == DSRI_JSON_STRING && dsri_json_get(props, req->items[j]->text);
            if (!found)
                return invalid(c, "a required property is not among the properties");
        }
    /* first_i: properties i.. with none written yet; rest_i: after one was */
    char first_next[16] = "", rest_next[16] = "";
    for (int32_t i = n - 1; i >= 0; i--) {
        int required = 0;
        for (int32_t j = 0; req && j < req->n; j++)
            required |= strcmp(req->items[j]->text, props->keys[i]) == 0;
        sbuf kv = {0};
        dsri_json key = {DSRI_JSON_STRING, 0, 0, props->keys[i], strlen(props->keys[i]), NULL, NULL, 0};
        int ok = put_value_literal(c, &kv, &key) && puts_(c, &kv, " ws \":\" ws ") &&
                 expr(c, &kv, props->items[i], depth + 1) && puts_(c, &kv, " ws");
        char first[16], rest[16];
        new_name(c, first);
        new_name(c, rest);
        sbuf fb = {0}, rb = {0};
        /* (no empty alternatives: "x ::= a |" would continue on the next line) */
        if (required)
            ok = ok && puts_(c, &fb, kv.p) && puts_(c, &fb, " ") && puts_(c, &fb, rest_next);
        else if (first_next[0])
            ok = ok && puts_(c, &fb, kv.p) && puts_(c, &fb, " ") && puts_(c, &fb, rest_next) &&
                 puts_(c, &fb, " | ") && puts_(c, &fb, first_next);
        else
            ok = ok && puts_(c, &fb, "(") && puts_(c, &fb, kv.p) && puts_(c, &fb, ")?");
        ok = ok && puts_(c, &rb, required ? "\",\" ws " : "(\",\" ws ") && puts_(c, &rb, kv.p) &&
             puts_(c, &rb, required ? " " : ")? ") && puts_(c, &rb, rest_next);
        ok = ok && add_rule(c, first, &fb) && add_rule(c, rest, &rb);
        dsri_free(kv.p);
        dsri_free(fb.p);
        dsri_free(rb.p);
        if (!ok)
            return 0;
        memcpy(first_next, first, sizeof first);
        memcpy(rest_next, rest, sizeof rest);
    }
    return puts_(c, out, "\"{\" ws ") && puts_(c, out, first_next) && puts_(c, out, " \"}\"");
}

static int array_expr(conv *c, sbuf *out, const dsri_json *s, int depth)
{
    long min = 0, max = -1;
    if (!get_count(c, s, "minItems", &min) || !get_count(c, s, "maxItems", &max))
        return 0;
    if (max >= 0 && max < min)
        return invalid(c, "maxItems is below minItems");
    const dsri_json *items = dsri_json_get(s, "items");
    char item[16];
    new_name(c, item);
    sbuf ib = {0};
    int ok = items ? expr(c, &ib, items, depth + 1) : puts_(c, &ib, "value");
    ok = ok && add_rule(c, item, &ib);
    dsri_free(ib.p);
    if (!ok)
        return 0;
    if (max == 0)
        return puts_(c, out, "\"[\" ws \"]\"");
    /* item ws ("," ws item ws){min-1, max-1} */
    if (!puts_(c, out, "\"[\" ws ") || !puts_(c, out, min == 0 ? "(" : "") || !puts_(c, out, item) ||
        !puts_(c, out, " ws (\",\" ws ") || !puts_(c, out, item) || !puts_(c, out, " ws)"))
        return 0;
    long lo = min > 0 ? min - 1 : 0;
    if (max < 0) {
        if (!putf_int(c, out, "{%ld,}", lo))
            return 0;
    } else {
        char tmp[64];
        snprintf(tmp, sizeof tmp, "{%ld,%ld}", lo, max - 1);
        if (!puts_(c, out, tmp))
            return 0;
    }
    return puts_(c, out, min == 0 ? ")? \"]\"" : " \"]\"");
}

static int string_expr(conv *c, sbuf *out, const dsri_json *s)
{
    long min = 0, max = -1;
    if (!get_count(c, s, "minLength", &min) || !get_count(c, s, "maxLength", &max))
        return 0;
    if (max >= 0 && max < min)
        return invalid(c, "maxLength is below minLength");
    if (min == 0 && max < 0)
        return puts_(c, out, "string");
    char tmp[96];
    if (max < 0)
        snprintf(tmp, sizeof tmp, "\"\\\"\" char{%ld,} \"\\\"\"", min);
    else
        snprintf(tmp, sizeof tmp, "\"\\\"\" char{%ld,%ld} \"\\\"\"", min, max);
    return puts_(c, out, tmp);
}

static int type_expr(conv *c, sbuf *out, const char *type, const dsri_json *s, int depth)
{
    if (strcmp(type, "object") == 0)
        return object_expr(c, out, s, depth);
    if (strcmp(type, "array") == 0)
        return array_expr(c, out, s, depth);
    if (strcmp(type, "string") == 0)
        return string_expr(c, out, s);
    static const char *const simple[] = {"number", "integer", "boolean", "null"};
    for (size_t i = 0; i < sizeof simple / sizeof simple[0]; i++)
        if (strcmp(type, simple[i]) == 0)
            return puts_(c, out, type);
    return invalid(c, "unknown type");
}

static int expr(conv *c, sbuf *out, const dsri_json *s, int depth)
{
    if (depth > DSRI_JSON_MAX_DEPTH)
        return invalid(c, "nested too deeply");
    if (s->type == DSRI_JSON_BOOL && s->boolean)
        return puts_(c, out, "value");
    if (s->type != DSRI_JSON_OBJECT)
        return invalid(c, "a schema must be an object or true");
    static const char *const refused[] = {"$ref", "pattern", "patternProperties", "allOf", "not", "if",
                                          "dependentSchemas", "prefixItems", "uniqueItems", "minimum",
                                          "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
                                          "minProperties", "maxProperties", "propertyNames"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (dsri_json_get(s, refused[i]))
            return unsupported(c, refused[i]);
    const dsri_json *ap = dsri_json_get(s, "additionalProperties");
    if (ap && !(ap->type == DSRI_JSON_BOOL && !ap->boolean))
        return unsupported(c, "additionalProperties other than false");
    const dsri_json *x;
    if ((x = dsri_json_get(s, "const")))
        return put_value_literal(c, out, x);
    if ((x = dsri_json_get(s, "enum"))) {
        if (x->type != DSRI_JSON_ARRAY || x->n == 0)
            return invalid(c, "enum must be a non-empty array");
        if (!puts_(c, out, "("))
            return 0;
        for (int32_t i = 0; i < x->n; i++)
            if ((i && !puts_(c, out, " | ")) || !put_value_literal(c, out, x->items[i]))
                return 0;
        return puts_(c, out, ")");
    }
    if ((x = dsri_json_get(s, "anyOf")) || (x = dsri_json_get(s, "oneOf"))) {
        if (x->type != DSRI_JSON_ARRAY || x->n == 0)
            return invalid(c, "anyOf / oneOf must be a non-empty array");
        if (!puts_(c, out, "("))
            return 0;
        for (int32_t i = 0; i < x->n; i++)
            if ((i && !puts_(c, out, " | ")) || !expr(c, out, x->items[i], depth + 1))
                return 0;
        return puts_(c, out, ")");
    }
    const dsri_json *type = dsri_json_get(s, "type");
    if (!type)
        return dsri_json_get(s, "properties") ? object_expr(c, out, s, depth)
               : dsri_json_get(s, "items")    ? array_expr(c, out, s, depth)
                                              : puts_(c, out, "value");
    if (type->type == DSRI_JSON_STRING)
        return type_expr(c, out, type->text, s, depth);
    if (type->type != DSRI_JSON_ARRAY || type->n == 0)
        return invalid(c, "type must be a string or a non-empty array of strings");
    if (!puts_(c, out, "("))
        return 0;
    for (int32_t i = 0; i < type->n; i++) {
        if (type->items[i]->type != DSRI_JSON_STRING)
            return invalid(c, "type must be a string or a non-empty array of strings");
        if ((i && !puts_(c, out, " | ")) || !type_expr(c, out, type->items[i]->text, s, depth))
            return 0;
    }
    return puts_(c, out, ")");
}

dsr1_status dsri_json_schema_to_gbnf(const char *schema, size_t len, char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    dsri_json *s;
    dsr1_status st = dsri_json_parse(schema, len, &s);
    if (st)
        return st;
    conv c;
    memset(&c, 0, sizeof c);
    sbuf root = {0};
    if (puts_(&c, &c.rules, PRIMITIVES) && expr(&c, &root, s, 0) && puts_(&c, &c.rules, "root ::= ") &&
        puts_(&c, &c.rules, root.p))
        puts_(&c, &c.rules, "\n");
    dsri_free(root.p);
    dsri_json_free(s);
    if (c.st) {
        dsri_free(c.rules.p);
        return c.st;
    }
    *out = c.rules.p;
    *out_len = c.rules.n;
    return DSR1_OK;
}
